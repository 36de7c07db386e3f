//! The loss-curve chart: SVG through plotters (text is left to the viewer's
//! fonts), and the same SVG rasterized to PNG by resvg for places that show
//! only images (CI artifacts, chat tools, some Markdown viewers).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Result, TrainError};

/// Draw training loss (and validation loss, if any) against the step.
pub fn loss_svg(path: &Path, train: &[(u64, f64)], validation: &[(u64, f64)]) -> Result<()> {
    let err = |e: String| TrainError::bad(path, format!("cannot draw the loss chart: {e}"));
    let finite = |p: &&(u64, f64)| p.1.is_finite();
    let all: Vec<&(u64, f64)> = train.iter().chain(validation).filter(finite).collect();
    let x_max = all.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let y_max = all.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.05;
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(y_max)
        * 0.95;
    let y_min = if y_min.is_finite() {
        y_min.max(0.0)
    } else {
        0.0
    };
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("loss", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss per trained token")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let raw: Vec<(f64, f64)> = train
        .iter()
        .filter(finite)
        .map(|(s, l)| (*s as f64, *l))
        .collect();
    // Per-step loss on small batches is noisy; the trend is what one reads, so
    // the raw curve is drawn faint and a smoothed one over it.
    let faint = RGBColor(170, 195, 240);
    chart
        .draw_series(LineSeries::new(raw.iter().copied(), &faint))
        .map_err(|e| err(e.to_string()))?
        .label("train (per step)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], faint));
    chart
        .draw_series(LineSeries::new(smoothed(&raw), BLUE.stroke_width(2)))
        .map_err(|e| err(e.to_string()))?
        .label("train (smoothed)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    if !validation.is_empty() {
        chart
            .draw_series(LineSeries::new(
                validation
                    .iter()
                    .filter(finite)
                    .map(|(s, l)| (*s as f64, *l)),
                &RED,
            ))
            .map_err(|e| err(e.to_string()))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
    }
    // Loss falls, so the upper right corner is usually empty; plotters'
    // default (the middle) puts the legend over the curves.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Exponential moving average with a bias correction, as TensorBoard's
/// smoothing slider: the first points are not pulled towards zero. The weight
/// grows with the run so that a long run is smoothed over about 1/20 of it.
fn smoothed(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let weight = (1.0 - 20.0 / points.len().max(1) as f64).clamp(0.6, 0.98);
    let mut average = 0.0;
    let mut norm = 0.0;
    points
        .iter()
        .map(|&(x, y)| {
            average = weight * average + (1.0 - weight) * y;
            norm = weight * norm + (1.0 - weight);
            (x, average / norm)
        })
        .collect()
}

/// Rasterize the chart at `svg` to `png` at the SVG's size. Text is drawn with
/// the system's sans-serif fonts (DejaVu, Liberation, Noto or whatever the
/// system has); on a system without fonts the lines are drawn and text is left
/// out.
pub fn svg_to_png(svg: &Path, png: &Path) -> Result<()> {
    let err = |e: String| TrainError::bad(svg, format!("cannot rasterize the loss chart: {e}"));
    let text = std::fs::read_to_string(svg).map_err(|e| TrainError::io(svg, e))?;
    let mut opt = resvg::usvg::Options::default();
    let fonts = opt.fontdb_mut();
    fonts.load_system_fonts();
    let families: Vec<String> = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let preferred = [
        "DejaVu Sans",
        "Liberation Sans",
        "Noto Sans",
        "Arial",
        "Helvetica",
    ];
    if let Some(family) = preferred
        .iter()
        .find(|p| families.iter().any(|f| f == *p))
        .map(|p| p.to_string())
        .or_else(|| families.first().cloned())
    {
        fonts.set_sans_serif_family(family.clone());
        opt.font_family = family;
    }
    let tree = resvg::usvg::Tree::from_str(&text, &opt).map_err(|e| err(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| err(format!("empty image {}x{}", size.width(), size.height())))?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let bytes = pixmap.encode_png().map_err(|e| err(e.to_string()))?;
    crate::lora::write_atomic(png, &bytes)
}

#[cfg(test)]
mod tests {
    use super::smoothed;

    #[test]
    fn smoothing_keeps_a_constant_and_follows_a_step() {
        let flat: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 2.0)).collect();
        for (_, y) in smoothed(&flat) {
            assert!((y - 2.0).abs() < 1e-12, "{y}");
        }
        let step: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, if i < 100 { 4.0 } else { 1.0 }))
            .collect();
        let s = smoothed(&step);
        assert!((s[0].1 - 4.0).abs() < 1e-12);
        assert!(
            s[105].1 > 1.5 && s[105].1 < 4.0,
            "lags behind: {}",
            s[105].1
        );
        assert!((s[199].1 - 1.0).abs() < 0.05, "catches up: {}", s[199].1);
    }
}

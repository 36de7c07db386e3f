//! The loss-curve chart (SVG through plotters; text is left to the viewer's fonts,
//! so no font library is linked).

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
    chart
        .draw_series(LineSeries::new(
            train.iter().filter(finite).map(|(s, l)| (*s as f64, *l)),
            &BLUE,
        ))
        .map_err(|e| err(e.to_string()))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
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
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

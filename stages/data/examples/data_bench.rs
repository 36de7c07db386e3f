//! Throughput of the data stages on synthetic alpaca rows.
//!
//! ```text
//! cargo run --release -p pipe-data --example data_bench -- [ROWS=1000000] [THREADS] [--e2e [--rounds K]] [--filter JSON] [--data DIR]
//! ```
//!
//! `--e2e` runs only ingest, exact dedup and filter, one after the other on
//! each other's output, with nothing written in between: the three stages of
//! the end-to-end target, for profiling and A/B runs (`--rounds K`: K times
//! over, and the least disturbed round again at the end). `--filter JSON`
//! replaces the filter's parameters (default `{"preset": "sft-en"}`). `--data DIR` keeps the
//! generated JSONL in DIR and reuses it when it is there (same ROWS).
//!
//! Use `--release`: a dev build with only pipe-data optimized leaves xxh3,
//! regex and aho-corasick unoptimized and measures them instead of pipe-data.
//!
//! Writes ROWS alpaca rows of ~500 bytes as JSONL (5% exact duplicates with
//! case/space changes, 5% near duplicates with one word changed), then times
//! ingest, exact dedup, near dedup, filter (preset sft-en), split and the
//! Parquet write, and prints rows/s per stage and the peak RSS. The peak is
//! reset after the data is generated (the generator's own copy is not the
//! stages'), so it is the most the stages held at once, input bytes included.
//!
//! Between stages the rows go through `rows.parquet` as in a pipeline run
//! (each stage writes its table, the next one reads it), and those writes and
//! reads are timed too: the end-to-end figure of ingest + exact dedup + filter
//! is given without them (the stage functions alone) and with them (what a
//! `pipe run` of the three stages spends, side tables aside). On a shared
//! machine the wall clock says how busy the neighbours were; the CPU time of
//! the three stage functions (in CPU-microseconds per row) says what they cost.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use pipe_data::dedup::{DedupParams, NearParams, dedup};
use pipe_data::filter::{FilterParams, filter};
use pipe_data::ingest::{IngestParams, ingest};
use pipe_data::split::{SplitParams, split};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vocab(rng: &mut Rng) -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ren", "sa", "tor", "vu", "el", "an", "dis", "pro", "con", "ter", "ma",
        "li", "qu", "es", "ta", "ni", "or", "be", "gra", "fi", "um",
    ];
    (0..5000)
        .map(|_| {
            (0..2 + rng.below(3))
                .map(|_| SYL[rng.below(SYL.len())])
                .collect()
        })
        .collect()
}

fn sentence(rng: &mut Rng, vocab: &[String], words: usize) -> Vec<String> {
    (0..words)
        .map(|_| vocab[rng.below(vocab.len())].clone())
        .collect()
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, 100 ticks/s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<f64> = after_name
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // fields 14 and 15 of the file; the split starts at field 3
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn rss_peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Start a new peak: VmHWM becomes the current RSS (Linux `clear_refs` 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn write_data(path: &Path, n: usize) -> u64 {
    let mut rng = Rng(7);
    let vocab = vocab(&mut rng);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut made: Vec<(String, String, String)> = Vec::with_capacity(n);
    let mut bytes = 0u64;
    for i in 0..n {
        let r = rng.below(100);
        let rec = if r < 5 && i > 10 {
            // exact duplicate after normalization: case and spacing changed
            let (a, b, c) = made[rng.below(made.len())].clone();
            (a.to_uppercase(), format!("  {b} "), c.replace(' ', "  "))
        } else if r < 10 && i > 10 {
            // near duplicate: one word of the output replaced
            let (a, b, c) = made[rng.below(made.len())].clone();
            let mut w: Vec<&str> = c.split(' ').collect();
            let k = rng.below(w.len());
            w[k] = "substituted";
            (a, b, w.join(" "))
        } else {
            let a = sentence(&mut rng, &vocab, 10).join(" ");
            let b = sentence(&mut rng, &vocab, 8).join(" ");
            let c = sentence(&mut rng, &vocab, 40).join(" ") + ".";
            (a, b, c)
        };
        let line =
            serde_json::json!({"instruction": rec.0, "input": rec.1, "output": rec.2}).to_string();
        bytes += line.len() as u64 + 1;
        writeln!(out, "{line}").unwrap();
        made.push(rec);
    }
    out.flush().unwrap();
    bytes
}

/// The end-to-end figure of ingest + exact dedup + filter, in wall and CPU time.
fn print_e2e(n: usize, e2e: f64, e2e_cpu: f64) {
    println!(
        "{:<34} {n:>9} rows in {e2e:>6.2} s = {:>9.0} rows/s",
        "ingest+exact+filter (e2e)",
        n as f64 / e2e,
    );
    // what the three cost in CPU time: the wall clock needs this many
    // CPU-seconds from threads that may share their cores with neighbours
    println!(
        "{:<34} {n:>9} rows in {e2e_cpu:>6.2} cpu-s = {:>9.0} rows/cpu-s = {:.2} cpu-us/row",
        "  cpu time of the three",
        n as f64 / e2e_cpu,
        e2e_cpu * 1e6 / n as f64,
    );
}

/// Ingest, exact dedup and filter on each other's output, `rounds` times
/// over; prints each stage and the round with the least CPU time (the one
/// least disturbed by neighbours: an A/B of two builds compares those).
fn e2e_rounds(
    ingest_params: &IngestParams,
    filter_params: &serde_json::Value,
    dir: &Path,
    n: usize,
    rounds: usize,
    rate: &dyn Fn(&str, usize, f64) -> f64,
) {
    let fp: FilterParams = serde_json::from_value(filter_params.clone()).unwrap();
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..rounds.max(1) {
        reset_peak();
        let t = Instant::now();
        let ing = ingest(ingest_params, dir).unwrap();
        ing.check(0.0).unwrap();
        let t_ingest = t.elapsed().as_secs_f64();
        let cpu_ingest = rate("ingest (jsonl -> rows)", n, t_ingest);
        let t = Instant::now();
        let ex = dedup(&DedupParams::default(), vec![ing.rows], 42).unwrap();
        let t_exact = t.elapsed().as_secs_f64();
        let cpu_exact = rate(&format!("exact dedup (-{})", ex.exact_removed), n, t_exact);
        let rows_exact = ex.rows.len();
        drop(ex.removed);
        let t = Instant::now();
        let f = filter(&fp, ex.rows).unwrap();
        let t_filter = t.elapsed().as_secs_f64();
        let cpu_filter = rate(
            &format!("filter sft-en (-{})", f.dropped.len()),
            rows_exact,
            t_filter,
        );
        let e2e = (
            t_ingest + t_exact + t_filter,
            cpu_ingest + cpu_exact + cpu_filter,
        );
        print_e2e(n, e2e.0, e2e.1);
        if best.is_none_or(|b| e2e.1 < b.1) {
            best = Some(e2e);
        }
    }
    if rounds > 1
        && let Some((wall, cpu)) = best
    {
        println!("least CPU of {rounds} rounds:");
        print_e2e(n, wall, cpu);
    }
}

struct Args {
    rows: usize,
    threads: Option<usize>,
    e2e_only: bool,
    rounds: usize,
    filter: serde_json::Value,
    data_dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        rows: 1_000_000,
        threads: None,
        e2e_only: false,
        rounds: 1,
        filter: serde_json::json!({"preset": "sft-en"}),
        data_dir: None,
    };
    let mut positional = 0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--e2e" => args.e2e_only = true,
            "--rounds" => args.rounds = it.next().and_then(|r| r.parse().ok()).expect("--rounds K"),
            "--filter" => {
                let json = it.next().expect("--filter JSON");
                args.filter = serde_json::from_str(&json).expect("--filter takes JSON");
            }
            "--data" => args.data_dir = Some(it.next().expect("--data DIR").into()),
            _ => {
                let v: usize = a.parse().unwrap_or_else(|_| panic!("not a number: {a}"));
                match positional {
                    0 => args.rows = v,
                    _ => args.threads = Some(v),
                }
                positional += 1;
            }
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let n = args.rows;
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.data_dir.as_deref().unwrap_or(tmp.path());
    let data = dir.join(format!("data-{n}.jsonl"));
    let t = Instant::now();
    let bytes = match std::fs::metadata(&data) {
        Ok(m) if args.data_dir.is_some() => m.len(),
        _ => write_data(&data, n),
    };
    println!(
        "generated {n} rows, {:.1} MiB ({:.0} bytes/row) in {:.1} s; threads {}",
        bytes as f64 / 1048576.0,
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let input_mib = bytes as f64 / 1048576.0;
    // CPU seconds and peak RSS per stage: on a shared machine the wall clock
    // says how busy the neighbours were, CPU time says what the stage cost.
    let last_cpu = std::cell::Cell::new(cpu_secs());
    let max_peak = std::cell::Cell::new(0.0f64);
    let rate = |label: &str, rows: usize, secs: f64| {
        let cpu = cpu_secs() - last_cpu.get();
        let peak = rss_peak_mib();
        max_peak.set(max_peak.get().max(peak));
        println!(
            "{label:<34} {rows:>9} rows in {secs:>6.2} s = {:>9.0} rows/s; cpu {cpu:>6.2} s = {:>9.0} rows/cpu-s; peak {:.2}x input",
            rows as f64 / secs,
            rows as f64 / cpu.max(0.01),
            peak / input_mib
        );
        reset_peak();
        last_cpu.set(cpu_secs());
        cpu
    };

    let p: IngestParams = serde_json::from_value(
        serde_json::json!({"path": data.file_name().unwrap().to_str(), "format": "alpaca"}),
    )
    .unwrap();
    if args.e2e_only {
        e2e_rounds(&p, &args.filter, dir, n, args.rounds, &rate);
        return;
    }
    reset_peak();
    let t = Instant::now();
    let ing = ingest(&p, dir).unwrap();
    ing.check(0.0).unwrap();
    let t_ingest = t.elapsed().as_secs_f64();
    let cpu_ingest = rate("ingest (jsonl -> rows)", n, t_ingest);

    let fp: FilterParams = serde_json::from_value(args.filter.clone()).unwrap();

    // a stage's table goes to rows.parquet and the next stage reads it back
    let table = tmp.path().join("rows.parquet");
    let pass_on = |label: &str, rows: Vec<pipe_rows::Row>| {
        let n_rows = rows.len();
        let t = Instant::now();
        pipe_rows::write_rows(&table, &rows).unwrap();
        drop(rows);
        let t_write = t.elapsed().as_secs_f64();
        rate(&format!("write rows.parquet ({label})"), n_rows, t_write);
        let t = Instant::now();
        let back = pipe_rows::read_rows(&table).unwrap();
        let t_read = t.elapsed().as_secs_f64();
        rate(&format!("read rows.parquet ({label})"), n_rows, t_read);
        (back, t_write, t_read)
    };
    let (rows, w_ingest, r_ingest) = pass_on("ingest", ing.rows);

    let t = Instant::now();
    let ex = dedup(&DedupParams::default(), vec![rows], 42).unwrap();
    let t_exact = t.elapsed().as_secs_f64();
    let cpu_exact = rate(&format!("exact dedup (-{})", ex.exact_removed), n, t_exact);

    let rows_exact = ex.rows.len();
    // each stage's side table is written and gone before the next stage runs
    drop(ex.removed);
    let (rows, w_exact, r_exact) = pass_on("exact dedup", ex.rows);
    let near_params = DedupParams {
        exact: false,
        near: Some(NearParams::default()),
        ..DedupParams::default()
    };
    let t = Instant::now();
    let nd = dedup(&near_params, vec![rows], 42).unwrap();
    let t_near = t.elapsed().as_secs_f64();
    rate(
        &format!("near dedup (-{})", nd.near_removed),
        rows_exact,
        t_near,
    );

    let rows_near = nd.rows.len();
    drop(nd.removed);
    let (rows, _, _) = pass_on("near dedup", nd.rows);
    let t = Instant::now();
    let f = filter(&fp, rows).unwrap();
    let t_filter = t.elapsed().as_secs_f64();
    let cpu_filter = rate(
        &format!("filter sft-en (-{})", f.dropped.len()),
        rows_near,
        t_filter,
    );

    let rows_f = f.rows.len();
    drop(f.dropped);
    let t = Instant::now();
    pipe_rows::write_rows(&table, &f.rows).unwrap();
    let w_filter = t.elapsed().as_secs_f64();
    rate("write rows.parquet (filter)", rows_f, w_filter);
    // the filter ran on the near-deduplicated rows: scale it to the exact-only output
    let filter_scale = rows_exact as f64 / rows_near as f64;
    let e2e = t_ingest + t_exact + t_filter * filter_scale;
    let e2e_cpu = cpu_ingest + cpu_exact + cpu_filter * filter_scale;
    let e2e_parquet = e2e + w_ingest + r_ingest + w_exact + r_exact + w_filter * filter_scale;
    let sp = SplitParams {
        leakage: None,
        ..SplitParams::default()
    };
    let t = Instant::now();
    let s = split(&sp, f.rows, 42, dir).unwrap();
    let t_split = t.elapsed().as_secs_f64();
    rate("split (no leakage check)", rows_f, t_split);

    // the same rows again (train then test), without holding a second copy
    // (train's vector has room for all of them: split leaves it the input's)
    let mut again = s.train;
    again.extend(s.test);
    let t = Instant::now();
    let s = split(&SplitParams::default(), again, 42, dir).unwrap();
    rate(
        &format!("split + leakage ({} leaks)", s.leaks.len()),
        rows_f,
        t.elapsed().as_secs_f64(),
    );

    let (train, _, _) = pass_on("train", s.train);
    drop(train);

    print_e2e(n, e2e, e2e_cpu);
    println!(
        "{:<34} {n:>9} rows in {e2e_parquet:>6.2} s = {:>9.0} rows/s",
        "  + rows.parquet in between",
        n as f64 / e2e_parquet,
    );
    let peak = max_peak.get();
    println!(
        "peak RSS {peak:.0} MiB = {:.2}x the input ({input_mib:.0} MiB)",
        peak / input_mib
    );
}

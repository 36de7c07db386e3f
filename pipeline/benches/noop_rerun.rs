//! No-op rerun benchmark (issue #2): an 8-stage recipe whose first stage reads a
//! large input (1 GiB by default; `PIPE_BENCH_BYTES` to change).
//!
//! Reports, in-process (no process start-up):
//! - the first run (hashing the input cold + running 8 tiny `command` stages),
//! - a no-op rerun with the file-hash memo warm (target <= 100 ms),
//! - a no-op rerun with the memo cold (dominated by blake3 over the input:
//!   throughput, target >= 1 GB/s),
//! - `pipe status` with the memo warm,
//! - raw blake3 throughput of the input (mmap + rayon).
//!
//! Run: `cargo bench -p pipe-pipeline --bench noop_rerun`.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use pipe_pipeline::cache::Cache;
use pipe_pipeline::command::CommandStage;
use pipe_pipeline::filehash::{FileMemo, hash_file_contents};
use pipe_pipeline::plan::plan;
use pipe_pipeline::recipe::Recipe;
use pipe_pipeline::run::{Quiet, RunOptions, Status, run};
use pipe_pipeline::stage::Registry;

const RECIPE: &str = "name: bench
stages:
  s1: {kind: command, run: 'head -c 64 {files[0]} > {output}/x', files: [big.bin]}
  s2: {kind: command, from: s1, run: 'cat {input}/x > {output}/x; echo 2 >> {output}/x'}
  s3: {kind: command, from: s2, run: 'cat {input}/x > {output}/x; echo 3 >> {output}/x'}
  s4: {kind: command, from: s3, run: 'cat {input}/x > {output}/x; echo 4 >> {output}/x'}
  s5: {kind: command, from: s4, run: 'cat {input}/x > {output}/x; echo 5 >> {output}/x'}
  s6: {kind: command, from: s5, run: 'cat {input}/x > {output}/x; echo 6 >> {output}/x'}
  s7: {kind: command, from: s6, run: 'cat {input}/x > {output}/x; echo 7 >> {output}/x'}
  s8: {kind: command, from: [s7, s1], run: 'cat {inputs[0]}/x {inputs[1]}/x > {output}/x'}
";

fn registry() -> Registry {
    let mut r = Registry::new();
    r.add(CommandStage);
    r
}

/// Load, plan and run the recipe once; returns (seconds, stages that ran).
fn run_once(recipe: &Path, cache: &Cache) -> (f64, usize) {
    let t = Instant::now();
    let memo = FileMemo::load(cache.memo_path());
    let p = plan(Recipe::load(recipe, &[]).unwrap(), &registry()).unwrap();
    let opts = RunOptions {
        jobs: 1,
        threads: 1,
        ..Default::default()
    };
    let summary = run(&p, cache, &memo, &opts, &Quiet).unwrap();
    assert!(summary.error.is_none());
    let ran = summary
        .stages
        .iter()
        .filter(|s| s.status == Status::Ran)
        .count();
    (t.elapsed().as_secs_f64(), ran)
}

fn main() {
    let bytes: u64 = std::env::var("PIPE_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for chunk in 0..bytes.div_ceil(1 << 20) {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let n = (bytes - chunk * (1 << 20)).min(1 << 20) as usize;
            f.write_all(&block[..n]).unwrap();
        }
    }
    let recipe = dir.path().join("bench.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let cache = Cache::new(dir.path().join(".pipe"));
    let gb = bytes as f64 / 1e9;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("input {:.2} GB, {threads} cores", gb);

    let t = Instant::now();
    let h = hash_file_contents(&big, bytes).unwrap();
    let raw = t.elapsed().as_secs_f64();
    println!(
        "blake3 (mmap+rayon) of the input: {:.3} s = {:.2} GB/s ({})",
        raw,
        gb / raw,
        &h[..12]
    );

    let (first, ran) = run_once(&recipe, &cache);
    println!("first run (8 stages, input hashed): {first:.3} s, {ran} stages ran");

    let mut warm = Vec::new();
    for _ in 0..5 {
        let (s, ran) = run_once(&recipe, &cache);
        assert_eq!(ran, 0);
        warm.push(s);
    }
    warm.sort_by(f64::total_cmp);
    println!(
        "no-op rerun, memo warm: median {:.1} ms (min {:.1} ms, 5 runs)",
        warm[2] * 1e3,
        warm[0] * 1e3
    );

    let mut cold = Vec::new();
    for _ in 0..3 {
        std::fs::remove_file(cache.memo_path()).unwrap();
        let (s, ran) = run_once(&recipe, &cache);
        assert_eq!(ran, 0);
        cold.push(s);
    }
    cold.sort_by(f64::total_cmp);
    println!(
        "no-op rerun, memo cold: median {:.3} s = {:.2} GB/s over the input (3 runs)",
        cold[1],
        gb / cold[1]
    );

    let mut status = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let memo = FileMemo::load(cache.memo_path());
        let p = plan(Recipe::load(&recipe, &[]).unwrap(), &registry()).unwrap();
        let records = pipe_pipeline::record::list(&cache);
        let st = pipe_pipeline::status::status(&p, &cache, &memo, &records).unwrap();
        assert!(st.iter().all(|s| s.cached));
        status.push(t.elapsed().as_secs_f64());
    }
    status.sort_by(f64::total_cmp);
    println!(
        "status (all cached), memo warm: median {:.1} ms",
        status[2] * 1e3
    );
}

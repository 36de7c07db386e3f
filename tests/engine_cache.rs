//! Caching, early cutoff, corruption, killed and concurrent runs, reproduce:
//! the "Done when" list of issue #2, end to end through the `pipe` binary with
//! `command` stages.

mod common;
use std::time::{Duration, Instant};

use common::Sandbox;

/// a -> b -> c, and a -> d (an independent branch).
const DIAMOND: &str = "name: t
stages:
  a: {kind: command, run: 'cp {files[0]} {output}/data.txt', files: [in.txt]}
  b: {kind: command, from: a, run: 'tr a-z A-Z < {input}/data.txt > {output}/data.txt'}
  c: {kind: command, from: b, run: 'wc -l < {input}/data.txt > {output}/n'}
  d: {kind: command, from: a, run: 'rev < {input}/data.txt > {output}/r'}
";

fn sandbox() -> Sandbox {
    let t = Sandbox::new();
    t.write("in.txt", "hello\nworld\n");
    t.write("recipe.yaml", DIAMOND);
    t
}

#[test]
fn rerun_after_a_param_change_reruns_exactly_that_stage_and_descendants() {
    let t = sandbox();
    let first = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    assert_eq!(first.ran(), ["a", "b", "c", "d"]);
    let again = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    assert!(again.ran().is_empty(), "{:?}", again.statuses());
    assert_eq!(again.json()["run_hash"], first.json()["run_hash"]);
    let changed = t
        .pipe(&[
            "run",
            "recipe.yaml",
            "--json",
            "--set",
            "stages.b.run=tr a-z A-Z < {input}/data.txt | sort -r > {output}/data.txt",
        ])
        .success();
    assert_eq!(changed.ran(), ["b", "c"]);
    // Editing an input file reruns everything that reads it, and status says why first.
    t.write("in.txt", "hello\nthere\n");
    t.pipe(&["status", "recipe.yaml"])
        .success()
        .stdout_has("a  will run: input in.txt changed (blake3 ")
        .stdout_has("b  will run: upstream a will run");
    assert_eq!(
        t.pipe(&["run", "recipe.yaml", "--json"]).success().ran(),
        ["a", "b", "c", "d"]
    );
}

#[test]
fn early_cutoff_keeps_downstream_cached_when_output_is_identical() {
    let t = sandbox();
    t.pipe(&["run", "recipe.yaml"]).success();
    // A different command producing the same bytes: b reruns, c does not.
    let out = t
        .pipe(&[
            "run",
            "recipe.yaml",
            "--json",
            "--set",
            "stages.b.run=tr a-z A-Z < {input}/data.txt > {output}/data.txt; true",
        ])
        .success();
    assert_eq!(out.ran(), ["b"]);
    assert_eq!(out.stage("c")["status"], "cached");
    t.pipe(&[
        "status",
        "recipe.yaml",
        "--set",
        "stages.c.run=wc -c < {input}/data.txt > {output}/n",
    ])
    .success()
    .stdout_has("c  will run: params.c.run: ");
}

#[test]
fn a_corrupt_cache_entry_is_detected_moved_aside_and_recomputed() {
    let t = sandbox();
    let first = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    let dir = first.stage("b")["output_dir"].as_str().unwrap().to_owned();
    let file = format!("{dir}/out/data.txt");
    // Truncation is caught by the size check of every read.
    std::fs::write(&file, "HEL").unwrap();
    let out = t
        .pipe(&["run", "recipe.yaml", "--json"])
        .success()
        .stderr_has("cache entry is corrupt");
    assert_eq!(
        out.ran(),
        ["b"],
        "c keeps its entry: b's recomputed output is the same"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "HELLO\nWORLD\n");
    assert!(t.join(".pipe/quarantine").read_dir().unwrap().count() == 1);
    // Same-size tampering needs --verify.
    std::fs::write(&file, "HELLO\nWORLX\n").unwrap();
    assert!(
        t.pipe(&["run", "recipe.yaml", "--json"])
            .success()
            .ran()
            .is_empty()
    );
    let out = t
        .pipe(&["run", "recipe.yaml", "--json", "--verify"])
        .success()
        .stderr_has("does not match its blake3 hash");
    assert_eq!(out.ran(), ["b"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "HELLO\nWORLD\n");
}

#[test]
fn a_failed_stage_publishes_nothing_and_exits_1() {
    let t = sandbox();
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, run: 'echo ok > {output}/x'}\n  b: {kind: command, from: a, run: 'echo partial > {output}/x; echo something broke >&2; exit 4'}\n  c: {kind: command, from: b, run: 'cp {input}/x {output}/'}\n  e: {kind: command, from: a, run: 'true', outputs: [out]}\n",
    );
    t.pipe(&["run", "recipe.yaml"])
        .code(1)
        .stderr_has("stage `b` failed")
        .stderr_has("exit code 4")
        .stderr_has("something broke");
    assert_eq!(t.cache_entries().len(), 1, "only a is published");
    assert_eq!(
        t.join(".pipe/tmp").read_dir().unwrap().count(),
        0,
        "no leftovers"
    );
    // A stage that declares an output and writes nothing fails too.
    t.pipe(&["run", "recipe.yaml", "--until", "e"])
        .code(1)
        .stderr_has("wrote nothing into its declared output `out`");
}

#[test]
fn a_killed_run_leaves_no_partial_entry_and_the_next_run_completes() {
    let t = sandbox();
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, run: 'echo ok > {output}/x'}\n  b: {kind: command, from: a, run: 'echo partial > {output}/b.txt; if [ -f slow ]; then sleep 60; fi; echo done >> {output}/b.txt'}\n",
    );
    t.write("slow", "");
    let mut child = t
        .command(&["run", "recipe.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until b is writing into its temporary folder.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let found = std::fs::read_dir(t.join(".pipe/tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("out/out/b.txt"))
            .find(|p| p.exists());
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "stage b never started\n{}",
            t.listing()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(partial.exists());
    assert_eq!(
        t.cache_entries().len(),
        1,
        "only a was published\n{}",
        t.listing()
    );
    std::fs::remove_file(t.join("slow")).unwrap();
    let out = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    assert_eq!(out.ran(), ["b"]);
    assert!(!partial.exists(), "the dead run's leftovers are cleaned");
    let dir = out.stage("b")["output_dir"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/out/b.txt")).unwrap(),
        "partial\ndone\n"
    );
}

#[test]
fn two_concurrent_runs_both_succeed_with_identical_results() {
    let t = sandbox();
    t.write(
        "recipe.yaml",
        "stages:\n  a: {kind: command, run: 'sleep 1; echo $$ > /dev/null; echo ok > {output}/x'}\n  b: {kind: command, from: a, run: 'sleep 1; cp {input}/x {output}/y'}\n  c: {kind: command, from: a, run: 'cp {input}/x {output}/z'}\n",
    );
    let spawn = || {
        t.command(&["run", "recipe.yaml", "--json", "--jobs", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let (o1, o2) = (
        p1.wait_with_output().unwrap(),
        p2.wait_with_output().unwrap(),
    );
    for o in [&o1, &o2] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let j1: serde_json::Value = serde_json::from_slice(&o1.stdout).unwrap();
    let j2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(j1["run_hash"], j2["run_hash"]);
    for i in 0..3 {
        assert_eq!(
            j1["stages"][i]["output_hash"],
            j2["stages"][i]["output_hash"]
        );
    }
    // Each key was computed once: the other run waited and reused it.
    let ran = |j: &serde_json::Value| {
        j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "ran")
            .count()
    };
    assert_eq!(ran(&j1) + ran(&j2), 3, "{j1}\n{j2}");
    assert_eq!(t.cache_entries().len(), 3);
}

#[test]
fn reproduce_passes_when_deterministic_and_names_the_stage_that_is_not() {
    let t = sandbox();
    let run = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    let hash = run.json()["run_hash"].as_str().unwrap()[..10].to_owned();
    t.pipe(&["reproduce", &hash])
        .success()
        .stdout_has("every stage is bit-identical");
    t.pipe(&["runs"]).success().stdout_has(&hash);
    t.pipe(&["show", &hash]).success().stdout_has("status   ok");

    t.write(
        "recipe.yaml",
        &format!("{DIAMOND}  noisy: {{kind: command, from: c, run: 'cat {{input}}/n > {{output}}/t; date +%s%N >> {{output}}/t'}}\n"),
    );
    let run = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    let noisy_hash = run.json()["run_hash"].as_str().unwrap().to_owned();
    let out = t.pipe(&["reproduce", &noisy_hash[..12]]).code(1);
    assert!(out.stdout.contains("noisy  DIFFERENT"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("stage `noisy` (command) is not deterministic"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("c      identical"), "{}", out.stdout);
    // A changed input is named.
    t.write("in.txt", "changed\n");
    t.pipe(&["reproduce", &hash])
        .code(1)
        .stdout_has("input in.txt changed");
    // diff names the param difference between the two runs.
    t.pipe(&["diff", &hash, &noisy_hash[..12]])
        .success()
        .stdout_has("stage noisy: only in");
}

#[test]
fn gc_removes_entries_no_kept_run_refers_to() {
    let t = sandbox();
    t.pipe(&["run", "recipe.yaml"]).success();
    std::thread::sleep(Duration::from_millis(20));
    t.pipe(&[
        "run",
        "recipe.yaml",
        "--set",
        "stages.d.run=cat {input}/data.txt > {output}/r",
    ])
    .success();
    assert_eq!(t.cache_entries().len(), 5);
    t.pipe(&["gc", "--keep-last", "1", "--dry-run"])
        .success()
        .stdout_has("would remove 1 cache entries");
    assert_eq!(t.cache_entries().len(), 5);
    t.pipe(&["gc", "--keep-last", "1"])
        .success()
        .stdout_has("removed 1 cache entries");
    assert_eq!(t.cache_entries().len(), 4);
    t.pipe(&["gc"])
        .success()
        .stdout_has("removed 0 cache entries");
}

#[test]
fn cache_dir_flag_and_env_move_the_cache() {
    let t = sandbox();
    t.pipe(&["run", "recipe.yaml", "--cache-dir", "elsewhere"])
        .success();
    assert!(t.join("elsewhere/cache").is_dir());
    assert!(!t.join(".pipe").exists());
    let out = t
        .command(&["run", "recipe.yaml", "--json"])
        .env("PIPE_CACHE_DIR", "elsewhere")
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        j["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "cached")
    );
}

#[test]
fn a_failed_gate_exits_3_after_finishing_and_metrics_are_recorded() {
    let t = Sandbox::new();
    t.write(
        "recipe.yaml",
        "stages:\n  score: {kind: command, run: 'echo ''{\"accuracy\": 0.75}'' > {output}/metrics.json', gates: {accuracy: '>= 0.8'}}\n  after: {kind: command, from: score, run: 'cp {input}/metrics.json {output}/'}\n",
    );
    let out = t
        .pipe(&["run", "recipe.yaml", "--json"])
        .code(3)
        .stderr_has("gate failed: score.accuracy = 0.7500, needs >= 0.8");
    assert_eq!(
        out.ran(),
        ["score", "after"],
        "the run finishes before reporting the gate"
    );
    assert_eq!(out.json()["status"], "gate_failed");
    // Cached, the gate still fails: the report lives in the cache entry.
    t.pipe(&["run", "recipe.yaml"]).code(3);
    t.pipe(&["runs"])
        .success()
        .stdout_has("score.accuracy=0.7500");
    t.pipe(&[
        "run",
        "recipe.yaml",
        "--set",
        "stages.score.gates.accuracy=>= 0.7",
    ])
    .success();
    t.pipe(&[
        "validate",
        "recipe.yaml",
        "--set",
        "stages.score.gates.accuracy=about 1",
    ])
    .code(2)
    .stderr_has("gate `accuracy: about 1`");
}

#[test]
fn status_and_diff_explain_what_changed() {
    let t = sandbox();
    let first = t.pipe(&["run", "recipe.yaml", "--json"]).success();
    t.pipe(&["status", "recipe.yaml"])
        .success()
        .stdout_has("a  cached")
        .stdout_has("d  cached");
    let set = "stages.a.run=sort -r {files[0]} > {output}/data.txt";
    let second = t
        .pipe(&["run", "recipe.yaml", "--json", "--until", "a", "--set", set])
        .success();
    assert_eq!(second.ran(), ["a"]);
    t.pipe(&["status", "recipe.yaml", "--set", set])
        .success()
        .stdout_has("a  cached")
        .stdout_has("b  will run: upstream a produced new output")
        .stdout_has("c  will run: upstream b will run");
    let (h1, h2) = (
        first.json()["run_hash"].as_str().unwrap().to_owned(),
        second.json()["run_hash"].as_str().unwrap().to_owned(),
    );
    t.pipe(&["diff", &h1[..12], &h2[..12]])
        .success()
        .stdout_has("params.a.run: \"cp {files[0]} {output}/data.txt\" -> \"sort -r {files[0]} > {output}/data.txt\"")
        .stdout_has("stage b: only in");
}

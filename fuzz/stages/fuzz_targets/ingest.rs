//! Any bytes as a single data file, read as JSONL, JSON, CSV and TSV with
//! shape detection. Rejected records and errors are fine; panics, hangs and
//! crashes are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_data::ingest::{IngestParams, ingest};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("pipe-fuzz-ingest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for ext in ["jsonl", "json", "csv", "tsv"] {
        let name = format!("d.{ext}");
        if std::fs::write(dir.join(&name), data).is_err() {
            return;
        }
        let params: IngestParams =
            serde_json::from_value(serde_json::json!({"path": name, "max_rejected": 1.0}))
                .expect("valid params");
        let _ = ingest(&params, &dir);
    }
});

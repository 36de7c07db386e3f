//! Data stages: ingest, dedup (exact and MinHash), quality filters, split.

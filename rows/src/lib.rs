//! The canonical row tables that travel between pipe's data stages, as Parquet.

//! Side tables (`rejected`, `removed`, `dropped`, leakage) as small flat Parquet
//! files, written with the same deterministic settings as the row tables.

use std::path::Path;

use polars::prelude::*;

use crate::DataError;

/// File name of a side table inside its output folder.
pub const SIDE_FILE: &str = "table.parquet";

/// One column of a side table.
pub enum SideColumn {
    Str(Vec<Option<String>>),
    U64(Vec<u64>),
    F64(Vec<f64>),
}

/// Write named columns (all the same length) to `path`.
pub fn write_side_table(path: &Path, columns: Vec<(&str, SideColumn)>) -> Result<(), DataError> {
    let err = |e: PolarsError| DataError::Table {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let height = columns.first().map_or(0, |(_, c)| match c {
        SideColumn::Str(v) => v.len(),
        SideColumn::U64(v) => v.len(),
        SideColumn::F64(v) => v.len(),
    });
    let cols: Vec<Column> = columns
        .into_iter()
        .map(|(name, c)| match c {
            SideColumn::Str(v) => Column::new(name.into(), v),
            SideColumn::U64(v) => Column::new(name.into(), v),
            SideColumn::F64(v) => Column::new(name.into(), v),
        })
        .collect();
    let mut df = DataFrame::new(height, cols).map_err(err)?;
    let file = std::fs::File::create(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    ParquetWriter::new(std::io::BufWriter::new(file))
        .with_compression(ParquetCompression::Zstd(None))
        .with_row_group_size(Some(64 * 1024))
        .set_parallel(false)
        .finish(&mut df)
        .map_err(err)?;
    Ok(())
}

/// Read a side table back as rows of strings (numbers formatted), for tests and tools.
pub fn read_side_table(path: &Path) -> Result<Vec<Vec<(String, String)>>, DataError> {
    let err = |e: PolarsError| DataError::Table {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let df = ParquetReader::new(file).finish().map_err(err)?;
    let mut out = vec![Vec::new(); df.height()];
    for col in df.columns() {
        for (i, row) in out.iter_mut().enumerate() {
            let v = col.get(i).map_err(err)?;
            let s = match v {
                AnyValue::Null => String::new(),
                AnyValue::String(s) => s.to_owned(),
                other => other.to_string(),
            };
            row.push((col.name().to_string(), s));
        }
    }
    Ok(out)
}

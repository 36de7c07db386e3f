//! A pure-Rust reader for the header of GGUF files (llama.cpp's model format).
//!
//! Reads the header, every metadata key/value (all scalar types, strings and
//! nested arrays) and the tensor table (name, shape, ggml type, offset), but no
//! tensor data: `pipe-tokenize` needs the vocabulary and merges, `pipe-render`
//! the chat template and `pipe-train` the tensor table to map weights itself.
//!
//! Layout (little-endian; versions 2 and 3, version 1 with 32-bit counts too):
//! `"GGUF"`, `u32` version, tensor count, metadata count, the metadata pairs
//! (`string` key, `u32` type, value), the tensor infos (`string` name, `u32`
//! n_dims, `u64` dims, `u32` ggml type, `u64` offset relative to the data
//! section), then padding to `general.alignment` (default 32) and the data.
//!
//! ```no_run
//! let file = pipe_model::gguf::GgufFile::open(std::path::Path::new("model.gguf")).unwrap();
//! let template = file.get_str("tokenizer.chat_template");
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// `GGUF` as a little-endian `u32`.
const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Refuse lengths beyond this: a corrupt length must give an error, not an
/// attempt to allocate terabytes.
const MAX_LEN: u64 = 1 << 32;

/// A metadata value. Arrays keep their element type even when empty.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// An array value: its element type code and elements.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufArray {
    pub element_type: u32,
    pub values: Vec<GgufValue>,
}

impl GgufValue {
    /// The GGUF type code (`0` = u8 ... `12` = f64).
    pub fn type_code(&self) -> u32 {
        match self {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer type that fits in a `u64` (token ids are stored as u32 or i32).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Floats, and integers converted.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The ggml element types of tensors, with their block sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
    /// A type code this reader has no block size for (the tensor table still reads).
    Other(u32),
}

impl GgmlType {
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            other => GgmlType::Other(other),
        }
    }

    /// (elements per block, bytes per block), as in ggml's type traits.
    pub fn block(&self) -> Option<(u64, u64)> {
        Some(match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Q8K => (256, 292),
            GgmlType::I8 => (1, 1),
            GgmlType::I16 => (1, 2),
            GgmlType::I32 => (1, 4),
            GgmlType::I64 | GgmlType::F64 => (1, 8),
            GgmlType::Other(_) => return None,
        })
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length); reverse for PyTorch order.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the tensor's bytes from [`GgufFile::data_offset`].
    pub offset: u64,
}

impl TensorInfo {
    pub fn element_count(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes the tensor occupies, when the type's block size is known.
    pub fn byte_size(&self) -> Option<u64> {
        let (block, bytes) = self.ggml_type.block()?;
        Some(self.element_count().div_ceil(block) * bytes)
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// Metadata by key (keys are unique in valid files; sorted for stable iteration).
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Absolute file offset where the tensor data section starts.
    pub data_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a GGUF file: it starts with {found:?}, not \"GGUF\" (a model reference that is a file must be a .gguf; give a Hugging Face folder otherwise)"
    )]
    BadMagic { path: PathBuf, found: String },
    #[error(
        "{path}: GGUF version {version} is not supported (versions 1, 2 and 3 are; a byte-swapped version means a big-endian file, which is not supported)"
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: truncated or corrupt GGUF header at byte {offset} while reading {what}")]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path}: metadata `{key}` has unknown value type {code}")]
    UnknownType {
        path: PathBuf,
        key: String,
        code: u32,
    },
    #[error("{path}: {what} is not valid UTF-8")]
    BadUtf8 { path: PathBuf, what: String },
    #[error("{path}: length {len} of {what} is implausible (corrupt file?)")]
    BadLength {
        path: PathBuf,
        what: String,
        len: u64,
    },
    #[error("{path}: metadata `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata `{key}` should be {expected}, found GGUF type {found}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: u32,
    },
}

impl GgufFile {
    /// Read the header, metadata and tensor table of `path` (not the tensor data).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = Reader {
            inner: BufReader::with_capacity(1 << 20, file),
            path,
            offset: 0,
        };
        reader.parse()
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A string value; `None` when absent or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// An integer value as `u64`; `None` when absent or not a non-negative integer.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(GgufValue::as_bool)
    }

    /// A required array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let array = self.array(key, "an array of strings")?;
        array
            .values
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "an array of strings", v))
            })
            .collect()
    }

    /// A required array of integers (`tokenizer.ggml.token_type`).
    pub fn i64_array(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        let array = self.array(key, "an array of integers")?;
        array
            .values
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| self.wrong_type(key, "an array of integers", v))
            })
            .collect()
    }

    fn array(&self, key: &str, expected: &'static str) -> Result<&GgufArray, GgufError> {
        let value = self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        })?;
        value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, expected, value))
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
            found: found.type_code(),
        }
    }
}

struct Reader<'a, R> {
    inner: R,
    path: &'a Path,
    offset: u64,
}

impl<R: Read> Reader<'_, R> {
    fn parse(&mut self) -> Result<GgufFile, GgufError> {
        let mut magic = [0u8; 4];
        self.inner
            .read_exact(&mut magic)
            .map_err(|_| GgufError::BadMagic {
                path: self.path.to_owned(),
                found: "fewer than 4 bytes".into(),
            })?;
        self.offset = 4;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: self.path.to_owned(),
                found: String::from_utf8_lossy(&magic).into_owned(),
            });
        }
        let version = self.u32("version")?;
        if !(1..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                path: self.path.to_owned(),
                version,
            });
        }
        // Version 1 used 32-bit counts and lengths.
        let wide = version >= 2;
        let tensor_count = self.count(wide, "tensor count")?;
        let kv_count = self.count(wide, "metadata count")?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = self.string(wide, &format!("metadata key #{i}"))?;
            let code = self.u32(&format!("type of `{key}`"))?;
            let value = self.value(wide, code, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
        for i in 0..tensor_count {
            let name = self.string(wide, &format!("tensor #{i} name"))?;
            let n_dims = self.u32(&format!("dimensions of tensor `{name}`"))?;
            if n_dims > 8 {
                return Err(GgufError::BadLength {
                    path: self.path.to_owned(),
                    what: format!("dimensions of tensor `{name}`"),
                    len: n_dims.into(),
                });
            }
            let dims = (0..n_dims)
                .map(|_| self.count(wide, &format!("shape of tensor `{name}`")))
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = GgmlType::from_code(self.u32(&format!("type of tensor `{name}`"))?);
            let offset = self.u64(&format!("offset of tensor `{name}`"))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .filter(|&a| a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT);
        let data_offset = self.offset.div_ceil(alignment) * alignment;
        Ok(GgufFile {
            path: self.path.to_owned(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    fn value(
        &mut self,
        wide: bool,
        code: u32,
        key: &str,
        depth: u32,
    ) -> Result<GgufValue, GgufError> {
        Ok(match code {
            0 => GgufValue::U8(self.bytes::<1>(key)?[0]),
            1 => GgufValue::I8(self.bytes::<1>(key)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes(key)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes(key)?)),
            4 => GgufValue::U32(self.u32(key)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes(key)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes(key)?)),
            7 => GgufValue::Bool(self.bytes::<1>(key)?[0] != 0),
            8 => GgufValue::String(self.string(wide, key)?),
            9 => {
                if depth > 4 {
                    return Err(GgufError::BadLength {
                        path: self.path.to_owned(),
                        what: format!("nesting of arrays in `{key}`"),
                        len: depth.into(),
                    });
                }
                let element_type = self.u32(key)?;
                let len = self.count(wide, key)?;
                let mut values = Vec::with_capacity(len.min(1 << 20) as usize);
                for _ in 0..len {
                    values.push(self.value(wide, element_type, key, depth + 1)?);
                }
                GgufValue::Array(GgufArray {
                    element_type,
                    values,
                })
            }
            10 => GgufValue::U64(self.u64(key)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes(key)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes(key)?)),
            code => {
                return Err(GgufError::UnknownType {
                    path: self.path.to_owned(),
                    key: key.to_owned(),
                    code,
                });
            }
        })
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.read_error(e, what))?;
        self.offset += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn count(&mut self, wide: bool, what: &str) -> Result<u64, GgufError> {
        let n = if wide {
            self.u64(what)?
        } else {
            self.u32(what)?.into()
        };
        if n > MAX_LEN {
            return Err(GgufError::BadLength {
                path: self.path.to_owned(),
                what: what.to_owned(),
                len: n,
            });
        }
        Ok(n)
    }

    fn string(&mut self, wide: bool, what: &str) -> Result<String, GgufError> {
        let len = self.count(wide, what)?;
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.read_error(e, what))?;
        self.offset += len;
        String::from_utf8(buf).map_err(|_| GgufError::BadUtf8 {
            path: self.path.to_owned(),
            what: what.to_owned(),
        })
    }

    fn read_error(&self, error: std::io::Error, what: &str) -> GgufError {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            GgufError::Truncated {
                path: self.path.to_owned(),
                offset: self.offset,
                what: what.to_owned(),
            }
        } else {
            GgufError::Io {
                path: self.path.to_owned(),
                source: error,
            }
        }
    }
}

/// Write a GGUF header (version 3, metadata and tensor table, no tensor data).
/// For tests of this crate and of the crates that read GGUF tokenizers.
pub fn write_header(out: &mut Vec<u8>, metadata: &[(&str, GgufValue)], tensors: &[TensorInfo]) {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.push(*x as u8),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(u8::from(*x)),
            GgufValue::String(s) => string(out, s),
            GgufValue::Array(a) => {
                out.extend_from_slice(&a.element_type.to_le_bytes());
                out.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
                for v in &a.values {
                    value(out, v);
                }
            }
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, v) in metadata {
        string(out, key);
        out.extend_from_slice(&v.type_code().to_le_bytes());
        value(out, v);
    }
    for t in tensors {
        string(out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        let code = match t.ggml_type {
            GgmlType::Other(c) => c,
            ty => (0..64).find(|&c| GgmlType::from_code(c) == ty).unwrap_or(0),
        };
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
}

/// A string array value.
pub fn str_array_value<S: AsRef<str>>(items: &[S]) -> GgufValue {
    GgufValue::Array(GgufArray {
        element_type: 8,
        values: items
            .iter()
            .map(|s| GgufValue::String(s.as_ref().to_owned()))
            .collect(),
    })
}

/// An i32 array value.
pub fn i32_array_value(items: &[i32]) -> GgufValue {
    GgufValue::Array(GgufArray {
        element_type: 5,
        values: items.iter().map(|&v| GgufValue::I32(v)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
        let path = dir.join("m.gguf");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn reads_every_value_type_and_tensor_table() {
        let nested = GgufValue::Array(GgufArray {
            element_type: 9,
            values: vec![i32_array_value(&[1, -2]), i32_array_value(&[])],
        });
        let metadata = vec![
            ("general.architecture", GgufValue::String("llama".into())),
            ("a.u8", GgufValue::U8(200)),
            ("a.i8", GgufValue::I8(-3)),
            ("a.u16", GgufValue::U16(60000)),
            ("a.i16", GgufValue::I16(-30000)),
            ("a.u32", GgufValue::U32(4_000_000_000)),
            ("a.i32", GgufValue::I32(-7)),
            ("a.f32", GgufValue::F32(1.5)),
            ("a.bool", GgufValue::Bool(true)),
            ("a.u64", GgufValue::U64(1 << 40)),
            ("a.i64", GgufValue::I64(-(1 << 40))),
            ("a.f64", GgufValue::F64(-0.25)),
            ("a.strs", str_array_value(&["x", "é", ""])),
            ("a.nested", nested.clone()),
            ("general.alignment", GgufValue::U32(64)),
        ];
        let tensors = vec![
            TensorInfo {
                name: "token_embd.weight".into(),
                dims: vec![64, 10],
                ggml_type: GgmlType::Q4_1,
                offset: 0,
            },
            TensorInfo {
                name: "output_norm.weight".into(),
                dims: vec![64],
                ggml_type: GgmlType::F32,
                offset: 384,
            },
        ];
        let mut bytes = Vec::new();
        write_header(&mut bytes, &metadata, &tensors);
        let header_len = bytes.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let file = GgufFile::open(&write(dir.path(), &bytes)).unwrap();
        assert_eq!(file.version, 3);
        for (key, value) in &metadata {
            assert_eq!(file.get(key), Some(value), "{key}");
        }
        assert_eq!(file.get_str("general.architecture"), Some("llama"));
        assert_eq!(file.str_array("a.strs").unwrap(), ["x", "é", ""]);
        assert_eq!(file.get_u64("a.i32"), None);
        assert_eq!(file.get("a.i32").unwrap().as_i64(), Some(-7));
        assert_eq!(file.tensors, tensors);
        assert_eq!(file.tensors[0].byte_size(), Some(20 * 20));
        assert_eq!(file.alignment, 64);
        assert_eq!(file.data_offset, header_len.div_ceil(64) * 64);
    }

    #[test]
    fn wrong_magic_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), b"{\"not\": \"gguf\"}");
        let err = GgufFile::open(&path).unwrap_err();
        assert!(matches!(err, GgufError::BadMagic { .. }));
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not a GGUF file"), "{msg}");
    }

    #[test]
    fn truncated_header_is_an_error_not_a_panic() {
        let mut bytes = Vec::new();
        write_header(
            &mut bytes,
            &[("tokenizer.ggml.tokens", str_array_value(&["a", "b", "c"]))],
            &[],
        );
        let dir = tempfile::tempdir().unwrap();
        for cut in [6, 20, bytes.len() - 1] {
            let path = write(dir.path(), &bytes[..cut]);
            let err = GgufFile::open(&path).unwrap_err();
            assert!(matches!(err, GgufError::Truncated { .. }), "{cut}: {err}");
        }
    }

    #[test]
    fn unsupported_version_is_named() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&(3u32 << 24).to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let err = GgufFile::open(&write(dir.path(), &bytes)).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
    }

    #[test]
    fn missing_and_mistyped_keys_name_the_key() {
        let mut bytes = Vec::new();
        write_header(&mut bytes, &[("k", GgufValue::U32(1))], &[]);
        let dir = tempfile::tempdir().unwrap();
        let file = GgufFile::open(&write(dir.path(), &bytes)).unwrap();
        assert!(
            file.str_array("nope")
                .unwrap_err()
                .to_string()
                .contains("`nope`")
        );
        assert!(file.str_array("k").unwrap_err().to_string().contains("`k`"));
    }
}

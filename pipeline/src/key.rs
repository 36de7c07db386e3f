//! Stage keys: what a stage's output depends on, hashed canonically.
//!
//! The encoding is length-prefixed and tagged (never `Debug` text or map order),
//! so two different sets of parts cannot encode to the same bytes. Paths,
//! timestamps and host names never enter a key: external files count by content,
//! upstream stages by their *output* hash (early cutoff: an upstream rerun that
//! writes the same bytes leaves every downstream key unchanged).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when the encoding itself changes (invalidates every key).
const KEY_FORMAT: &str = "pipe-stage-key-v1";

/// Everything a stage key is made of; stored in run records so `pipe status`
/// can say which part changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyParts {
    pub kind: String,
    pub code_version: u32,
    /// Canonical params (every default resolved).
    pub params: Value,
    pub inputs: Vec<InputPart>,
    pub files: Vec<FilePart>,
}

/// One upstream reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputPart {
    /// As written (`split.test`); for explanations only, not hashed.
    pub reference: String,
    /// The upstream's kind and selected output name change what the stage sees.
    pub kind: String,
    pub output: Option<String>,
    pub output_hash: String,
}

/// One external file (or folder) read by the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    /// As the plan declared it; for explanations only, not hashed.
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

impl KeyParts {
    pub fn key(&self) -> String {
        let mut h = KeyHasher::new();
        h.str(KEY_FORMAT);
        h.str(&self.kind);
        h.u64(self.code_version.into());
        h.str(&canonical_json(&self.params));
        h.u64(self.inputs.len() as u64);
        for input in &self.inputs {
            h.str(&input.kind);
            h.opt_str(input.output.as_deref());
            h.str(&input.output_hash);
        }
        h.u64(self.files.len() as u64);
        for file in &self.files {
            h.str(&file.blake3);
        }
        h.finish()
    }
}

/// blake3 over length-prefixed fields.
pub struct KeyHasher(blake3::Hasher);

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyHasher {
    pub fn new() -> Self {
        Self(blake3::Hasher::new())
    }
    pub fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => {
                self.0.update(&[0]);
            }
            Some(s) => {
                self.0.update(&[1]);
                self.str(s);
            }
        }
    }
    pub fn finish(&self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

/// JSON with sorted keys and normalized numbers: `2.0` and `2` are the same
/// integer, `1e-4` and `0.0001` the same float.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    out.push_str(&(f as i64).to_string());
                } else {
                    // Rust prints the shortest text that round-trips.
                    out.push_str(&format!("{f:e}"));
                }
            }
        }
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialize"));
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
    }
}

/// Flatten params to dotted paths (`lora.rank` -> `8`) to explain differences.
pub fn flatten(value: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, &map[k], out);
                }
            }
            other => out.push((prefix.to_owned(), canonical_json(other))),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// `(path, old, new)` for every dotted path whose value differs (`-` when absent).
pub fn diff_values(old: &Value, new: &Value) -> Vec<(String, String, String)> {
    let a = flatten(old);
    let b = flatten(new);
    let mut paths: Vec<&String> = a.iter().chain(b.iter()).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let get = |list: &[(String, String)], p: &str| {
        list.iter()
            .find(|(q, _)| q == p)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "-".into())
    };
    paths
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (get(&a, p), get(&b, p));
            (x != y).then(|| (p.clone(), x, y))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(params: Value) -> KeyParts {
        KeyParts {
            kind: "filter".into(),
            code_version: 1,
            params,
            inputs: vec![],
            files: vec![],
        }
    }

    #[test]
    fn key_ignores_key_order_and_number_spelling() {
        let a = parts(json!({"a": 1, "b": {"x": 0.0001, "y": 2.0}}));
        let b = parts(json!({"b": {"y": 2, "x": 1e-4}, "a": 1}));
        assert_eq!(a.key(), b.key());
        let c = parts(json!({"b": {"y": 3, "x": 1e-4}, "a": 1}));
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn key_ignores_paths_but_not_content_or_version() {
        let mut a = parts(json!({}));
        a.files.push(FilePart {
            path: "a.txt".into(),
            size: 1,
            blake3: "h1".into(),
        });
        let mut b = a.clone();
        b.files[0].path = "elsewhere/b.txt".into();
        assert_eq!(a.key(), b.key());
        b.files[0].blake3 = "h2".into();
        assert_ne!(a.key(), b.key());
        let mut c = a.clone();
        c.code_version = 2;
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn length_prefix_prevents_ambiguity() {
        let mut a = parts(json!({}));
        a.kind = "ab".into();
        let mut b = parts(json!({}));
        b.kind = "a".into();
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn diff_names_dotted_paths() {
        let d = diff_values(
            &json!({"min_chars": 10, "near": {"t": 0.8}}),
            &json!({"min_chars": 20, "near": {"t": 0.8}}),
        );
        assert_eq!(d, vec![("min_chars".into(), "10".into(), "20".into())]);
    }
}

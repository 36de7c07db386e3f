//! `tojson` as transformers defines it: Python's
//! `json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)`.
//!
//! minijinja's own `tojson` HTML-escapes `<>&'` (it is meant for HTML) and
//! uses compact separators; chat templates embed tool schemas in the prompt,
//! so every byte of Python's output matters: `, ` and `: ` separators,
//! `,` + newline with `indent`, non-ASCII kept as is, Python's float repr.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};
use std::fmt::Write;

/// How to lay out the JSON text (the keyword arguments of `json.dumps`).
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// `indent=`: `None` is one line; `Some(s)` puts each item on its own line
    /// prefixed by `s` repeated per depth (Python accepts an int or a string).
    pub indent: Option<String>,
    /// `separators=(item, key)`; defaults follow Python (`", "`/`": "`, or `","` with indent).
    pub item_separator: Option<String>,
    pub key_separator: Option<String>,
    pub sort_keys: bool,
    /// `ensure_ascii=True` escapes every non-ASCII character as `\uXXXX` (surrogate pairs above the BMP).
    pub ensure_ascii: bool,
}

/// The `tojson` filter registered in the chat environment.
pub fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let mut options = DumpOptions::default();
    if let Some(indent) = kwargs.get::<Option<Value>>("indent")? {
        options.indent = match indent.kind() {
            ValueKind::None | ValueKind::Undefined => None,
            ValueKind::Number => {
                let n = indent.as_i64().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an integer",
                    )
                })?;
                Some(" ".repeat(n.max(0) as usize))
            }
            ValueKind::String => Some(indent.as_str().unwrap_or_default().to_owned()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ));
            }
        };
    }
    if let Some(separators) = kwargs.get::<Option<Value>>("separators")?
        && !separators.is_none()
    {
        let parts: Vec<String> = separators
            .try_iter()?
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be a pair of strings (item, key)",
                )
            })?;
        options.item_separator = Some(parts[0].clone());
        options.key_separator = Some(parts[1].clone());
    }
    options.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    options.ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump(value, &options, &mut out)?;
    // Safe so that an environment with auto-escaping would not escape it again
    // (ours has none, but a safe string also prints unchanged).
    Ok(Value::from_safe_string(out))
}

/// Serialize a template value as Python's `json.dumps` would.
pub fn dump(value: &Value, options: &DumpOptions, out: &mut String) -> Result<(), Error> {
    let item_sep = options.item_separator.clone().unwrap_or_else(|| {
        if options.indent.is_some() {
            ",".to_owned()
        } else {
            ", ".to_owned()
        }
    });
    let key_sep = options
        .key_separator
        .clone()
        .unwrap_or_else(|| ": ".to_owned());
    Dumper {
        options,
        item_sep: &item_sep,
        key_sep: &key_sep,
    }
    .write(value, 0, out)
}

struct Dumper<'a> {
    options: &'a DumpOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Dumper<'_> {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.options.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }

    fn write(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined => Err(Error::new(
                ErrorKind::UndefinedError,
                "tojson: Object of type Undefined is not JSON serializable",
            )),
            ValueKind::None => {
                out.push_str("null");
                Ok(())
            }
            ValueKind::Bool => {
                out.push_str(if value.is_true() { "true" } else { "false" });
                Ok(())
            }
            ValueKind::Number => {
                if value.is_integer() {
                    write!(out, "{value}").ok();
                } else {
                    let f = f64::try_from(value.clone())?;
                    out.push_str(&python_float_repr(f, true));
                }
                Ok(())
            }
            ValueKind::String => {
                write_string(
                    value.as_str().unwrap_or_default(),
                    self.options.ensure_ascii,
                    out,
                );
                Ok(())
            }
            ValueKind::Bytes => Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: Object of type bytes is not JSON serializable",
            )),
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.options.sort_keys {
                    keys.sort();
                }
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    let item = value.get_item(key)?;
                    let key_text = match key.kind() {
                        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
                        ValueKind::None => "null".to_owned(),
                        ValueKind::Bool => {
                            (if key.is_true() { "true" } else { "false" }).to_owned()
                        }
                        ValueKind::Number if key.is_integer() => key.to_string(),
                        ValueKind::Number => python_float_repr(f64::try_from(key.clone())?, true),
                        _ => {
                            return Err(Error::new(
                                ErrorKind::InvalidOperation,
                                format!(
                                    "tojson: keys must be str, int, float, bool or None, not {}",
                                    key.kind()
                                ),
                            ));
                        }
                    };
                    write_string(&key_text, self.options.ensure_ascii, out);
                    out.push_str(self.key_sep);
                    self.write(&item, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push('}');
                Ok(())
            }
            // Sequences, iterables and plain objects that iterate (tuples) are JSON arrays.
            _ => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push(']');
                Ok(())
            }
        }
    }
}

/// A JSON string literal with Python's escapes: `\"`, `\\`, `\n`, `\r`, `\t`,
/// `\b`, `\f`, other control characters as `\u00XX`; everything else verbatim
/// (with `ensure_ascii`, non-ASCII as `\uXXXX`).
pub fn write_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                write!(out, "\\u{:04x}", c as u32).ok();
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(out, "\\u{:04x}", unit).ok();
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)` (shortest round-trip digits; scientific notation
/// when the exponent is below -4 or at least 16). With `json`, non-finite
/// values are `NaN`/`Infinity` as `json.dumps` writes them.
pub fn python_float_repr(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.to_owned();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 {
            format!("-{s}")
        } else {
            s.to_owned()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e-5".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let n = digits.len() as i32;
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_owned();
        if n > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else if exp + 1 >= n {
        let zeros = "0".repeat((exp + 1 - n) as usize);
        format!("{sign}{digits}{zeros}.0")
    } else {
        let point = (exp + 1) as usize;
        format!("{sign}{}.{}", &digits[..point], &digits[point..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (100.0, "100.0"),
            (1e22, "1e+22"),
            (3.25e-7, "3.25e-07"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f, true), want, "{f}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let mut out = String::new();
        write_string("a\"b\\c\nd\te\u{1}é<>&'", false, &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\te\\u0001é<>&'\"");
        let mut out = String::new();
        write_string("é😀", true, &mut out);
        assert_eq!(out, "\"\\u00e9\\ud83d\\ude00\"");
    }
}

//! A small RFC 4180 reader (comma or tab) that keeps the line where each record
//! starts, so a bad record is reported and rejected on its own line.
//! Quoted fields may hold separators, doubled quotes and newlines; CRLF is fine.

/// One parsed record: 1-based line of its first character, and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    pub line: u64,
    pub fields: Vec<String>,
}

/// Split `text` into records. A quote left open at the end of the file is an
/// error naming the line where the field began, because every later record
/// would otherwise be swallowed silently.
pub fn parse(text: &str, sep: u8) -> Result<Vec<CsvRecord>, (u64, String)> {
    let bytes = text.as_bytes();
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut line: u64 = 1;
    let mut record_line = 1;
    let mut i = 0;
    let mut in_quotes = false;
    let mut quote_line = 0;
    let mut at_field_start = true;
    let finish_field = |field: &mut Vec<u8>, fields: &mut Vec<String>| {
        // The input is a &str and we split at ASCII bytes only, so this is valid UTF-8.
        fields.push(String::from_utf8(std::mem::take(field)).expect("split at ASCII bytes"));
    };
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            match b {
                b'"' if bytes.get(i + 1) == Some(&b'"') => {
                    field.push(b'"');
                    i += 1;
                }
                b'"' => in_quotes = false,
                b'\n' => {
                    line += 1;
                    field.push(b);
                }
                _ => field.push(b),
            }
            i += 1;
            continue;
        }
        match b {
            b'"' if at_field_start => {
                in_quotes = true;
                quote_line = line;
                at_field_start = false;
            }
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' => {
                finish_field(&mut field, &mut fields);
                let done = std::mem::take(&mut fields);
                // blank lines are not records
                if !(done.len() == 1 && done[0].is_empty()) {
                    records.push(CsvRecord {
                        line: record_line,
                        fields: done,
                    });
                }
                line += 1;
                record_line = line;
                at_field_start = true;
            }
            _ if b == sep => {
                finish_field(&mut field, &mut fields);
                at_field_start = true;
            }
            _ => {
                field.push(b);
                at_field_start = false;
            }
        }
        i += 1;
    }
    if in_quotes {
        return Err((quote_line, "a quoted field is never closed".into()));
    }
    if !field.is_empty() || !fields.is_empty() {
        finish_field(&mut field, &mut fields);
        records.push(CsvRecord {
            line: record_line,
            fields,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_newlines_and_crlf() {
        let text = "a,b\r\n1,\"x, \"\"y\"\"\nz\"\r\n\r\n2,w\n3";
        let r = parse(text, b',').unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            CsvRecord {
                line: 1,
                fields: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(r[1].fields, ["1", "x, \"y\"\nz"]);
        assert_eq!(r[1].line, 2);
        assert_eq!(
            r[2],
            CsvRecord {
                line: 5,
                fields: vec!["2".into(), "w".into()]
            }
        );
        assert_eq!(
            r[3],
            CsvRecord {
                line: 6,
                fields: vec!["3".into()]
            }
        );
    }

    #[test]
    fn tabs_and_unclosed_quote() {
        let r = parse("x\ty\n中\t文\n", b'\t').unwrap();
        assert_eq!(r[1].fields, ["中", "文"]);
        assert_eq!(parse("a\n\"open\nmore\n", b',').unwrap_err().0, 2);
    }
}

//! The common case of JSONL ingest read without a JSON tree: one alpaca
//! line whose mapped fields are strings.
//!
//! Parsing a line into `serde_json::Map<String, Value>` allocates every key
//! and every value, and frees them all once the row is built: two thirds of
//! ingest's allocations. Here the line is read once, the mapped fields are
//! borrowed from it (copied only where they hold escapes) and every other
//! field is skipped. Anything unusual (a line that is not an object, a mapped
//! field that is not a string, a history, a missing or empty prompt or
//! response) is left to the general path, which decides and words the
//! verdict: this path only ever produces the row the general one would.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The key names of the alpaca fields, all distinct.
pub(super) struct AlpacaKeys<'k> {
    pub prompt: &'k str,
    pub query: Option<&'k str>,
    pub response: &'k str,
    pub history: &'k str,
    pub system: &'k str,
}

/// The mapped fields of one line (`None`: absent or null).
#[derive(Debug, Default, PartialEq)]
pub(super) struct AlpacaFields<'a> {
    pub prompt: Option<Cow<'a, str>>,
    pub query: Option<Cow<'a, str>>,
    pub response: Option<Cow<'a, str>>,
    pub system: Option<Cow<'a, str>>,
}

impl<'k> AlpacaKeys<'k> {
    /// Keys whose fields can be told apart; `None` where two fields share a
    /// key (the general path then fills both from one value).
    pub fn distinct(
        prompt: &'k str,
        query: Option<&'k str>,
        response: &'k str,
        history: &'k str,
        system: &'k str,
    ) -> Option<Self> {
        let mut names: Vec<&str> = [prompt, response, history, system]
            .into_iter()
            .chain(query)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        (names.len() == all).then_some(Self {
            prompt,
            query,
            response,
            history,
            system,
        })
    }

    /// The fields of `line`, or `None` where the line needs the general path.
    pub fn read<'a>(&self, line: &'a str) -> Option<AlpacaFields<'a>> {
        let mut de = serde_json::Deserializer::from_str(line);
        let fields = de.deserialize_map(LineVisitor { keys: self }).ok()?;
        // trailing characters after the object make the line malformed
        de.end().ok()?;
        Some(fields)
    }
}

struct LineVisitor<'s, 'k> {
    keys: &'s AlpacaKeys<'k>,
}

impl<'de> Visitor<'de> for LineVisitor<'_, '_> {
    type Value = AlpacaFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let k = self.keys;
        let mut fields = AlpacaFields::default();
        // a repeated key keeps its last value, as `serde_json::Map` does
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = if key == k.prompt {
                &mut fields.prompt
            } else if Some(key.as_ref()) == k.query {
                &mut fields.query
            } else if key == k.response {
                &mut fields.response
            } else if key == k.system {
                &mut fields.system
            } else if key == k.history {
                map.next_value_seed(NullOnly)?;
                continue;
            } else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            *slot = map.next_value_seed(StrOrNull)?;
        }
        Ok(fields)
    }
}

/// A string (borrowed where it holds no escapes) or null; anything else is an error.
struct StrOrNull;

impl<'de> DeserializeSeed<'de> for StrOrNull {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrOrNull {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Null and nothing else: a history with turns goes the general way.
struct NullOnly;

impl<'de> DeserializeSeed<'de> for NullOnly {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NullOnly {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AlpacaKeys<'static> {
        AlpacaKeys::distinct("instruction", Some("input"), "output", "history", "system").unwrap()
    }

    #[test]
    fn borrows_plain_fields_and_copies_escaped_ones() {
        let line =
            r#"{"instruction": "plain", "input": "a\nb", "output": "o", "extra": {"x": [1, 2]}}"#;
        let f = keys().read(line).unwrap();
        assert!(matches!(f.prompt, Some(Cow::Borrowed("plain"))));
        assert!(matches!(f.query.as_ref(), Some(Cow::Owned(s)) if s == "a\nb"));
        assert_eq!(f.response.as_deref(), Some("o"));
        assert_eq!(f.system, None);
    }

    #[test]
    fn unusual_lines_go_the_general_way() {
        for line in [
            r#"{"instruction": 1, "output": "o"}"#,
            r#"{"instruction": "i", "output": ["o"]}"#,
            r#"{"instruction": "i", "output": "o", "history": [["q", "a"]]}"#,
            r#"{"instruction": "i", "output": "o"} trailing"#,
            r#"["instruction", "output"]"#,
            r#"{"instruction": "i", "output": "o""#,
        ] {
            assert_eq!(keys().read(line), None, "{line}");
        }
        let f = keys()
            .read(r#"{"instruction": "i", "output": "x", "output": null, "history": null}"#)
            .unwrap();
        assert_eq!(f.response, None, "the last of a repeated key counts");
    }

    #[test]
    fn shared_keys_are_not_distinct() {
        assert!(AlpacaKeys::distinct("input", None, "output", "history", "system").is_some());
        assert!(
            AlpacaKeys::distinct("input", Some("input"), "output", "history", "system").is_none()
        );
        assert!(AlpacaKeys::distinct("q", None, "q", "history", "system").is_none());
    }
}

//! JSON text -> template values, keeping object key order.
//!
//! `serde_json::Value` sorts object keys (the workspace does not enable its
//! `preserve_order`, and must not: other crates hash canonical JSON), but a
//! tool schema rendered with `tojson` must list keys in the order the user
//! wrote them, as Python's dict does. So JSON is deserialized straight into
//! minijinja values (whose maps keep insertion order in this crate).

use crate::RenderError;
use minijinja::Value;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Parse JSON text into a template value. `what` names it in errors.
pub fn parse(text: &str, what: &str) -> Result<Value, RenderError> {
    serde_json::from_str::<Ordered>(text)
        .map(|o| o.0)
        .map_err(|source| RenderError::Json {
            what: what.to_owned(),
            source,
        })
}

/// A template map keeping the order of `pairs` (as a Python dict does).
pub fn map<K: Into<Value>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v))
            .collect::<indexmap::IndexMap<Value, Value>>(),
    )
}

/// A [`serde_json::Value`] as a template value (key order is that of the map, i.e. sorted).
pub fn from_json_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(from_json_value).collect::<Vec<_>>()),
        J::Object(m) => map(m.iter().map(|(k, v)| (k.as_str(), from_json_value(v)))),
    }
}

struct Ordered(Value);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrderedVisitor)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Ordered;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(v)))
    }

    fn visit_unit<E>(self) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(())))
    }

    fn visit_none<E>(self) -> Result<Ordered, E> {
        Ok(Ordered(Value::from(())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
        let mut items = Vec::new();
        while let Some(Ordered(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Ordered(Value::from(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Ordered, A::Error> {
        let mut pairs: Vec<(String, Value)> = Vec::new();
        while let Some((key, Ordered(value))) = access.next_entry::<String, Ordered>()? {
            // Python keeps the last value of a repeated key, at the first key's position.
            if let Some(slot) = pairs.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value;
            } else {
                pairs.push((key, value));
            }
        }
        Ok(Ordered(map(pairs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order() {
        let v = parse(r#"{"z": 1, "a": {"y": [1.5, null], "b": true}}"#, "t").unwrap();
        let keys: Vec<String> = v.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["z", "a"]);
        let inner = v.get_attr("a").unwrap();
        let keys: Vec<String> = inner.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["y", "b"]);
        assert!(
            parse("{", "messages")
                .unwrap_err()
                .to_string()
                .contains("messages")
        );
    }
}

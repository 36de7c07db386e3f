//! A YAML tree that remembers where every key and value was written.
//!
//! Recipes are merged (`extends`), overridden (`--set`) and substituted (`vars`)
//! before they are checked, and an error found late (a stage's unknown param)
//! must still point at the line and column the user typed. serde_yaml only
//! reports the start of the enclosing item for nested values, so we build our
//! own tree from the event stream of `granit-parser` (the parser under
//! serde-saphyr), keep a [`Loc`] on every node and key, and hand stages plain
//! `serde_json::Value`s.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// Where something was written: a file (or `--set`) and a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl Loc {
    pub fn new(file: Arc<PathBuf>, line: usize, col: usize) -> Self {
        Self { file, line, col }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Values from the command line or a run record have no line.
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

/// One YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub loc: Loc,
}

/// A mapping key with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in the order written (no duplicates: the parser rejects them).
    Map(Vec<(Key, Node)>),
}

/// A YAML syntax error or a duplicate key, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{message}\n  --> {loc}")]
pub struct YamlError {
    pub message: String,
    pub loc: Loc,
}

impl Node {
    pub fn new(value: NodeValue, loc: Loc) -> Self {
        Self { value, loc }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entry of a map by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The key of a map entry (for its location).
    pub fn get_key(&self, key: &str) -> Option<&Key> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k)
    }

    /// A short word for error messages (`a map`, `a string`, ...).
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a map",
        }
    }

    /// The plain JSON value (what stages see).
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                // NaN and infinities have no JSON form; keep them visible as text.
                .unwrap_or_else(|| Value::String(f.to_string())),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A tree from plain JSON (a run record's resolved recipe), every node at `loc`.
    pub fn from_json(value: &Value, loc: &Loc) -> Node {
        let v = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeValue::Int(i),
                None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeValue::Str(s.clone()),
            Value::Array(items) => {
                NodeValue::Seq(items.iter().map(|i| Node::from_json(i, loc)).collect())
            }
            Value::Object(map) => NodeValue::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                loc: loc.clone(),
                            },
                            Node::from_json(v, loc),
                        )
                    })
                    .collect(),
            ),
        };
        Node::new(v, loc.clone())
    }

    /// The location of a dotted path such as `lora.rank` or `targets[1]`
    /// (serde_path_to_error's notation). For a key that is absent (a missing
    /// required field) the deepest existing ancestor is returned.
    pub fn locate(&self, path: &str) -> &Loc {
        let mut node = self;
        let mut loc = &self.loc;
        for part in split_path(path) {
            match part {
                PathPart::Key(k) => match node
                    .as_map()
                    .and_then(|m| m.iter().find(|(key, _)| key.name == k))
                {
                    Some((key, value)) => {
                        loc = &key.loc;
                        node = value;
                    }
                    None => return loc,
                },
                PathPart::Index(i) => match &node.value {
                    NodeValue::Seq(items) if i < items.len() => {
                        node = &items[i];
                        loc = &node.loc;
                    }
                    _ => return loc,
                },
            }
        }
        loc
    }
}

enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<PathPart<'_>> {
    let mut parts = Vec::new();
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut rest = segment;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                parts.push(PathPart::Key(&rest[..open]));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    parts.push(PathPart::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            parts.push(PathPart::Key(rest));
        }
    }
    parts
}

/// Parse one YAML document. `file` is what locations print (the recipe path, or `--set`).
pub fn parse(text: &str, file: &Path) -> Result<Node, YamlError> {
    let file = Arc::new(file.to_path_buf());
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            message: format!("invalid YAML: {}", e.info()),
            loc: Loc::new(file.clone(), e.marker().line(), e.marker().col() + 1),
        })?;
        let loc = Loc::new(file.clone(), span.start.line(), span.start.col() + 1);
        builder.event(event, loc)?;
        if builder.root.is_some() {
            break;
        }
    }
    Ok(builder
        .root
        .unwrap_or_else(|| Node::new(NodeValue::Null, Loc::new(file, 1, 1))))
}

struct Frame {
    node: Node,
    anchor: usize,
    /// For maps: a key waiting for its value.
    pending_key: Option<Key>,
}

struct Builder {
    file: Arc<PathBuf>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, loc: Loc) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let value = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&text)
                } else {
                    NodeValue::Str(text.into_owned())
                };
                let node = Node::new(value, loc);
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node)
            }
            Event::SequenceStart(_, anchor, _) => {
                self.stack.push(Frame {
                    node: Node::new(NodeValue::Seq(Vec::new()), loc),
                    anchor,
                    pending_key: None,
                });
                Ok(())
            }
            Event::MappingStart(_, anchor, _) => {
                self.stack.push(Frame {
                    node: Node::new(NodeValue::Map(Vec::new()), loc),
                    anchor,
                    pending_key: None,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().expect("balanced YAML events");
                if frame.anchor != 0 {
                    self.anchors.insert(frame.anchor, frame.node.clone());
                }
                self.push_value(frame.node)
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    message: "alias to an unknown anchor".into(),
                    loc: loc.clone(),
                })?;
                self.push_value(Node { loc, ..node })
            }
            _ => Ok(()),
        }
    }

    fn push_value(&mut self, node: Node) -> Result<(), YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut frame.node.value {
            NodeValue::Seq(items) => items.push(node),
            NodeValue::Map(entries) => match frame.pending_key.take() {
                None => {
                    let name = match &node.value {
                        NodeValue::Str(s) => s.clone(),
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::Null => "null".into(),
                        _ => {
                            return Err(YamlError {
                                message: "a map key must be a plain word, not a list or map".into(),
                                loc: node.loc,
                            });
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        return Err(YamlError {
                            message: format!(
                                "duplicate key `{name}` (first written at {}:{})",
                                first.loc.line, first.loc.col
                            ),
                            loc: node.loc,
                        });
                    }
                    frame.pending_key = Some(Key {
                        name,
                        loc: node.loc,
                    });
                }
                Some(key) => entries.push((key, node)),
            },
            _ => unreachable!("only collections are on the stack"),
        }
        let _ = &self.file;
        Ok(())
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return NodeValue::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return NodeValue::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return NodeValue::Int(i);
    }
    let looks_numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_owned())
}

/// Deep merge: maps merge key by key (the child's value wins, recursively);
/// anything else in the child replaces the parent's value.
pub fn deep_merge(parent: Node, child: Node) -> Node {
    match (parent.value, child.value) {
        (NodeValue::Map(mut base), NodeValue::Map(over)) => {
            for (key, value) in over {
                match base.iter().position(|(k, _)| k.name == key.name) {
                    Some(i) => {
                        let (_, old) = base.remove(i);
                        base.insert(i, (key, deep_merge(old, value)));
                    }
                    None => base.push((key, value)),
                }
            }
            Node::new(NodeValue::Map(base), child.loc)
        }
        (_, value) => Node::new(value, child.loc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Node {
        parse(text, Path::new("r.yaml")).unwrap()
    }

    #[test]
    fn nested_keys_have_exact_positions() {
        let n = p(
            "name: x\nstages:\n  a: {kind: command, run: echo}\n  b:\n    kind: command\n    epoch: 3\n",
        );
        let loc = n.locate("stages.b.epoch");
        assert_eq!((loc.line, loc.col), (6, 5));
        let loc = n.locate("stages.a.run");
        assert_eq!((loc.line, loc.col), (3, 22));
        // Missing keys fall back to the deepest ancestor.
        let loc = n.locate("stages.b.nope");
        assert_eq!((loc.line, loc.col), (4, 3));
    }

    #[test]
    fn scalars_are_typed_like_yaml_1_2() {
        let n = p("a: 1\nb: 1e-4\nc: true\nd: '1'\ne: ~\nf: hello\ng: 2.0\nh: [1, x]\n");
        let j = n.to_json();
        assert_eq!(j["a"], 1);
        assert_eq!(j["b"], 1e-4);
        assert_eq!(j["c"], true);
        assert_eq!(j["d"], "1");
        assert!(j["e"].is_null());
        assert_eq!(j["f"], "hello");
        assert_eq!(j["g"], 2.0);
        assert_eq!(j["h"], serde_json::json!([1, "x"]));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_places() {
        let err = parse("a: 1\nb: 2\na: 3\n", Path::new("r.yaml")).unwrap_err();
        assert!(err.message.contains("duplicate key `a`"), "{err}");
        assert!(err.message.contains("1:1"), "{err}");
        assert_eq!(err.loc.line, 3);
    }

    #[test]
    fn syntax_errors_have_a_place() {
        let err = parse("a: [1, 2\nb: 3\n", Path::new("r.yaml")).unwrap_err();
        assert!(err.loc.line >= 1, "{err}");
    }

    #[test]
    fn deep_merge_child_wins() {
        let a = p("x: {a: 1, b: {c: 2, d: 3}}\ny: [1]\n");
        let b = p("x: {b: {d: 4}}\ny: [2]\nz: 5\n");
        let m = deep_merge(a, b).to_json();
        assert_eq!(
            m,
            serde_json::json!({"x": {"a": 1, "b": {"c": 2, "d": 4}}, "y": [2], "z": 5})
        );
    }

    #[test]
    fn anchors_and_aliases_copy_values() {
        let n = p("a: &v {k: 1}\nb: *v\n").to_json();
        assert_eq!(n["b"]["k"], 1);
    }
}

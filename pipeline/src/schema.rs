//! The recipe's JSON Schema and the stage-kind reference, both generated from
//! the params schemas the stage kinds give the registry (the same typed
//! structs the parser uses), so the editor, `pipe explain` and the README
//! cannot drift from the code.
//!
//! `pipe schema` prints [`recipe_schema`]; `pipe explain KIND` prints
//! [`key_docs`] of one kind; `pipe explain --markdown` prints
//! [`reference_markdown`], which the README embeds.

use serde_json::{Map, Value, json};

use crate::stage::{Registry, Stage};

/// Where editors find the schema (the file `pipe schema` writes in the repository).
pub const SCHEMA_FILE: &str = "pipe-recipe.schema.json";

/// The JSON Schema (draft 2020-12) of a recipe file: the top-level keys, and
/// per stage the keys its `kind` allows. A recipe with `extends:` may give
/// partial stages (no `kind`), so `kind` is required only without it.
pub fn recipe_schema(registry: &Registry) -> Value {
    let mut defs = Map::new();
    let mut dispatch = Vec::new();
    let kinds: Vec<&str> = registry.kinds().collect();
    for kind in &kinds {
        let stage = registry.get(kind).expect("listed kind");
        let schema = kind_schema(kind, stage.as_ref(), &mut defs);
        defs.insert(format!("stage.{kind}"), schema);
        dispatch.push(json!({
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/stage.{kind}")}
        }));
    }
    defs.insert(
        "from".into(),
        json!({
            "description": "Upstream stages or named outputs (`split.test`) this stage reads.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1}
            ]
        }),
    );
    defs.insert(
        "stage".into(),
        json!({
            "type": "object",
            "properties": {"kind": {"enum": kinds, "description": "The stage kind (`pipe explain` lists them)."}},
            "allOf": dispatch
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://pipe.dev/{SCHEMA_FILE}"),
        "title": "pipe recipe",
        "description": "A DAG of cached stages: raw instruction data to a trained, evaluated LoRA adapter.",
        "type": "object",
        "additionalProperties": false,
        "required": ["stages"],
        "properties": {
            "name": {"type": "string", "description": "The recipe's name in run records (default: the file name)."},
            "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "Seed every stage gets unless it sets its own."},
            "model": {"type": "string", "description": "Base model shared by render/tokenize/train/eval: builtin:tiny, a Hugging Face folder, a cached hub id or a .gguf file."},
            "extends": {"type": "string", "description": "A recipe this one deep-merges onto (this file wins)."},
            "vars": {"type": "object", "description": "Values substituted for `${vars.NAME}` in the recipe."},
            "stages": {
                "type": "object",
                "description": "Stage name -> stage.",
                "minProperties": 1,
                "additionalProperties": {"$ref": "#/$defs/stage"}
            }
        },
        "if": {"not": {"required": ["extends"]}},
        "then": {"properties": {"stages": {"additionalProperties": {"required": ["kind"]}}}},
        "$defs": defs
    })
}

/// One kind's stage object: `kind`, `from` and its params, nothing else. Its
/// own `$defs` move into `defs` under `KIND.NAME`.
fn kind_schema(kind: &str, stage: &dyn Stage, defs: &mut Map<String, Value>) -> Value {
    let mut params = stage.params_schema();
    let prefix = format!("{kind}.");
    rewrite_refs(&mut params, &prefix);
    if let Some(Value::Object(own)) = params.get("$defs") {
        for (name, def) in own {
            defs.insert(format!("{prefix}{name}"), def.clone());
        }
    }
    let mut properties = Map::new();
    properties.insert("kind".into(), json!({"const": kind}));
    properties.insert("from".into(), json!({"$ref": "#/$defs/from"}));
    if let Some(Value::Object(props)) = params.get("properties") {
        properties.extend(props.clone());
    }
    let mut required = vec![json!("kind")];
    if let Some(Value::Array(r)) = params.get("required") {
        required.extend(r.iter().cloned());
    }
    json!({
        "type": "object",
        "description": stage.about(),
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// `#/$defs/NAME` -> `#/$defs/PREFIXNAME` everywhere in `v`.
fn rewrite_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "$ref"
                    && let Value::String(s) = child
                    && let Some(name) = s.strip_prefix("#/$defs/")
                {
                    *s = format!("#/$defs/{prefix}{name}");
                } else {
                    rewrite_refs(child, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_refs(i, prefix)),
        _ => {}
    }
}

/// One documented key of a stage kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDoc {
    /// Dotted for nested keys: `lora.rank`.
    pub path: String,
    /// `integer`, `string | null`, `cpu | cuda`, `list of string`, ...
    pub ty: String,
    pub default: Option<Value>,
    pub required: bool,
    pub description: String,
}

/// Every key of a params schema, nested objects flattened to dotted paths.
pub fn key_docs(params_schema: &Value) -> Vec<KeyDoc> {
    let mut out = Vec::new();
    walk_keys(params_schema, params_schema, "", 0, &mut out);
    out
}

fn walk_keys(root: &Value, schema: &Value, prefix: &str, depth: usize, out: &mut Vec<KeyDoc>) {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let path = format!("{prefix}{name}");
        let resolved = resolve(root, prop);
        out.push(KeyDoc {
            path: path.clone(),
            ty: type_name(root, prop, 0),
            default: prop.get("default").cloned(),
            required: required.contains(&name.as_str()),
            description: description(root, prop),
        });
        // Nested settings (`lora: {rank, ...}`) are documented key by key.
        if let Some(object) = object_part(root, resolved)
            && depth < 3
        {
            walk_keys(root, object, &format!("{path}."), depth + 1, out);
        }
    }
}

/// Follow a `$ref` into the root's `$defs`.
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
            .unwrap_or(node),
        None => node,
    }
}

/// The object-with-properties alternative of a node (`T` or `T | null`).
fn object_part<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    if node.get("properties").is_some() {
        return Some(node);
    }
    let alternatives = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))?
        .as_array()?;
    let objects: Vec<&Value> = alternatives
        .iter()
        .map(|a| resolve(root, a))
        .filter(|a| a.get("properties").is_some())
        .collect();
    (objects.len() == 1).then(|| objects[0])
}

fn description(root: &Value, node: &Value) -> String {
    node.get("description")
        .or_else(|| resolve(root, node).get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A short human type: enums list their values, options end in `| null`.
fn type_name(root: &Value, node: &Value, depth: usize) -> String {
    if depth > 4 {
        return "any".into();
    }
    let node = resolve(root, node);
    if let Some(c) = node.get("const") {
        return plain(c);
    }
    if let Some(Value::Array(values)) = node.get("enum") {
        return values.iter().map(plain).collect::<Vec<_>>().join(" | ");
    }
    if let Some(Value::Array(alts)) = node.get("anyOf").or_else(|| node.get("oneOf")) {
        let mut names: Vec<String> = Vec::new();
        for a in alts {
            for part in type_name(root, a, depth + 1).split(" | ") {
                if !names.iter().any(|n| n == part) {
                    names.push(part.to_owned());
                }
            }
        }
        // `null` last reads as "optional".
        names.sort_by_key(|n| n == "null");
        return names.join(" | ");
    }
    let one = |t: &str| -> String {
        match t {
            "array" => match node.get("items") {
                Some(items) => format!("list of {}", type_name(root, items, depth + 1)),
                None => "list".into(),
            },
            "object" if node.get("properties").is_none() => {
                match node.get("additionalProperties") {
                    Some(v @ Value::Object(_)) => {
                        format!("map of {}", type_name(root, v, depth + 1))
                    }
                    _ => "map".into(),
                }
            }
            other => other.to_owned(),
        }
    };
    match node.get("type") {
        Some(Value::String(t)) => one(t),
        Some(Value::Array(ts)) => {
            let mut names: Vec<String> = ts.iter().filter_map(Value::as_str).map(one).collect();
            names.sort_by_key(|n| n == "null");
            names.join(" | ")
        }
        _ => "any".into(),
    }
}

/// A JSON value as a reader writes it in YAML (strings unquoted).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What enters a stage's cache key, said once for every kind.
pub const KEY_NOTE: &str = "Cache key: the kind, its code version, every param (defaults \
filled in), the output hash of each `from` input, and the content hash of every file the stage \
reads (data sources, templates, model files). Paths, times and host names never enter it.";

/// The recipe reference: one section per kind, one table row per key.
pub fn reference_markdown(registry: &Registry) -> String {
    let mut md = String::new();
    md.push_str("Every stage has `kind` and, except sources, `from` (a stage, a named output such as `split.test`, or a list). ");
    md.push_str(KEY_NOTE);
    md.push_str("\n\n");
    for kind in registry.kinds() {
        let stage = registry.get(kind).expect("listed kind");
        md.push_str(&format!(
            "### `{kind}` (code version {})\n\n{}.\n\n",
            stage.code_version(),
            capitalize(stage.about())
        ));
        let docs = key_docs(&stage.params_schema());
        if docs.is_empty() {
            md.push_str("No params.\n\n");
            continue;
        }
        md.push_str("| key | type | default | description |\n|---|---|---|---|\n");
        for d in docs {
            let default = match (&d.default, d.required) {
                (_, true) => "required".to_owned(),
                (Some(v), _) => format!("`{}`", compact(v)),
                (None, _) => String::new(),
            };
            md.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                d.path,
                cell(&d.ty),
                default,
                cell(&d.description)
            ));
        }
        md.push('\n');
    }
    md
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A default as a short inline value; long ones are cut.
fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Value {
        json!({
            "type": "object",
            "required": ["run"],
            "properties": {
                "run": {"type": "string", "description": "What to run."},
                "mode": {"$ref": "#/$defs/Mode", "default": "fast"},
                "limit": {"type": ["integer", "null"], "default": null},
                "lora": {"anyOf": [{"$ref": "#/$defs/Lora"}, {"type": "null"}]}
            },
            "$defs": {
                "Mode": {"oneOf": [{"const": "fast", "description": "x"}, {"const": "slow"}]},
                "Lora": {"type": "object", "properties": {"rank": {"type": "integer", "default": 8}}}
            }
        })
    }

    #[test]
    fn key_docs_resolve_refs_enums_options_and_nesting() {
        let docs = key_docs(&params());
        let by_path = |p: &str| docs.iter().find(|d| d.path == p).unwrap();
        assert_eq!(by_path("mode").ty, "fast | slow");
        assert_eq!(by_path("limit").ty, "integer | null");
        assert_eq!(by_path("lora").ty, "object | null");
        assert_eq!(by_path("lora.rank").default, Some(json!(8)));
        assert!(by_path("run").required);
        assert_eq!(by_path("run").description, "What to run.");
    }

    #[test]
    fn the_schema_names_exactly_the_recipe_top_level_keys() {
        let schema = recipe_schema(&Registry::new());
        let mut keys: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = crate::recipe::TOP_LEVEL_KEYS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn refs_are_prefixed_per_kind() {
        let mut v = params();
        rewrite_refs(&mut v, "train.");
        assert_eq!(v["properties"]["mode"]["$ref"], "#/$defs/train.Mode");
        assert_eq!(
            v["properties"]["lora"]["anyOf"][0]["$ref"],
            "#/$defs/train.Lora"
        );
    }
}

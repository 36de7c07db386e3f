//! Recipes: YAML files naming a model and a map of stages.
//!
//! Loading happens in four steps, each keeping every node's location so that a
//! late error still points at the line the user wrote:
//! 1. parse the file, follow `extends:` (paths relative to the file) and deep
//!    merge parent <- child (the child wins);
//! 2. apply `--set a.b.c=value` overrides (the value is parsed as YAML, so it is
//!    typed exactly like the file);
//! 3. substitute `${name}` from `vars:` in every string (a string that is only
//!    `${name}` takes the variable's typed value);
//! 4. check the top level and each stage's `kind` / `from` strictly. Stage
//!    params are checked by the stage kind itself (`Stage::plan`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result, closest};
use crate::yaml::{self, Key, Loc, Node, NodeValue};

pub const TOP_LEVEL_KEYS: &[&str] = &["name", "seed", "model", "stages", "extends", "vars"];

/// A checked recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe file as given (what locations print).
    pub path: PathBuf,
    /// Its folder, absolute: relative paths in params resolve against it.
    pub dir: PathBuf,
    pub name: String,
    pub seed: u64,
    pub model: Option<String>,
    /// Stages in the order written.
    pub stages: Vec<StageDecl>,
    /// The fully resolved tree (merged, overridden, substituted), for run records.
    pub tree: Node,
}

/// One stage as written.
#[derive(Debug, Clone)]
pub struct StageDecl {
    pub name: String,
    pub name_loc: Loc,
    pub kind: String,
    pub kind_loc: Loc,
    pub from: Vec<Ref>,
    /// Everything but `kind` and `from`, for `Stage::plan`.
    pub params: Value,
    /// The stage's map, to locate a param key reported by `plan`.
    pub node: Node,
}

/// An upstream reference: `split` or `split.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub stage: String,
    pub output: Option<String>,
    pub loc: Loc,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.output {
            Some(o) => write!(f, "{}.{o}", self.stage),
            None => f.write_str(&self.stage),
        }
    }
}

impl Recipe {
    /// Load a recipe file with `--set` overrides (`a.b.c=value`).
    pub fn load(path: &Path, sets: &[String]) -> Result<Recipe> {
        let mut tree = load_tree(path, &mut Vec::new())?;
        for set in sets {
            apply_set(&mut tree, set)?;
        }
        Recipe::from_tree(tree, path)
    }

    /// Check an already merged and overridden tree (also used by `pipe reproduce`,
    /// which rebuilds a recipe from a run record).
    pub fn from_tree(tree: Node, path: &Path) -> Result<Recipe> {
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).map_err(|e| Error::io("cannot resolve", dir, e))?;
        let tree = substitute_vars(tree)?;
        let Some(entries) = tree.as_map() else {
            return Err(Error::recipe(
                format!(
                    "a recipe must be a map of keys (name, model, stages, ...), found {}",
                    tree.type_name()
                ),
                Some(tree.loc.clone()),
            ));
        };
        for (key, _) in entries {
            if !TOP_LEVEL_KEYS.contains(&key.name.as_str()) {
                return Err(unknown_key(
                    key,
                    "at the top level of the recipe",
                    TOP_LEVEL_KEYS,
                ));
            }
        }
        let name = match tree.get("name") {
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "recipe".into()),
            Some(n) => scalar_string(n, "`name`")?,
        };
        let seed = match tree.get("seed") {
            None => 0,
            Some(Node {
                value: NodeValue::Int(i),
                ..
            }) if *i >= 0 => *i as u64,
            Some(n) => {
                return Err(Error::recipe(
                    format!(
                        "`seed` must be a non-negative integer, found {}",
                        n.type_name()
                    ),
                    Some(n.loc.clone()),
                ));
            }
        };
        let model = match tree.get("model") {
            None => None,
            Some(n) => Some(scalar_string(n, "`model`")?),
        };
        let mut stages = Vec::new();
        match tree.get("stages") {
            None => {
                return Err(Error::recipe("the recipe has no `stages`", Some(tree.loc.clone()))
                    .with_hint("add `stages:` with at least one stage, e.g. `raw: {kind: ingest, path: data/*.jsonl}`"));
            }
            Some(node) => {
                let Some(entries) = node.as_map() else {
                    return Err(Error::recipe(
                        format!(
                            "`stages` must be a map of stage name -> stage, found {}",
                            node.type_name()
                        ),
                        Some(node.loc.clone()),
                    ));
                };
                for (key, value) in entries {
                    stages.push(stage_decl(key, value)?);
                }
            }
        }
        Ok(Recipe {
            path: path.to_path_buf(),
            dir,
            name,
            seed,
            model,
            stages,
            tree,
        })
    }

    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }
}

fn scalar_string(node: &Node, what: &str) -> Result<String> {
    match &node.value {
        NodeValue::Str(s) => Ok(s.clone()),
        NodeValue::Int(i) => Ok(i.to_string()),
        _ => Err(Error::recipe(
            format!("{what} must be a string, found {}", node.type_name()),
            Some(node.loc.clone()),
        )),
    }
}

pub(crate) fn unknown_key(key: &Key, place: &str, valid: &[&str]) -> Error {
    let err = Error::recipe(
        format!("unknown key `{}` {place}", key.name),
        Some(key.loc.clone()),
    );
    match closest(&key.name, valid.iter().copied()) {
        Some(best) => err.with_hint(format!("did you mean `{best}`?")),
        None => err.with_hint(format!("valid keys here: {}", valid.join(", "))),
    }
}

fn stage_decl(key: &Key, node: &Node) -> Result<StageDecl> {
    let name = key.name.clone();
    if name.is_empty() || name.contains(['.', '/', '\\']) || name.starts_with('-') {
        return Err(Error::recipe(
            format!("stage name `{name}` may not be empty, contain `.` or `/`, or start with `-`"),
            Some(key.loc.clone()),
        )
        .with_hint("`.` separates a stage from its named output in `from: split.test`"));
    }
    let Some(entries) = node.as_map() else {
        return Err(Error::recipe(
            format!(
                "stage `{name}` must be a map such as `{{kind: ingest, ...}}`, found {}",
                node.type_name()
            ),
            Some(node.loc.clone()),
        ));
    };
    let (kind, kind_loc) = match node.get("kind") {
        Some(Node {
            value: NodeValue::Str(s),
            loc,
        }) => (s.clone(), loc.clone()),
        Some(other) => {
            return Err(Error::recipe(
                format!(
                    "`kind` of stage `{name}` must be a word such as `ingest`, found {}",
                    other.type_name()
                ),
                Some(other.loc.clone()),
            ));
        }
        None => {
            return Err(Error::recipe(
                format!("stage `{name}` has no `kind`"),
                Some(key.loc.clone()),
            )
            .with_hint(
                "add `kind: <ingest|dedup|filter|split|render|tokenize|train|eval|command>`",
            ));
        }
    };
    let mut from = Vec::new();
    if let Some(f) = node.get("from") {
        let items: Vec<&Node> = match &f.value {
            NodeValue::Seq(items) => items.iter().collect(),
            _ => vec![f],
        };
        for item in items {
            let Some(text) = item.as_str() else {
                return Err(Error::recipe(
                    format!(
                        "`from` of stage `{name}` must name stages (`raw` or `split.test`), found {}",
                        item.type_name()
                    ),
                    Some(item.loc.clone()),
                ));
            };
            let (stage, output) = match text.split_once('.') {
                Some((s, o)) => (s.to_owned(), Some(o.to_owned())),
                None => (text.to_owned(), None),
            };
            from.push(Ref {
                stage,
                output,
                loc: item.loc.clone(),
            });
        }
    }
    let params = Value::Object(
        entries
            .iter()
            .filter(|(k, _)| k.name != "kind" && k.name != "from")
            .map(|(k, v)| (k.name.clone(), v.to_json()))
            .collect(),
    );
    Ok(StageDecl {
        name,
        name_loc: key.loc.clone(),
        kind,
        kind_loc,
        from,
        params,
        node: node.clone(),
    })
}

/// Parse a file and everything it extends, parent first.
fn load_tree(path: &Path, chain: &mut Vec<PathBuf>) -> Result<Node> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if chain.is_empty() {
            // A wrong path on the command line is a usage error (exit 2), not a failure.
            Error::usage(format!("cannot read recipe {}: {e}", path.display()))
                .with_hint("give the path of a recipe file, e.g. `pipe run recipes/legal.yaml`")
        } else {
            Error::recipe(
                format!(
                    "cannot read `{}` (extended by `{}`)",
                    path.display(),
                    chain.last().unwrap().display()
                ),
                None,
            )
        }
    })?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(pos) = chain.iter().position(|p| *p == canonical) {
        let cycle: Vec<String> = chain[pos..]
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        return Err(Error::recipe(
            format!(
                "recipes extend each other in a cycle: {}",
                cycle.join(" -> ")
            ),
            None,
        ));
    }
    let node = yaml::parse(&text, path)?;
    let Some(extends) = node.get("extends") else {
        return Ok(node);
    };
    let Some(parent_rel) = extends.as_str() else {
        return Err(Error::recipe(
            format!(
                "`extends` must be the path of another recipe, found {}",
                extends.type_name()
            ),
            Some(extends.loc.clone()),
        ));
    };
    let parent_path = path.parent().unwrap_or(Path::new(".")).join(parent_rel);
    if !parent_path.exists() {
        return Err(Error::recipe(
            format!(
                "`extends: {parent_rel}` does not exist (looked for {})",
                parent_path.display()
            ),
            Some(extends.loc.clone()),
        )
        .with_hint("the path is relative to the recipe that extends it"));
    }
    chain.push(canonical);
    let parent = load_tree(&parent_path, chain)?;
    chain.pop();
    // The child's own `extends` is consumed here, the parent's was consumed by its load.
    let mut child = node;
    if let NodeValue::Map(entries) = &mut child.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    let mut parent = parent;
    if let NodeValue::Map(entries) = &mut parent.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    Ok(yaml::deep_merge(parent, child))
}

/// Apply one `--set a.b.c=value`.
pub fn apply_set(tree: &mut Node, set: &str) -> Result<()> {
    let Some((path, value)) = set.split_once('=') else {
        return Err(Error::usage(format!("`--set {set}` has no `=`"))
            .with_hint("write `--set stages.adapter.lr=1e-4`"));
    };
    let path = path.trim();
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(
            Error::usage(format!("`--set {set}`: `{path}` is not a dotted key path"))
                .with_hint("write `--set stages.adapter.lr=1e-4`"),
        );
    }
    let file = Arc::new(PathBuf::from(format!("--set {set}")));
    let loc = Loc::new(file.clone(), 0, 0);
    // Typed like the file; text that is not valid YAML on its own (`>= 0.7`,
    // `a: b: c`) is taken as a plain string, as a user typing it means.
    let mut value = yaml::parse(value, &file)
        .unwrap_or_else(|_| Node::new(NodeValue::Str(value.to_owned()), loc.clone()));
    relocate(&mut value, &loc);
    // `--set adapter.lr=1e-4` is short for `--set stages.adapter.lr=1e-4`.
    let first = path.split('.').next().unwrap_or_default();
    let full;
    let path = if !TOP_LEVEL_KEYS.contains(&first)
        && tree.get("stages").and_then(|s| s.get(first)).is_some()
    {
        full = format!("stages.{path}");
        full.as_str()
    } else {
        path
    };
    let mut node = tree;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if matches!(node.value, NodeValue::Null) {
            node.value = NodeValue::Map(Vec::new());
        }
        let type_name = node.type_name();
        match &mut node.value {
            NodeValue::Map(entries) => {
                let pos = match entries.iter().position(|(k, _)| k.name == *part) {
                    Some(p) => p,
                    None => {
                        entries.push((
                            Key {
                                name: (*part).to_owned(),
                                loc: loc.clone(),
                            },
                            Node::new(NodeValue::Map(Vec::new()), loc.clone()),
                        ));
                        entries.len() - 1
                    }
                };
                if last {
                    entries[pos].1 = value;
                    return Ok(());
                }
                node = &mut entries[pos].1;
            }
            NodeValue::Seq(items) => {
                let idx: usize = part.parse().map_err(|_| {
                    Error::usage(format!(
                        "`--set {set}`: `{part}` indexes a list, use a number"
                    ))
                })?;
                if idx >= items.len() {
                    return Err(Error::usage(format!(
                        "`--set {set}`: index {idx} is past the end of a list of {}",
                        items.len()
                    )));
                }
                if last {
                    items[idx] = value;
                    return Ok(());
                }
                node = &mut items[idx];
            }
            _ => {
                let so_far = parts[..i].join(".");
                return Err(Error::usage(format!(
                    "`--set {set}`: `{so_far}` is {type_name}, not a map"
                )));
            }
        }
    }
    Ok(())
}

fn relocate(node: &mut Node, loc: &Loc) {
    node.loc = loc.clone();
    match &mut node.value {
        NodeValue::Seq(items) => items.iter_mut().for_each(|n| relocate(n, loc)),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            k.loc = loc.clone();
            relocate(v, loc)
        }),
        _ => {}
    }
}

/// Replace `${name}` in every string outside `vars:` itself.
fn substitute_vars(mut tree: Node) -> Result<Node> {
    let vars: Vec<(String, Node)> = match tree.get("vars") {
        None => return Ok(tree),
        Some(v) => match v.as_map() {
            Some(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), v.clone()))
                .collect(),
            None => {
                return Err(Error::recipe(
                    format!(
                        "`vars` must be a map of name -> value, found {}",
                        v.type_name()
                    ),
                    Some(v.loc.clone()),
                ));
            }
        },
    };
    if let NodeValue::Map(entries) = &mut tree.value {
        for (key, value) in entries.iter_mut() {
            if key.name != "vars" {
                subst_node(value, &vars)?;
            }
        }
    }
    Ok(tree)
}

fn subst_node(node: &mut Node, vars: &[(String, Node)]) -> Result<()> {
    match &mut node.value {
        NodeValue::Str(s) if s.contains("${") => {
            let lookup = |name: &str| -> Result<&Node> {
                vars.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        let err = Error::recipe(
                            format!("unknown variable `${{{name}}}`"),
                            Some(node.loc.clone()),
                        );
                        match closest(name, vars.iter().map(|(n, _)| n.as_str())) {
                            Some(best) => err.with_hint(format!("did you mean `${{{best}}}`?")),
                            None => {
                                err.with_hint("define it under `vars:` at the top of the recipe")
                            }
                        }
                    })
            };
            if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
                && !name.contains(['$', '{', '}'])
            {
                let value = lookup(name)?.value.clone();
                node.value = value;
                return Ok(());
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    return Err(Error::recipe(
                        "unclosed `${` in a string",
                        Some(node.loc.clone()),
                    ));
                };
                let var = lookup(&after[..end])?;
                match &var.value {
                    NodeValue::Str(v) => out.push_str(v),
                    NodeValue::Int(i) => out.push_str(&i.to_string()),
                    NodeValue::Float(f) => out.push_str(&f.to_string()),
                    NodeValue::Bool(b) => out.push_str(&b.to_string()),
                    _ => {
                        return Err(Error::recipe(
                            format!(
                                "variable `{}` is {} and cannot be spliced into a string",
                                &after[..end],
                                var.type_name()
                            ),
                            Some(node.loc.clone()),
                        ));
                    }
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
            Ok(())
        }
        NodeValue::Seq(items) => items.iter_mut().try_for_each(|n| subst_node(n, vars)),
        NodeValue::Map(entries) => entries
            .iter_mut()
            .try_for_each(|(_, v)| subst_node(v, vars)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_top_level_key_has_place_and_suggestion() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "r.yaml",
            "name: x\nstage:\n  a: {kind: command}\n",
        );
        let err = Recipe::load(&p, &[]).unwrap_err();
        assert!(err.to_string().contains("unknown key `stage`"), "{err}");
        assert_eq!(err.loc().unwrap().line, 2);
        assert_eq!(err.hint(), Some("did you mean `stages`?"));
    }

    #[test]
    fn extends_deep_merges_and_set_overrides() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "base.yaml",
            "name: base\nseed: 1\nstages:\n  a: {kind: command, run: echo, n: {x: 1, y: 2}}\n",
        );
        let p = write(
            d.path(),
            "child.yaml",
            "extends: base.yaml\nname: child\nstages:\n  a: {n: {y: 3}}\n  b: {kind: command, from: a, run: cat}\n",
        );
        let r = Recipe::load(&p, &["stages.a.n.x=1e-4".into(), "seed=7".into()]).unwrap();
        assert_eq!(r.name, "child");
        assert_eq!(r.seed, 7);
        assert_eq!(r.stages.len(), 2);
        assert_eq!(
            r.stages[0].params["n"],
            serde_json::json!({"x": 1e-4, "y": 3})
        );
        assert_eq!(r.stages[0].params["run"], "echo");
        assert_eq!(r.stages[1].from[0].stage, "a");
        // Inherited values keep their own file's location.
        assert!(r.stages[0].kind_loc.file.ends_with("base.yaml"));
    }

    #[test]
    fn extends_cycle_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "extends: b.yaml\nstages: {}\n");
        let p = write(d.path(), "b.yaml", "extends: a.yaml\nstages: {}\n");
        let err = Recipe::load(&p, &[]).unwrap_err();
        assert!(
            err.to_string().contains("b.yaml -> a.yaml -> b.yaml"),
            "{err}"
        );
    }

    #[test]
    fn vars_are_substituted_typed() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "r.yaml",
            "vars: {dir: data, n: 5}\nstages:\n  a: {kind: command, run: 'cat ${dir}/x', n: '${n}'}\n",
        );
        let r = Recipe::load(&p, &["vars.dir=other".into()]).unwrap();
        assert_eq!(r.stages[0].params["run"], "cat other/x");
        assert_eq!(r.stages[0].params["n"], 5);
        let p = write(
            d.path(),
            "r2.yaml",
            "vars: {dir: data}\nstages:\n  a: {kind: command, run: '${dri}'}\n",
        );
        let err = Recipe::load(&p, &[]).unwrap_err();
        assert_eq!(err.hint(), Some("did you mean `${dir}`?"));
    }

    #[test]
    fn from_accepts_one_or_many_refs() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "r.yaml",
            "stages:\n  a: {kind: x, from: [b, c.test]}\n",
        );
        let r = Recipe::load(&p, &[]).unwrap();
        assert_eq!(r.stages[0].from.len(), 2);
        assert_eq!(r.stages[0].from[1].output.as_deref(), Some("test"));
        assert_eq!(r.stages[0].from[1].loc.line, 2);
        assert_eq!(r.stages[0].params, serde_json::json!({}));
    }

    #[test]
    fn set_rejects_malformed() {
        let mut t = yaml::parse("a: 1\n", Path::new("r")).unwrap();
        assert!(apply_set(&mut t, "a").is_err());
        assert!(apply_set(&mut t, "a.b=1").is_err());
        apply_set(&mut t, "c.d=[1, 2]").unwrap();
        assert_eq!(t.to_json()["c"]["d"], serde_json::json!([1, 2]));
        let mut t = yaml::parse("stages: {train: {lr: 1}}\n", Path::new("r")).unwrap();
        apply_set(&mut t, "train.lr=1e-4").unwrap();
        assert_eq!(
            t.to_json()["stages"]["train"]["lr"],
            serde_json::json!(1e-4)
        );
    }
}

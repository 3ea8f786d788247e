//! The configuration of `mask-fields`, read by hand from JSON rather than with serde's derive so
//! that one error lists every problem of a configuration (each naming where it is: `top level`
//! or `rules[i]`), instead of stopping at the first; an operator fixes a config in one round.
//!
//! Two forms are accepted. Without `rules`, the top level is itself one rule (today's form,
//! `{"fields": [...], "replacement": ...}`), masking on produce by default. With `rules`, each
//! element is a rule and masking happens on fetch by default (masking by reader needs the
//! stored records in clear). `onProduce` and `onFetch` override either default.

use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Value};
use sluice_sdk::Context;

/// Keys of a rule (inside `rules`, or at the top level in the one-rule form).
const RULE_KEYS: &[&str] = &[
    "fields",
    "fieldRegex",
    "kind",
    "replacement",
    "keepLast",
    "maskChar",
    "unmaskedFor",
];
/// Keys only the top level has.
const TOP_KEYS: &[&str] = &["rules", "salt", "onProduce", "onFetch"];
/// Keys of an `unmaskedFor` object.
const READER_KEYS: &[&str] = &["principals", "groups", "vclusters"];
/// Largest compiled `fieldRegex`: field paths are short, a bigger automaton is a mistake and
/// would only cost the interceptor's memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A valid configuration.
#[derive(Debug)]
pub struct Settings {
    /// Rules in configuration order; for a field, the first rule that selects it wins.
    pub rules: Vec<Rule>,
    /// Mask the records of Produce requests (what is stored is masked).
    pub on_produce: bool,
    /// Mask the records of Fetch responses (what readers see is masked).
    pub on_fetch: bool,
    /// The per-interceptor salt of `hash` rules.
    pub salt: Vec<u8>,
}

/// One masking rule: which fields, how, and which readers are exempt.
#[derive(Debug)]
pub struct Rule {
    /// The fields it selects.
    pub selector: Selector,
    /// What a selected field becomes.
    pub kind: Kind,
    /// Readers that see the fields of this rule in clear (the rule's own `unmaskedFor`, else
    /// the top-level one); `None`: nobody is exempt.
    pub unmasked_for: Option<Readers>,
}

/// How a rule selects fields, by their dotted path from the top-level object (array elements
/// have the path of their array).
#[derive(Debug)]
pub enum Selector {
    /// Exact dotted paths (`card.number`).
    Paths(Vec<String>),
    /// A regex matching the whole dotted path (anchored at both ends).
    Regex(Regex),
}

/// What a selected field is replaced with.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A fixed JSON value.
    Replace(Value),
    /// The last `n` characters kept, the others replaced by `mask` (the value as a string; a
    /// non-string value is turned into its JSON text first).
    KeepLast {
        /// Characters kept at the end.
        n: usize,
        /// The character the others become.
        mask: char,
    },
    /// Hex SHA-256 of the salt followed by the value (a string's UTF-8, else its JSON text).
    Hash,
    /// JSON `null`.
    Null,
}

impl Kind {
    /// The counter suffix of this kind (`masked_<name>`).
    pub fn counter(&self) -> &'static str {
        match self {
            Kind::Replace(_) => "masked_replace",
            Kind::KeepLast { .. } => "masked_keep_last",
            Kind::Hash => "masked_hash",
            Kind::Null => "masked_null",
        }
    }
}

/// Readers exempt from a rule: any match of principal, one of the principal's groups, or
/// virtual cluster is enough.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Readers {
    /// Authenticated principals (user names).
    pub principals: Vec<String>,
    /// Groups of the principal.
    pub groups: Vec<String>,
    /// Virtual clusters.
    pub vclusters: Vec<String>,
}

impl Readers {
    /// Whether the connection of `ctx` is one of these readers. An unauthenticated client
    /// (no principal, no groups) outside any listed virtual cluster never is.
    pub fn matches(&self, ctx: &Context) -> bool {
        ctx.principal
            .as_ref()
            .is_some_and(|p| self.principals.contains(p))
            || ctx.groups.iter().any(|g| self.groups.contains(g))
            || ctx
                .vcluster
                .as_ref()
                .is_some_and(|v| self.vclusters.contains(v))
    }
}

impl Selector {
    /// Whether the field at `path` is selected.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Selector::Paths(paths) => paths.iter().any(|p| p == path),
            Selector::Regex(re) => re.is_match(path),
        }
    }

    /// Whether a field below `path` may be selected (so the walk must enter it).
    pub fn may_match_below(&self, path: &str) -> bool {
        match self {
            Selector::Paths(paths) => paths.iter().any(|p| {
                p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'.'
            }),
            Selector::Regex(_) => true,
        }
    }

    /// The quoted first segments of the paths (`"card"`): a value containing none of them
    /// (and no escape) has nothing this selector can pick; `None` for a regex.
    pub fn needles(&self) -> Option<Vec<Vec<u8>>> {
        match self {
            Selector::Paths(paths) => Some(
                paths
                    .iter()
                    .map(|p| {
                        let first = p.split('.').next().unwrap_or_default();
                        serde_json::to_vec(first).expect("a string encodes")
                    })
                    .collect(),
            ),
            Selector::Regex(_) => None,
        }
    }
}

/// The example shown with a configuration that is not even a JSON object.
const EXAMPLE: &str = r#"{"fields": ["ssn"], "replacement": "****"} or {"rules": [{"fields": ["card.number"], "kind": "keepLast", "keepLast": 4}], "unmaskedFor": {"groups": ["fraud"]}}"#;

/// Parses and validates `config`; the error names every problem, prefixed `mask-fields:`.
pub fn parse(config: &str) -> Result<Settings, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!("mask-fields: invalid config (not JSON: {e}); expected e.g. {EXAMPLE}")
    })?;
    let Value::Object(top) = doc else {
        return Err(format!(
            "mask-fields: invalid config (not a JSON object); expected e.g. {EXAMPLE}"
        ));
    };
    let mut p = Problems::default();
    let settings = read_top(&top, &mut p);
    match (p.0.len(), settings) {
        (0, Some(s)) => Ok(s),
        (1, _) => Err(format!("mask-fields: invalid config: {}", p.0[0])),
        (n, _) => Err(format!(
            "mask-fields: invalid config, {n} problems: {}",
            p.0.join("; ")
        )),
    }
}

/// The problems found so far, each `where: what`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, at: &str, what: impl std::fmt::Display) {
        self.0.push(format!("{at}: {what}"));
    }
}

fn read_top(top: &Map<String, Value>, p: &mut Problems) -> Option<Settings> {
    let at = "top level";
    let has_rules = top.contains_key("rules");
    for key in top.keys() {
        let known = TOP_KEYS.contains(&key.as_str()) || RULE_KEYS.contains(&key.as_str());
        if !known {
            p.add(at, unknown(key, &[TOP_KEYS, RULE_KEYS].concat()));
        } else if has_rules && RULE_KEYS.contains(&key.as_str()) && key != "unmaskedFor" {
            p.add(
                at,
                format!("`{key}` belongs in a rule when `rules` is given: move it into one"),
            );
        }
    }
    // With `rules`, the top-level `unmaskedFor` is every rule's default; in the one-rule form
    // it is that rule's own, read with the rule.
    let default_readers = match top.get("unmaskedFor") {
        Some(v) if has_rules => read_readers(v, at, p),
        _ => None,
    };
    let on_produce = read_bool(top, "onProduce", at, p).unwrap_or(!has_rules);
    let on_fetch = read_bool(top, "onFetch", at, p).unwrap_or(has_rules);
    if !on_produce && !on_fetch {
        p.add(
            at,
            "`onProduce` and `onFetch` are both false: the interceptor would mask nothing",
        );
    }
    let salt = match top.get("salt") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => {
            p.add(at, "`salt` is empty");
            None
        }
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(other) => {
            p.add(
                at,
                format!("`salt` must be a string, not {}", type_of(other)),
            );
            None
        }
    };

    let mut rules = Vec::new();
    if has_rules {
        match &top["rules"] {
            Value::Array(items) if items.is_empty() => {
                p.add(at, "`rules` is empty: give at least one rule")
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("rules[{i}]");
                    match item {
                        Value::Object(rule) => {
                            for key in rule.keys() {
                                if !RULE_KEYS.contains(&key.as_str()) {
                                    p.add(&at, unknown(key, RULE_KEYS));
                                }
                            }
                            rules.push(read_rule(rule, &at, &default_readers, salt.is_some(), p));
                        }
                        other => p.add(&at, format!("must be an object, not {}", type_of(other))),
                    }
                }
            }
            other => p.add(
                at,
                format!("`rules` must be a list of rules, not {}", type_of(other)),
            ),
        }
    } else if !top.contains_key("fields") && !top.contains_key("fieldRegex") {
        p.add(
            at,
            "missing field `fields` (or `fieldRegex`, or `rules`): say which fields to mask",
        );
    } else {
        rules.push(read_rule(top, at, &None, salt.is_some(), p));
    }
    let rules: Option<Vec<Rule>> = rules.into_iter().collect();
    Some(Settings {
        rules: rules?,
        on_produce,
        on_fetch,
        salt: salt.unwrap_or_default(),
    })
}

/// Reads one rule; `None` (with problems added) when it is invalid.
fn read_rule(
    rule: &Map<String, Value>,
    at: &str,
    default_readers: &Option<Readers>,
    has_salt: bool,
    p: &mut Problems,
) -> Option<Rule> {
    let before = p.0.len();
    let selector = match (rule.get("fields"), rule.get("fieldRegex")) {
        (Some(_), Some(_)) => {
            p.add(at, "give `fields` or `fieldRegex`, not both");
            None
        }
        (None, None) => {
            p.add(at, "missing field `fields` (or `fieldRegex`)");
            None
        }
        (Some(fields), None) => read_fields(fields, at, p),
        (None, Some(re)) => read_regex(re, at, p),
    };
    let kind = read_kind(rule, at, has_salt, p);
    // A rule's own `unmaskedFor` replaces the top-level one (not added to it).
    let unmasked_for = match rule.get("unmaskedFor") {
        Some(v) => read_readers(v, at, p),
        None => default_readers.clone(),
    };
    (p.0.len() == before).then(|| Rule {
        selector: selector.expect("no problem means a selector"),
        kind: kind.expect("no problem means a kind"),
        unmasked_for,
    })
}

fn read_fields(fields: &Value, at: &str, p: &mut Problems) -> Option<Selector> {
    let Value::Array(items) = fields else {
        p.add(
            at,
            format!(
                "`fields` must be a list of dotted paths, not {}",
                type_of(fields)
            ),
        );
        return None;
    };
    if items.is_empty() {
        p.add(at, "`fields` is empty: list at least one field path");
        return None;
    }
    let mut paths = Vec::new();
    let before = p.0.len();
    for item in items {
        match item {
            Value::String(path) if path.split('.').any(str::is_empty) => p.add(
                at,
                format!(
                    "field path `{path}` has an empty segment (use `a.b`, not `a..b`, `.a`, `a.` or ``)"
                ),
            ),
            Value::String(path) => paths.push(path.clone()),
            other => p.add(
                at,
                format!("field paths must be strings, not {}", type_of(other)),
            ),
        }
    }
    (p.0.len() == before).then_some(Selector::Paths(paths))
}

fn read_regex(re: &Value, at: &str, p: &mut Problems) -> Option<Selector> {
    let Value::String(re) = re else {
        p.add(
            at,
            format!("`fieldRegex` must be a string, not {}", type_of(re)),
        );
        return None;
    };
    if re.is_empty() {
        p.add(at, "`fieldRegex` is empty");
        return None;
    }
    // Compiled alone first so that an error quotes the operator's pattern, not the anchored
    // one; then anchored, to match whole paths.
    let built = RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .and_then(|_| {
            RegexBuilder::new(&format!("^(?:{re})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
        });
    match built {
        Ok(compiled) => Some(Selector::Regex(compiled)),
        Err(e) => {
            // The regex crate's messages span lines (pattern, caret, reason): keep one line.
            let reason = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            p.add(
                at,
                format!("`fieldRegex` `{re}` is not a valid regex: {reason}"),
            );
            None
        }
    }
}

fn read_kind(
    rule: &Map<String, Value>,
    at: &str,
    has_salt: bool,
    p: &mut Problems,
) -> Option<Kind> {
    let name = match rule.get("kind") {
        None if rule.contains_key("keepLast") => "keepLast",
        None => "replace",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            p.add(
                at,
                format!("`kind` must be a string, not {}", type_of(other)),
            );
            return None;
        }
    };
    let only_for = |key: &str, kind: &str, p: &mut Problems| {
        if rule.contains_key(key) && name != kind {
            p.add(
                at,
                format!("`{key}` only applies to kind `{kind}`, not `{name}`"),
            );
        }
    };
    only_for("replacement", "replace", p);
    only_for("keepLast", "keepLast", p);
    only_for("maskChar", "keepLast", p);
    match name {
        "replace" => Some(Kind::Replace(
            rule.get("replacement")
                .cloned()
                .unwrap_or_else(|| Value::String("****".into())),
        )),
        "null" => Some(Kind::Null),
        "hash" => {
            if has_salt {
                Some(Kind::Hash)
            } else {
                p.add(
                    at,
                    "kind `hash` needs a `salt` (a secret string at the top level of the config)",
                );
                None
            }
        }
        "keepLast" => {
            let n = match rule.get("keepLast") {
                None => {
                    p.add(
                        at,
                        "kind `keepLast` needs `keepLast`: how many characters to keep (e.g. 4)",
                    );
                    None
                }
                Some(Value::Number(n)) if n.as_u64().is_some() => {
                    Some(n.as_u64().expect("checked") as usize)
                }
                Some(other) => {
                    p.add(
                        at,
                        format!("`keepLast` must be a whole number >= 0, not {other}"),
                    );
                    None
                }
            };
            let mask = match rule.get("maskChar") {
                None => Some('*'),
                Some(Value::String(s)) if s.chars().count() == 1 => s.chars().next(),
                Some(other) => {
                    p.add(
                        at,
                        format!("`maskChar` must be a string of one character, not {other}"),
                    );
                    None
                }
            };
            Some(Kind::KeepLast { n: n?, mask: mask? })
        }
        other => {
            p.add(
                at,
                format!("unknown kind `{other}`: use `replace`, `keepLast`, `hash` or `null`"),
            );
            None
        }
    }
}

fn read_readers(v: &Value, at: &str, p: &mut Problems) -> Option<Readers> {
    let Value::Object(map) = v else {
        p.add(
            at,
            format!(
                "`unmaskedFor` must be an object like {{\"principals\": [..], \"groups\": [..], \"vclusters\": [..]}}, not {}",
                type_of(v)
            ),
        );
        return None;
    };
    let before = p.0.len();
    let mut readers = Readers::default();
    for (key, value) in map {
        let list = match key.as_str() {
            "principals" => &mut readers.principals,
            "groups" => &mut readers.groups,
            "vclusters" => &mut readers.vclusters,
            _ => {
                p.add(at, format!("`unmaskedFor`: {}", unknown(key, READER_KEYS)));
                continue;
            }
        };
        match value {
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) if !s.is_empty() => list.push(s.clone()),
                        other => p.add(
                            at,
                            format!("`unmaskedFor.{key}` holds non-empty names, not {other}"),
                        ),
                    }
                }
            }
            other => p.add(
                at,
                format!(
                    "`unmaskedFor.{key}` must be a list of names, not {}",
                    type_of(other)
                ),
            ),
        }
    }
    (p.0.len() == before).then_some(readers)
}

fn read_bool(map: &Map<String, Value>, key: &str, at: &str, p: &mut Problems) -> Option<bool> {
    match map.get(key)? {
        Value::Bool(b) => Some(*b),
        other => {
            p.add(at, format!("`{key}` must be true or false, not {other}"));
            None
        }
    }
}

/// "unknown field `x`", with the known key it differs from only by case when there is one.
fn unknown(key: &str, known: &[&str]) -> String {
    match known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        Some(k) => format!("unknown field `{key}` (did you mean `{k}`?)"),
        None => format!("unknown field `{key}` (known: {})", known.join(", ")),
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

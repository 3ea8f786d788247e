//! `encrypt`: encrypts records on produce and decrypts them on fetch, with keys the gateway
//! holds (the host's `kms` import: keys never enter plugin memory).
//!
//! One plugin, two modes, so that an operator installs the encrypting side for everyone (or a
//! virtual cluster) and the decrypting side only for the readers allowed to see plaintext:
//!
//! ```json
//! {"mode": "encrypt", "topics": ["orders", "pay.*"], "keyId": "tenant-${vcluster}-${topic}",
//!  "fields": ["card.number", "items.ssn"], "key": false, "headers": ["x-ssn"]}
//! {"mode": "decrypt", "topics": ["orders", "pay.*"]}
//! ```
//!
//! * `mode` (required): `encrypt` works on Produce requests, `decrypt` on Fetch responses.
//! * `topics` (optional, default every topic): exact topic names, or whole-name regular
//!   expressions for entries that are not valid topic names (`pay.*`, `logs-[0-9]+`).
//! * Encrypt only: `keyId` (required, a template: `${topic}`, `${vcluster}`, `${principal}`,
//!   `${record.key}`, `${value.<dotted.path>}`), what to encrypt: `value` (the whole value),
//!   `fields` (dotted JSON paths, arrays entered), `key`, `headers` (names); `nonJson`
//!   (`reject`, the default, or `pass`: a value that is not a JSON object when `fields` are
//!   asked) and `requireFields` (reject a record missing one of the `fields`).
//! * Decrypt takes nothing else: what to decrypt is written in each record (see below), so a
//!   decrypt interceptor needs no copy of the encrypt configuration.
//!
//! On-record format (documented in plugins/README.md): an encrypted value, key or header value
//! is [`MAGIC`] followed by the KMS ciphertext; an encrypted JSON field becomes the string
//! `"sluice:v1:<base64 ciphertext>"` whose plaintext is the field's JSON text; the header
//! [`HEADER`] (`{"v":1,"value":true,...}`) lists what was encrypted. Each ciphertext's AAD names
//! its place in the record (`sluice:v1:value`, `sluice:v1:key`, `sluice:v1:header:<name>`,
//! `sluice:v1:field:<path>`), so a ciphertext moved to another place does not decrypt.
//!
//! Failures: a record that cannot be encrypted (KMS error, unresolved key template, non-JSON
//! value, missing field under `requireFields`) rejects its whole partition (the broker never
//! sees it, nothing goes out in plaintext): KAFKA_STORAGE_ERROR (retriable) for KMS errors,
//! POLICY_VIOLATION for the others. A record that cannot be decrypted is left exactly as
//! stored and counted; the consumer is never blocked. The record count never changes.
//!
//! Counters: `records_encrypted`, `fields_encrypted`, `encrypt_failures` (records whose
//! encryption failed, each rejecting its partition), `records_decrypted`, `decrypt_failures`.

use base64::Engine as _;
use regex::Regex;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sluice_sdk::{
    error_code, host, kms, Capabilities, Context, Header, Hooks, KafkaError, Plugin, RecordPart,
    Records, SealedPart,
};

/// The header naming what was encrypted in a record.
pub const HEADER: &str = "sluice-encrypted";
/// Prefix of an encrypted value, key or header value: not UTF-8 (0xC5 must be followed by a
/// continuation byte), not JSON, not the 0x00 of schema-registry framing, and versioned.
pub const MAGIC: &[u8; 4] = b"\xC5SL\x01";
/// Prefix of an encrypted JSON field's string.
pub const FIELD_PREFIX: &str = "sluice:v1:";
/// Kafka's KAFKA_STORAGE_ERROR: retriable, so clients retry a produce the KMS failed.
const KAFKA_STORAGE_ERROR: i16 = 56;

/// Settings of both modes.
const COMMON_FIELDS: &[&str] = &["mode", "topics"];
/// Settings of the encrypt mode only.
const ENCRYPT_ONLY: &[&str] = &[
    "keyId",
    "value",
    "fields",
    "key",
    "headers",
    "nonJson",
    "requireFields",
];

// ---------------------------------------------------------------------------------------------
// Configuration

/// Which topics an interceptor works on.
enum TopicMatch {
    Exact(String),
    Pattern(Regex),
}

impl TopicMatch {
    fn matches(&self, topic: &str) -> bool {
        match self {
            TopicMatch::Exact(name) => name == topic,
            TopicMatch::Pattern(re) => re.is_match(topic),
        }
    }
}

/// One piece of a key id template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Topic,
    Vcluster,
    Principal,
    RecordKey,
    Value(Vec<String>),
}

/// A parsed `keyId`.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    fn parse(text: &str, errors: &mut Vec<String>) -> Option<Template> {
        if text.is_empty() {
            errors.push("`keyId` is empty".into());
            return None;
        }
        let before = errors.len();
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                errors.push(format!("`keyId` `{text}`: `${{` without a closing `}}`"));
                break;
            };
            let name = &after[..end];
            match name {
                "topic" => pieces.push(Piece::Topic),
                "vcluster" => pieces.push(Piece::Vcluster),
                "principal" => pieces.push(Piece::Principal),
                "record.key" => pieces.push(Piece::RecordKey),
                _ => match name.strip_prefix("value.") {
                    Some(path) => match parse_path(path) {
                        Ok(path) => pieces.push(Piece::Value(path)),
                        Err(e) => errors.push(format!("`keyId` variable `${{{name}}}`: {e}")),
                    },
                    None => errors.push(format!(
                        "`keyId` variable `${{{name}}}` is unknown (use ${{topic}}, ${{vcluster}}, \
                         ${{principal}}, ${{record.key}} or ${{value.<dotted.path>}})"
                    )),
                },
            }
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        if pieces.iter().all(|p| matches!(p, Piece::Literal(_))) && text.len() > 255 {
            errors.push("`keyId` is longer than 255 bytes".into());
        }
        (errors.len() == before).then_some(Template { pieces })
    }

    fn needs_value(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Value(_)))
    }

    fn needs_key(&self) -> bool {
        self.pieces.contains(&Piece::RecordKey)
    }

    /// The key id for one record; `Err` names the variable that could not be resolved.
    fn resolve(
        &self,
        ctx: &Context,
        topic: &str,
        key: Option<&[u8]>,
        doc: Option<&Value>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            let (name, part): (&str, Option<String>) = match piece {
                Piece::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Piece::Topic => ("topic", Some(topic.to_string())),
                Piece::Vcluster => ("vcluster", ctx.vcluster.clone()),
                Piece::Principal => ("principal", ctx.principal.clone()),
                Piece::RecordKey => (
                    "record.key",
                    key.and_then(|k| std::str::from_utf8(k).ok().map(str::to_string)),
                ),
                Piece::Value(path) => ("value", doc.and_then(|d| scalar_at(d, path))),
            };
            match part {
                Some(s) if !s.is_empty() => out.push_str(&s),
                _ => {
                    let what = match piece {
                        Piece::Value(path) => format!("value.{}", path.join(".")),
                        _ => name.to_string(),
                    };
                    return Err(format!(
                        "key id variable ${{{what}}} has no value for this record"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// The text of the string, number or boolean at `path` (objects only, no arrays: a key id
/// names one key).
fn scalar_at(doc: &Value, path: &[String]) -> Option<String> {
    let mut v = doc;
    for seg in path {
        v = v.as_object()?.get(seg.as_str())?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_path(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let segs: Vec<String> = path.split('.').map(str::to_string).collect();
    if segs.iter().any(String::is_empty) {
        return Err(format!(
            "path `{path}` has an empty segment (use `a.b`, not `a..b`, `.a` or `a.`)"
        ));
    }
    Ok(segs)
}

/// What to do with a value that is not a JSON object when `fields` are asked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NonJson {
    Reject,
    Pass,
}

/// The encrypt mode's settings.
struct EncryptSpec {
    key_id: Template,
    value: bool,
    fields: Vec<(String, Vec<String>)>,
    key: bool,
    headers: Vec<String>,
    non_json: NonJson,
    require_fields: bool,
}

enum Mode {
    Encrypt(Box<EncryptSpec>),
    Decrypt,
}

/// The plugin: its mode and topic selection.
pub struct Encrypt {
    mode: Mode,
    topics: Vec<TopicMatch>,
}

fn bool_field(obj: &Map<String, Value>, name: &str, errors: &mut Vec<String>) -> bool {
    match obj.get(name) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(format!("`{name}` must be true or false, not {other}"));
            false
        }
    }
}

fn string_list(obj: &Map<String, Value>, name: &str, errors: &mut Vec<String>) -> Vec<String> {
    match obj.get(name) {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                errors.push(format!("`{name}` is empty (leave it out instead)"));
            }
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => errors.push(format!("`{name}`: {other} is not a string")),
                }
            }
            out
        }
        Some(other) => {
            errors.push(format!("`{name}` must be a list of strings, not {other}"));
            Vec::new()
        }
    }
}

/// A legal Kafka topic name: matched exactly; anything else is a pattern.
fn is_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Encrypt {
    fn parse(config: &str) -> Result<Encrypt, String> {
        let text = if config.trim().is_empty() {
            "{}"
        } else {
            config
        };
        let obj = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => obj,
            Ok(other) => {
                return Err(format!(
                    "encrypt: the config must be a JSON object, not {other}"
                ))
            }
            Err(e) => return Err(format!("encrypt: the config is not JSON: {e}")),
        };
        let mut errors = Vec::new();
        let known = || COMMON_FIELDS.iter().chain(ENCRYPT_ONLY);
        for k in obj.keys() {
            if !known().any(|f| f == k) {
                let names: Vec<&str> = known().copied().collect();
                errors.push(format!("unknown field `{k}` (known: {})", names.join(", ")));
            }
        }
        let encrypt = match obj.get("mode") {
            None => {
                errors.push(
                    "`mode` is missing: \"encrypt\" (on produce) or \"decrypt\" (on fetch)".into(),
                );
                None
            }
            Some(Value::String(s)) if s == "encrypt" => Some(true),
            Some(Value::String(s)) if s == "decrypt" => Some(false),
            Some(other) => {
                errors.push(format!(
                    "`mode` must be \"encrypt\" or \"decrypt\", not {other}"
                ));
                None
            }
        };
        let mut topics = Vec::new();
        for t in string_list(&obj, "topics", &mut errors) {
            if is_topic_name(&t) {
                topics.push(TopicMatch::Exact(t));
            } else {
                match Regex::new(&format!("^(?:{t})$")) {
                    Ok(re) => topics.push(TopicMatch::Pattern(re)),
                    Err(e) => {
                        // The regex crate's message spans lines (pattern, caret, reason): keep
                        // the reason, so that every problem stays on one line.
                        let e = e.to_string();
                        let reason = e.lines().last().unwrap_or_default();
                        let reason = reason.trim().trim_start_matches("error: ");
                        errors.push(format!(
                            "`topics`: `{t}` is neither a topic name nor a valid regular \
                             expression: {reason}"
                        ))
                    }
                }
            }
        }
        let value = bool_field(&obj, "value", &mut errors);
        let key = bool_field(&obj, "key", &mut errors);
        let require_fields = bool_field(&obj, "requireFields", &mut errors);
        let mut fields = Vec::new();
        for f in string_list(&obj, "fields", &mut errors) {
            match parse_path(&f) {
                Ok(path) => fields.push((f, path)),
                Err(e) => errors.push(format!("`fields`: {e}")),
            }
        }
        // A path inside another (`a` and `a.b`) or listed twice would be encrypted twice over,
        // and the reader, decrypting in the listed order, would find the inner one gone.
        for (i, (name, path)) in fields.iter().enumerate() {
            for (other, other_path) in &fields[..i] {
                let shorter = path.len().min(other_path.len());
                if path[..shorter] == other_path[..shorter] {
                    errors.push(format!(
                        "`fields`: `{name}` and `{other}` overlap (a field inside another is \
                         encrypted with it)"
                    ));
                }
            }
        }
        let headers = string_list(&obj, "headers", &mut errors);
        for h in &headers {
            if h.is_empty() {
                errors.push("`headers`: a header name is empty".into());
            } else if h == HEADER {
                errors.push(format!("`headers`: `{HEADER}` is the plugin's own header"));
            }
        }
        let non_json = match obj.get("nonJson") {
            None => NonJson::Reject,
            Some(Value::String(s)) if s == "reject" => NonJson::Reject,
            Some(Value::String(s)) if s == "pass" => NonJson::Pass,
            Some(other) => {
                errors.push(format!(
                    "`nonJson` must be \"reject\" or \"pass\", not {other}"
                ));
                NonJson::Reject
            }
        };
        let key_id = match obj.get("keyId") {
            None => None,
            Some(Value::String(s)) => Template::parse(s, &mut errors),
            Some(other) => {
                errors.push(format!("`keyId` must be a string template, not {other}"));
                None
            }
        };
        let mode = match encrypt {
            Some(true) => {
                if !obj.contains_key("keyId") {
                    errors.push(
                        "`keyId` is missing: the key to encrypt with, e.g. \"orders\" or \
                         \"tenant-${vcluster}\""
                            .into(),
                    );
                }
                // By the fields given, valid or not: an invalid one is reported already.
                let asked = |name: &str| obj.get(name).is_some_and(|v| v != &Value::Bool(false));
                if !["value", "fields", "key", "headers"]
                    .iter()
                    .any(|n| asked(n))
                {
                    errors.push(
                        "nothing to encrypt: set `value`, `fields`, `key` or `headers`".into(),
                    );
                }
                if value && obj.contains_key("fields") {
                    errors.push("`value` (the whole value) and `fields` exclude each other".into());
                }
                if !obj.contains_key("fields") {
                    for name in ["nonJson", "requireFields"] {
                        if obj.contains_key(name) {
                            errors.push(format!("`{name}` applies to `fields`, which is not set"));
                        }
                    }
                }
                key_id.map(|key_id| {
                    Mode::Encrypt(Box::new(EncryptSpec {
                        key_id,
                        value,
                        fields,
                        key,
                        headers,
                        non_json,
                        require_fields,
                    }))
                })
            }
            Some(false) => {
                for name in ENCRYPT_ONLY {
                    if obj.contains_key(*name) {
                        errors.push(format!(
                            "`{name}` is for mode \"encrypt\": decrypt reads what to decrypt \
                             from each record's `{HEADER}` header"
                        ));
                    }
                }
                Some(Mode::Decrypt)
            }
            None => None,
        };
        match mode {
            Some(mode) if errors.is_empty() => Ok(Encrypt { mode, topics }),
            _ => Err(format!(
                "encrypt: {} problem{} in the config: {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                errors.join("; ")
            )),
        }
    }

    fn wants(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|t| t.matches(topic))
    }
}

// ---------------------------------------------------------------------------------------------
// The record format

fn aad_value() -> &'static [u8] {
    b"sluice:v1:value"
}
fn aad_key() -> &'static [u8] {
    b"sluice:v1:key"
}
fn aad_header(name: &str) -> Vec<u8> {
    format!("sluice:v1:header:{name}").into_bytes()
}
fn aad_field(path: &str) -> Vec<u8> {
    format!("sluice:v1:field:{path}").into_bytes()
}

/// The content of the [`HEADER`] header.
#[derive(serde::Serialize, serde::Deserialize, Default, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Manifest {
    v: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    value: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    key: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fields: Vec<String>,
}

impl Manifest {
    fn is_empty(&self) -> bool {
        !self.value && !self.key && self.headers.is_empty() && self.fields.is_empty()
    }
}

/// Why a record could not be encrypted.
struct Failure {
    message: String,
    kms: bool,
}

impl Failure {
    fn policy(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            kms: false,
        }
    }
}

/// What encrypting or decrypting one record did.
#[derive(Default)]
struct Done {
    /// Whether anything of the record was encrypted (not only a forged header dropped).
    encrypted: bool,
    /// JSON fields encrypted or decrypted.
    fields: u64,
}

/// A part sealed or opened by the host, with this plugin's prefix and the part's AAD.
fn part(part: RecordPart, aad: &[u8]) -> SealedPart {
    SealedPart {
        part,
        prefix: MAGIC.to_vec(),
        aad: aad.to_vec(),
    }
}

/// The parts of a record the manifest (or the configuration) names, in the order value,
/// key, headers.
fn parts(value: bool, key: bool, headers: &[String]) -> Vec<SealedPart> {
    let mut parts = Vec::with_capacity(usize::from(value) + usize::from(key) + headers.len());
    if value {
        parts.push(part(RecordPart::Value, aad_value()));
    }
    if key {
        parts.push(part(RecordPart::Key, aad_key()));
    }
    for name in headers {
        parts.push(part(RecordPart::Header(name.clone()), &aad_header(name)));
    }
    parts
}

/// The manifest of a record whose only sealed part is its whole value (`value`) or its key.
fn single_part_manifest(value: bool) -> Header {
    let manifest = Manifest {
        v: 1,
        value,
        key: !value,
        ..Manifest::default()
    };
    Header::new(
        HEADER,
        serde_json::to_vec(&manifest).expect("a manifest encodes"),
    )
}

impl EncryptSpec {
    /// The part to seal and the manifest, when every record of a partition is encrypted the
    /// same way: one part (the whole value or the key), no fields or headers, and a key id
    /// that does not read the record. Such a partition is sealed in one host call.
    fn whole_partition(&self) -> Option<(SealedPart, Header)> {
        let per_record = self.key_id.needs_key() || self.key_id.needs_value();
        if per_record
            || !self.fields.is_empty()
            || !self.headers.is_empty()
            || self.value == self.key
        {
            return None;
        }
        let which = parts(self.value, self.key, &[]).pop()?;
        Some((which, single_part_manifest(self.value)))
    }

    /// Encrypts record `r` of partition `p` in place. `Err` rejects the partition; the
    /// record may then be half changed, which is harmless: a rejected partition never
    /// reaches the broker.
    ///
    /// Whole values, keys and header values are sealed by the host (`records.seal`): their
    /// bytes never enter the plugin. Only JSON fields are read and rewritten here.
    fn encrypt(
        &self,
        ctx: &Context,
        topic: &str,
        records: &mut dyn Records,
        p: u32,
        r: u32,
    ) -> Result<Done, Failure> {
        let headers = records.headers(p, r);
        let forged = headers.iter().any(|h| h.key == HEADER);
        // The value, when fields are encrypted or the key id reads it; as a JSON tree only
        // for the key id (fields are found as spans of the text, see `spans`).
        let reads_value = !self.fields.is_empty() || self.key_id.needs_value();
        let value = if reads_value {
            records.value(p, r)
        } else {
            None
        };
        let doc: Option<Value> = match (&value, self.key_id.needs_value()) {
            (Some(v), true) => serde_json::from_slice::<Value>(v).ok(),
            _ => None,
        };
        let mut spans = Vec::new();
        if let (false, Some(v)) = (self.fields.is_empty(), &value) {
            let paths: Vec<&[String]> = self.fields.iter().map(|(_, p)| p.as_slice()).collect();
            match spans::object_spans(v, &paths) {
                Ok(found) => {
                    let missing = self
                        .fields
                        .iter()
                        .enumerate()
                        .find(|(i, _)| !found.iter().any(|s| s.path == *i));
                    if let (true, Some((_, (name, _)))) = (self.require_fields, missing) {
                        return Err(Failure::policy(format!(
                            "the value has no field `{name}`, which must be encrypted"
                        )));
                    }
                    spans = found;
                }
                Err(_) if self.non_json == NonJson::Reject => {
                    return Err(Failure::policy(
                        "the value is not a JSON object, and fields are to be encrypted",
                    ));
                }
                Err(_) => {}
            }
        }
        let present: Vec<&String> = self
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| spans.iter().any(|s| s.path == *i))
            .map(|(_, (name, _))| name)
            .collect();
        let value_part = self.value && records.value_size(p, r) >= 0;
        let key = if self.key || self.key_id.needs_key() {
            records.key(p, r)
        } else {
            None
        };
        let key_part = self.key && key.is_some();
        let mut header_names: Vec<String> = Vec::new();
        for h in &headers {
            if h.value.is_some() && self.headers.contains(&h.key) && !header_names.contains(&h.key)
            {
                header_names.push(h.key.clone());
            }
        }
        if !value_part && !key_part && header_names.is_empty() && present.is_empty() {
            if forged {
                // Only this plugin says what is encrypted: a client's own header would make
                // readers try to decrypt plaintext.
                records.remove_headers(p, r, HEADER);
            }
            return Ok(Done::default());
        }
        let key_id = self
            .key_id
            .resolve(ctx, topic, key.as_deref(), doc.as_ref())
            .map_err(Failure::policy)?;
        let kms_failure = |e: String| Failure {
            message: format!("KMS could not encrypt with key `{key_id}`: {e}"),
            kms: true,
        };
        let mut manifest = Manifest {
            v: 1,
            value: value_part,
            key: key_part,
            ..Manifest::default()
        };
        let mut done = Done {
            encrypted: true,
            fields: 0,
        };
        let mut new_value = None;
        if !spans.is_empty() {
            let text = value.as_deref().expect("fields were found in the value");
            let aads: Vec<Vec<u8>> = self.fields.iter().map(|(n, _)| aad_field(n)).collect();
            let spliced = spans::splice(text, &spans, |span, leaf| {
                let sealed = kms::encrypt(&key_id, leaf, &aads[span.path]).map_err(kms_failure)?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(sealed);
                Ok(format!("\"{FIELD_PREFIX}{b64}\"").into_bytes())
            })?;
            done.fields = spans.len() as u64;
            manifest.fields = present.into_iter().cloned().collect();
            new_value = Some(spliced);
        }
        let sealed = parts(value_part, key_part, &header_names);
        if !sealed.is_empty() {
            records.seal(p, r, &key_id, &sealed).map_err(kms_failure)?;
        }
        manifest.headers = header_names;
        if let Some(v) = new_value {
            records.set_value(p, r, Some(&v));
        }
        if forged {
            records.remove_headers(p, r, HEADER);
        }
        let manifest = serde_json::to_vec(&manifest).expect("a manifest encodes");
        records.add_header(p, r, &Header::new(HEADER, manifest));
        Ok(done)
    }
}

/// Decrypts record `r` of partition `p` in place per its [`HEADER`] header (`headers` are
/// its headers); `Ok(None)` when it has none. All or nothing: on an error the record is left
/// exactly as stored.
fn decrypt(
    records: &mut dyn Records,
    p: u32,
    r: u32,
    headers: &[Header],
) -> Result<Option<Done>, String> {
    let mut manifests = headers.iter().filter(|h| h.key == HEADER);
    let Some(header) = manifests.next() else {
        return Ok(None);
    };
    if manifests.next().is_some() {
        return Err(format!("more than one `{HEADER}` header"));
    }
    let manifest: Manifest = header
        .value
        .as_deref()
        .ok_or_else(|| format!("`{HEADER}` header is null"))
        .and_then(|v| {
            serde_json::from_slice(v).map_err(|e| format!("`{HEADER}` header unreadable: {e}"))
        })?;
    if manifest.v != 1 {
        return Err(format!(
            "`{HEADER}` header version {} is not supported",
            manifest.v
        ));
    }
    if manifest.is_empty() {
        return Err(format!("`{HEADER}` header lists nothing"));
    }
    let mut done = Done::default();
    // JSON fields are decrypted here first, into a new value written only once the host has
    // opened every other part: nothing changes unless everything decrypts.
    let mut new_value = None;
    if !manifest.fields.is_empty() {
        let v = records.value(p, r).ok_or("the value is null")?;
        let paths = manifest
            .fields
            .iter()
            .map(|name| parse_path(name))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
        let spans = spans::object_spans(&v, &refs)
            .map_err(|e| format!("the value is not a JSON object: {e}"))?;
        if let Some(name) = (0..paths.len())
            .find(|i| !spans.iter().any(|s| s.path == *i))
            .map(|i| &manifest.fields[i])
        {
            return Err(format!("field `{name}` is missing"));
        }
        let aads: Vec<Vec<u8>> = manifest.fields.iter().map(|n| aad_field(n)).collect();
        let spliced = spans::splice(&v, &spans, |span, leaf| {
            let name = &manifest.fields[span.path];
            let b64 = serde_json::from_slice::<&str>(leaf)
                .ok()
                .and_then(|s| s.strip_prefix(FIELD_PREFIX))
                .ok_or_else(|| format!("field `{name}` is not an encrypted field"))?;
            let ct = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("field `{name}`: bad base64: {e}"))?;
            let text =
                kms::decrypt(&ct, &aads[span.path]).map_err(|e| format!("field `{name}`: {e}"))?;
            // Authenticated, so written by the encrypting side; checked anyway, so that a
            // value this plugin passes on is always JSON.
            serde_json::from_slice::<&RawValue>(&text)
                .map_err(|e| format!("field `{name}`: plaintext is not JSON: {e}"))?;
            Ok::<_, String>(text)
        })?;
        done.fields = spans.len() as u64;
        new_value = Some(spliced);
    }
    let opened = parts(manifest.value, manifest.key, &manifest.headers);
    if !opened.is_empty() {
        records.open(p, r, &opened)?;
    }
    if let Some(v) = new_value {
        records.set_value(p, r, Some(&v));
    }
    records.remove_headers(p, r, HEADER);
    done.encrypted = true;
    Ok(Some(done))
}

// ---------------------------------------------------------------------------------------------
// The hooks

/// Rejects partition `p` for `f`: KAFKA_STORAGE_ERROR when the KMS failed (the client may
/// retry), POLICY_VIOLATION otherwise.
fn reject(records: &mut dyn Records, p: u32, topic: &str, f: Failure) {
    let message = format!(
        "encryption of {topic}-{} failed: {}",
        records.partition(p),
        f.message
    );
    host::warn(&message);
    let code = if f.kms {
        KAFKA_STORAGE_ERROR
    } else {
        error_code::POLICY_VIOLATION
    };
    records.reject(p, &KafkaError::new(code, message));
}

impl Plugin for Encrypt {
    fn describe() -> Capabilities {
        // Both hooks: `describe` runs before the configuration (and so the mode) is known; the
        // hook of the other mode returns at once.
        Capabilities::new(Hooks::PRODUCE | Hooks::FETCH)
    }

    fn configure(config: &str) -> Result<Self, String> {
        Encrypt::parse(config)
    }

    fn on_produce(&mut self, ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        let Mode::Encrypt(spec) = &self.mode else {
            return Ok(());
        };
        let (mut encrypted, mut fields, mut failures) = (0u64, 0u64, 0u64);
        'partitions: for p in 0..records.partition_count() {
            let topic = records.topic(p);
            if !self.wants(&topic) {
                continue;
            }
            if let Some((part, marker)) = spec.whole_partition() {
                let sealed = spec
                    .key_id
                    .resolve(ctx, &topic, None, None)
                    .map_err(Failure::policy)
                    .and_then(|key_id| {
                        records
                            .seal_partition(p, &key_id, &part, &marker)
                            .map_err(|e| Failure {
                                message: format!("KMS could not encrypt with key `{key_id}`: {e}"),
                                kms: true,
                            })
                    });
                match sealed {
                    Ok(n) => encrypted += u64::from(n),
                    Err(f) => {
                        failures += 1;
                        reject(records, p, &topic, f);
                    }
                }
                continue;
            }
            // Records are encrypted in place; a failure rejects the whole partition, so nothing
            // of it (encrypted or not) reaches the broker.
            let (mut part_encrypted, mut part_fields) = (0u64, 0u64);
            for r in 0..records.record_count(p) {
                match spec.encrypt(ctx, &topic, records, p, r) {
                    Ok(done) => {
                        part_encrypted += u64::from(done.encrypted);
                        part_fields += done.fields;
                    }
                    Err(mut f) => {
                        failures += 1;
                        f.message = format!("record {r}: {}", f.message);
                        reject(records, p, &topic, f);
                        continue 'partitions;
                    }
                }
            }
            encrypted += part_encrypted;
            fields += part_fields;
        }
        if encrypted > 0 {
            host::counter_add("records_encrypted", encrypted);
        }
        if fields > 0 {
            host::counter_add("fields_encrypted", fields);
        }
        if failures > 0 {
            host::counter_add("encrypt_failures", failures);
        }
        Ok(())
    }

    fn on_fetch(&mut self, _ctx: &Context, records: &mut dyn Records) -> Result<(), KafkaError> {
        if !matches!(self.mode, Mode::Decrypt) {
            return Ok(());
        }
        let (mut decrypted, mut failures) = (0u64, 0u64);
        for p in 0..records.partition_count() {
            let topic = records.topic(p);
            if !self.wants(&topic) {
                continue;
            }
            // Records sealed whole by the partition path open in one host call; the others
            // (fields, keys, headers, several parts) one by one.
            let value = parts(true, false, &[]).pop().expect("one part");
            let batch = records.open_partition(p, &value, &single_part_manifest(true));
            decrypted += u64::from(batch.opened);
            for (r, e) in batch.failed {
                failures += 1;
                left_encrypted(records, p, r, &topic, &e);
            }
            for r in batch.other {
                let headers = records.headers(p, r);
                match decrypt(records, p, r, &headers) {
                    Ok(Some(_)) => decrypted += 1,
                    Ok(None) => {}
                    Err(e) => {
                        // Left as stored: the reader sees the ciphertext, never garbage.
                        failures += 1;
                        left_encrypted(records, p, r, &topic, &e);
                    }
                }
            }
        }
        if decrypted > 0 {
            host::counter_add("records_decrypted", decrypted);
        }
        if failures > 0 {
            host::counter_add("decrypt_failures", failures);
        }
        Ok(())
    }
}

/// Logs a record that stays encrypted for this reader.
fn left_encrypted(records: &dyn Records, p: u32, r: u32, topic: &str, why: &str) {
    host::warn(&format!(
        "record {r} of {topic}-{} left encrypted: {why}",
        records.partition(p)
    ));
}

mod spans;

sluice_sdk::export_plugin!(Encrypt);

#[cfg(test)]
mod tests;

//! Service accounts, groups and ACLs: the security resources of the admin API.
//!
//! - A **service account** is a SASL/SCRAM identity. Its password is write-only: the gateway
//!   derives SCRAM-SHA-256 and SCRAM-SHA-512 credentials (salt, iteration count, stored key,
//!   server key) and keeps only those, so neither the state directory nor the API ever holds
//!   a usable password. Precomputed credentials can be given instead, so GitOps repositories
//!   need no cleartext either.
//! - A **group** lists principals (service accounts, mTLS subjects, OAuth subjects) so ACLs
//!   and interceptor scopes can name many principals at once.
//! - An **ACL** allows or denies operations on Kafka resources to a principal or a group
//!   (see [`crate::acl`] for the matching rules).
//!
//! [`SecurityStore`] persists the three kinds in the [`StateStore`] and, on every change,
//! builds an immutable [`SecuritySnapshot`] aside and swaps it in (`ArcSwap`): the request
//! path reads the current snapshot without locking, and a change never shows half-applied.

use arc_swap::{ArcSwap, Guard};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use tracing::info;

use crate::acl::{
    AclIndex, AclRule, Operation, PatternType, Permission, Permits, ResourceType, Subject,
    CLUSTER_NAME, WILDCARD,
};
use crate::auth::scram::{ScramCredential, ScramMechanism};
use crate::registry::{done, internal, invalid_name, not_found, with_name, ApiError};
use crate::state::{check_name, StateStore};

/// Document kind of service accounts in the state store.
const ACCOUNTS: &str = "service-accounts";
/// Document kind of groups.
const GROUPS: &str = "groups";
/// Document kind of ACLs.
const ACLS: &str = "acls";

/// Fewest PBKDF2 iterations accepted (RFC 7677's minimum, and Kafka's).
pub const MIN_ITERATIONS: u32 = ScramCredential::MIN_ITERATIONS;
/// Most PBKDF2 iterations accepted (Kafka's maximum): a client pays the iterations on every
/// connection, so a huge count is a self-inflicted denial of service.
pub const MAX_ITERATIONS: u32 = ScramCredential::MAX_ITERATIONS;
/// Iterations used when a service account spec gives none.
pub const DEFAULT_ITERATIONS: u32 = ScramCredential::DEFAULT_ITERATIONS;

/// Longest password accepted, in bytes.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Longest principal, group reference or ACL resource name, in bytes.
const MAX_NAME_BYTES: usize = 1024;
/// Most entries in one list (group members, an account's groups).
const MAX_LIST: usize = 10_000;
/// Longest precomputed salt, in bytes (generated ones are 32).
const MAX_SALT_BYTES: usize = 1024;
/// Longest group description, in bytes.
const MAX_DESCRIPTION_BYTES: usize = 4096;

/// A password in a spec: write-only, never printed.
#[derive(Clone)]
pub struct Password(String);

/// Accepts strings only, and refuses anything else without quoting it: serde's own message
/// for `password: 123456` in YAML (a number) would echo the password into the API error.
impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Password, D::Error> {
        struct Visitor;
        const REFUSED: &str = "password: expected a string (quote a numeric password in YAML)";
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Password;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a password string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Password, E> {
                Ok(Password(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Password, E> {
                Ok(Password(v))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
            fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Password, E> {
                Err(E::custom(REFUSED))
            }
        }
        // `deserialize_any`: with `deserialize_str`, serde_json reports the mismatch itself,
        // quoting the value.
        d.deserialize_any(Visitor)
    }
}

impl Password {
    /// Wraps a password.
    pub fn new(s: impl Into<String>) -> Password {
        Password(s.into())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Precomputed SCRAM credentials of one mechanism, base64 as in Kafka's tooling.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScramInput {
    /// The salt, base64.
    pub salt: String,
    /// PBKDF2 iterations the keys were derived with.
    pub iterations: u32,
    /// `H(ClientKey)`, base64.
    pub stored_key: String,
    /// `HMAC(SaltedPassword, "Server Key")`, base64.
    pub server_key: String,
}

/// A service account as `PUT /api/v1/service-accounts/{name}` and `sluice apply` take it.
///
/// Exactly one of `password` and `scram` on creation; on an update both may be left out to
/// keep the current credentials (the password cannot be read back, so a declarative file
/// that only changes groups still applies).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountSpec {
    /// The password, from which SCRAM-SHA-256 and SCRAM-SHA-512 credentials are derived.
    #[serde(default)]
    pub password: Option<Password>,
    /// Precomputed credentials by mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    #[serde(default)]
    pub scram: Option<BTreeMap<String, ScramInput>>,
    /// Groups the account belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The virtual cluster the account belongs to, if any.
    #[serde(default)]
    pub vcluster: Option<String>,
    /// PBKDF2 iterations for `password` (default 4096).
    #[serde(default)]
    pub iterations: Option<u32>,
}

/// A service account as stored: derived credentials only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredAccount {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    vcluster: Option<String>,
    /// By mechanism name.
    credentials: BTreeMap<String, ScramCredential>,
}

impl StoredAccount {
    /// The API view: never salts or keys.
    fn view(&self, name: &str) -> Value {
        let iterations = self.credentials.values().map(|c| c.iterations).min();
        json!({
            "name": name,
            "spec": {
                "groups": self.groups,
                "vcluster": self.vcluster,
                "mechanisms": self.credentials.keys().collect::<Vec<_>>(),
                "iterations": iterations,
            }
        })
    }
}

/// A group as the API takes and shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    /// Principals in the group: service account names, mTLS subjects, OAuth subjects.
    #[serde(default)]
    pub members: Vec<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl GroupSpec {
    /// Checks the values, every problem reported.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        check_list("members", &self.members, &mut problems);
        if let Some(d) = &self.description {
            if d.len() > MAX_DESCRIPTION_BYTES {
                problems.push(format!(
                    "description: longer than {MAX_DESCRIPTION_BYTES} bytes"
                ));
            }
        }
        done(problems)
    }
}

/// An ACL as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AclSpec {
    /// The principal it applies to; `*` is every authenticated principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The group it applies to (instead of `principal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The resource type.
    pub resource_type: ResourceType,
    /// How `name` matches (default literal).
    #[serde(default)]
    pub pattern_type: PatternType,
    /// Resource name or prefix; literal `*` is every resource of the type.
    pub name: String,
    /// Operations allowed or denied.
    pub operations: Vec<Operation>,
    /// Allow (default) or deny.
    #[serde(default)]
    pub permission: Permission,
    /// The virtual cluster it belongs to: it applies only to that virtual cluster's
    /// connections, and names the tenant's own (logical) resources. Without it, it applies
    /// everywhere. ACLs a tenant creates through the Kafka ACL APIs carry their vcluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcluster: Option<String>,
}

impl AclSpec {
    /// Checks the values, every problem reported.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        match (&self.principal, &self.group) {
            (Some(_), Some(_)) => {
                problems.push("principal, group: give exactly one, not both".into())
            }
            (None, None) => problems.push("principal, group: give exactly one".into()),
            _ => {}
        }
        if let Some(p) = &self.principal {
            check_text("principal", p, &mut problems);
        }
        if let Some(g) = &self.group {
            check_text("group", g, &mut problems);
        }
        check_text("name", &self.name, &mut problems);
        if let Some(v) = &self.vcluster {
            check_text("vcluster", v, &mut problems);
        }
        if self.resource_type == ResourceType::Cluster {
            if self.name != CLUSTER_NAME && self.name != WILDCARD {
                problems.push(format!(
                    "name: a cluster ACL names `{CLUSTER_NAME}` or `{WILDCARD}`"
                ));
            }
            if self.pattern_type != PatternType::Literal {
                problems.push("patternType: a cluster ACL is literal".into());
            }
        }
        if self.pattern_type == PatternType::Prefixed && self.name == WILDCARD {
            problems.push(format!(
                "name: `{WILDCARD}` with patternType prefixed matches nothing useful; use patternType literal to match every name"
            ));
        }
        if self.operations.is_empty() {
            problems.push("operations: give at least one".into());
        }
        let valid = self.resource_type.operations();
        let mut seen = BTreeSet::new();
        for op in &self.operations {
            if !valid.contains(op) {
                problems.push(format!(
                    "operations: `{}` does not apply to {} resources (valid: {})",
                    op.as_str(),
                    self.resource_type.as_str(),
                    valid
                        .iter()
                        .map(|o| o.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !seen.insert(op.as_str()) {
                problems.push(format!("operations: `{}` given twice", op.as_str()));
            }
        }
        done(problems)
    }

    fn rule(&self) -> AclRule {
        let subject = match (&self.principal, &self.group) {
            (Some(p), _) if p == WILDCARD => Subject::AnyPrincipal,
            (Some(p), _) => Subject::Principal(p.clone()),
            (None, Some(g)) => Subject::Group(g.clone()),
            // Validation makes this unreachable; a rule matching nobody is the safe reading.
            (None, None) => Subject::Group(String::new()),
        };
        AclRule {
            subject,
            resource_type: self.resource_type,
            pattern_type: self.pattern_type,
            name: self.name.clone(),
            operations: self.operations.clone(),
            permission: self.permission,
        }
    }
}

/// A non-empty string of at most [`MAX_NAME_BYTES`] bytes without control characters.
fn check_text(field: &str, s: &str, problems: &mut Vec<String>) {
    if s.is_empty() {
        problems.push(format!("{field}: must not be empty"));
    } else if s.len() > MAX_NAME_BYTES {
        problems.push(format!("{field}: longer than {MAX_NAME_BYTES} bytes"));
    } else if s.chars().any(char::is_control) {
        problems.push(format!("{field}: must not contain control characters"));
    }
}

/// A list of [`check_text`] strings without duplicates.
fn check_list(field: &str, items: &[String], problems: &mut Vec<String>) {
    if items.len() > MAX_LIST {
        problems.push(format!("{field}: more than {MAX_LIST} entries"));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), item, problems);
        if !seen.insert(item.as_str()) {
            problems.push(format!("{field}[{i}]: `{item}` listed twice"));
        }
    }
}

/// Decodes one precomputed credential, reporting problems under `field`.
fn decode_scram(
    field: &str,
    mech: ScramMechanism,
    input: &ScramInput,
    problems: &mut Vec<String>,
) -> Option<ScramCredential> {
    let before = problems.len();
    let mut bytes = |what: &str, b64: &str, len: Option<usize>| -> Vec<u8> {
        match BASE64.decode(b64) {
            Ok(v) if v.is_empty() => {
                problems.push(format!("{field}.{what}: must not be empty"));
                v
            }
            Ok(v) if len.is_some_and(|l| l != v.len()) => {
                problems.push(format!(
                    "{field}.{what}: {} bytes, {} has {}-byte keys",
                    v.len(),
                    mech.name(),
                    len.unwrap_or_default()
                ));
                v
            }
            Ok(v) if v.len() > MAX_SALT_BYTES => {
                problems.push(format!(
                    "{field}.{what}: longer than {MAX_SALT_BYTES} bytes"
                ));
                v
            }
            Ok(v) => v,
            Err(_) => {
                // The decoder's message would quote offending bytes of key material.
                problems.push(format!("{field}.{what}: not valid base64"));
                Vec::new()
            }
        }
    };
    let salt = bytes("salt", &input.salt, None);
    let stored_key = bytes("storedKey", &input.stored_key, Some(mech.hash_len()));
    let server_key = bytes("serverKey", &input.server_key, Some(mech.hash_len()));
    check_iterations(&format!("{field}.iterations"), input.iterations, problems);
    (problems.len() == before).then_some(ScramCredential {
        salt,
        iterations: input.iterations,
        stored_key,
        server_key,
    })
}

fn check_iterations(field: &str, iterations: u32, problems: &mut Vec<String>) {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        problems.push(format!(
            "{field}: must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        ));
    }
}

/// What a service account spec turns into, before it is stored.
enum Credentials {
    /// Derived or decoded credentials, by mechanism name.
    New(BTreeMap<String, ScramCredential>),
    /// Keep the stored ones.
    Keep,
}

/// Validates a spec and derives its credentials (slow: PBKDF2), every problem reported.
fn prepare_account(spec: &ServiceAccountSpec) -> Result<Credentials, Vec<String>> {
    let mut problems = Vec::new();
    check_list("groups", &spec.groups, &mut problems);
    if let Some(v) = &spec.vcluster {
        if let Err(e) = check_name(v) {
            problems.push(format!("vcluster: {e}"));
        }
    }
    if let Some(i) = spec.iterations {
        check_iterations("iterations", i, &mut problems);
        if spec.password.is_none() {
            problems.push(
                "iterations: only applies to `password` (precomputed credentials carry their own)"
                    .into(),
            );
        }
    }
    let credentials = match (&spec.password, &spec.scram) {
        (Some(_), Some(_)) => {
            problems.push("password, scram: give one, not both".into());
            None
        }
        (Some(Password(p)), None) => {
            if p.is_empty() {
                problems.push("password: must not be empty".into());
            } else if p.len() > MAX_PASSWORD_BYTES {
                problems.push(format!("password: longer than {MAX_PASSWORD_BYTES} bytes"));
            }
            None
        }
        (None, Some(map)) => {
            if map.is_empty() {
                problems.push("scram: give credentials of at least one mechanism".into());
            }
            let mut creds = BTreeMap::new();
            for (mech_name, input) in map {
                let field = format!("scram.{mech_name}");
                let Some(mech) = ScramMechanism::from_name(mech_name) else {
                    problems.push(format!(
                        "{field}: unknown mechanism (known: {})",
                        ScramMechanism::ALL.map(ScramMechanism::name).join(", ")
                    ));
                    continue;
                };
                if let Some(c) = decode_scram(&field, mech, input, &mut problems) {
                    creds.insert(mech_name.clone(), c);
                }
            }
            Some(creds)
        }
        (None, None) => None,
    };
    done(problems)?;
    Ok(match (&spec.password, credentials) {
        (Some(Password(p)), _) => {
            let iterations = spec.iterations.unwrap_or(DEFAULT_ITERATIONS);
            Credentials::New(
                ScramMechanism::ALL
                    .into_iter()
                    .map(|m| {
                        (
                            m.name().to_string(),
                            ScramCredential::derive(m, p, iterations),
                        )
                    })
                    .collect(),
            )
        }
        (None, Some(creds)) => Credentials::New(creds),
        (None, None) => Credentials::Keep,
    })
}

/// A service account in a snapshot.
#[derive(Debug)]
struct Account {
    credentials: Vec<(ScramMechanism, ScramCredential)>,
    vcluster: Option<String>,
}

/// One immutable view of the security resources, for the request path.
#[derive(Debug, Default)]
pub struct SecuritySnapshot {
    generation: u64,
    accounts: HashMap<String, Account>,
    /// Principal → its groups from its service account and from group memberships, sorted.
    memberships: HashMap<String, Vec<String>>,
    /// ACLs that apply everywhere.
    acls: AclIndex,
    /// ACLs of one virtual cluster each.
    vcluster_acls: HashMap<String, AclIndex>,
    /// Per SCRAM mechanism, the iteration count most accounts have (offered to unknown users).
    typical_iterations: HashMap<ScramMechanism, u32>,
}

impl SecuritySnapshot {
    fn build(generation: u64, inner: &Inner) -> SecuritySnapshot {
        let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
        let mut accounts = HashMap::with_capacity(inner.accounts.len());
        for (name, a) in &inner.accounts {
            memberships
                .entry(name.clone())
                .or_default()
                .extend(a.groups.iter().cloned());
            let credentials = a
                .credentials
                .iter()
                .filter_map(|(m, c)| Some((ScramMechanism::from_name(m)?, c.clone())))
                .collect();
            accounts.insert(
                name.clone(),
                Account {
                    credentials,
                    vcluster: a.vcluster.clone(),
                },
            );
        }
        for (group, spec) in &inner.groups {
            for member in &spec.members {
                memberships
                    .entry(member.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        for groups in memberships.values_mut() {
            groups.sort();
            groups.dedup();
        }
        let mut counts: HashMap<(ScramMechanism, u32), usize> = HashMap::new();
        for a in accounts.values() {
            for (m, c) in &a.credentials {
                *counts.entry((*m, c.iterations)).or_default() += 1;
            }
        }
        let mut typical_iterations: HashMap<ScramMechanism, (usize, u32)> = HashMap::new();
        for ((m, iterations), n) in counts {
            let best = typical_iterations.entry(m).or_insert((0, iterations));
            // Most accounts; on a tie the lower count, so the choice is stable.
            if n > best.0 || (n == best.0 && iterations < best.1) {
                *best = (n, iterations);
            }
        }
        SecuritySnapshot {
            generation,
            typical_iterations: typical_iterations
                .into_iter()
                .map(|(m, (_, i))| (m, i))
                .collect(),
            accounts,
            memberships,
            acls: AclIndex::new(
                inner
                    .acls
                    .values()
                    .filter(|a| a.vcluster.is_none())
                    .map(AclSpec::rule),
            ),
            vcluster_acls: {
                let mut by_vcluster: HashMap<&str, Vec<AclRule>> = HashMap::new();
                for a in inner.acls.values() {
                    if let Some(v) = &a.vcluster {
                        by_vcluster.entry(v).or_default().push(a.rule());
                    }
                }
                by_vcluster
                    .into_iter()
                    .map(|(v, rules)| (v.to_string(), AclIndex::new(rules)))
                    .collect()
            },
        }
    }

    /// Changes with every change of the resources.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SCRAM credential of service account `user` for `mech`, if any.
    pub fn scram_credential(&self, user: &str, mech: ScramMechanism) -> Option<&ScramCredential> {
        self.accounts
            .get(user)?
            .credentials
            .iter()
            .find(|(m, _)| *m == mech)
            .map(|(_, c)| c)
    }

    /// The PBKDF2 iteration count most accounts have for `mech` (4096 without accounts): what
    /// an unknown user is offered, so the answer does not tell it apart.
    pub fn typical_iterations(&self, mech: ScramMechanism) -> u32 {
        self.typical_iterations
            .get(&mech)
            .copied()
            .unwrap_or(ScramCredential::DEFAULT_ITERATIONS)
    }

    /// Whether service account `user` exists.
    pub fn account_exists(&self, user: &str) -> bool {
        self.accounts.contains_key(user)
    }

    /// The virtual cluster of service account `user`, if it has one.
    pub fn account_vcluster(&self, user: &str) -> Option<&str> {
        self.accounts.get(user)?.vcluster.as_deref()
    }

    /// Groups of a principal: its service account's groups ∪ every Group listing it as a
    /// member ∪ `extra` (e.g. from a token claim), sorted, deduplicated.
    pub fn groups_of(&self, principal: &str, extra: &[String]) -> Vec<String> {
        let mut groups: Vec<String> = self
            .memberships
            .get(principal)
            .into_iter()
            .flatten()
            .chain(extra)
            .cloned()
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Whether `principal` is in `group` by the stored resources (not counting extras).
    fn in_group(&self, principal: &str, group: &str) -> bool {
        self.memberships
            .get(principal)
            .is_some_and(|g| g.binary_search_by(|x| x.as_str().cmp(group)).is_ok())
    }

    /// Number of ACLs.
    pub fn acl_count(&self) -> usize {
        self.acls.len()
            + self
                .vcluster_acls
                .values()
                .map(AclIndex::len)
                .sum::<usize>()
    }

    /// ACL decision: deny wins; super users are always allowed; implied operations as in
    /// Kafka (All implies everything; Describe is implied by Read, Write, Delete, Alter;
    /// DescribeConfigs by AlterConfigs); literal "*" matches every name; prefixed matches by
    /// prefix; principal "*" matches everyone authenticated.
    ///
    /// `groups` are added to the groups the stored resources give the principal, so both a
    /// caller passing [`SecuritySnapshot::groups_of`] and one passing only token groups get
    /// the same answer.
    pub fn permits(
        &self,
        principal: &str,
        groups: &[String],
        super_users: &[String],
        rt: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        if !principal.is_empty() && super_users.iter().any(|s| s == principal) {
            return true;
        }
        self.decide(principal, groups, rt, name, op)
    }

    /// [`SecuritySnapshot::permits`] without the super-user check, for a connection outside
    /// any virtual cluster.
    pub(crate) fn decide(
        &self,
        principal: &str,
        extra_groups: &[String],
        rt: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        self.decide_in(None, principal, extra_groups, rt, name, op)
    }

    /// [`SecuritySnapshot::decide`] for a connection in `vcluster`: the global ACLs and the
    /// virtual cluster's own, a deny in either winning.
    pub(crate) fn decide_in(
        &self,
        vcluster: Option<&str>,
        principal: &str,
        extra_groups: &[String],
        rt: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        let member = |g: &str| self.in_group(principal, g) || extra_groups.iter().any(|e| e == g);
        let global = self.acls.verdict(principal, member, rt, name, op);
        let local = vcluster
            .and_then(|v| self.vcluster_acls.get(v))
            .and_then(|index| index.verdict(principal, member, rt, name, op));
        match (global, local) {
            (Some(Permission::Deny), _) | (_, Some(Permission::Deny)) => false,
            (a, b) => a.or(b) == Some(Permission::Allow),
        }
    }
}

/// The stored resources, the source of every snapshot.
#[derive(Default)]
struct Inner {
    accounts: BTreeMap<String, StoredAccount>,
    groups: BTreeMap<String, GroupSpec>,
    acls: BTreeMap<String, AclSpec>,
    generation: u64,
}

/// Service accounts, groups and ACLs, persisted in the state store; the source of the live
/// [`SecuritySnapshot`].
pub struct SecurityStore {
    store: Arc<dyn StateStore>,
    inner: Mutex<Inner>,
    current: ArcSwap<SecuritySnapshot>,
}

impl SecurityStore {
    /// A store over `store`; call [`SecurityStore::restore`] to load what it holds.
    pub fn new(store: Arc<dyn StateStore>) -> SecurityStore {
        SecurityStore {
            store,
            inner: Mutex::new(Inner::default()),
            current: ArcSwap::from_pointee(SecuritySnapshot::default()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<SecuritySnapshot> {
        self.current.load_full()
    }

    /// The current snapshot without touching its reference count: for per-request checks.
    pub fn current(&self) -> Guard<Arc<SecuritySnapshot>> {
        self.current.load()
    }

    /// Loads every stored resource (blocking). A document that does not parse or validate is
    /// an error: starting with an ACL (a deny, say) silently missing is worse than not
    /// starting.
    pub fn restore(&self) -> anyhow::Result<()> {
        let mut inner = self.inner.lock().expect("security store lock");
        for (name, doc) in self.store.list_docs(ACCOUNTS)? {
            let account: StoredAccount = serde_json::from_value(doc)
                .map_err(|e| anyhow::anyhow!("service account {name}: {e}"))?;
            for (mech, credential) in &account.credentials {
                let m = ScramMechanism::from_name(mech).ok_or_else(|| {
                    anyhow::anyhow!("service account {name}: unknown mechanism {mech}")
                })?;
                credential
                    .validate(m)
                    .map_err(|e| anyhow::anyhow!("service account {name}: {mech}: {e}"))?;
            }
            inner.accounts.insert(name, account);
        }
        for (name, doc) in self.store.list_docs(GROUPS)? {
            let spec: GroupSpec =
                serde_json::from_value(doc).map_err(|e| anyhow::anyhow!("group {name}: {e}"))?;
            spec.validate()
                .map_err(|d| anyhow::anyhow!("group {name}: {}", d.join("; ")))?;
            inner.groups.insert(name, spec);
        }
        for (name, doc) in self.store.list_docs(ACLS)? {
            let spec: AclSpec =
                serde_json::from_value(doc).map_err(|e| anyhow::anyhow!("acl {name}: {e}"))?;
            spec.validate()
                .map_err(|d| anyhow::anyhow!("acl {name}: {}", d.join("; ")))?;
            inner.acls.insert(name, spec);
        }
        info!(
            service_accounts = inner.accounts.len(),
            groups = inner.groups.len(),
            acls = inner.acls.len(),
            "restored security resources"
        );
        self.publish(&mut inner);
        Ok(())
    }

    fn publish(&self, inner: &mut Inner) {
        inner.generation += 1;
        self.current
            .store(Arc::new(SecuritySnapshot::build(inner.generation, inner)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("security store lock")
    }

    /// Creates or replaces a service account (blocking: derives credentials from a password).
    pub fn put_service_account(
        &self,
        name: &str,
        spec: ServiceAccountSpec,
    ) -> Result<(Value, bool), ApiError> {
        invalid_name("service account", name)?;
        let credentials = prepare_account(&spec)
            .map_err(|d| ApiError::new(400, "invalid service account spec", d))?;
        let mut inner = self.lock();
        let existing = inner.accounts.get(name);
        let created = existing.is_none();
        let credentials = match (credentials, existing) {
            (Credentials::New(c), _) => c,
            (Credentials::Keep, Some(old)) => old.credentials.clone(),
            (Credentials::Keep, None) => {
                return Err(ApiError::new(
                    400,
                    "invalid service account spec",
                    vec!["password, scram: a new service account needs one of them".into()],
                ))
            }
        };
        let account = StoredAccount {
            groups: spec.groups,
            vcluster: spec.vcluster,
            credentials,
        };
        let doc = serde_json::to_value(&account).expect("account serializes");
        self.store.put_doc(ACCOUNTS, name, &doc).map_err(internal)?;
        let view = account.view(name);
        inner.accounts.insert(name.to_string(), account);
        self.publish(&mut inner);
        info!(
            kind = "service-account",
            name, created, "security resource stored"
        );
        Ok((view, created))
    }

    /// Every service account (no secrets).
    pub fn list_service_accounts(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.accounts.iter().map(|(n, a)| a.view(n)).collect()
    }

    /// One service account (no secrets).
    pub fn get_service_account(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .accounts
            .get(name)
            .map(|a| a.view(name))
            .ok_or_else(|| not_found("service account", name))
    }

    /// Deletes a service account.
    pub fn delete_service_account(&self, name: &str) -> Result<(), ApiError> {
        self.delete(
            ACCOUNTS,
            "service account",
            name,
            |i| i.accounts.contains_key(name),
            |i| drop(i.accounts.remove(name)),
        )
    }

    /// Creates or replaces a group.
    pub fn put_group(&self, name: &str, spec: GroupSpec) -> Result<(Value, bool), ApiError> {
        invalid_name("group", name)?;
        spec.validate()
            .map_err(|d| ApiError::new(400, "invalid group spec", d))?;
        let doc = serde_json::to_value(&spec).expect("group serializes");
        let mut inner = self.lock();
        self.store.put_doc(GROUPS, name, &doc).map_err(internal)?;
        let members = spec.members.len();
        let created = inner.groups.insert(name.to_string(), spec).is_none();
        self.publish(&mut inner);
        info!(
            kind = "group",
            name, members, created, "security resource stored"
        );
        Ok((with_name(name, &doc), created))
    }

    /// Every group.
    pub fn list_groups(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.groups.iter().map(|(n, g)| with_name(n, g)).collect()
    }

    /// One group.
    pub fn get_group(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .groups
            .get(name)
            .map(|g| with_name(name, g))
            .ok_or_else(|| not_found("group", name))
    }

    /// Deletes a group.
    pub fn delete_group(&self, name: &str) -> Result<(), ApiError> {
        self.delete(
            GROUPS,
            "group",
            name,
            |i| i.groups.contains_key(name),
            |i| drop(i.groups.remove(name)),
        )
    }

    /// Creates or replaces an ACL.
    pub fn put_acl(&self, name: &str, spec: AclSpec) -> Result<(Value, bool), ApiError> {
        invalid_name("acl", name)?;
        spec.validate()
            .map_err(|d| ApiError::new(400, "invalid acl spec", d))?;
        let doc = serde_json::to_value(&spec).expect("acl serializes");
        let mut inner = self.lock();
        self.store.put_doc(ACLS, name, &doc).map_err(internal)?;
        info!(
            kind = "acl",
            name,
            principal = spec.principal.as_deref(),
            group = spec.group.as_deref(),
            resource_type = spec.resource_type.as_str(),
            resource = %spec.name,
            permission = ?spec.permission,
            "security resource stored"
        );
        let created = inner.acls.insert(name.to_string(), spec).is_none();
        self.publish(&mut inner);
        Ok((with_name(name, &doc), created))
    }

    /// Every ACL.
    pub fn list_acls(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.acls.iter().map(|(n, a)| with_name(n, a)).collect()
    }

    /// Every ACL with its name, as stored (for the Kafka ACL APIs).
    pub fn acl_specs(&self) -> Vec<(String, AclSpec)> {
        let inner = self.lock();
        inner
            .acls
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect()
    }

    /// One ACL.
    pub fn get_acl(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .acls
            .get(name)
            .map(|a| with_name(name, a))
            .ok_or_else(|| not_found("acl", name))
    }

    /// Deletes an ACL.
    pub fn delete_acl(&self, name: &str) -> Result<(), ApiError> {
        self.delete(
            ACLS,
            "acl",
            name,
            |i| i.acls.contains_key(name),
            |i| drop(i.acls.remove(name)),
        )
    }

    /// Deletes document `name` of `doc_kind`: 404 unless `remove` finds it in memory.
    fn delete(
        &self,
        doc_kind: &str,
        kind: &str,
        name: &str,
        contains: impl FnOnce(&Inner) -> bool,
        remove: impl FnOnce(&mut Inner),
    ) -> Result<(), ApiError> {
        let mut inner = self.lock();
        if !contains(&inner) {
            return Err(not_found(kind, name));
        }
        // The disk first: if that fails, memory still matches what a restart would load.
        self.store.delete_doc(doc_kind, name).map_err(internal)?;
        remove(&mut inner);
        self.publish(&mut inner);
        info!(
            kind = doc_kind.trim_end_matches('s'),
            name, "security resource deleted"
        );
        Ok(())
    }
}

/// The ACL questions of one connection: its principal, the groups a token or certificate
/// gave it, and whether it is a super user.
///
/// It reads the store's current snapshot on every question, so an ACL or group change
/// applies to open connections at once (as a Kafka broker's authorizer does), not only to
/// new ones. Loading the snapshot is a lock-free pointer read.
pub struct PrincipalPermits {
    store: Arc<SecurityStore>,
    principal: String,
    extra_groups: Vec<String>,
    super_user: bool,
    /// The connection's virtual cluster: its own ACLs apply besides the global ones.
    vcluster: Option<String>,
}

impl PrincipalPermits {
    /// The permits of `principal`; `extra_groups` are groups from outside the store (e.g. a
    /// token claim), `super_users` the configured super users.
    pub fn new(
        store: Arc<SecurityStore>,
        principal: impl Into<String>,
        extra_groups: Vec<String>,
        super_users: &[String],
    ) -> PrincipalPermits {
        let principal = principal.into();
        let super_user = !principal.is_empty() && super_users.contains(&principal);
        PrincipalPermits {
            store,
            principal,
            extra_groups,
            super_user,
            vcluster: None,
        }
    }

    /// The same permits for a connection in virtual cluster `vcluster`: the ACLs made for
    /// that virtual cluster apply too (and only there).
    pub fn in_vcluster(mut self, vcluster: Option<String>) -> PrincipalPermits {
        self.vcluster = vcluster;
        self
    }

    /// The virtual cluster whose own ACLs apply, if any.
    pub fn vcluster(&self) -> Option<&str> {
        self.vcluster.as_deref()
    }

    /// The principal.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Whether the principal is a super user (every operation allowed).
    pub fn is_super_user(&self) -> bool {
        self.super_user
    }

    /// The principal's groups right now, sorted (see [`SecuritySnapshot::groups_of`](crate::security::SecuritySnapshot::groups_of)).
    pub fn groups(&self) -> Vec<String> {
        self.store
            .snapshot()
            .groups_of(&self.principal, &self.extra_groups)
    }
}

impl std::fmt::Debug for PrincipalPermits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalPermits")
            .field("principal", &self.principal)
            .field("extra_groups", &self.extra_groups)
            .field("super_user", &self.super_user)
            .field("vcluster", &self.vcluster)
            .finish()
    }
}

impl Permits for PrincipalPermits {
    fn permits(&self, resource_type: ResourceType, name: &str, op: Operation) -> bool {
        if self.super_user {
            return true;
        }
        self.store.current().decide_in(
            self.vcluster.as_deref(),
            &self.principal,
            &self.extra_groups,
            resource_type,
            name,
            op,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod permits {
        use super::*;
        use crate::acl::{Operation::*, ResourceType::*};

        fn store() -> (Arc<SecurityStore>, std::path::PathBuf) {
            let dir = crate::state::test_dir("acl");
            let files = Arc::new(FileStore::open(&dir).unwrap());
            (Arc::new(SecurityStore::new(files)), dir)
        }

        fn acl(json: serde_json::Value) -> AclSpec {
            serde_json::from_value(json).unwrap()
        }

        #[test]
        fn group_acls_super_users_and_live_changes() {
            let (store, dir) = store();
            store
                .put_group(
                    "ops",
                    GroupSpec {
                        members: vec!["CN=app1,O=acme".into()],
                        description: None,
                    },
                )
                .unwrap();
            store
                .put_acl(
                    "ops-read",
                    acl(serde_json::json!({"group": "ops", "resourceType": "topic",
                        "patternType": "prefixed", "name": "ops.", "operations": ["read"]})),
                )
                .unwrap();
            store
                .put_acl(
                    "claims-write",
                    acl(
                        serde_json::json!({"group": "writers", "resourceType": "topic",
                        "name": "*", "operations": ["write"]}),
                    ),
                )
                .unwrap();
            let supers = vec!["root".to_string()];
            let app = PrincipalPermits::new(store.clone(), "CN=app1,O=acme", vec![], &supers);
            assert!(app.permits(Topic, "ops.metrics", Read));
            assert!(app.permits(Topic, "ops.metrics", Describe));
            assert!(!app.permits(Topic, "ops.metrics", Write));
            assert!(!app.permits(Topic, "other", Read));
            assert_eq!(app.groups(), vec!["ops".to_string()]);
            // Groups from a token claim count too.
            let claimed =
                PrincipalPermits::new(store.clone(), "bob", vec!["writers".into()], &supers);
            assert!(claimed.permits(Topic, "anything", Write));
            assert!(!claimed.permits(Topic, "ops.metrics", Read));
            // Super users may do anything, with no ACL at all.
            let root = PrincipalPermits::new(store.clone(), "root", vec![], &supers);
            assert!(root.is_super_user());
            assert!(root.permits(Cluster, CLUSTER_NAME, ClusterAction));
            let snapshot = store.snapshot();
            assert!(snapshot.permits("root", &[], &supers, Cluster, CLUSTER_NAME, Alter));
            assert!(!snapshot.permits("bob", &[], &supers, Cluster, CLUSTER_NAME, Alter));
            // A change applies to an open connection at once.
            store
                .put_acl(
                    "deny-app",
                    acl(
                        serde_json::json!({"principal": "CN=app1,O=acme", "resourceType": "topic",
                        "name": "ops.metrics", "operations": ["all"], "permission": "deny"}),
                    ),
                )
                .unwrap();
            assert!(!app.permits(Topic, "ops.metrics", Read));
            assert!(app.permits(Topic, "ops.logs", Read));
            store.delete_group("ops").unwrap();
            assert!(!app.permits(Topic, "ops.logs", Read));
            assert!(app.groups().is_empty());
            // The old snapshot is unchanged: readers never see a half-applied change.
            assert!(snapshot.permits("CN=app1,O=acme", &[], &[], Topic, "ops.metrics", Read));
            assert!(store.snapshot().generation() > snapshot.generation());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    use crate::state::FileStore;
    use std::path::PathBuf;

    fn temp_dir() -> PathBuf {
        crate::state::test_dir("security")
    }

    fn open(dir: &std::path::Path) -> SecurityStore {
        let store = SecurityStore::new(Arc::new(FileStore::open(dir).unwrap()));
        store.restore().unwrap();
        store
    }

    fn account(v: Value) -> ServiceAccountSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unknown_users_get_the_iteration_count_most_accounts_have() {
        let dir = temp_dir();
        let store = open(&dir);
        let snapshot = store.snapshot();
        assert_eq!(snapshot.typical_iterations(ScramMechanism::Sha256), 4096);
        for (name, iterations) in [("a", 8192), ("b", 8192), ("c", 4096)] {
            store
                .put_service_account(
                    name,
                    account(json!({"password": PASSWORD, "iterations": iterations})),
                )
                .unwrap();
        }
        let snapshot = store.snapshot();
        for mech in ScramMechanism::ALL {
            assert_eq!(snapshot.typical_iterations(mech), 8192, "{mech:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every file under `dir`, concatenated.
    fn all_files(dir: &std::path::Path) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.push_str(&all_files(&path));
            } else {
                out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
        out
    }

    const PASSWORD: &str = "correct-horse-battery-staple";

    #[test]
    fn password_is_never_stored_or_shown() {
        let dir = temp_dir();
        let store = open(&dir);
        let spec = account(json!({"password": PASSWORD, "groups": ["ops"], "vcluster": "team-a"}));
        assert!(
            !format!("{spec:?}").contains(PASSWORD),
            "Debug shows the password"
        );
        let (view, created) = store.put_service_account("alice", spec).unwrap();
        assert!(created);
        assert_eq!(
            view,
            json!({"name": "alice", "spec": {"groups": ["ops"], "vcluster": "team-a",
                "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512"], "iterations": 4096}})
        );
        let on_disk = all_files(&dir);
        assert!(on_disk.contains("credentials"), "{on_disk}");
        assert!(!on_disk.contains(PASSWORD), "password stored: {on_disk}");
        for shown in [
            store.get_service_account("alice").unwrap(),
            Value::Array(store.list_service_accounts()),
        ] {
            let text = shown.to_string();
            for secret in [PASSWORD, "salt", "storedKey", "serverKey", "stored_key"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
        let snapshot = store.snapshot();
        for mech in ScramMechanism::ALL {
            let cred = snapshot.scram_credential("alice", mech).unwrap();
            assert_eq!(cred.iterations, 4096);
            assert!(cred.verify_password(mech, PASSWORD));
            assert!(!cred.verify_password(mech, "wrong"));
        }
        assert!(snapshot.account_exists("alice"));
        assert!(!snapshot.account_exists("bob"));
        assert_eq!(snapshot.account_vcluster("alice"), Some("team-a"));
        assert!(snapshot
            .scram_credential("bob", ScramMechanism::Sha256)
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn update_keeps_or_replaces_credentials() {
        let dir = temp_dir();
        let store = open(&dir);
        // A new account needs credentials.
        let err = store
            .put_service_account("alice", account(json!({"groups": ["ops"]})))
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(!store.snapshot().account_exists("alice"));
        store
            .put_service_account("alice", account(json!({"password": PASSWORD})))
            .unwrap();
        // Changing only the groups keeps the password working.
        let (view, created) = store
            .put_service_account("alice", account(json!({"groups": ["dev"]})))
            .unwrap();
        assert!(!created);
        assert_eq!(view["spec"]["groups"], json!(["dev"]));
        let snapshot = store.snapshot();
        let cred = snapshot
            .scram_credential("alice", ScramMechanism::Sha512)
            .unwrap();
        assert!(cred.verify_password(ScramMechanism::Sha512, PASSWORD));
        assert_eq!(snapshot.groups_of("alice", &[]), vec!["dev".to_string()]);
        // A new password replaces the old one.
        store
            .put_service_account(
                "alice",
                account(json!({"password": "another-one", "iterations": 8192})),
            )
            .unwrap();
        let snapshot = store.snapshot();
        let cred = snapshot
            .scram_credential("alice", ScramMechanism::Sha256)
            .unwrap();
        assert_eq!(cred.iterations, 8192);
        assert!(!cred.verify_password(ScramMechanism::Sha256, PASSWORD));
        assert!(cred.verify_password(ScramMechanism::Sha256, "another-one"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn precomputed_credentials() {
        let dir = temp_dir();
        let store = open(&dir);
        let c = ScramCredential::derive(ScramMechanism::Sha256, PASSWORD, 4096);
        let input = json!({"salt": BASE64.encode(&c.salt), "iterations": 4096,
            "storedKey": BASE64.encode(&c.stored_key), "serverKey": BASE64.encode(&c.server_key)});
        let (view, _) = store
            .put_service_account(
                "gitops",
                account(json!({"scram": {"SCRAM-SHA-256": input}})),
            )
            .unwrap();
        assert_eq!(view["spec"]["mechanisms"], json!(["SCRAM-SHA-256"]));
        let snapshot = store.snapshot();
        let stored = snapshot
            .scram_credential("gitops", ScramMechanism::Sha256)
            .unwrap();
        assert!(stored.verify_password(ScramMechanism::Sha256, PASSWORD));
        assert!(snapshot
            .scram_credential("gitops", ScramMechanism::Sha512)
            .is_none());
        // Bad input: every problem, without quoting key material.
        let err = store
            .put_service_account(
                "gitops",
                account(json!({"scram": {
                    "SCRAM-SHA-512": {"salt": "!!!", "iterations": 10, "storedKey": BASE64.encode([1u8; 32]),
                        "serverKey": BASE64.encode([2u8; 64])},
                    "SCRAM-MD5": {"salt": "AA==", "iterations": 4096, "storedKey": "AA==", "serverKey": "AA=="}}})),
            )
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(err.details.len(), 4, "{:?}", err.details);
        let text = err.details.join("\n");
        assert!(
            text.contains("scram.SCRAM-MD5: unknown mechanism"),
            "{text}"
        );
        assert!(
            text.contains("scram.SCRAM-SHA-512.salt: not valid base64"),
            "{text}"
        );
        assert!(
            text.contains("scram.SCRAM-SHA-512.storedKey: 32 bytes"),
            "{text}"
        );
        assert!(text.contains("scram.SCRAM-SHA-512.iterations"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_reports_every_problem() {
        let dir = temp_dir();
        let store = open(&dir);
        let err = store
            .put_service_account(
                "alice",
                account(json!({"password": "p", "scram": {}, "iterations": 100,
                    "groups": ["ops", "ops", ""], "vcluster": "Bad Name"})),
            )
            .unwrap_err();
        assert_eq!(
            (err.status, err.details.len()),
            (400, 5),
            "{:?}",
            err.details
        );
        let text = err.details.join("\n");
        for field in [
            "groups[1]",
            "groups[2]",
            "vcluster",
            "iterations",
            "password, scram",
        ] {
            assert!(text.contains(field), "{field} missing: {text}");
        }
        let err = store
            .put_service_account("Alice", account(json!({"password": "p"})))
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.error.contains("name"), "{err:?}");
        // A number where the password goes is refused without echoing it.
        let e = serde_json::from_value::<ServiceAccountSpec>(json!({"password": 987654321}))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("987654321") && e.contains("password"), "{e}");
        assert!(
            serde_json::from_value::<ServiceAccountSpec>(json!({"password": "x", "bogus": 1}))
                .is_err()
        );

        let acl = |v: Value| serde_json::from_value::<AclSpec>(v).unwrap();
        let err = store
            .put_acl(
                "bad",
                acl(json!({"principal": "a", "group": "g", "resourceType": "cluster",
                    "patternType": "prefixed", "name": "c", "operations": ["read", "alter", "alter"]})),
            )
            .unwrap_err();
        let text = err.details.join("\n");
        assert_eq!(err.details.len(), 5, "{text}");
        for part in [
            "exactly one",
            "kafka-cluster",
            "cluster ACL is literal",
            "`read` does not apply",
            "`alter` given twice",
        ] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
        let err = store
            .put_acl(
                "bad",
                acl(
                    json!({"resourceType": "topic", "patternType": "prefixed", "name": "*",
                    "operations": []}),
                ),
            )
            .unwrap_err();
        assert_eq!(err.details.len(), 3, "{:?}", err.details);
        assert!(serde_json::from_value::<AclSpec>(
            json!({"principal": "a", "resourceType": "queue", "name": "x", "operations": ["read"]})
        )
        .is_err());
        let err = store
            .put_group(
                "ops",
                GroupSpec {
                    members: vec!["a".into(), "a".into(), "b\n".into()],
                    description: Some("x".repeat(5000)),
                },
            )
            .unwrap_err();
        assert_eq!(err.details.len(), 3, "{:?}", err.details);
        // Nothing invalid was stored.
        assert!(store.list_acls().is_empty() && store.list_groups().is_empty());
        assert!(store.list_service_accounts().is_empty());
        assert_eq!(store.delete_acl("bad").unwrap_err().status, 404);
        assert_eq!(store.get_group("ops").unwrap_err().status, 404);
        assert_eq!(store.delete_group("../x").unwrap_err().status, 404);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restore_after_reopen() {
        let dir = temp_dir();
        {
            let store = open(&dir);
            store
                .put_service_account(
                    "alice",
                    account(json!({"password": PASSWORD, "groups": ["ops"], "vcluster": "a"})),
                )
                .unwrap();
            store
                .put_service_account("bob", account(json!({"password": "b"})))
                .unwrap();
            store
                .put_group(
                    "auditors",
                    serde_json::from_value(
                        json!({"members": ["alice", "CN=app1,O=acme"], "description": "read only"}),
                    )
                    .unwrap(),
                )
                .unwrap();
            store
                .put_acl(
                    "auditors-read",
                    serde_json::from_value(json!({"group": "auditors", "resourceType": "topic",
                        "name": "*", "operations": ["read"]}))
                    .unwrap(),
                )
                .unwrap();
            store.delete_service_account("bob").unwrap();
        }
        let store = open(&dir);
        let s = store.snapshot();
        assert!(s.account_exists("alice") && !s.account_exists("bob"));
        assert_eq!(s.account_vcluster("alice"), Some("a"));
        assert!(s
            .scram_credential("alice", ScramMechanism::Sha256)
            .unwrap()
            .verify_password(ScramMechanism::Sha256, PASSWORD));
        assert_eq!(
            s.groups_of("alice", &["zz".into(), "ops".into()]),
            vec!["auditors".to_string(), "ops".into(), "zz".into()]
        );
        assert_eq!(
            s.groups_of("CN=app1,O=acme", &[]),
            vec!["auditors".to_string()]
        );
        assert!(s.permits(
            "CN=app1,O=acme",
            &[],
            &[],
            ResourceType::Topic,
            "t",
            Operation::Read
        ));
        assert!(!s.permits("carol", &[], &[], ResourceType::Topic, "t", Operation::Read));
        assert_eq!(s.acl_count(), 1);
        assert_eq!(
            store.get_group("auditors").unwrap()["spec"]["description"],
            "read only"
        );
        assert_eq!(
            store.get_acl("auditors-read").unwrap()["spec"],
            json!({"group": "auditors", "resourceType": "topic", "patternType": "literal",
                "name": "*", "operations": ["read"], "permission": "allow"})
        );
        // A corrupt document stops the start rather than running without it.
        std::fs::write(dir.join("acls").join("broken.json"), b"{\"principal\": 1}").unwrap();
        let broken = SecurityStore::new(Arc::new(FileStore::open(&dir).unwrap()));
        let e = broken.restore().unwrap_err().to_string();
        assert!(e.contains("acl broken"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Virtual clusters: several tenants share one physical Kafka cluster, each seeing its own
//! topics, consumer groups and transactional ids under its own names.
//!
//! - A **virtual cluster** (vcluster) owns a name prefix: the tenant's logical topic `orders`
//!   is the physical topic `tenant-a.orders`, and the tenant never sees names outside its
//!   prefix. A *passthrough* vcluster sees the physical cluster unchanged. Connections land
//!   in a vcluster by their principal (listed in `serviceAccounts`, or a service account's
//!   own `vcluster`) or by the TLS SNI host they asked for.
//! - An **alias topic** makes a logical topic of one vcluster read and write an existing
//!   physical topic (`orders` → `legacy.orders`), so a tenant can adopt a topic that predates
//!   its prefix.
//! - A **concentration rule** stores every logical topic matching a pattern in one physical
//!   topic, so thousands of small logical topics cost one physical topic's partitions.
//!
//! Isolation is the invariant every write keeps, rejecting with 409 what would break it: no
//! two non-passthrough prefixes where one is a prefix of the other; an alias or concentrated
//! topic never points inside another vcluster's prefix; a concentrated topic belongs to one
//! vcluster and is no alias target; a principal and an SNI host land in one vcluster only.
//!
//! [`VirtualClusterStore`] persists the three kinds in the [`StateStore`] and, on every
//! change, builds an immutable [`TenancySnapshot`] of precomputed [`Tenant`]s aside and swaps
//! it in (`ArcSwap`), like the security resources: the request path reads it without locking
//! and never sees a change half-applied.

use arc_swap::{ArcSwap, Guard};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tracing::info;

use crate::registry::{done, internal, invalid_name, not_found, with_name, ApiError};
use crate::state::{check_name, StateStore};

/// Document kind of virtual clusters in the state store.
const VCLUSTERS: &str = "virtual-clusters";
/// Document kind of alias topics.
const ALIASES: &str = "alias-topics";
/// Document kind of concentration rules.
const RULES: &str = "concentration-rules";

/// Longest vcluster prefix, in bytes: Kafka topic names have 249, which leaves the tenant 49.
pub const MAX_PREFIX_BYTES: usize = 200;
/// Longest Kafka topic name (Kafka's own limit).
pub const MAX_TOPIC_BYTES: usize = 249;
/// Longest principal, in bytes (as for the security resources).
const MAX_PRINCIPAL_BYTES: usize = 1024;
/// Longest SNI host name (DNS's limit).
const MAX_HOST_BYTES: usize = 253;
/// Most entries in one list (service accounts, SNI hosts).
const MAX_LIST: usize = 10_000;
/// Longest concentration pattern, in bytes.
const MAX_PATTERN_BYTES: usize = 1024;
/// Largest compiled concentration pattern: every logical topic name of a tenant is matched
/// against its rules, so a pattern must stay cheap.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// Per-tenant quotas; `null` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantLimits {
    /// Most topics the tenant may have (0: it may create none).
    #[serde(default)]
    pub max_topics: Option<u32>,
    /// Most partitions over all of the tenant's topics.
    #[serde(default)]
    pub max_partitions: Option<u32>,
    /// Most client connections open at once in this vcluster, over every listener of this
    /// gateway instance (0 suspends the tenant).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// A virtual cluster as `PUT /api/v1/virtual-clusters/{name}` and `sluice apply` take it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualClusterSpec {
    /// Physical name prefix of the tenant's topics, groups and transactional ids (default
    /// `<name>.`); not allowed with `passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The tenant sees the physical cluster unchanged (aliases and concentration still apply).
    #[serde(default)]
    pub passthrough: bool,
    /// Principals that land in this vcluster.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// TLS SNI host names that land a connection in this vcluster (case-insensitive).
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Quotas.
    #[serde(default)]
    pub limits: TenantLimits,
}

impl VirtualClusterSpec {
    /// Checks the values, every problem reported.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        match (&self.prefix, self.passthrough) {
            (Some(_), true) => problems.push(
                "prefix: not allowed with passthrough (a passthrough vcluster sees physical names unchanged)"
                    .into(),
            ),
            (Some(p), false) => check_prefix(p, &mut problems),
            (None, _) => {}
        }
        check_principals(&self.service_accounts, &mut problems);
        check_hosts(&self.sni_hosts, &mut problems);
        done(problems)
    }

    /// The spec as stored: the default prefix spelled out, SNI hosts in lower case.
    fn normalized(mut self, name: &str) -> VirtualClusterSpec {
        if !self.passthrough && self.prefix.is_none() {
            self.prefix = Some(format!("{name}."));
        }
        for h in &mut self.sni_hosts {
            *h = normalize_host(h).into_owned();
        }
        self
    }

    /// The prefix in force: empty for passthrough.
    fn effective_prefix(&self) -> &str {
        if self.passthrough {
            ""
        } else {
            self.prefix.as_deref().unwrap_or("")
        }
    }

    /// The prefix that keeps other tenants out, if this vcluster has a private space.
    fn private_prefix(&self) -> Option<&str> {
        (!self.passthrough).then(|| self.effective_prefix())
    }
}

/// An alias topic as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliasTopicSpec {
    /// The vcluster whose logical topic this is.
    pub vcluster: String,
    /// The topic name the tenant uses.
    pub logical_topic: String,
    /// The physical topic it reads and writes.
    pub physical_topic: String,
}

impl AliasTopicSpec {
    /// Checks the values, every problem reported.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        check_vcluster_ref(&self.vcluster, &mut problems);
        check_topic("logicalTopic", &self.logical_topic, &mut problems);
        check_topic("physicalTopic", &self.physical_topic, &mut problems);
        done(problems)
    }
}

/// A concentration rule as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConcentrationRuleSpec {
    /// The vcluster whose logical topics it concentrates.
    pub vcluster: String,
    /// A regular expression that must match a whole logical topic name.
    pub logical_topic_pattern: String,
    /// The physical topic that stores every matching logical topic.
    pub physical_topic: String,
}

impl ConcentrationRuleSpec {
    /// Checks the values, every problem reported; the compiled pattern when they are fine.
    pub fn validate(&self) -> Result<Regex, Vec<String>> {
        let mut problems = Vec::new();
        check_vcluster_ref(&self.vcluster, &mut problems);
        check_topic("physicalTopic", &self.physical_topic, &mut problems);
        let regex = compile_pattern(&self.logical_topic_pattern, &mut problems);
        done(problems)?;
        // `done` passed: the pattern compiled.
        regex.ok_or_else(|| vec!["logicalTopicPattern: does not compile".into()])
    }
}

/// Compiles `pattern` anchored at both ends, so it must match a whole name.
fn compile_pattern(pattern: &str, problems: &mut Vec<String>) -> Option<Regex> {
    const FIELD: &str = "logicalTopicPattern";
    if pattern.is_empty() {
        problems.push(format!("{FIELD}: must not be empty"));
        return None;
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        problems.push(format!("{FIELD}: longer than {MAX_PATTERN_BYTES} bytes"));
        return None;
    }
    match RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
        .size_limit(MAX_REGEX_BYTES)
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            // The regex crate's message spans several lines with a caret diagram.
            let msg = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            problems.push(format!("{FIELD}: not a valid regular expression: {msg}"));
            None
        }
    }
}

/// Whether `c` may appear in a Kafka topic name.
fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// A legal Kafka topic name.
fn check_topic(field: &str, s: &str, problems: &mut Vec<String>) {
    if s.is_empty() {
        problems.push(format!("{field}: must not be empty"));
    } else if s.len() > MAX_TOPIC_BYTES {
        problems.push(format!("{field}: longer than {MAX_TOPIC_BYTES} characters"));
    } else if !s.chars().all(topic_char) {
        problems.push(format!(
            "{field}: `{s}` is not a Kafka topic name (use a-z, A-Z, 0-9, '.', '_' and '-')"
        ));
    } else if s == "." || s == ".." {
        problems.push(format!("{field}: `{s}` is not a Kafka topic name"));
    }
}

fn check_prefix(p: &str, problems: &mut Vec<String>) {
    if p.is_empty() {
        problems.push(
            "prefix: must not be empty (set passthrough: true to see the physical cluster)".into(),
        );
    } else if p.len() > MAX_PREFIX_BYTES {
        problems.push(format!("prefix: longer than {MAX_PREFIX_BYTES} characters"));
    } else if !p.chars().all(topic_char) {
        problems.push(format!(
            "prefix: `{p}` is not a Kafka topic name prefix (use a-z, A-Z, 0-9, '.', '_' and '-')"
        ));
    }
}

fn check_vcluster_ref(v: &str, problems: &mut Vec<String>) {
    if let Err(e) = check_name(v) {
        problems.push(format!("vcluster: {e}"));
    }
}

fn check_principals(items: &[String], problems: &mut Vec<String>) {
    const FIELD: &str = "serviceAccounts";
    if items.len() > MAX_LIST {
        problems.push(format!("{FIELD}: more than {MAX_LIST} entries"));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, p) in items.iter().enumerate() {
        if p.is_empty() {
            problems.push(format!("{FIELD}[{i}]: must not be empty"));
        } else if p.len() > MAX_PRINCIPAL_BYTES {
            problems.push(format!(
                "{FIELD}[{i}]: longer than {MAX_PRINCIPAL_BYTES} bytes"
            ));
        } else if p.chars().any(char::is_control) {
            problems.push(format!("{FIELD}[{i}]: must not contain control characters"));
        } else if !seen.insert(p.as_str()) {
            problems.push(format!("{FIELD}[{i}]: `{p}` listed twice"));
        }
    }
}

/// DNS names compare case-insensitively, and `host.` is `host`.
fn normalize_host(h: &str) -> Cow<'_, str> {
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

fn check_hosts(items: &[String], problems: &mut Vec<String>) {
    const FIELD: &str = "sniHosts";
    if items.len() > MAX_LIST {
        problems.push(format!("{FIELD}: more than {MAX_LIST} entries"));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, raw) in items.iter().enumerate() {
        let h = normalize_host(raw);
        let labels_ok = h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
        if h.is_empty() || h.len() > MAX_HOST_BYTES || !labels_ok {
            problems.push(format!(
                "{FIELD}[{i}]: `{}` is not a DNS host name",
                raw.escape_debug()
            ));
        } else if !seen.insert(h.into_owned()) {
            problems.push(format!("{FIELD}[{i}]: `{raw}` listed twice"));
        }
    }
}

/// Counts a tenant's open connections; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionGuard {
    counter: Arc<AtomicUsize>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything the request path needs about one tenant, precomputed.
#[derive(Debug)]
pub struct Tenant {
    /// The vcluster's name.
    pub name: String,
    /// Physical prefix of its names; empty for passthrough.
    pub prefix: String,
    /// Physical names are shown unchanged.
    pub passthrough: bool,
    /// Quotas.
    pub limits: TenantLimits,
    /// Logical topic → physical, from alias topics.
    aliases: HashMap<String, String>,
    /// Physical topic → logical, the inverse of `aliases` (one alias per target and vcluster).
    reverse: HashMap<String, String>,
    /// Concentration rules in name order, the first match wins.
    rules: Vec<(Regex, String)>,
    /// Every physical topic of `rules`.
    concentrated: HashSet<String>,
    /// Open connections; shared by every snapshot's `Tenant` of this vcluster.
    connections: Arc<AtomicUsize>,
}

/// Marks a shadowed logical name sent to the broker ([`Tenant::shadow_topic`]).
const SHADOW_MARK: char = '!';

impl Tenant {
    /// Logical topic → physical: alias target, else a concentration rule's physical topic,
    /// else prefix + name (passthrough: unchanged).
    ///
    /// See [`Tenant::is_shadowed`] for the logical names the request path should refuse.
    pub fn physical_topic<'a>(&'a self, logical: &'a str) -> Cow<'a, str> {
        if let Some(p) = self.aliases.get(logical) {
            return Cow::Borrowed(p);
        }
        if let Some(p) = self.concentrated(logical) {
            return Cow::Borrowed(p);
        }
        self.prefixed(logical)
    }

    /// Physical topic → logical; `None` when it is not this tenant's to see (another tenant's,
    /// un-prefixed, or shadowed by an alias or concentration rule of the logical name it would
    /// otherwise have). A concentrated physical topic holds many logical topics, so it gives
    /// `None` too: check [`Tenant::is_concentrated`].
    ///
    /// For every logical name `l` that is neither concentrated nor shadowed,
    /// `logical_topic(physical_topic(l)) == Some(l)`: the tenant never sees a topic under two
    /// names.
    pub fn logical_topic<'a>(&'a self, physical: &'a str) -> Option<Cow<'a, str>> {
        if self.concentrated.contains(physical) {
            return None;
        }
        if let Some(l) = self.reverse.get(physical) {
            return Some(Cow::Borrowed(l));
        }
        if let Some(shadowed) = self.shadowed_logical(physical) {
            return Some(Cow::Borrowed(shadowed));
        }
        let logical = self.unprefixed(physical)?;
        // A name an alias or a rule sends elsewhere is not reachable by its prefixed form.
        if self.aliases.contains_key(logical) || self.concentrated(logical).is_some() {
            return None;
        }
        Some(Cow::Borrowed(logical))
    }

    /// The physical topic of a concentrated logical topic (an alias takes precedence over
    /// concentration, so an aliased name is not concentrated).
    pub fn concentrated(&self, logical: &str) -> Option<&str> {
        if self.aliases.contains_key(logical) {
            return None;
        }
        self.rules
            .iter()
            .find(|(r, _)| r.is_match(logical))
            .map(|(_, p)| p.as_str())
    }

    /// Whether `physical` stores concentrated logical topics of this tenant.
    pub fn is_concentrated(&self, physical: &str) -> bool {
        self.concentrated.contains(physical)
    }

    /// Whether any concentration rule applies to this tenant (the request path skips
    /// concentrated-topic work otherwise).
    pub fn has_concentration(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Whether the logical name's plain mapping (prefix + name) lands on an alias target or a
    /// concentrated topic that this tenant reaches under another name: the request path
    /// should answer such a name as an unknown topic, or the tenant could write raw into a
    /// concentrated topic or see one topic under two names.
    pub fn is_shadowed(&self, logical: &str) -> bool {
        if self.aliases.contains_key(logical) || self.concentrated(logical).is_some() {
            return false;
        }
        let plain = self.prefixed(logical);
        self.reverse.contains_key(plain.as_ref()) || self.concentrated.contains(plain.as_ref())
    }

    /// The name a shadowed logical topic (see [`Tenant::is_shadowed`]) is sent to the broker
    /// under: the prefix, `!`, the logical name. No topic can have it (`!` is not allowed in
    /// topic names), so the broker answers it as invalid and never creates it, and the
    /// response maps back to the name the client used.
    pub fn shadow_topic(&self, logical: &str) -> String {
        format!("{}{SHADOW_MARK}{logical}", self.prefix)
    }

    /// The logical name inside a [`Tenant::shadow_topic`] name.
    pub fn shadowed_logical<'a>(&self, physical: &'a str) -> Option<&'a str> {
        if self.passthrough {
            return None;
        }
        physical
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(SHADOW_MARK)
            .filter(|l| !l.is_empty())
    }

    /// `text` (a broker's error message) in the tenant's terms: every name in it that is one
    /// of the tenant's physical topics, groups or transactional ids (prefixed, or an alias
    /// target) becomes its logical name; `None` when nothing changed. Names are maximal runs
    /// of the characters topic names allow (`A-Z a-z 0-9 . _ -`).
    pub fn scrub_text(&self, text: &str) -> Option<String> {
        if self.passthrough {
            return None;
        }
        let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut rest = text;
        while let Some(start) = rest.find(is_name) {
            out.push_str(&rest[..start]);
            let token_len = rest[start..]
                .find(|c: char| !is_name(c))
                .unwrap_or(rest.len() - start);
            let token = &rest[start..start + token_len];
            let after = &rest[start + token_len..];
            let logical = if let Some(l) = self.reverse.get(token) {
                Some(l.as_str())
            } else if token == self.prefix.as_str() && after.starts_with(SHADOW_MARK) {
                // A shadowed name: prefix, mark, logical name; drop the first two.
                rest = &after[SHADOW_MARK.len_utf8()..];
                changed = true;
                continue;
            } else {
                token
                    .strip_prefix(self.prefix.as_str())
                    .filter(|l| !l.is_empty())
            };
            match logical {
                Some(l) => {
                    out.push_str(l);
                    changed = true;
                }
                None => out.push_str(token),
            }
            rest = after;
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    /// Whether any logical name of this tenant can be shadowed (it has aliases or
    /// concentrated topics).
    pub fn may_shadow(&self) -> bool {
        !self.reverse.is_empty() || !self.concentrated.is_empty()
    }

    /// Whether the physical topic belongs to this tenant: inside its prefix, an alias target,
    /// or a concentrated topic. A passthrough tenant owns every topic.
    pub fn owns_topic(&self, physical: &str) -> bool {
        self.passthrough
            || physical.starts_with(&self.prefix)
            || self.reverse.contains_key(physical)
            || self.concentrated.contains(physical)
    }

    /// Logical consumer group id → physical.
    pub fn physical_group<'a>(&'a self, logical: &'a str) -> Cow<'a, str> {
        self.prefixed(logical)
    }

    /// Physical consumer group id → logical; `None` for another tenant's or an un-prefixed one.
    pub fn logical_group<'a>(&'a self, physical: &'a str) -> Option<Cow<'a, str>> {
        self.unprefixed(physical).map(Cow::Borrowed)
    }

    /// Logical transactional id → physical.
    pub fn physical_transactional_id<'a>(&'a self, logical: &'a str) -> Cow<'a, str> {
        self.prefixed(logical)
    }

    /// Physical transactional id → logical; `None` when it is not this tenant's.
    pub fn logical_transactional_id<'a>(&'a self, physical: &'a str) -> Option<Cow<'a, str>> {
        self.unprefixed(physical).map(Cow::Borrowed)
    }

    /// Takes a connection slot under `limits.maxConnections`; `None` when the tenant is at
    /// its limit. Hold the guard as long as the connection is open. Without a limit this
    /// always succeeds, and still counts, so a limit set later sees the connections open.
    pub fn try_connect(&self) -> Option<ConnectionGuard> {
        let limit = self.limits.max_connections.map(|m| m as usize);
        let mut current = self.connections.load(Ordering::Acquire);
        loop {
            if limit.is_some_and(|l| current >= l) {
                return None;
            }
            match self.connections.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(ConnectionGuard {
                        counter: self.connections.clone(),
                    })
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Connections open in this vcluster now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    fn prefixed<'a>(&'a self, logical: &'a str) -> Cow<'a, str> {
        if self.passthrough {
            Cow::Borrowed(logical)
        } else {
            Cow::Owned(format!("{}{logical}", self.prefix))
        }
    }

    fn unprefixed<'a>(&self, physical: &'a str) -> Option<&'a str> {
        if self.passthrough {
            return Some(physical);
        }
        physical
            .strip_prefix(self.prefix.as_str())
            .filter(|l| !l.is_empty())
    }
}

/// One immutable view of the tenancy resources, for the request path.
#[derive(Debug, Default)]
pub struct TenancySnapshot {
    generation: u64,
    tenants: HashMap<String, Arc<Tenant>>,
    /// Principal → the vcluster whose `serviceAccounts` lists it.
    principals: HashMap<String, Arc<Tenant>>,
    /// Lower-case SNI host → its vcluster.
    sni: HashMap<String, Arc<Tenant>>,
}

impl TenancySnapshot {
    fn build(inner: &mut Inner) -> TenancySnapshot {
        let mut tenants = HashMap::with_capacity(inner.vclusters.len());
        let mut principals = HashMap::new();
        let mut sni = HashMap::new();
        // A counter outlives snapshot rebuilds; one of a deleted vcluster lives on only in
        // the guards of its connections.
        inner
            .counters
            .retain(|name, _| inner.vclusters.contains_key(name));
        for (name, spec) in &inner.vclusters {
            let aliases: HashMap<String, String> = inner
                .aliases
                .values()
                .filter(|a| &a.vcluster == name)
                .map(|a| (a.logical_topic.clone(), a.physical_topic.clone()))
                .collect();
            let reverse = aliases
                .iter()
                .map(|(l, p)| (p.clone(), l.clone()))
                .collect();
            let rules: Vec<(Regex, String)> = inner
                .rules
                .values()
                .filter(|(r, _)| &r.vcluster == name)
                .map(|(r, re)| (re.clone(), r.physical_topic.clone()))
                .collect();
            let concentrated = rules.iter().map(|(_, p)| p.clone()).collect();
            let connections = inner.counters.entry(name.clone()).or_default().clone();
            let tenant = Arc::new(Tenant {
                name: name.clone(),
                prefix: spec.effective_prefix().to_string(),
                passthrough: spec.passthrough,
                limits: spec.limits,
                aliases,
                reverse,
                rules,
                concentrated,
                connections,
            });
            for p in &spec.service_accounts {
                principals.insert(p.clone(), tenant.clone());
            }
            for h in &spec.sni_hosts {
                sni.insert(h.clone(), tenant.clone());
            }
            tenants.insert(name.clone(), tenant);
        }
        TenancySnapshot {
            generation: inner.generation,
            tenants,
            principals,
            sni,
        }
    }

    /// Changes with every change of the resources.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The vcluster a principal lands in: the one whose `serviceAccounts` lists it, else the
    /// one its service account names (`account_vcluster`, from the security snapshot).
    ///
    /// `None` with `account_vcluster` given means the account names a vcluster that does not
    /// exist: fail closed rather than show that principal the physical cluster.
    pub fn for_principal(
        &self,
        principal: &str,
        account_vcluster: Option<&str>,
    ) -> Option<Arc<Tenant>> {
        if let Some(t) = self.principals.get(principal) {
            return Some(t.clone());
        }
        self.get(account_vcluster?)
    }

    /// The vcluster a TLS SNI host name lands in (case-insensitive, trailing dot ignored).
    pub fn for_sni(&self, host: &str) -> Option<Arc<Tenant>> {
        self.sni.get(normalize_host(host).as_ref()).cloned()
    }

    /// The vcluster named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(name).cloned()
    }

    /// No vclusters at all: the request path can skip every tenant step.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Every vcluster, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }
}

/// The stored resources, the source of every snapshot.
#[derive(Default)]
struct Inner {
    vclusters: BTreeMap<String, VirtualClusterSpec>,
    aliases: BTreeMap<String, AliasTopicSpec>,
    /// With the compiled, anchored pattern.
    rules: BTreeMap<String, (ConcentrationRuleSpec, Regex)>,
    /// Open-connection counters by vcluster name.
    counters: HashMap<String, Arc<AtomicUsize>>,
    generation: u64,
}

impl Inner {
    /// Why storing vcluster `name` as `spec` would break isolation, one line per conflict.
    fn vcluster_conflicts(&self, name: &str, spec: &VirtualClusterSpec) -> Vec<String> {
        let mut out = Vec::new();
        for (other, o) in self.vclusters.iter().filter(|(n, _)| *n != name) {
            for (i, p) in spec.service_accounts.iter().enumerate() {
                if o.service_accounts.contains(p) {
                    out.push(format!(
                        "serviceAccounts[{i}]: `{p}` already belongs to virtual cluster `{other}`"
                    ));
                }
            }
            for (i, h) in spec.sni_hosts.iter().enumerate() {
                if o.sni_hosts.contains(h) {
                    out.push(format!(
                        "sniHosts[{i}]: `{h}` already belongs to virtual cluster `{other}`"
                    ));
                }
            }
            if let (Some(mine), Some(theirs)) = (spec.private_prefix(), o.private_prefix()) {
                if mine.starts_with(theirs) || theirs.starts_with(mine) {
                    out.push(format!(
                        "prefix: `{mine}` overlaps the prefix `{theirs}` of virtual cluster `{other}` \
                         (one is a prefix of the other: each could see the other's topics)"
                    ));
                }
            }
        }
        if let Some(mine) = spec.private_prefix() {
            for (alias, a) in &self.aliases {
                if a.vcluster != name && a.physical_topic.starts_with(mine) {
                    out.push(format!(
                        "prefix: alias topic `{alias}` of virtual cluster `{}` points at `{}`, inside this prefix",
                        a.vcluster, a.physical_topic
                    ));
                }
            }
            for (rule, (r, _)) in &self.rules {
                if r.vcluster != name && r.physical_topic.starts_with(mine) {
                    out.push(format!(
                        "prefix: concentration rule `{rule}` of virtual cluster `{}` stores into `{}`, inside this prefix",
                        r.vcluster, r.physical_topic
                    ));
                }
            }
        }
        out
    }

    /// A physical target of vcluster `owner` inside another vcluster's private prefix.
    fn foreign_prefix(&self, owner: &str, physical: &str) -> Option<String> {
        self.vclusters
            .iter()
            .filter(|(n, _)| *n != owner)
            .find_map(|(n, v)| {
                let p = v.private_prefix()?;
                physical.starts_with(p).then(|| {
                    format!(
                        "physicalTopic: `{physical}` lies inside the prefix `{p}` of virtual cluster `{n}`"
                    )
                })
            })
    }

    /// Why storing alias `name` as `spec` would break the mapping or isolation.
    fn alias_conflicts(&self, name: &str, spec: &AliasTopicSpec) -> Vec<String> {
        let mut out = Vec::new();
        for (other, a) in self.aliases.iter().filter(|(n, _)| *n != name) {
            if a.vcluster != spec.vcluster {
                continue;
            }
            if a.logical_topic == spec.logical_topic {
                out.push(format!(
                    "logicalTopic: `{}` of virtual cluster `{}` is already alias topic `{other}`",
                    spec.logical_topic, spec.vcluster
                ));
            }
            if a.physical_topic == spec.physical_topic {
                out.push(format!(
                    "physicalTopic: `{}` is already the target of alias topic `{other}` in virtual cluster `{}` \
                     (a physical topic has one logical name per virtual cluster)",
                    spec.physical_topic, spec.vcluster
                ));
            }
        }
        for (rule, (r, _)) in &self.rules {
            if r.physical_topic == spec.physical_topic {
                out.push(format!(
                    "physicalTopic: `{}` is the concentrated topic of concentration rule `{rule}`",
                    spec.physical_topic
                ));
            }
        }
        out.extend(self.foreign_prefix(&spec.vcluster, &spec.physical_topic));
        out
    }

    /// Why storing rule `name` as `spec` would break the mapping or isolation.
    fn rule_conflicts(&self, name: &str, spec: &ConcentrationRuleSpec) -> Vec<String> {
        let mut out = Vec::new();
        for (alias, a) in &self.aliases {
            if a.physical_topic == spec.physical_topic {
                out.push(format!(
                    "physicalTopic: `{}` is the target of alias topic `{alias}`",
                    spec.physical_topic
                ));
            }
        }
        for (other, (r, _)) in self.rules.iter().filter(|(n, _)| *n != name) {
            if r.vcluster != spec.vcluster && r.physical_topic == spec.physical_topic {
                out.push(format!(
                    "physicalTopic: `{}` already concentrates topics of virtual cluster `{}` (concentration rule `{other}`)",
                    spec.physical_topic, r.vcluster
                ));
            }
        }
        out.extend(self.foreign_prefix(&spec.vcluster, &spec.physical_topic));
        out
    }

    /// The alias topics and concentration rules that use vcluster `name`.
    fn references(&self, name: &str) -> Vec<String> {
        let aliases = self
            .aliases
            .iter()
            .filter(|(_, a)| a.vcluster == name)
            .map(|(n, _)| format!("alias topic `{n}` uses it"));
        let rules = self
            .rules
            .iter()
            .filter(|(_, (r, _))| r.vcluster == name)
            .map(|(n, _)| format!("concentration rule `{n}` uses it"));
        aliases.chain(rules).collect()
    }
}

/// Virtual clusters, alias topics and concentration rules, persisted in the state store; the
/// source of the live [`TenancySnapshot`].
pub struct VirtualClusterStore {
    store: Arc<dyn StateStore>,
    inner: Mutex<Inner>,
    current: ArcSwap<TenancySnapshot>,
}

fn conflict(kind: &str, details: Vec<String>) -> Result<(), ApiError> {
    if details.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            409,
            format!("{kind} conflicts with existing resources"),
            details,
        ))
    }
}

/// The vcluster a spec refers to must exist (a 400: the spec itself is wrong).
fn missing_vcluster(inner: &Inner, vcluster: &str) -> Option<String> {
    (!inner.vclusters.contains_key(vcluster))
        .then(|| format!("vcluster: no virtual cluster named `{vcluster}`"))
}

impl VirtualClusterStore {
    /// A store over `store`; call [`VirtualClusterStore::restore`] to load what it holds.
    pub fn new(store: Arc<dyn StateStore>) -> VirtualClusterStore {
        VirtualClusterStore {
            store,
            inner: Mutex::new(Inner::default()),
            current: ArcSwap::from_pointee(TenancySnapshot::default()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<TenancySnapshot> {
        self.current.load_full()
    }

    /// The current snapshot without touching its reference count: for per-request lookups.
    pub fn current(&self) -> Guard<Arc<TenancySnapshot>> {
        self.current.load()
    }

    /// Loads every stored resource (blocking). A document that does not parse, validate or
    /// fit with the others is an error: a tenant silently missing its prefix would show it
    /// the whole cluster, which is worse than not starting.
    pub fn restore(&self) -> anyhow::Result<()> {
        use anyhow::anyhow;
        let mut inner = self.lock();
        for (name, doc) in self.store.list_docs(VCLUSTERS)? {
            let spec: VirtualClusterSpec =
                serde_json::from_value(doc).map_err(|e| anyhow!("virtual cluster {name}: {e}"))?;
            spec.validate()
                .map_err(|d| anyhow!("virtual cluster {name}: {}", d.join("; ")))?;
            let spec = spec.normalized(&name);
            let c = inner.vcluster_conflicts(&name, &spec);
            if !c.is_empty() {
                return Err(anyhow!("virtual cluster {name}: {}", c.join("; ")));
            }
            inner.vclusters.insert(name, spec);
        }
        for (name, doc) in self.store.list_docs(ALIASES)? {
            let spec: AliasTopicSpec =
                serde_json::from_value(doc).map_err(|e| anyhow!("alias topic {name}: {e}"))?;
            spec.validate()
                .map_err(|d| anyhow!("alias topic {name}: {}", d.join("; ")))?;
            let mut c: Vec<String> = missing_vcluster(&inner, &spec.vcluster)
                .into_iter()
                .collect();
            c.extend(inner.alias_conflicts(&name, &spec));
            if !c.is_empty() {
                return Err(anyhow!("alias topic {name}: {}", c.join("; ")));
            }
            inner.aliases.insert(name, spec);
        }
        for (name, doc) in self.store.list_docs(RULES)? {
            let spec: ConcentrationRuleSpec = serde_json::from_value(doc)
                .map_err(|e| anyhow!("concentration rule {name}: {e}"))?;
            let regex = spec
                .validate()
                .map_err(|d| anyhow!("concentration rule {name}: {}", d.join("; ")))?;
            let mut c: Vec<String> = missing_vcluster(&inner, &spec.vcluster)
                .into_iter()
                .collect();
            c.extend(inner.rule_conflicts(&name, &spec));
            if !c.is_empty() {
                return Err(anyhow!("concentration rule {name}: {}", c.join("; ")));
            }
            inner.rules.insert(name, (spec, regex));
        }
        info!(
            virtual_clusters = inner.vclusters.len(),
            alias_topics = inner.aliases.len(),
            concentration_rules = inner.rules.len(),
            "restored virtual clusters"
        );
        self.publish(&mut inner);
        Ok(())
    }

    fn publish(&self, inner: &mut Inner) {
        inner.generation += 1;
        self.current.store(Arc::new(TenancySnapshot::build(inner)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("virtual cluster store lock")
    }

    /// Creates or replaces a virtual cluster.
    pub fn put_virtual_cluster(
        &self,
        name: &str,
        spec: VirtualClusterSpec,
    ) -> Result<(Value, bool), ApiError> {
        invalid_name("virtual cluster", name)?;
        spec.validate()
            .map_err(|d| ApiError::new(400, "invalid virtual cluster spec", d))?;
        let spec = spec.normalized(name);
        let mut inner = self.lock();
        conflict("virtual cluster", inner.vcluster_conflicts(name, &spec))?;
        let view = with_name(name, &spec);
        self.store
            .put_doc(VCLUSTERS, name, &view["spec"])
            .map_err(internal)?;
        info!(
            kind = "virtual-cluster",
            name,
            prefix = spec.prefix.as_deref(),
            passthrough = spec.passthrough,
            "tenancy resource stored"
        );
        let created = inner.vclusters.insert(name.to_string(), spec).is_none();
        self.publish(&mut inner);
        Ok((view, created))
    }

    /// Every virtual cluster.
    pub fn list_virtual_clusters(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .vclusters
            .iter()
            .map(|(n, v)| with_name(n, v))
            .collect()
    }

    /// One virtual cluster.
    pub fn get_virtual_cluster(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .vclusters
            .get(name)
            .map(|v| with_name(name, v))
            .ok_or_else(|| not_found("virtual cluster", name))
    }

    /// Deletes a virtual cluster; 409 while alias topics or concentration rules use it.
    ///
    /// Service accounts naming it in their own `vcluster` are not checked (they live in the
    /// security store); such an account lands nowhere until the vcluster exists again.
    pub fn delete_virtual_cluster(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        if !inner.vclusters.contains_key(name) {
            return Err(not_found("virtual cluster", name));
        }
        let refs = inner.references(name);
        if !refs.is_empty() {
            return Err(ApiError::new(
                409,
                format!("virtual cluster `{name}` is in use"),
                refs,
            ));
        }
        self.remove(&mut inner, VCLUSTERS, name, |i| {
            i.vclusters.remove(name);
        })
    }

    /// Creates or replaces an alias topic.
    pub fn put_alias_topic(
        &self,
        name: &str,
        spec: AliasTopicSpec,
    ) -> Result<(Value, bool), ApiError> {
        invalid_name("alias topic", name)?;
        let mut problems = spec.validate().err().unwrap_or_default();
        let mut inner = self.lock();
        problems.extend(missing_vcluster(&inner, &spec.vcluster));
        if !problems.is_empty() {
            return Err(ApiError::new(400, "invalid alias topic spec", problems));
        }
        conflict("alias topic", inner.alias_conflicts(name, &spec))?;
        let view = with_name(name, &spec);
        self.store
            .put_doc(ALIASES, name, &view["spec"])
            .map_err(internal)?;
        info!(
            kind = "alias-topic",
            name,
            vcluster = %spec.vcluster,
            logical = %spec.logical_topic,
            physical = %spec.physical_topic,
            "tenancy resource stored"
        );
        let created = inner.aliases.insert(name.to_string(), spec).is_none();
        self.publish(&mut inner);
        Ok((view, created))
    }

    /// Every alias topic.
    pub fn list_alias_topics(&self) -> Vec<Value> {
        let inner = self.lock();
        inner.aliases.iter().map(|(n, a)| with_name(n, a)).collect()
    }

    /// One alias topic.
    pub fn get_alias_topic(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .aliases
            .get(name)
            .map(|a| with_name(name, a))
            .ok_or_else(|| not_found("alias topic", name))
    }

    /// Deletes an alias topic.
    pub fn delete_alias_topic(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        if !inner.aliases.contains_key(name) {
            return Err(not_found("alias topic", name));
        }
        self.remove(&mut inner, ALIASES, name, |i| {
            i.aliases.remove(name);
        })
    }

    /// Creates or replaces a concentration rule.
    pub fn put_concentration_rule(
        &self,
        name: &str,
        spec: ConcentrationRuleSpec,
    ) -> Result<(Value, bool), ApiError> {
        invalid_name("concentration rule", name)?;
        let (regex, mut problems) = match spec.validate() {
            Ok(r) => (Some(r), Vec::new()),
            Err(p) => (None, p),
        };
        let mut inner = self.lock();
        problems.extend(missing_vcluster(&inner, &spec.vcluster));
        let regex = match regex {
            Some(r) if problems.is_empty() => r,
            _ => {
                return Err(ApiError::new(
                    400,
                    "invalid concentration rule spec",
                    problems,
                ))
            }
        };
        conflict("concentration rule", inner.rule_conflicts(name, &spec))?;
        let view = with_name(name, &spec);
        self.store
            .put_doc(RULES, name, &view["spec"])
            .map_err(internal)?;
        info!(
            kind = "concentration-rule",
            name,
            vcluster = %spec.vcluster,
            pattern = %spec.logical_topic_pattern,
            physical = %spec.physical_topic,
            "tenancy resource stored"
        );
        let created = inner
            .rules
            .insert(name.to_string(), (spec, regex))
            .is_none();
        self.publish(&mut inner);
        Ok((view, created))
    }

    /// Every concentration rule.
    pub fn list_concentration_rules(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .rules
            .iter()
            .map(|(n, (r, _))| with_name(n, r))
            .collect()
    }

    /// One concentration rule.
    pub fn get_concentration_rule(&self, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .rules
            .get(name)
            .map(|(r, _)| with_name(name, r))
            .ok_or_else(|| not_found("concentration rule", name))
    }

    /// Deletes a concentration rule.
    pub fn delete_concentration_rule(&self, name: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        if !inner.rules.contains_key(name) {
            return Err(not_found("concentration rule", name));
        }
        self.remove(&mut inner, RULES, name, |i| {
            i.rules.remove(name);
        })
    }

    /// Deletes document `name` of `doc_kind`, then from memory, then publishes.
    fn remove(
        &self,
        inner: &mut Inner,
        doc_kind: &str,
        name: &str,
        remove: impl FnOnce(&mut Inner),
    ) -> Result<(), ApiError> {
        // The disk first: if that fails, memory still matches what a restart would load.
        self.store.delete_doc(doc_kind, name).map_err(internal)?;
        remove(inner);
        self.publish(inner);
        info!(
            kind = doc_kind.trim_end_matches('s'),
            name, "tenancy resource deleted"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileStore;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    fn temp_dir() -> PathBuf {
        crate::state::test_dir("vcluster")
    }

    fn open(dir: &Path) -> VirtualClusterStore {
        let store = VirtualClusterStore::new(Arc::new(FileStore::open(dir).unwrap()));
        store.restore().unwrap();
        store
    }

    fn vc(v: Value) -> VirtualClusterSpec {
        serde_json::from_value(v).unwrap()
    }

    fn alias(vcluster: &str, logical: &str, physical: &str) -> AliasTopicSpec {
        AliasTopicSpec {
            vcluster: vcluster.into(),
            logical_topic: logical.into(),
            physical_topic: physical.into(),
        }
    }

    fn rule(vcluster: &str, pattern: &str, physical: &str) -> ConcentrationRuleSpec {
        ConcentrationRuleSpec {
            vcluster: vcluster.into(),
            logical_topic_pattern: pattern.into(),
            physical_topic: physical.into(),
        }
    }

    /// A store with tenants `tenant-a` (default prefix, an alias, a rule), `tenant-b`
    /// (explicit prefix) and `ops` (passthrough with an alias).
    fn populated(dir: &Path) -> VirtualClusterStore {
        let store = open(dir);
        store
            .put_virtual_cluster("tenant-a", vc(json!({"serviceAccounts": ["alice"]})))
            .unwrap();
        store
            .put_virtual_cluster(
                "tenant-b",
                vc(json!({"prefix": "tb_", "sniHosts": ["B.Kafka.Example.com."]})),
            )
            .unwrap();
        store
            .put_virtual_cluster("ops", vc(json!({"passthrough": true})))
            .unwrap();
        store
            .put_alias_topic("a-orders", alias("tenant-a", "orders", "legacy.orders"))
            .unwrap();
        store
            .put_concentration_rule(
                "a-events",
                rule("tenant-a", "events-.*", "tenant-a.concentrated"),
            )
            .unwrap();
        store
            .put_alias_topic("ops-audit", alias("ops", "audit", "legacy.audit"))
            .unwrap();
        store
    }

    #[test]
    fn topic_mapping_both_ways() {
        let dir = temp_dir();
        let store = populated(&dir);
        let s = store.snapshot();
        let a = s.get("tenant-a").unwrap();
        assert_eq!(a.prefix, "tenant-a.");
        // Prefix.
        assert_eq!(a.physical_topic("payments"), "tenant-a.payments");
        assert_eq!(a.logical_topic("tenant-a.payments").unwrap(), "payments");
        // Alias, both ways; its prefixed form is shadowed.
        assert_eq!(a.physical_topic("orders"), "legacy.orders");
        assert_eq!(a.logical_topic("legacy.orders").unwrap(), "orders");
        assert_eq!(a.logical_topic("tenant-a.orders"), None);
        assert!(a.owns_topic("legacy.orders"));
        // Concentration: full match only; the physical topic hides its logical topics.
        assert_eq!(a.physical_topic("events-1"), "tenant-a.concentrated");
        assert_eq!(a.concentrated("events-1"), Some("tenant-a.concentrated"));
        assert_eq!(a.concentrated("my-events-1"), None);
        assert_eq!(a.physical_topic("my-events-1"), "tenant-a.my-events-1");
        assert_eq!(a.concentrated("orders"), None, "an alias wins");
        assert!(a.is_concentrated("tenant-a.concentrated"));
        assert!(!a.is_concentrated("tenant-a.payments"));
        assert_eq!(a.logical_topic("tenant-a.concentrated"), None);
        assert_eq!(a.logical_topic("tenant-a.events-1"), None);
        assert!(a.owns_topic("tenant-a.concentrated"));
        // A plain name landing on the concentrated topic is refused, others are not.
        assert!(a.is_shadowed("concentrated"));
        assert!(!a.is_shadowed("payments") && !a.is_shadowed("orders"));
        assert!(!a.is_shadowed("events-1"));
        // A shadowed name travels as a name no topic can have and comes back as itself.
        let shadow = a.shadow_topic("concentrated");
        assert_eq!(shadow, "tenant-a.!concentrated");
        assert_eq!(a.logical_topic(&shadow).unwrap(), "concentrated");
        assert_eq!(a.shadowed_logical("tenant-a.payments"), None);
        assert!(a.may_shadow());
        // Broker messages in the tenant's terms.
        assert_eq!(
            a.scrub_text("Topic tenant-a.payments has 3 partitions, not 4.")
                .unwrap(),
            "Topic payments has 3 partitions, not 4."
        );
        assert_eq!(
            a.scrub_text("legacy.orders: not enough replicas").unwrap(),
            "orders: not enough replicas"
        );
        assert_eq!(
            a.scrub_text("'tenant-a.!concentrated' is not a valid name")
                .unwrap(),
            "'concentrated' is not a valid name"
        );
        assert_eq!(a.scrub_text("Request timed out"), None);
        assert_eq!(a.scrub_text("xtenant-a.payments"), None, "whole names only");
        // Other tenants' and un-prefixed names are not this tenant's.
        for foreign in [
            "tb_orders",
            "other",
            "legacy.audit",
            "tenant-a.",
            "tenant-a",
        ] {
            assert_eq!(a.logical_topic(foreign), None, "{foreign}");
        }
        assert!(!a.owns_topic("tb_orders") && !a.owns_topic("legacy.audit"));
        // Groups and transactional ids use the prefix only.
        assert_eq!(a.physical_group("orders"), "tenant-a.orders");
        assert_eq!(a.logical_group("tenant-a.g1").unwrap(), "g1");
        assert_eq!(a.logical_group("tb_g1"), None);
        assert_eq!(a.physical_transactional_id("tx"), "tenant-a.tx");
        assert_eq!(a.logical_transactional_id("tenant-a.tx").unwrap(), "tx");
        assert_eq!(a.logical_transactional_id("tx"), None);
        // The round trip is the identity on every visible name.
        for l in ["payments", "orders", "x.y_z-1"] {
            assert_eq!(a.logical_topic(&a.physical_topic(l)).unwrap(), l);
        }

        let b = s.get("tenant-b").unwrap();
        assert_eq!(b.physical_topic("orders"), "tb_orders");
        assert_eq!(b.logical_topic("tb_orders").unwrap(), "orders");
        assert_eq!(b.logical_topic("tenant-a.payments"), None);
        assert_eq!(b.logical_topic("legacy.orders"), None);
        assert!(!b.owns_topic("tenant-a.concentrated"));

        // Passthrough: unchanged, borrowed, but aliases still apply.
        let ops = s.get("ops").unwrap();
        assert!(ops.passthrough && ops.prefix.is_empty());
        assert!(matches!(ops.physical_topic("t"), Cow::Borrowed("t")));
        assert_eq!(
            ops.logical_topic("tenant-a.payments").unwrap(),
            "tenant-a.payments"
        );
        assert_eq!(ops.physical_topic("audit"), "legacy.audit");
        assert_eq!(ops.logical_topic("legacy.audit").unwrap(), "audit");
        assert_eq!(ops.logical_topic("audit"), None, "shadowed by the alias");
        assert!(ops.is_shadowed("legacy.audit"));
        assert_eq!(ops.physical_group("g"), "g");
        assert_eq!(
            ops.logical_transactional_id("tenant-b.tx").unwrap(),
            "tenant-b.tx"
        );
        assert!(ops.owns_topic("anything"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn principal_and_sni_lookup() {
        let dir = temp_dir();
        let store = populated(&dir);
        let s = store.snapshot();
        assert!(!s.is_empty());
        assert_eq!(s.tenants().count(), 3);
        // Listed in serviceAccounts: that wins over the account's own vcluster.
        assert_eq!(s.for_principal("alice", None).unwrap().name, "tenant-a");
        assert_eq!(
            s.for_principal("alice", Some("tenant-b")).unwrap().name,
            "tenant-a"
        );
        // Else the ServiceAccount's vcluster.
        assert_eq!(
            s.for_principal("bob", Some("tenant-b")).unwrap().name,
            "tenant-b"
        );
        assert!(s.for_principal("bob", None).is_none());
        assert!(s.for_principal("bob", Some("ghost")).is_none());
        // SNI: case-insensitive, trailing dot ignored.
        for host in [
            "b.kafka.example.com",
            "B.KAFKA.example.com",
            "b.kafka.example.com.",
        ] {
            assert_eq!(s.for_sni(host).unwrap().name, "tenant-b", "{host}");
        }
        assert!(s.for_sni("a.kafka.example.com").is_none());
        assert_eq!(
            store.get_virtual_cluster("tenant-b").unwrap()["spec"]["sniHosts"],
            json!(["b.kafka.example.com"])
        );
        // With the security snapshot's answer, as the request path will do it.
        let security = crate::security::SecurityStore::new(Arc::new(
            FileStore::open(&dir.join("security")).unwrap(),
        ));
        security
            .put_service_account(
                "carol",
                serde_json::from_value(json!({"password": "pw", "vcluster": "ops"})).unwrap(),
            )
            .unwrap();
        let sec = security.snapshot();
        let t = s
            .for_principal("carol", sec.account_vcluster("carol"))
            .unwrap();
        assert!(t.passthrough);
        assert!(
            VirtualClusterStore::new(Arc::new(FileStore::open(&dir.join("empty")).unwrap()))
                .snapshot()
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn vcluster_validation_and_conflicts() {
        let dir = temp_dir();
        let store = populated(&dir);
        let err = store
            .put_virtual_cluster(
                "bad",
                vc(json!({"prefix": "has space/", "passthrough": true,
                    "serviceAccounts": ["x", "x", ""], "sniHosts": ["-bad.example", "ok.example", "OK.example."]})),
            )
            .unwrap_err();
        assert_eq!(err.status, 400);
        let text = err.details.join("\n");
        assert_eq!(err.details.len(), 5, "{text}");
        for part in [
            "prefix: not allowed with passthrough",
            "serviceAccounts[1]: `x` listed twice",
            "serviceAccounts[2]: must not be empty",
            "sniHosts[0]",
            "sniHosts[2]: `OK.example.` listed twice",
        ] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
        for (prefix, why) in [
            ("", "must not be empty"),
            ("a/b", "not a Kafka topic name prefix"),
            ("p".repeat(201).as_str(), "longer than 200"),
        ] {
            let err = store
                .put_virtual_cluster("bad", vc(json!({ "prefix": prefix })))
                .unwrap_err();
            assert_eq!(err.status, 400);
            assert!(err.details[0].contains(why), "{:?}", err.details);
        }
        assert_eq!(
            store
                .put_virtual_cluster("Bad", VirtualClusterSpec::default())
                .unwrap_err()
                .status,
            400
        );
        assert!(
            serde_json::from_value::<VirtualClusterSpec>(json!({"limits": {"maxTopic": 1}}))
                .is_err()
        );
        assert!(serde_json::from_value::<VirtualClusterSpec>(json!({"prefixx": "a"})).is_err());

        // 409s name the other vcluster, every conflict at once.
        let err = store
            .put_virtual_cluster(
                "tenant-c",
                vc(
                    json!({"prefix": "tenant-a.sub.", "serviceAccounts": ["bob", "alice"],
                    "sniHosts": ["b.kafka.example.com"]}),
                ),
            )
            .unwrap_err();
        assert_eq!(err.status, 409);
        let text = err.details.join("\n");
        assert_eq!(err.details.len(), 3, "{text}");
        for part in [
            "serviceAccounts[1]: `alice` already belongs to virtual cluster `tenant-a`",
            "sniHosts[0]: `b.kafka.example.com` already belongs to virtual cluster `tenant-b`",
            "prefix: `tenant-a.sub.` overlaps the prefix `tenant-a.` of virtual cluster `tenant-a`",
        ] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
        // A shorter prefix covering another is as bad as a longer one.
        let err = store
            .put_virtual_cluster("tenant", vc(json!({"prefix": "tenant"})))
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert!(err.details[0].contains("`tenant-a`"), "{:?}", err.details);
        // A prefix covering another tenant's alias target would expose it.
        let err = store
            .put_virtual_cluster("legacy", VirtualClusterSpec::default())
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert!(
            err.details
                .iter()
                .any(|d| d.contains("alias topic `a-orders`")),
            "{:?}",
            err.details
        );
        // Passthrough overlaps nothing; replacing a vcluster does not conflict with itself.
        store
            .put_virtual_cluster("ops2", vc(json!({"passthrough": true})))
            .unwrap();
        let (view, created) = store
            .put_virtual_cluster(
                "tenant-a",
                vc(json!({"serviceAccounts": ["alice", "dave"], "limits": {"maxConnections": 2}})),
            )
            .unwrap();
        assert!(!created);
        assert_eq!(
            view,
            json!({"name": "tenant-a", "spec": {"prefix": "tenant-a.", "passthrough": false,
                "serviceAccounts": ["alice", "dave"], "sniHosts": [],
                "limits": {"maxTopics": null, "maxPartitions": null, "maxConnections": 2}}})
        );
        // Nothing refused was stored.
        assert_eq!(store.list_virtual_clusters().len(), 4);
        assert_eq!(store.get_virtual_cluster("bad").unwrap_err().status, 404);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn alias_and_rule_validation_and_conflicts() {
        let dir = temp_dir();
        let store = populated(&dir);
        // 400: bad values and a missing vcluster, all reported.
        let err = store
            .put_alias_topic("bad", alias("ghost", "..", "a b"))
            .unwrap_err();
        assert_eq!(err.status, 400);
        let text = err.details.join("\n");
        assert_eq!(err.details.len(), 3, "{text}");
        for part in [
            "logicalTopic: `..`",
            "physicalTopic: `a b`",
            "vcluster: no virtual cluster named `ghost`",
        ] {
            assert!(text.contains(part), "{part} missing: {text}");
        }
        let err = store
            .put_concentration_rule("bad", rule("ghost", "events-(", ""))
            .unwrap_err();
        assert_eq!(err.status, 400);
        let text = err.details.join("\n");
        assert_eq!(err.details.len(), 3, "{text}");
        assert!(
            text.contains("logicalTopicPattern: not a valid regular expression"),
            "{text}"
        );
        assert!(text.contains("physicalTopic: must not be empty"), "{text}");
        assert!(text.contains("`ghost`"), "{text}");
        // 409: a logical name aliased twice, a physical topic with two logical names.
        let err = store
            .put_alias_topic("a-orders-2", alias("tenant-a", "orders", "legacy.orders2"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert!(
            err.details[0].contains("alias topic `a-orders`"),
            "{:?}",
            err.details
        );
        let err = store
            .put_alias_topic("a-orders-3", alias("tenant-a", "orders3", "legacy.orders"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        // Another vcluster may alias the same un-prefixed topic.
        store
            .put_alias_topic("b-orders", alias("tenant-b", "orders", "legacy.orders"))
            .unwrap();
        // Into another tenant's prefix, or onto a concentrated topic: refused.
        let err = store
            .put_alias_topic("b-steal", alias("tenant-b", "stolen", "tenant-a.payments"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert!(
            err.details[0].contains("inside the prefix `tenant-a.` of virtual cluster `tenant-a`"),
            "{:?}",
            err.details
        );
        let err = store
            .put_alias_topic("a-conc", alias("tenant-a", "raw", "tenant-a.concentrated"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert!(err.details[0].contains("concentration rule `a-events`"));
        let err = store
            .put_concentration_rule("b-conc", rule("tenant-b", "x.*", "tenant-a.concentrated"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        assert_eq!(err.details.len(), 2, "{:?}", err.details);
        let err = store
            .put_concentration_rule("b-conc", rule("tenant-b", "x.*", "legacy.orders"))
            .unwrap_err();
        assert_eq!(err.status, 409);
        // Two rules of one tenant may share a physical topic; the first by name wins.
        store
            .put_concentration_rule(
                "a-events2",
                rule("tenant-a", "events-1|logs", "tenant-a.concentrated"),
            )
            .unwrap();
        store
            .put_concentration_rule("a-0-logs", rule("tenant-a", "logs", "tenant-a.logs-all"))
            .unwrap();
        let a = store.snapshot().get("tenant-a").unwrap();
        assert_eq!(a.concentrated("logs"), Some("tenant-a.logs-all"));
        assert_eq!(a.concentrated("events-1"), Some("tenant-a.concentrated"));
        // Deleting a vcluster in use: 409 naming what uses it.
        let err = store.delete_virtual_cluster("tenant-a").unwrap_err();
        assert_eq!(err.status, 409);
        assert_eq!(err.details.len(), 4, "{:?}", err.details);
        assert!(err.details.join("\n").contains("alias topic `a-orders`"));
        store.delete_alias_topic("a-orders").unwrap();
        for r in ["a-events", "a-events2", "a-0-logs"] {
            store.delete_concentration_rule(r).unwrap();
        }
        assert_eq!(
            store
                .delete_concentration_rule("a-events")
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            store.delete_alias_topic("a-orders").unwrap_err().status,
            404
        );
        store.delete_virtual_cluster("tenant-a").unwrap();
        assert_eq!(
            store.delete_virtual_cluster("tenant-a").unwrap_err().status,
            404
        );
        assert!(store.snapshot().get("tenant-a").is_none());
        assert!(store.snapshot().for_principal("alice", None).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restore_after_reopen() {
        let dir = temp_dir();
        let generation = {
            let store = populated(&dir);
            store
                .put_virtual_cluster(
                    "tenant-b",
                    vc(json!({"prefix": "tb_", "limits": {"maxTopics": 10, "maxPartitions": 100}})),
                )
                .unwrap();
            store.delete_virtual_cluster("ops").unwrap_err();
            store.snapshot().generation()
        };
        assert!(generation > 1);
        let store = open(&dir);
        let s = store.snapshot();
        let a = s.get("tenant-a").unwrap();
        assert_eq!(a.physical_topic("orders"), "legacy.orders");
        assert_eq!(a.physical_topic("events-9"), "tenant-a.concentrated");
        assert_eq!(s.for_principal("alice", None).unwrap().name, "tenant-a");
        let b = s.get("tenant-b").unwrap();
        assert_eq!(
            b.limits,
            TenantLimits {
                max_topics: Some(10),
                max_partitions: Some(100),
                max_connections: None
            }
        );
        assert!(
            s.for_sni("b.kafka.example.com").is_none(),
            "replaced without hosts"
        );
        assert!(s.get("ops").unwrap().passthrough);
        assert_eq!(
            store.get_alias_topic("ops-audit").unwrap(),
            json!({"name": "ops-audit", "spec": {"vcluster": "ops", "logicalTopic": "audit",
                "physicalTopic": "legacy.audit"}})
        );
        assert_eq!(
            store.list_concentration_rules(),
            vec![json!({"name": "a-events", "spec": {"vcluster": "tenant-a",
                "logicalTopicPattern": "events-.*", "physicalTopic": "tenant-a.concentrated"}})]
        );
        assert_eq!(store.list_alias_topics().len(), 2);
        // Documents that do not fit together stop the start.
        std::fs::write(
            dir.join("alias-topics").join("dangling.json"),
            br#"{"vcluster": "ghost", "logicalTopic": "a", "physicalTopic": "b"}"#,
        )
        .unwrap();
        let broken = VirtualClusterStore::new(Arc::new(FileStore::open(&dir).unwrap()));
        let e = broken.restore().unwrap_err().to_string();
        assert!(
            e.contains("alias topic dangling") && e.contains("ghost"),
            "{e}"
        );
        std::fs::remove_file(dir.join("alias-topics").join("dangling.json")).unwrap();
        std::fs::write(
            dir.join("virtual-clusters").join("tenant-a2.json"),
            br#"{"prefix": "tenant-a.x"}"#,
        )
        .unwrap();
        let broken = VirtualClusterStore::new(Arc::new(FileStore::open(&dir).unwrap()));
        let e = broken.restore().unwrap_err().to_string();
        assert!(
            e.contains("virtual cluster tenant-a2") && e.contains("overlaps"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn connection_counter_survives_rebuilds() {
        let dir = temp_dir();
        let store = open(&dir);
        store
            .put_virtual_cluster("t", vc(json!({"limits": {"maxConnections": 2}})))
            .unwrap();
        let t = store.snapshot().get("t").unwrap();
        let g1 = t.try_connect().unwrap();
        let g2 = t.try_connect().unwrap();
        assert!(t.try_connect().is_none(), "at the limit");
        assert_eq!(t.open_connections(), 2);
        // A new snapshot (any change) sees the same count.
        store
            .put_virtual_cluster("t", vc(json!({"limits": {"maxConnections": 3}})))
            .unwrap();
        let t2 = store.snapshot().get("t").unwrap();
        assert_eq!(t2.open_connections(), 2);
        let g3 = t2.try_connect().unwrap();
        assert!(t2.try_connect().is_none());
        drop(g1);
        assert_eq!(t2.open_connections(), 2);
        assert_eq!(
            t.open_connections(),
            2,
            "the old snapshot shares the counter"
        );
        let g4 = t2.try_connect().unwrap();
        drop((g2, g3, g4));
        assert_eq!(t2.open_connections(), 0);
        // Without a limit, connections are still counted.
        store
            .put_virtual_cluster("t", VirtualClusterSpec::default())
            .unwrap();
        let t3 = store.snapshot().get("t").unwrap();
        let guards: Vec<_> = (0..5).map(|_| t3.try_connect().unwrap()).collect();
        assert_eq!(t3.open_connections(), 5);
        drop(guards);
        // A limit of 0 suspends the tenant.
        store
            .put_virtual_cluster("t", vc(json!({"limits": {"maxConnections": 0}})))
            .unwrap();
        assert!(store.snapshot().get("t").unwrap().try_connect().is_none());
        // Concurrent takers never exceed the limit.
        store
            .put_virtual_cluster("t", vc(json!({"limits": {"maxConnections": 8}})))
            .unwrap();
        let t4 = store.snapshot().get("t").unwrap();
        let taken: Vec<Vec<ConnectionGuard>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10).filter_map(|_| t4.try_connect()).collect()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(taken.iter().map(Vec::len).sum::<usize>(), 8);
        assert_eq!(t4.open_connections(), 8);
        drop(taken);
        assert_eq!(t4.open_connections(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

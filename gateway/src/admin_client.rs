//! The admin API client behind `sluice apply|get|delete|plugin push`.
//!
//! Kinds: plugins, interceptors, service accounts, groups, ACLs, virtual clusters, alias
//! topics and concentration rules, written as users like them (`ServiceAccount`,
//! `service-accounts`, `acl`, `VirtualCluster`, `vcluster`, ...).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// Talks to a gateway's admin API.
pub struct AdminClient {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// One resource document of a YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: Value,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
}

/// Maps a kind as users write it to its API collection.
fn collection(kind: &str) -> Result<&'static str> {
    Ok(match kind.to_ascii_lowercase().as_str() {
        "plugin" | "plugins" => "plugins",
        "interceptor" | "interceptors" => "interceptors",
        "serviceaccount" | "serviceaccounts" | "service-account" | "service-accounts" | "sa" => {
            "service-accounts"
        }
        "group" | "groups" => "groups",
        "acl" | "acls" => "acls",
        "virtualcluster" | "virtualclusters" | "virtual-cluster" | "virtual-clusters"
        | "vcluster" | "vclusters" => "virtual-clusters",
        "aliastopic" | "aliastopics" | "alias-topic" | "alias-topics" => "alias-topics",
        "concentrationrule"
        | "concentrationrules"
        | "concentration-rule"
        | "concentration-rules" => "concentration-rules",
        "kmskey" | "kmskeys" | "kms-key" | "kms-keys" => KMS_KEYS,
        other => bail!(
            "unknown kind `{other}` (known: plugin, interceptor, service-account, group, acl, \
             virtual-cluster, alias-topic, concentration-rule, kms-key)"
        ),
    })
}

/// The KMS key ids of plugin encryption: shown and deleted (crypto-shredding), never applied.
const KMS_KEYS: &str = "kms/keys";

/// The singular a collection's resources are printed with (`service-account/alice`).
fn singular(collection: &str) -> &str {
    if collection == KMS_KEYS {
        return "kms-key";
    }
    collection.strip_suffix('s').unwrap_or(collection)
}

/// Reads a bearer token from a file (one line; surrounding whitespace is ignored).
pub fn read_token_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8888`); `https://` bases are checked
    /// against the platform's trust store.
    #[cfg(test)]
    pub fn new(base: &str, token: Option<String>) -> AdminClient {
        Self::with_tls(base, token, None).expect("no CA file to read")
    }

    /// A client for `base` trusting, for `https://`, the CA certificates of the PEM file
    /// `ca_file` (or the platform's trust store when `None`).
    pub fn with_tls(
        base: &str,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<AdminClient> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
        let roots = match ca_file {
            Some(path) => {
                let certs = crate::pem::load_certs(path).context("--ca-file")?;
                RootCerts::Specific(std::sync::Arc::new(
                    certs
                        .iter()
                        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                        .collect(),
                ))
            }
            None if base.starts_with("https://") => RootCerts::Specific(std::sync::Arc::new(
                rustls_native_certs::load_native_certs()
                    .certs
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect(),
            )),
            None => RootCerts::Specific(std::sync::Arc::new(Vec::new())),
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(roots)
            // The gateway's own provider: no second cryptography library is linked.
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .build()
            .into();
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    fn finish(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, Value)> {
        let mut resp =
            resp.with_context(|| format!("{what}: cannot reach the admin API at {}", self.base))?;
        let status = resp.status().as_u16();
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .with_context(|| format!("{what}: reading the answer"))?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            let error = body["error"].as_str().unwrap_or("request failed");
            let details: Vec<String> = body["details"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let mut msg = format!("{what}: {error} (HTTP {status})");
            for d in details {
                msg.push_str(&format!("\n  - {d}"));
            }
            return Err(anyhow!(msg));
        }
        Ok((status, body))
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> Result<Value> {
        let what = format!("GET {path}");
        let req = self.auth(self.agent.get(&self.url(path)));
        self.finish(&what, req.call()).map(|(_, v)| v)
    }

    /// PUT JSON; returns whether the resource was created.
    pub fn put_json(&self, path: &str, body: &Value) -> Result<bool> {
        let what = format!("PUT {path}");
        let req = self
            .auth(self.agent.put(&self.url(path)))
            .content_type("application/json");
        let (status, _) = self.finish(&what, req.send(serde_json::to_vec(body)?.as_slice()))?;
        Ok(status == 201)
    }

    /// PUT raw bytes; returns the answer and whether it was created.
    pub fn put_wasm(&self, path: &str, bytes: &[u8]) -> Result<(Value, bool)> {
        let what = format!("PUT {path}");
        let req = self
            .auth(self.agent.put(&self.url(path)))
            .content_type("application/wasm");
        let (status, body) = self.finish(&what, req.send(bytes))?;
        Ok((body, status == 201))
    }

    /// DELETE a path.
    pub fn delete(&self, path: &str) -> Result<()> {
        let what = format!("DELETE {path}");
        let req = self.auth(self.agent.delete(&self.url(path)));
        self.finish(&what, req.call()).map(|_| ())
    }
}

fn verb(created: bool) -> &'static str {
    if created {
        "created"
    } else {
        "configured"
    }
}

/// `sluice apply -f FILE`.
pub fn apply(client: &AdminClient, file: &Path) -> Result<()> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(de)
            .with_context(|| format!("{}: document {}", file.display(), i + 1))?;
        if value.is_null() {
            continue; // an empty document between separators
        }
        let doc: Document = serde_json::from_value(value)
            .with_context(|| format!("{}: document {}", file.display(), i + 1))?;
        let c = collection(&doc.kind)
            .with_context(|| format!("{}: document {}", file.display(), i + 1))?;
        if c == KMS_KEYS {
            bail!(
                "{}: document {}: KMS keys are not applied: they are created on first use, \
                 rotated with POST /api/v1/kms/keys/ID/rotate and deleted with `sluice delete kms-key ID`",
                file.display(),
                i + 1
            );
        }
        docs.push(doc);
    }
    if docs.is_empty() {
        bail!("{}: no resources", file.display());
    }
    // Plugins first, so interceptors in the same file can use them; virtual clusters before
    // the alias topics and concentration rules that name them. Otherwise in file order.
    docs.sort_by_key(|d| match collection(&d.kind) {
        Ok("plugins") => 0,
        Ok("virtual-clusters") => 1,
        _ => 2,
    });
    for doc in docs {
        let name = &doc.metadata.name;
        match collection(&doc.kind)? {
            "plugins" => {
                let path = doc.spec["file"].as_str().ok_or_else(|| {
                    anyhow!("plugin {name}: spec.file (path of the .wasm) is required")
                })?;
                let path = base.join(path);
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("plugin {name}: reading {}", path.display()))?;
                let (_, created) = client.put_wasm(&format!("plugins/{name}"), &bytes)?;
                println!("plugin/{name} {}", verb(created));
            }
            c => {
                let created = client.put_json(&format!("{c}/{name}"), &doc.spec)?;
                println!("{}/{name} {}", singular(c), verb(created));
            }
        }
    }
    Ok(())
}

/// `sluice get KIND [NAME]`.
pub fn get(client: &AdminClient, kind: &str, name: Option<&str>) -> Result<()> {
    let c = collection(kind)?;
    let path = match name {
        Some(n) => format!("{c}/{n}"),
        None => c.to_string(),
    };
    let v = client.get(&path)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// `sluice delete KIND NAME`.
pub fn delete(client: &AdminClient, kind: &str, name: &str) -> Result<()> {
    let c = collection(kind)?;
    client.delete(&format!("{c}/{name}"))?;
    println!("{}/{name} deleted", singular(c));
    Ok(())
}

/// `sluice plugin push NAME FILE`.
pub fn push_plugin(client: &AdminClient, name: &str, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (info, created) = client.put_wasm(&format!("plugins/{name}"), &bytes)?;
    println!(
        "plugin/{name} {} (sha256 {}, hooks {})",
        verb(created),
        info["sha256"].as_str().unwrap_or("?"),
        info["hooks"]
    );
    Ok(())
}

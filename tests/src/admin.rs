//! Calls to the gateway's admin HTTP API: a minimal HTTP/1.1 client (no client crate, so
//! the requests are exactly what the tests say), plugin uploads and interceptor installs,
//! and the resource documents (service accounts, groups, ACLs, virtual clusters, aliases,
//! concentration rules, tenant accounts) put the way an operator would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal HTTP/1.1 exchange with the admin API: returns the status and the body parsed as
/// JSON (`Null` when empty, a string when not JSON).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("admin write");
    s.write_all(body).await.expect("admin write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .expect("admin API answered in time")
        .expect("admin read");
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().expect("status code");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = if let Some(chunked) = decode_chunked(&text, body) {
        chunked
    } else {
        body.to_string()
    };
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body))
    };
    (status, json)
}

fn decode_chunked(head: &str, body: &str) -> Option<String> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return None;
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(after.get(..n)?);
        rest = after.get(n + 2..)?;
    }
}

/// A plugin built by `make plugins`: `target/plugins/<name>.wasm` (or `target/test-plugins/`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target");
    for dir in ["plugins", "test-plugins"] {
        let p = root.join(dir).join(format!("{name}.wasm"));
        if let Ok(b) = std::fs::read(&p) {
            return b;
        }
    }
    panic!("plugin {name} not built: run `make plugins`");
}

/// Uploads a plugin built by `make plugins` under `name`; panics unless accepted.
pub async fn upload_plugin(admin: SocketAddr, name: &str, file: &str) -> serde_json::Value {
    let (status, body) = http(
        admin,
        "PUT",
        &format!("/api/v1/plugins/{name}"),
        &[("Content-Type", "application/wasm")],
        &plugin_bytes(file),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "upload {name}: {status} {body}"
    );
    body
}

/// Installs an interceptor; panics unless accepted.
pub async fn install(admin: SocketAddr, name: &str, spec: serde_json::Value) {
    let (status, body) = http(
        admin,
        "PUT",
        &format!("/api/v1/interceptors/{name}"),
        &[("Content-Type", "application/json")],
        spec.to_string().as_bytes(),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "install {name}: {status} {body}"
    );
}

/// A `PUT` of a JSON document to the admin API; panics unless it is accepted (200 or 201).
pub async fn admin_put(
    admin: SocketAddr,
    path: &str,
    doc: &serde_json::Value,
) -> serde_json::Value {
    let (status, body) = http(
        admin,
        "PUT",
        path,
        &[("Content-Type", "application/json")],
        doc.to_string().as_bytes(),
    )
    .await;
    // The body may echo the request on failure; never print a password it might hold.
    assert!(
        status == 200 || status == 201,
        "PUT {path}: {status} {}",
        redact(&body)
    );
    body
}

/// Replaces every `password` value in a JSON document, for assertion messages.
fn redact(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        serde_json::Value::String("***".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Creates or replaces a service account (`PUT /api/v1/service-accounts/{name}`).
pub async fn put_service_account(admin: SocketAddr, name: &str, password: &str, groups: &[&str]) {
    admin_put(
        admin,
        &format!("/api/v1/service-accounts/{name}"),
        &serde_json::json!({ "password": password, "groups": groups }),
    )
    .await;
}

/// Creates or replaces a group (`PUT /api/v1/groups/{name}`).
pub async fn put_group(admin: SocketAddr, name: &str, members: &[&str]) {
    admin_put(
        admin,
        &format!("/api/v1/groups/{name}"),
        &serde_json::json!({ "members": members }),
    )
    .await;
}

/// Creates or replaces an ACL (`PUT /api/v1/acls/{name}`), e.g.
/// `json!({"principal": "alice", "resourceType": "topic", "patternType": "literal",
/// "name": "orders", "operations": ["write", "describe"], "permission": "allow"})`.
pub async fn put_acl(admin: SocketAddr, name: &str, acl: serde_json::Value) {
    admin_put(admin, &format!("/api/v1/acls/{name}"), &acl).await;
}

/// Creates or replaces a virtual cluster (`PUT /api/v1/virtual-clusters/{name}`), e.g.
/// `json!({"prefix": "a.", "passthrough": false, "serviceAccounts": ["alice"],
/// "limits": {"maxConnections": 2}})`; returns the API's answer.
pub async fn put_vcluster(
    admin: SocketAddr,
    name: &str,
    spec: serde_json::Value,
) -> serde_json::Value {
    admin_put(admin, &format!("/api/v1/virtual-clusters/{name}"), &spec).await
}

/// Creates or replaces an alias topic (`PUT /api/v1/alias-topics/{name}`): in `vcluster`,
/// `logical` reads and writes the physical topic `physical`.
pub async fn put_alias(
    admin: SocketAddr,
    name: &str,
    vcluster: &str,
    logical: &str,
    physical: &str,
) -> serde_json::Value {
    admin_put(
        admin,
        &format!("/api/v1/alias-topics/{name}"),
        &serde_json::json!({
            "vcluster": vcluster, "logicalTopic": logical, "physicalTopic": physical
        }),
    )
    .await
}

/// Creates or replaces a concentration rule (`PUT /api/v1/concentration-rules/{name}`): in
/// `vcluster`, every logical topic matching the regular expression `pattern` is stored in the
/// physical topic `physical`.
pub async fn put_concentration_rule(
    admin: SocketAddr,
    name: &str,
    vcluster: &str,
    pattern: &str,
    physical: &str,
) -> serde_json::Value {
    admin_put(
        admin,
        &format!("/api/v1/concentration-rules/{name}"),
        &serde_json::json!({
            "vcluster": vcluster, "logicalTopicPattern": pattern, "physicalTopic": physical
        }),
    )
    .await
}

/// Creates or replaces a service account that belongs to virtual cluster `vcluster`.
pub async fn put_tenant_account(admin: SocketAddr, name: &str, password: &str, vcluster: &str) {
    admin_put(
        admin,
        &format!("/api/v1/service-accounts/{name}"),
        &serde_json::json!({ "password": password, "groups": [], "vcluster": vcluster }),
    )
    .await;
}

//! The `sluice` binary as an operator runs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway process killed when the test ends, passed or not: a failed assertion must not
/// leave a server running (and holding the test's output pipe open).
struct KillOnDrop(std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

#[test]
fn bad_config_reports_every_error_and_exits_nonzero() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "listen: not-an-address\nupstream:\n  bootstrap: [ok:9092, nope]\nlimits:\n  maxFrameBytes: 1\nbogus: 1\n",
    )
    .unwrap();
    let out = sluice()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Parse-time and validation-time problems are reported in one go, by key.
    for key in [
        "bogus: unknown key",
        "listen:",
        "upstream.bootstrap[1]:",
        "limits.maxFrameBytes:",
    ] {
        assert!(err.contains(key), "missing {key} in: {err}");
    }
    assert!(err.contains("4 errors"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_bootstrap_is_an_error() {
    let out = sluice().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream.bootstrap"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The first answer to `GET path` once the admin listener is up (30 s at most).
fn http_get_when_up(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = http_get(port, path) {
            return r;
        }
        assert!(Instant::now() < deadline, "admin listener never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_health_and_stops_on_sigterm() {
    let admin = free_port();
    let mut child = KillOnDrop(
        sluice()
            .args([
                "serve",
                "--bootstrap",
                "127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
            ])
            .args([
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--log-format",
                "json",
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let health = http_get_when_up(admin, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""status":"ok""#));
    // Nothing listens on port 1: not ready, with a reason.
    let ready = http_get(admin, "/ready").unwrap();
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    let started = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    // JSON logs on request.
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("shutdown complete")),
        "{logs}"
    );
}

fn plugin_path(name: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `make plugins`", p.display());
    p
}

/// The read-only token of the gateways [`serve_with_token`] starts.
const READ_TOKEN: &str = "cli-read-only-token-0123456789";

fn run(args: &[&str], admin: &str, token: Option<&str>) -> (i32, String, String) {
    let mut cmd = sluice();
    cmd.args(args)
        .env("SLUICE_ADMIN", admin)
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env_remove("SLUICE_ADMIN_TOKEN_FILE")
        .env_remove("SLUICE_ADMIN_CA_FILE");
    if let Some(t) = token {
        cmd.env("SLUICE_ADMIN_TOKEN", t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A gateway serving the admin API with `token` and the read-only [`READ_TOKEN`] (an
/// unreachable cluster behind it), its admin URL and its state directory, once `/health`
/// answers.
fn serve_with_token(label: &str, token: &str) -> (KillOnDrop, String, std::path::PathBuf) {
    let admin_port = free_port();
    let state = std::env::temp_dir().join(format!("{label}-{}", std::process::id()));
    let child = KillOnDrop(
        sluice()
            .args([
                "serve",
                "--bootstrap",
                "127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--admin", &format!("127.0.0.1:{admin_port}")])
            .arg("--state-dir")
            .arg(&state)
            .env("SLUICE_ADMIN_TOKEN", token)
            .env("SLUICE_ADMIN_READ_TOKEN", READ_TOKEN)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    http_get_when_up(admin_port, "/health");
    (child, format!("http://127.0.0.1:{admin_port}"), state)
}

#[test]
fn admin_cli_push_apply_get_delete() {
    let token = "cli-test-token-0123456789";
    let (child, admin, state) = serve_with_token("sluice-cli-state", token);
    let noop = plugin_path("noop");
    let noop = noop.to_str().unwrap();
    // Without the token, writes are refused with the API's reason.
    let (code, _, err) = run(&["plugin", "push", "noop", noop], &admin, None);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, out, err) = run(&["plugin", "push", "noop", noop], &admin, Some(token));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plugin/noop created"), "{out}");
    // apply: several documents, plugins first even when listed last.
    let dir = state.join("yaml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(plugin_path("add-header"), dir.join("add-header.wasm")).unwrap();
    let file = dir.join("gw.yaml");
    std::fs::write(
        &file,
        "kind: Interceptor\nmetadata: {name: tag}\nspec:\n  plugin: add-header\n  priority: 5\n  config: {headers: {a: b}}\n---\nkind: Plugin\nmetadata: {name: add-header}\nspec: {file: add-header.wasm}\n",
    )
    .unwrap();
    let (code, out, err) = run(
        &["apply", "-f", file.to_str().unwrap()],
        &admin,
        Some(token),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "plugin/add-header created\ninterceptor/tag created\n");
    let (code, out, _) = run(
        &["apply", "-f", file.to_str().unwrap()],
        &admin,
        Some(token),
    );
    assert_eq!(code, 0);
    assert!(out.contains("interceptor/tag configured"), "{out}");
    // Reads need a token too (interceptor configs may hold secrets); the read-only one will do.
    let (code, _, err) = run(&["get", "interceptors"], &admin, None);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, out, _) = run(&["get", "interceptors"], &admin, Some(READ_TOKEN));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["spec"]["priority"], 5);
    // The token may come from a file instead (no token in `ps` or the environment).
    let token_file = state.join("read-token");
    std::fs::write(&token_file, format!("{READ_TOKEN}\n")).unwrap();
    let (code, out, err) = run(
        &[
            "get",
            "plugin",
            "noop",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on-request"), "{out}");
    // The read-only token cannot write.
    let (code, _, err) = run(&["delete", "plugin", "noop"], &admin, Some(READ_TOKEN));
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 403") && err.contains("read-only"),
        "{err}"
    );
    let (code, out, _) = run(&["get", "plugin", "noop"], &admin, Some(token));
    assert_eq!(code, 0);
    assert!(out.contains("on-request"), "{out}");
    // A bad document is refused with the API's details.
    std::fs::write(
        &file,
        "kind: Interceptor\nmetadata: {name: bad}\nspec: {plugin: ghost}\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["apply", "-f", file.to_str().unwrap()],
        &admin,
        Some(token),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown plugin") && err.contains("ghost"),
        "{err}"
    );
    std::fs::write(&file, "kind: Widget\nmetadata: {name: w}\n").unwrap();
    let (code, _, err) = run(
        &["apply", "-f", file.to_str().unwrap()],
        &admin,
        Some(token),
    );
    assert_eq!(code, 1);
    assert!(err.contains("unknown kind"), "{err}");
    let (code, out, _) = run(&["delete", "interceptor", "tag"], &admin, Some(token));
    assert_eq!((code, out.as_str()), (0, "interceptor/tag deleted\n"));
    let (code, _, err) = run(&["delete", "interceptor", "tag"], &admin, Some(token));
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
    drop(child);
    let _ = std::fs::remove_dir_all(&state);
}

/// Every file under `dir`, concatenated.
fn read_tree(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&read_tree(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn apply_get_delete_security_resources() {
    let token = "cli-security-token-0123456789";
    let (child, admin, state) = serve_with_token("sluice-cli-sec", token);
    let password = "yaml-password-never-stored";
    let file = state.join("security.yaml");
    std::fs::write(
        &file,
        format!(
            "kind: ServiceAccount\nmetadata: {{name: alice}}\nspec:\n  password: {password}\n  groups: [ops]\n\
             ---\nkind: Group\nmetadata: {{name: auditors}}\nspec:\n  members: [alice, \"CN=app1,O=acme\"]\n\
             ---\nkind: Acl\nmetadata: {{name: ops-read}}\nspec:\n  group: ops\n  resourceType: topic\n  \
             patternType: prefixed\n  name: ops.\n  operations: [read, describe]\n"
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, _, err) = run(&["apply", "-f", path], &admin, None);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, out, err) = run(&["apply", "-f", path], &admin, Some(token));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "service-account/alice created\ngroup/auditors created\nacl/ops-read created\n"
    );
    let (code, out, _) = run(&["apply", "-f", path], &admin, Some(token));
    assert_eq!(code, 0);
    assert!(out.contains("service-account/alice configured"), "{out}");
    for (kind, name, expect) in [
        ("service-accounts", None, "SCRAM-SHA-512"),
        ("ServiceAccount", Some("alice"), "\"ops\""),
        ("groups", None, "CN=app1,O=acme"),
        ("acl", Some("ops-read"), "prefixed"),
    ] {
        let mut args = vec!["get", kind];
        args.extend(name);
        let (code, _, err) = run(&args, &admin, None);
        assert_eq!(
            code, 1,
            "{kind}: accounts and ACLs are not for anyone to read"
        );
        assert!(err.contains("HTTP 401"), "{err}");
        let (code, out, err) = run(&args, &admin, Some(READ_TOKEN));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(expect), "{kind}: {out}");
        assert!(
            !out.contains(password) && !out.contains("storedKey"),
            "{out}"
        );
    }
    // Only derived credentials reach the state directory, readable by the owner only.
    std::fs::remove_file(&file).unwrap();
    let stored = read_tree(&state);
    assert!(stored.contains("storedKey") && !stored.contains(password));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("service-accounts")), 0o700);
        assert_eq!(
            mode(&state.join("service-accounts").join("alice.json")),
            0o600
        );
    }
    delete_all(
        &admin,
        token,
        &[
            ("acl", "ops-read", "acl"),
            ("groups", "auditors", "group"),
            ("service-account", "alice", "service-account"),
        ],
    );
    assert_gone(&admin, "acl", "ops-read");
    drop(child);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn apply_get_delete_virtual_clusters() {
    let token = "cli-vcluster-token-0123456789";
    let (child, admin, state) = serve_with_token("sluice-cli-vc", token);
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("tenants.yaml");
    // The alias and the rule come first in the file: apply stores the vcluster before them.
    std::fs::write(
        &file,
        "kind: AliasTopic\nmetadata: {name: a-orders}\nspec:\n  vcluster: tenant-a\n  \
         logicalTopic: orders\n  physicalTopic: legacy.orders\n\
         ---\nkind: ConcentrationRule\nmetadata: {name: a-events}\nspec:\n  vcluster: tenant-a\n  \
         logicalTopicPattern: \"events-.*\"\n  physicalTopic: tenant-a.concentrated\n\
         ---\nkind: VirtualCluster\nmetadata: {name: tenant-a}\nspec:\n  serviceAccounts: [alice]\n  \
         sniHosts: [tenant-a.kafka.example.com]\n  limits: {maxConnections: 100}\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = run(&["apply", "-f", path], &admin, Some(token));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "virtual-cluster/tenant-a created\nalias-topic/a-orders created\nconcentration-rule/a-events created\n"
    );
    let (code, out, _) = run(&["apply", "-f", path], &admin, Some(token));
    assert_eq!(code, 0);
    assert!(out.contains("virtual-cluster/tenant-a configured"), "{out}");
    for (kind, name, expect) in [
        ("VirtualCluster", Some("tenant-a"), "\"tenant-a.\""),
        ("vclusters", None, "tenant-a.kafka.example.com"),
        ("alias-topics", None, "legacy.orders"),
        ("AliasTopic", Some("a-orders"), "\"orders\""),
        ("concentration-rule", Some("a-events"), "events-.*"),
        ("ConcentrationRules", None, "tenant-a.concentrated"),
    ] {
        let mut args = vec!["get", kind];
        args.extend(name);
        let (code, out, err) = run(&args, &admin, Some(READ_TOKEN));
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(out.contains(expect), "{kind}: {out}");
    }
    // A conflicting tenant is refused with the API's reason, naming the other vcluster.
    std::fs::write(
        &file,
        "kind: VirtualCluster\nmetadata: {name: tenant-b}\nspec:\n  serviceAccounts: [alice]\n",
    )
    .unwrap();
    let (code, _, err) = run(&["apply", "-f", path], &admin, Some(token));
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 409") && err.contains("virtual cluster `tenant-a`"),
        "{err}"
    );
    // In use: the vcluster cannot go before its alias and rule.
    let (code, _, err) = run(&["delete", "vcluster", "tenant-a"], &admin, Some(token));
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 409") && err.contains("a-orders"),
        "{err}"
    );
    delete_all(
        &admin,
        token,
        &[
            ("AliasTopic", "a-orders", "alias-topic"),
            ("concentration-rules", "a-events", "concentration-rule"),
            ("virtual-cluster", "tenant-a", "virtual-cluster"),
        ],
    );
    assert_gone(&admin, "vcluster", "tenant-a");
    drop(child);
    let _ = std::fs::remove_dir_all(&state);
}

/// `sluice delete` of each (kind, name), each answered "<label>/<name> deleted".
fn delete_all(admin: &str, token: &str, resources: &[(&str, &str, &str)]) {
    for (kind, name, label) in resources {
        let (code, out, err) = run(&["delete", kind, name], admin, Some(token));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("{label}/{name} deleted\n"));
    }
}

/// `sluice get` of a deleted resource fails with the API's 404.
fn assert_gone(admin: &str, kind: &str, name: &str) {
    let (code, _, err) = run(&["get", kind, name], admin, Some(READ_TOKEN));
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 404"), "{err}");
}

/// `sluice serve` with `args` after the common ones, the admin token and the admin token file
/// variables removed from its environment.
fn serve_cmd(args: &[&str]) -> Command {
    let mut cmd = sluice();
    cmd.args([
        "serve",
        "--bootstrap",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(args)
    .env_remove("SLUICE_ADMIN_TOKEN")
    .env_remove("SLUICE_ADMIN_TOKEN_FILE")
    .env_remove("SLUICE_ADMIN_READ_TOKEN")
    .env_remove("SLUICE_ADMIN_READ_TOKEN_FILE");
    cmd
}

#[test]
fn admin_beyond_loopback_without_a_token_refuses_to_start() {
    let state = std::env::temp_dir().join(format!("sluice-cli-open-{}", std::process::id()));
    let state_arg = state.to_str().unwrap();
    let out = serve_cmd(&["--admin", "0.0.0.0:0", "--state-dir", state_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin: `0.0.0.0:0` is reachable beyond this host but no admin token"),
        "{err}"
    );
    assert!(err.contains("--admin-allow-unauthenticated"), "{err}");

    // Explicitly allowed: it starts, and the API is open.
    let port = free_port();
    let admin = format!("0.0.0.0:{port}");
    let _child = KillOnDrop(
        serve_cmd(&[
            "--admin",
            &admin,
            "--state-dir",
            state_arg,
            "--admin-allow-unauthenticated",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let groups = http_get_when_up(port, "/api/v1/groups");
    assert!(groups.starts_with("HTTP/1.1 200"), "{groups}");
    drop(_child);

    // With a token from a file it starts, and reads need the token.
    let token_file = state.join("admin-token");
    std::fs::write(&token_file, "file-token-0123456789\n").unwrap();
    let port = free_port();
    let admin = format!("0.0.0.0:{port}");
    let _child = KillOnDrop(
        serve_cmd(&["--admin", &admin, "--state-dir", state_arg])
            .arg("--admin-token-file")
            .arg(&token_file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let groups = http_get_when_up(port, "/api/v1/groups");
    assert!(groups.starts_with("HTTP/1.1 401"), "{groups}");
    assert!(groups.contains("www-authenticate: Bearer"), "{groups}");
    let url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = run(
        &[
            "get",
            "groups",
            "--token-file",
            token_file.to_str().unwrap(),
        ],
        &url,
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("items"), "{out}");
    drop(_child);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn help_warns_that_token_flags_show_in_ps() {
    for cmd in [&["serve", "--help"][..], &["get", "--help"][..]] {
        let out = sluice().args(cmd).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("visible to every local user in `ps`"),
            "{help}"
        );
        assert!(help.contains("SLUICE_ADMIN_TOKEN"), "{help}");
    }
    let out = sluice().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--admin-token-file",
        "--admin-read-token",
        "--admin-allow-unauthenticated",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

#[test]
fn cli_talks_https_to_an_admin_listener_with_tls() {
    let dir = std::env::temp_dir().join(format!("sluice-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    std::fs::write(dir.join("admin.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("admin.key"), key.serialize_pem()).unwrap();
    let port = free_port();
    let config = dir.join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            "admin:\n  listen: 127.0.0.1:{port}\n  tls: {{certFile: {}, keyFile: {}}}\n",
            dir.join("admin.pem").display(),
            dir.join("admin.key").display()
        ),
    )
    .unwrap();
    let token = "cli-tls-token-0123456789";
    let _child = KillOnDrop(
        serve_cmd(&["--state-dir", dir.join("state").to_str().unwrap()])
            .arg("--config")
            .arg(&config)
            .env("SLUICE_ADMIN_TOKEN", token)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}");
    let ca = ca_file.to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = run(&["get", "groups", "--ca-file", ca], &url, Some(token));
        if code == 0 {
            assert!(out.contains("items"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "no HTTPS answer: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without the CA the server is not trusted; plain HTTP gets no answer.
    let (code, _, err) = run(&["get", "groups"], &url, Some(token));
    assert_eq!(code, 1, "{err}");
    let plain = http_get(port, "/health").unwrap_or_default();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    drop(_child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of a series in a Prometheus text page, 0 when absent.
fn series(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An ApiVersions request of a version no gateway knows (v99, correlation id 7): answered
/// by the gateway itself (KIP-511), without a broker.
fn too_new_api_versions() -> Vec<u8> {
    let mut body = vec![0, 18, 0, 99, 0, 0, 0, 7, 0, 4];
    body.extend_from_slice(b"test");
    body.extend_from_slice(&[0, 1, 1, 0]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Under an open-file limit far below `maxConnections` (256 soft, 300 hard, as on a
/// misconfigured host), 400 idle connections do not exhaust the descriptors: the gateway
/// raises the soft limit to the hard one, warns, refuses connections beyond what the
/// limit allows (keeping a reserve), `/health` keeps answering, and a new client is served
/// once the idle ones are gone.
#[test]
fn descriptor_limit_keeps_the_admin_listener_reachable() {
    let (admin, kafka) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("sluice-cli-nofile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.yaml");
    // The per-source limit is lifted: the descriptor budget is what is under test.
    std::fs::write(
        &file,
        "limits: {maxConnectionsPerSource: 100000, handshakeTimeoutMs: 120000}\n",
    )
    .unwrap();
    let script = format!(
        "ulimit -n 300 && ulimit -Sn 256 && exec {} serve --config {} --bootstrap 127.0.0.1:1 \
         --listen 127.0.0.1:{kafka} --admin 127.0.0.1:{admin} --state-dir {}",
        env!("CARGO_BIN_EXE_sluice"),
        file.display(),
        dir.join("state").display()
    );
    let mut child = KillOnDrop(
        Command::new("bash")
            .args(["-c", &script])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    http_get_when_up(admin, "/health");
    let rss_before = rss_kib(child.id());
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(("127.0.0.1", kafka)).unwrap());
    }
    // 300 descriptors: 64 + 6 kept back, 115 connections of two descriptors each.
    let refused = "sluice_connections_refused_total{reason=\"fd_limit\"}";
    let mut page = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while series(&page, refused) + series(&page, "sluice_connections_open") < 400 {
        assert!(Instant::now() < deadline, "accepts not settled: {page}");
        std::thread::sleep(Duration::from_millis(50));
        page = http_get(admin, "/metrics").expect("/metrics answers with 400 connections");
    }
    assert_eq!(series(&page, "sluice_connections_open"), 115, "{page}");
    assert_eq!(series(&page, refused), 285);
    assert_eq!(
        series(&page, "sluice_accept_errors_total{kind=\"fd_exhausted\"}"),
        0,
        "the gateway ran out of descriptors"
    );
    let grown = rss_kib(child.id()).saturating_sub(rss_before);
    eprintln!("resident memory per idle connection: {} KiB", grown / 115);
    let health = http_get(admin, "/health").expect("/health answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The idle connections go; a new client is served.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = http_get(admin, "/metrics").unwrap();
        if series(&page, "sluice_connections_open") == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "idle connections not closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = TcpStream::connect(("127.0.0.1", kafka)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&too_new_api_versions()).unwrap();
    let mut head = [0u8; 8];
    c.read_exact(&mut head).expect("a new client is answered");
    assert_eq!(&head[4..8], &[0, 0, 0, 7], "its correlation id");
    drop(c);
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("the open-file limit allows only 115 client connections"),
        "{logs}"
    );
    // 285 refusals, at most one budget of lines (and its summary) in the log.
    let refusals = logs.matches("connection limit reached").count();
    assert!(
        (1..=sluice::ratelimit::BURST as usize).contains(&refusals),
        "{refusals} refusal lines"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! The gateway under test, in process: its configuration for a bootstrap, its start, its
//! client-facing TLS, SASL and OAUTHBEARER settings, and its Prometheus metrics read back.

use anyhow::Result;

use crate::{jwt, pki, temp_dir};

/// A gateway configuration for tests: free ports everywhere, fronting `bootstrap`.
pub fn gateway_config(bootstrap: &str) -> sluice::config::Config {
    let mut c = sluice::config::Config {
        listen: "127.0.0.1:0".into(),
        admin: "127.0.0.1:0".into(),
        ..Default::default()
    };
    c.upstream.bootstrap = vec![bootstrap.to_string()];
    c.upstream.connect_timeout_ms = 2_000;
    c.upstream.request_timeout_ms = 5_000;
    c.shutdown.drain_timeout_ms = 2_000;
    c.state_dir = temp_dir("state");
    c
}

/// Starts a gateway in front of `bootstrap` and waits until it has learnt the brokers.
pub async fn start_gateway(bootstrap: &str) -> Result<sluice::Gateway> {
    start_gateway_with(gateway_config(bootstrap)).await
}

/// Starts a gateway with a given configuration and waits until it has learnt the brokers.
pub async fn start_gateway_with(config: sluice::config::Config) -> Result<sluice::Gateway> {
    let gw = sluice::Gateway::start(config).await?;
    gw.refresh_brokers().await?;
    Ok(gw)
}

/// The value of one Prometheus series (`name{labels}` exactly as rendered), 0 when absent.
pub fn metric(gw: &sluice::Gateway, series: &str) -> u64 {
    gw.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

// ---------------------------------------------------------------------------------------------
// Security: listener and client settings, admin resources, clients that record their errors.
// ---------------------------------------------------------------------------------------------

/// The gateway's TLS identity from the test PKI ([`pki::pki`]), with a client-certificate
/// policy; `principal_mapping_rules` as Kafka's `ssl.principal.mapping.rules`.
pub fn server_tls(
    client_auth: sluice::config::ClientAuth,
    principal_mapping_rules: Option<&str>,
) -> sluice::config::ServerTls {
    let pki = pki::pki();
    sluice::config::ServerTls {
        cert_file: pki.server.cert_file.clone(),
        key_file: pki.server.key_file.clone(),
        client_auth,
        client_ca_file: (client_auth != sluice::config::ClientAuth::None)
            .then(|| pki.ca_file.clone()),
        principal_mapping_rules: principal_mapping_rules.map(str::to_string),
    }
}

/// SASL on the listener: these mechanisms, in this mode, with a short failed-auth delay so
/// that wrong-password tests stay quick (the delay itself is still exercised).
pub fn server_sasl(
    mechanisms: &[&str],
    mode: sluice::config::SaslMode,
) -> sluice::config::SaslServerConfig {
    sluice::config::SaslServerConfig {
        mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
        mode,
        failed_auth_delay_ms: 50,
        max_reauth_ms: 0,
        oauthbearer: None,
    }
}

/// OAUTHBEARER validation against `idp`'s JWKS, with its issuer and audience.
pub fn server_oauth(idp: &jwt::JwtIssuer) -> sluice::config::OauthConfig {
    sluice::config::OauthConfig {
        jwks_file: None,
        jwks: Some(idp.jwks_json()),
        jwks_url: None,
        jwks_ca_file: None,
        jwks_refresh_ms: 300_000,
        issuer: Some(jwt::ISSUER.to_string()),
        audiences: vec![jwt::AUDIENCE.to_string()],
        principal_claim: "sub".into(),
        groups_claim: None,
        leeway_secs: 5,
    }
}

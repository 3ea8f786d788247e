//! Sluice: a Kafka gateway.
//!
//! Sluice speaks the Kafka wire protocol and sits between Kafka clients and any Kafka
//! cluster. Clients change nothing but their bootstrap servers.
//!
//! # Map
//!
//! The wire layer is its own crate, `sluice-protocol` (re-exported here as [`frame`],
//! [`schema`], [`message`] and [`records`]). This crate is the gateway built on it:
//!
//! - the process: `server` (listeners, discovery, shutdown), `shared` (what every connection
//!   shares: stores, metrics, the broker registry), [`config`], [`cli`], `admin` and `openapi`
//!   (the admin HTTP API), `admin_client` (the CLI's client of that API), `metrics`, [`ratelimit`]
//!   (log budgets), `admission` (who may connect);
//! - a connection: `session` (its request side and response side, and the declared pipeline of
//!   stages in `session::pipeline`), [`upstream`] (broker connections and the gateway's own
//!   Kafka client), [`advertise`] (what the gateway advertises: its broker addresses in responses, its
//!   ApiVersions);
//! - security: `tls` and `pem`, [`auth`] (SASL, SCRAM, PLAIN, OAUTHBEARER, mTLS principals),
//!   [`security`] (service accounts, groups, ACLs and their store), [`acl`] (ACL matching),
//!   [`authorize`] (per-API enforcement), [`acl_api`] (Kafka's ACL APIs answered here);
//! - tenancy: [`vcluster`] (virtual clusters and their store), [`tenancy`] (names mapped both
//!   ways), `concentrate` (concentrated topics);
//! - plugins: [`registry`] (plugins, interceptors, scopes, the chain), [`intercept`]
//!   (running the chain on a request and its response), `wasm` (the wasmtime host);
//! - [`state`]: the state store.
//!
//! To embed a gateway (tests do):
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let mut config = sluice::config::Config::default();
//! config.upstream.bootstrap = vec!["127.0.0.1:9092".into()];
//! let gateway = sluice::Gateway::start(config).await?;
//! println!("bootstrap: {}", gateway.kafka_addr());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod acl_api;
mod admin;
mod admin_client;
pub(crate) mod admission;
pub mod advertise;
pub mod auth;
pub mod authorize;
pub mod cli;
pub(crate) mod concentrate;
pub mod config;
pub mod identity;
pub mod intercept;
pub(crate) mod metrics;
mod openapi;
pub(crate) mod pem;
pub mod ratelimit;
pub mod registry;
pub mod security;
mod server;
mod session;
mod shared;
pub mod state;
pub mod tenancy;
pub(crate) mod tls;
pub mod upstream;
pub mod vcluster;
pub(crate) mod wasm;

pub use server::Gateway;

// The wire layer lives in its own crate; these keep `crate::frame`, `sluice::schema` etc. as
// paths for the stages and the tests.
pub use sluice_protocol::{frame, message, records, schema};

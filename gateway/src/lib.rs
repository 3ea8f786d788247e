//! Sluice: a Kafka gateway.
//!
//! Sluice speaks the Kafka wire protocol and sits between Kafka clients and any Kafka
//! cluster. Clients change nothing but their bootstrap servers.
//!
//! # Request path
//!
//! ```text
//! client ──TCP──▶ listener ──▶ session ── request side ──▶ upstream broker
//! client ◀── rewrite broker addresses ◀── response side ◀──┘
//! ```
//!
//! - [`frame`]: length-prefixed framing and the cheap header peek run on every frame.
//! - [`session`](crate::session): one client connection, its upstream connection, pipelining
//!   and backpressure.
//! - [`rewrite`]: the responses that name brokers, rewritten to name the gateway, and the
//!   ApiVersions intersection.
//! - [`server`]: listeners (port per broker), the broker registry, graceful shutdown.
//! - [`admin`](crate::admin): health, readiness and metrics over HTTP.
//! - [`config`]: the YAML configuration and its validation.
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
pub mod admission;
pub mod auth;
pub mod authorize;
pub mod cli;
mod client;
pub mod concentrate;
pub mod config;
pub mod intercept;
pub mod interceptors;
pub mod metrics;
mod openapi;
pub mod pem;
pub mod ratelimit;
pub mod rewrite;
pub mod security;
mod server;
mod session;
mod shared;
pub mod state;
pub mod tenancy;
pub mod tls;
pub mod upstream;
pub mod vcluster;
pub mod wasm;

pub use server::Gateway;

// The wire layer lives in its own crate; these keep `crate::frame`, `sluice::schema` etc. as
// paths for the stages and the tests.
pub use sluice_protocol::{frame, message, records, schema};

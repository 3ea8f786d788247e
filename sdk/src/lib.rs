//! `sluice-sdk`: the Rust SDK for Sluice interceptor plugins.
//!
//! Interceptors are WebAssembly components implementing the `sluice:interceptor@0.1.0` world
//! (see `wit/`). This crate will wrap the generated bindings with a trait whose hooks default
//! to no-ops, an export macro, typed access to Kafka messages and a native test harness. It is
//! empty until the interceptor runtime lands.

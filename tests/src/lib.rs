//! Test harness: a real tansu broker as a child process, an in-process gateway, librdkafka
//! clients (the `rdkafka` crate) and raw kafka-protocol connections.
//!
//! Everything binds to 127.0.0.1 on free ports and is cleaned up on drop: the broker process is
//! killed, the gateway shut down. The harness is split by concern; every module's items are
//! re-exported here, so a test needs only `use sluice_tests::*;`.
//!
//! | Module | What |
//! |---|---|
//! | [`broker`] | the tansu broker |
//! | [`gateway`] | the gateway under test: config, start, client security, metrics |
//! | [`admin`] | admin HTTP API calls: plugins, interceptors, resources |
//! | [`rdkafka_clients`] | librdkafka clients and their security settings |
//! | [`raw`] | raw kafka-protocol connections |
//! | [`script_clients`] | kafkajs and kafka-python run as child processes |
//! | [`logs`] | the in-memory log capture |
//! | [`waits`] | waiting for conditions |
//! | [`local`] | free ports, scratch directories, a test alone in its own process |
//! | [`mock`] | a kafka-protocol mock broker with fault injection |
//! | [`pki`], [`jwt`] | test certificates and JWT issuers |
//! | [`fuzz`] | the bounded fuzz driver |
//! | [`isolation`] | a misbehaving plugin in one scope, measured from outside it |
//! | [`moto`] | `moto_server`, a local AWS KMS |

pub mod admin;
pub mod broker;
pub mod fuzz;
pub mod gateway;
pub mod isolation;
pub mod jwt;
pub mod local;
pub mod logs;
pub mod mock;
pub mod moto;
pub mod pki;
pub mod raw;
pub mod rdkafka_clients;
pub mod script_clients;
pub mod waits;

pub use admin::*;
pub use broker::*;
pub use gateway::*;
pub use local::*;
pub use logs::*;
pub use moto::*;
pub use raw::*;
pub use rdkafka_clients::*;
pub use script_clients::*;
pub use waits::*;

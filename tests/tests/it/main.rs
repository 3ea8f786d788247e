//! Sluice's integration tests, in one test binary so that the gateway, rdkafka and librdkafka
//! are compiled and linked once instead of once per file. Each module is one area; a test is
//! named `module::test` (`cargo test -p sluice-tests -- security::`).
//!
//! The modules share one process: one log subscriber ([`sluice_tests::capture_logs`], installed
//! by whichever test logs first), and the other modules' tests run next to each other's. A
//! test that measures the process itself (peak memory) runs alone in a child process
//! ([`sluice_tests::alone_in_process`]).

mod admin;
mod connection_limits;
mod e2e_tansu;
mod encryption;
mod fuzz;
mod interceptors;
mod kms_aws;
mod listeners;
mod masking;
mod multi_broker;
mod protocol;
mod security;
mod smoke;
mod tenant_limits;
mod vclusters;

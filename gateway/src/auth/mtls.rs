//! mtls

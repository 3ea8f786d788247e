//! TLS on both sides: server configurations for client listeners, client configurations for
//! broker connections (rustls).

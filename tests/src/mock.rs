//! A minimal Kafka broker built on kafka-protocol, for fault injection and microbenchmarks.

//! Constructors and helpers for the WIT types, and common Kafka constants.

use crate::{Capabilities, Context, Header, Hooks, KafkaError, KafkaRecord};

impl Capabilities {
    /// These hooks, for every API key.
    pub fn new(hooks: Hooks) -> Self {
        Capabilities {
            hooks,
            api_keys: Vec::new(),
        }
    }

    /// Restricts `on_request` / `on_response` to these API keys (see [`api_key`]).
    pub fn with_api_keys(mut self, api_keys: impl IntoIterator<Item = i16>) -> Self {
        self.api_keys = api_keys.into_iter().collect();
        self
    }

    /// Whether the generic hooks are called for `api_key`.
    pub fn wants_api_key(&self, api_key: i16) -> bool {
        self.api_keys.is_empty() || self.api_keys.contains(&api_key)
    }
}

impl Context {
    /// A context for a request of `api_key` at `api_version`, with placeholder values for the
    /// rest: interceptor `"test"`, client address `127.0.0.1:50000`, correlation id 1, no
    /// virtual cluster, principal, groups or client id. Meant for tests; the `with_*` methods
    /// change single fields.
    pub fn new(api_key: i16, api_version: i16) -> Self {
        Context {
            interceptor: "test".to_string(),
            vcluster: None,
            principal: None,
            groups: Vec::new(),
            client_id: None,
            client_address: "127.0.0.1:50000".to_string(),
            api_key,
            api_version,
            correlation_id: 1,
        }
    }

    /// Sets the interceptor name.
    pub fn with_interceptor(mut self, name: impl Into<String>) -> Self {
        self.interceptor = name.into();
        self
    }

    /// Sets the virtual cluster.
    pub fn with_vcluster(mut self, vcluster: impl Into<String>) -> Self {
        self.vcluster = Some(vcluster.into());
        self
    }

    /// Sets the authenticated principal.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Sets the principal's groups.
    pub fn with_groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the Kafka client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets the client address (`ip:port`).
    pub fn with_client_address(mut self, address: impl Into<String>) -> Self {
        self.client_address = address.into();
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, correlation_id: i32) -> Self {
        self.correlation_id = correlation_id;
        self
    }
}

impl KafkaError {
    /// An error with this Kafka error code (see [`error_code`]) and message.
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        KafkaError {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_RECORD` (87).
    pub fn invalid_record(message: impl Into<String>) -> Self {
        Self::new(error_code::INVALID_RECORD, message)
    }

    /// `POLICY_VIOLATION` (44).
    pub fn policy_violation(message: impl Into<String>) -> Self {
        Self::new(error_code::POLICY_VIOLATION, message)
    }
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// A header with a null value.
    pub fn null(key: impl Into<String>) -> Self {
        Header {
            key: key.into(),
            value: None,
        }
    }

    /// The value as UTF-8 text, when it is non-null and valid UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl Default for KafkaRecord {
    /// Null key and value, no headers, timestamp 0.
    fn default() -> Self {
        KafkaRecord {
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: 0,
        }
    }
}

impl KafkaRecord {
    /// A record with this value, a null key, no headers and timestamp 0.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        KafkaRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// A tombstone: null value (set a key with [`with_key`](Self::with_key)).
    pub fn tombstone() -> Self {
        Self::default()
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (milliseconds since the epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&Header> {
        self.headers.iter().find(|h| h.key == key)
    }
}

/// Kafka error codes plugins commonly return (the full list is `kafka_protocol::ResponseError`).
pub mod error_code {
    /// The server experienced an unexpected error.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// The message failed its CRC check or is otherwise corrupt.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// This server does not host this topic-partition.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// A message larger than the maximum the server accepts.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// A batch larger than the configured segment size.
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    /// Topic authorization failed.
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    /// Group authorization failed.
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    /// Cluster authorization failed.
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    /// The API version is not supported.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// The request is malformed.
    pub const INVALID_REQUEST: i16 = 42;
    /// Request parameters do not satisfy the configured policy.
    pub const POLICY_VIOLATION: i16 = 44;
    /// The record failed validation and is rejected.
    pub const INVALID_RECORD: i16 = 87;
    /// The throttling quota has been exceeded.
    pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
}

/// Kafka API keys, for [`Capabilities::with_api_keys`] and [`Context::api_key`].
pub mod api_key {
    /// Produce.
    pub const PRODUCE: i16 = 0;
    /// Fetch.
    pub const FETCH: i16 = 1;
    /// ListOffsets.
    pub const LIST_OFFSETS: i16 = 2;
    /// Metadata.
    pub const METADATA: i16 = 3;
    /// OffsetCommit.
    pub const OFFSET_COMMIT: i16 = 8;
    /// OffsetFetch.
    pub const OFFSET_FETCH: i16 = 9;
    /// FindCoordinator.
    pub const FIND_COORDINATOR: i16 = 10;
    /// JoinGroup.
    pub const JOIN_GROUP: i16 = 11;
    /// Heartbeat.
    pub const HEARTBEAT: i16 = 12;
    /// LeaveGroup.
    pub const LEAVE_GROUP: i16 = 13;
    /// SyncGroup.
    pub const SYNC_GROUP: i16 = 14;
    /// DescribeGroups.
    pub const DESCRIBE_GROUPS: i16 = 15;
    /// ListGroups.
    pub const LIST_GROUPS: i16 = 16;
    /// SaslHandshake.
    pub const SASL_HANDSHAKE: i16 = 17;
    /// ApiVersions.
    pub const API_VERSIONS: i16 = 18;
    /// CreateTopics.
    pub const CREATE_TOPICS: i16 = 19;
    /// DeleteTopics.
    pub const DELETE_TOPICS: i16 = 20;
    /// InitProducerId.
    pub const INIT_PRODUCER_ID: i16 = 22;
    /// DescribeConfigs.
    pub const DESCRIBE_CONFIGS: i16 = 32;
    /// AlterConfigs.
    pub const ALTER_CONFIGS: i16 = 33;
    /// SaslAuthenticate.
    pub const SASL_AUTHENTICATE: i16 = 36;
    /// CreatePartitions.
    pub const CREATE_PARTITIONS: i16 = 37;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let caps = Capabilities::new(Hooks::REQUEST | Hooks::RESPONSE).with_api_keys([3, 18]);
        assert!(caps.wants_api_key(3));
        assert!(!caps.wants_api_key(0));
        assert!(Capabilities::new(Hooks::REQUEST).wants_api_key(0));

        let ctx = Context::new(api_key::PRODUCE, 9)
            .with_principal("alice")
            .with_groups(["ops"])
            .with_client_id("cli")
            .with_vcluster("team-a")
            .with_interceptor("mask")
            .with_client_address("10.0.0.1:1234")
            .with_correlation_id(7);
        assert_eq!(ctx.principal.as_deref(), Some("alice"));
        assert_eq!(ctx.groups, vec!["ops".to_string()]);
        assert_eq!(ctx.correlation_id, 7);

        let rec = KafkaRecord::from_value("v")
            .with_key("k")
            .with_header("h", "1")
            .with_timestamp(42);
        assert_eq!(rec.header("h").and_then(Header::value_str), Some("1"));
        assert_eq!(rec.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(KafkaRecord::tombstone().value, None);
        assert_eq!(Header::null("n").value_str(), None);

        let e = KafkaError::invalid_record("too big");
        assert_eq!(e.code, 87);
        assert!(e.to_string().contains("too big"), "{e}");
        assert_eq!(KafkaError::policy_violation("no").code, 44);
    }
}

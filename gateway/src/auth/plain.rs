//! SASL PLAIN (RFC 4616): the `[authzid] NUL authcid NUL passwd` token.
//!
//! Only the token format lives here; the password is checked against the same salted SCRAM
//! credentials the gateway stores (see
//! [`ScramCredential::verify_password`](super::scram::ScramCredential::verify_password)), so
//! no cleartext password is ever kept. PLAIN sends the password itself, so listeners should
//! only offer it over TLS.

use std::fmt;

/// A parsed PLAIN token. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainToken {
    /// Authorization identity: empty, or equal to `username` (impersonation is refused).
    pub authzid: String,
    /// Authentication identity (never empty).
    pub username: String,
    /// The password (never empty).
    pub password: String,
}

impl fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainToken")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a PLAIN token was refused. Messages never contain the token's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// Not exactly three NUL-separated fields.
    #[error("malformed SASL/PLAIN token: expected authzid NUL username NUL password")]
    Malformed,
    /// A field is not valid UTF-8.
    #[error("malformed SASL/PLAIN token: not UTF-8")]
    NotUtf8,
    /// The username is empty.
    #[error("SASL/PLAIN username is empty")]
    EmptyUsername,
    /// The password is empty.
    #[error("SASL/PLAIN password is empty")]
    EmptyPassword,
    /// The authorization id names someone other than the username.
    #[error("SASL/PLAIN authorization id differs from the username")]
    AuthzidMismatch,
}

/// Parses a PLAIN token: `authzid NUL username NUL password`, all UTF-8, no NUL inside a
/// field, non-empty username and password, and an authzid that is empty or equal to the
/// username (as Kafka requires).
pub fn parse(token: &[u8]) -> Result<PlainToken, PlainError> {
    let mut fields = token.split(|&b| b == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed);
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| PlainError::NotUtf8)
    };
    let (authzid, username, password) = (text(authzid)?, text(username)?, text(password)?);
    if username.is_empty() {
        return Err(PlainError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(PlainError::EmptyPassword);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::AuthzidMismatch);
    }
    Ok(PlainToken {
        authzid,
        username,
        password,
    })
}

/// Encodes a PLAIN token with an empty authzid: `NUL username NUL password`.
pub fn encode(username: &str, password: &str) -> Vec<u8> {
    let mut token = Vec::with_capacity(2 + username.len() + password.len());
    token.push(0);
    token.extend_from_slice(username.as_bytes());
    token.push(0);
    token.extend_from_slice(password.as_bytes());
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let token = parse(&encode("alice", "s3cret")).unwrap();
        assert_eq!(token.authzid, "");
        assert_eq!(token.username, "alice");
        assert_eq!(token.password, "s3cret");
        assert_eq!(encode("alice", "s3cret"), b"\0alice\0s3cret");
    }

    #[test]
    fn authzid_equal_to_username_is_accepted() {
        let token = parse(b"bob\0bob\0pw").unwrap();
        assert_eq!(token.authzid, "bob");
        assert_eq!(token.username, "bob");
    }

    #[test]
    fn unicode_fields() {
        let token = parse("\0jürgen\0pässwörd ✓".as_bytes()).unwrap();
        assert_eq!(token.username, "jürgen");
        assert_eq!(token.password, "pässwörd ✓");
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b""), Err(PlainError::Malformed));
        assert_eq!(parse(b"alice"), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0alice"), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0alice\0pw\0"), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0al\0ice\0pw"), Err(PlainError::Malformed));
        assert_eq!(parse(b"\0\0pw"), Err(PlainError::EmptyUsername));
        assert_eq!(parse(b"\0alice\0"), Err(PlainError::EmptyPassword));
        assert_eq!(parse(b"admin\0alice\0pw"), Err(PlainError::AuthzidMismatch));
        assert_eq!(parse(b"\0al\xffice\0pw"), Err(PlainError::NotUtf8));
        assert_eq!(parse(b"\0alice\0p\xc3"), Err(PlainError::NotUtf8));
        assert_eq!(parse(b"\xfe\0alice\0pw"), Err(PlainError::NotUtf8));
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let token = parse(b"\0alice\0hunter2").unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("hunter2"));
        assert!(debug.contains("alice"));
        let err = parse(b"mallory\0alice\0hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2") && !err.contains("mallory"));
    }
}

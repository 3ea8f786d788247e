//! The AWS KMS key provider against `moto_server`, a local implementation of KMS's real HTTP
//! API: data keys made and unwrapped, the errors each failure maps to (unknown key, wrong key,
//! server down or hung, wrong secret), and that no credential appears in them.
//!
//! moto checks signatures only when started for it ([`Moto::start_authenticated`]); the tests
//! that are about signing use that mode, the others the plain one.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sluice_tests::*;
use sluice_wasm::kms::aws::AwsKms;
use sluice_wasm::kms::{KeyProvider, ProviderError};

/// A provider for `moto` with placeholder credentials (moto started without signature
/// checks accepts any).
fn provider(moto: &Moto, timeout_ms: u64) -> AwsKms {
    AwsKms::new(&moto.kms_config("AKIDTEST", "test-secret", timeout_ms)).unwrap()
}

#[test]
fn generate_and_unwrap_a_data_key() {
    let moto = Moto::start().unwrap();
    let key = moto.create_key().unwrap();
    let kms = provider(&moto, 5000);
    assert_eq!(kms.kind(), "aws-kms");
    // By key id and by ARN: KMS takes either.
    for kek in [&key.key_id, &key.arn] {
        let dk = kms.generate_data_key(kek).unwrap();
        assert_ne!(dk.plaintext.0, [0; 32]);
        assert!(
            dk.wrapped.len() > 32 && !dk.wrapped.windows(32).any(|w| w == dk.plaintext.0),
            "the wrapped key does not hold the key in clear"
        );
        let unwrapped = kms.unwrap_data_key(kek, &dk.wrapped).unwrap();
        assert_eq!(unwrapped.0, dk.plaintext.0);
        // Each call makes a fresh key.
        let other = kms.generate_data_key(kek).unwrap();
        assert_ne!(other.plaintext.0, dk.plaintext.0);
        assert_ne!(other.wrapped, dk.wrapped);
    }
}

#[test]
fn wrong_and_unknown_keys() {
    let moto = Moto::start().unwrap();
    let (a, b) = (moto.create_key().unwrap(), moto.create_key().unwrap());
    let kms = provider(&moto, 5000);
    let dk = kms.generate_data_key(&a.key_id).unwrap();

    // A data key wrapped under `a` does not unwrap as `b`'s (KMS: IncorrectKeyException;
    // moto: AccessDeniedException).
    let e = kms.unwrap_data_key(&b.key_id, &dk.wrapped).unwrap_err();
    assert!(matches!(e, ProviderError::Refused(_)), "{e:?}");

    let unknown = "0b5bb2f8-1c57-4e4a-9d3c-000000000000";
    assert_eq!(
        kms.generate_data_key(unknown).unwrap_err(),
        ProviderError::UnknownKey(unknown.into())
    );
    assert_eq!(
        kms.unwrap_data_key(unknown, &dk.wrapped).unwrap_err(),
        ProviderError::UnknownKey(unknown.into())
    );

    // Bytes that are no wrapped key at all.
    let e = kms
        .unwrap_data_key(&a.key_id, b"not a ciphertext blob")
        .unwrap_err();
    assert!(
        matches!(e, ProviderError::Refused(ref m) if m.contains("InvalidCiphertext")),
        "{e:?}"
    );
}

/// The harness's key-state helpers. moto (5.2.1) keeps serving GenerateDataKey and Decrypt
/// for disabled keys and keys pending deletion, where AWS answers `DisabledException` and
/// `KMSInvalidStateException`: the provider's mapping of those (to `Refused`) is covered by
/// `kms::aws`'s unit tests, not here.
#[test]
fn keys_can_be_disabled_and_scheduled_for_deletion() {
    let moto = Moto::start().unwrap();
    let (a, b) = (moto.create_key().unwrap(), moto.create_key().unwrap());
    assert_eq!(moto.key_state(&a.key_id).unwrap(), "Enabled");
    moto.disable_key(&a.key_id).unwrap();
    assert_eq!(moto.key_state(&a.key_id).unwrap(), "Disabled");
    moto.schedule_key_deletion(&b.key_id, 7).unwrap();
    assert_eq!(moto.key_state(&b.key_id).unwrap(), "PendingDeletion");
}

#[test]
fn a_stopped_server_is_unavailable_at_once() {
    let mut moto = Moto::start().unwrap();
    let key = moto.create_key().unwrap();
    let kms = provider(&moto, 2000);
    let dk = kms.generate_data_key(&key.key_id).unwrap();
    moto.stop();
    let started = Instant::now();
    let e = kms.unwrap_data_key(&key.key_id, &dk.wrapped).unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
    let e = kms.generate_data_key(&key.key_id).unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
    // A refused connection is reported without waiting out the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts connections (the kernel's backlog does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = serde_json::from_value(serde_json::json!({
        "region": MOTO_REGION,
        "endpoint": format!("http://127.0.0.1:{port}"),
        "accessKeyId": "AKIDTEST",
        "secretAccessKey": "test-secret",
        "timeoutMs": 300,
    }))
    .unwrap();
    let kms = AwsKms::new(&config).unwrap();
    let started = Instant::now();
    let e = kms.generate_data_key("any").unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, ProviderError::Unavailable(ref m) if m.contains("300 ms")),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn signatures_are_checked_and_a_wrong_secret_is_refused() {
    let (moto, user, keys) = Moto::start_authenticated(1).unwrap();
    let key = &keys[0];

    // Signed with the right secret: moto recomputes the signature and accepts it.
    let kms =
        AwsKms::new(&moto.kms_config(&user.access_key_id, &user.secret_access_key, 5000)).unwrap();
    let dk = kms.generate_data_key(&key.key_id).unwrap();
    assert_eq!(
        kms.unwrap_data_key(&key.key_id, &dk.wrapped).unwrap().0,
        dk.plaintext.0
    );

    // Signed with a wrong secret.
    let wrong_secret = format!("{}-wrong", user.secret_access_key);
    let bad = AwsKms::new(&moto.kms_config(&user.access_key_id, &wrong_secret, 5000)).unwrap();
    let e1 = bad.generate_data_key(&key.key_id).unwrap_err();
    assert!(
        matches!(e1, ProviderError::Refused(ref m) if m.contains("SignatureDoesNotMatch")),
        "{e1:?}"
    );
    let e2 = bad.unwrap_data_key(&key.key_id, &dk.wrapped).unwrap_err();
    assert!(matches!(e2, ProviderError::Refused(_)), "{e2:?}");

    // An access key moto does not know.
    let stranger =
        AwsKms::new(&moto.kms_config("AKIAUNKNOWN000000000", &wrong_secret, 5000)).unwrap();
    let e3 = stranger.generate_data_key(&key.key_id).unwrap_err();
    assert!(matches!(e3, ProviderError::Refused(_)), "{e3:?}");

    // No credential in any of it.
    for text in [&e1, &e2, &e3]
        .iter()
        .flat_map(|e| [format!("{e}"), format!("{e:?}")])
        .chain([format!("{kms:?}"), format!("{bad:?}")])
    {
        for secret in [&user.secret_access_key, &wrong_secret, &user.access_key_id] {
            assert!(!text.contains(secret.as_str()), "a credential in `{text}`");
        }
        assert!(!text.contains("Signature="), "{text}");
    }
}

/// Times GenerateDataKey + Decrypt round trips against moto (signature checks on, as against
/// AWS) and prints the median (`-- --nocapture` shows it).
#[test]
fn round_trip_latency() {
    const ROUNDS: usize = 50;
    let (moto, user, keys) = Moto::start_authenticated(1).unwrap();
    let kms =
        AwsKms::new(&moto.kms_config(&user.access_key_id, &user.secret_access_key, 5000)).unwrap();
    let kek = &keys[0].key_id;
    let (mut generate, mut decrypt) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let dk = kms.generate_data_key(kek).unwrap();
        generate.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(
            kms.unwrap_data_key(kek, &dk.wrapped).unwrap().0,
            dk.plaintext.0
        );
        decrypt.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (g, d) = (median(&mut generate), median(&mut decrypt));
    eprintln!(
        "aws-kms against moto, median of {ROUNDS}: GenerateDataKey {:.2} ms, Decrypt {:.2} ms, \
         round trip {:.2} ms",
        g.as_secs_f64() * 1e3,
        d.as_secs_f64() * 1e3,
        (g + d).as_secs_f64() * 1e3
    );
}

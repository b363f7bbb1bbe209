use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;

const ORIGIN: &str = "fieldseal.example/log";

fn log_key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 7,
        root: [0xab; 32],
        time_unix: 1_767_225_600,
    }
}

fn signed() -> String {
    checkpoint().sign(ORIGIN, &log_key()).unwrap()
}

#[test]
fn sign_then_verify_round_trips() {
    let note = signed();
    let key = log_key().verifying_key();
    assert_eq!(Checkpoint::verify(&note, ORIGIN, &key), Ok(checkpoint()));
    let body = checkpoint().body().unwrap();
    assert!(note.starts_with(&body));
    assert_eq!(
        body,
        format!(
            "{ORIGIN}\n7\n{}\ntime 1767225600\n",
            BASE64.encode([0xab; 32])
        )
    );
    let vk = VerifierKey::new(ORIGIN, key).unwrap();
    assert_eq!(vk.verify_checkpoint(&note), Ok(checkpoint()));
}

#[test]
fn empty_tree_and_large_values() {
    let key = log_key();
    for (size, time_unix) in [(0, 0), (u64::MAX, u64::MAX)] {
        let cp = Checkpoint {
            size,
            time_unix,
            ..checkpoint()
        };
        let note = cp.sign(ORIGIN, &key).unwrap();
        assert_eq!(
            Checkpoint::verify(&note, ORIGIN, &key.verifying_key()),
            Ok(cp)
        );
    }
}

#[test]
fn wrong_key_or_key_name_has_no_trusted_signature() {
    let note = signed();
    let other = SigningKey::from_bytes(&[2u8; 32]).verifying_key();
    assert_eq!(
        Checkpoint::verify(&note, ORIGIN, &other),
        Err(CheckpointError::NoTrustedSignature)
    );
    assert_eq!(
        Checkpoint::verify(&note, "fieldseal.example/other", &log_key().verifying_key()),
        Err(CheckpointError::NoTrustedSignature)
    );
}

#[test]
fn modified_body_fails_the_signature() {
    let note = signed();
    let key = log_key().verifying_key();
    for (from, to) in [
        ("\n7\n", "\n8\n"),
        ("time 1767225600", "time 1767225601"),
        ("q", "Q"),
    ] {
        let bad = note.replacen(from, to, 1);
        assert_ne!(bad, note, "{from} -> {to}");
        assert_eq!(
            Checkpoint::verify(&bad, ORIGIN, &key),
            Err(CheckpointError::BadSignature)
        );
    }
}

#[test]
fn a_bad_signature_from_the_expected_key_rejects_the_note() {
    // Right name and key id, wrong signature bytes: rejected even though
    // another line is good.
    let note = signed();
    let key = log_key();
    let body = checkpoint().body().unwrap();
    let mut blob = key_id(ORIGIN, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&[0u8; 64]);
    let forged = format!("{note}\u{2014} {ORIGIN} {}\n", BASE64.encode(&blob));
    assert!(forged.starts_with(&body));
    assert_eq!(
        Checkpoint::verify(&forged, ORIGIN, &key.verifying_key()),
        Err(CheckpointError::BadSignature)
    );
    // A truncated signature from the expected key is a bad signature too.
    let short = format!("{note}\u{2014} {ORIGIN} {}\n", BASE64.encode(&blob[..40]));
    assert_eq!(
        Checkpoint::verify(&short, ORIGIN, &key.verifying_key()),
        Err(CheckpointError::BadSignature)
    );
}

#[test]
fn signatures_from_other_keys_are_ignored() {
    let body = checkpoint().body().unwrap();
    let witness = SigningKey::from_bytes(&[3u8; 32]);
    let log = log_key();
    // A witness line before and after the log's line, and a line with a type
    // we do not know (longer than an Ed25519 blob).
    let w = signature_line(&body, "witness.example/w1", &witness);
    let l = signature_line(&body, ORIGIN, &log);
    let unknown = format!("\u{2014} other.example/pq {}\n", BASE64.encode([7u8; 200]));
    let note = format!("{body}\n{w}{l}{unknown}{w}");
    assert_eq!(
        Checkpoint::verify(&note, ORIGIN, &log.verifying_key()),
        Ok(checkpoint())
    );
    assert_eq!(Note::parse(&note).unwrap().signatures().len(), 4);
    // The witness verifies too, under its own name.
    Note::parse(&note)
        .unwrap()
        .verify("witness.example/w1", &witness.verifying_key())
        .unwrap();
    // Only other keys: refused.
    let only_witness = format!("{body}\n{w}");
    assert_eq!(
        Checkpoint::verify(&only_witness, ORIGIN, &log.verifying_key()),
        Err(CheckpointError::NoTrustedSignature)
    );
}

#[test]
fn trailing_garbage_is_refused() {
    let note = signed();
    let key = log_key().verifying_key();
    for bad in [
        format!("{note}garbage"),
        format!("{note}garbage\n"),
        format!("{note}\n"),
        format!("{note}\n\u{2014} {ORIGIN} AAAA\n"),
        note.trim_end_matches('\n').to_owned(),
        format!("{note} "),
    ] {
        assert!(Checkpoint::verify(&bad, ORIGIN, &key).is_err(), "{bad:?}");
    }
    // Garbage after the body, before the blank line: an extension line we
    // do not sign. The signature fails first.
    let extra = note.replacen("\n\n", "\nextra\n\n", 1);
    assert!(Checkpoint::verify(&extra, ORIGIN, &key).is_err());
}

#[test]
fn oversized_note_is_refused_before_parsing() {
    let note = signed();
    let big = format!("{note}{}", "x".repeat(MAX_NOTE_LEN));
    assert_eq!(
        Checkpoint::verify(&big, ORIGIN, &log_key().verifying_key()),
        Err(CheckpointError::TooLong {
            len: big.len(),
            max: MAX_NOTE_LEN
        })
    );
}

#[test]
fn a_second_line_by_the_same_key_is_accepted_when_it_verifies() {
    // FORMAT.md §6.6, as Go's sumdb/note: every line of the trusted key must
    // verify, and repeating one adds nothing, so a note with the log's line
    // twice is the checkpoint once; one bad line among them still refuses it.
    let body = checkpoint().body().unwrap();
    let key = log_key();
    let line = signature_line(&body, ORIGIN, &key);
    let twice = format!("{body}\n{line}{line}");
    assert_eq!(
        Checkpoint::verify(&twice, ORIGIN, &key.verifying_key()).unwrap(),
        checkpoint()
    );
    let mut blob = key_id(ORIGIN, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&[0u8; 64]);
    let bad = format!("\u{2014} {ORIGIN} {}\n", BASE64.encode(&blob));
    let mixed = format!("{body}\n{line}{bad}{line}");
    assert_eq!(
        Checkpoint::verify(&mixed, ORIGIN, &key.verifying_key()),
        Err(CheckpointError::BadSignature)
    );
}

#[test]
fn too_many_signature_lines_are_refused() {
    let body = checkpoint().body().unwrap();
    let line = signature_line(&body, ORIGIN, &log_key());
    let ok = format!("{body}\n{}", line.repeat(MAX_SIGNATURES));
    Checkpoint::verify(&ok, ORIGIN, &log_key().verifying_key()).unwrap();
    let too_many = format!("{body}\n{}", line.repeat(MAX_SIGNATURES + 1));
    assert_eq!(
        Note::parse(&too_many),
        Err(CheckpointError::TooManySignatures {
            count: MAX_SIGNATURES + 1,
            max: MAX_SIGNATURES
        })
    );
}

#[test]
fn control_characters_are_refused() {
    let note = signed();
    let crlf = note.replace('\n', "\r\n");
    assert_eq!(Note::parse(&crlf), Err(CheckpointError::ControlCharacter));
    let tab = note.replacen(ORIGIN, "fieldseal.example/\tlog", 1);
    assert_eq!(Note::parse(&tab), Err(CheckpointError::ControlCharacter));
}

#[test]
fn malformed_signature_lines_are_refused() {
    let body = checkpoint().body().unwrap();
    let good = signature_line(&body, ORIGIN, &log_key());
    let b64 = good.rsplit(' ').next().unwrap().trim_end().to_owned();
    for line in [
        format!("- {ORIGIN} {b64}\n"),         // hyphen, not em dash
        format!("\u{2014}{ORIGIN} {b64}\n"),   // no space after the dash
        format!("\u{2014} {ORIGIN}  {b64}\n"), // two spaces
        format!("\u{2014} {ORIGIN} {b64} \n"), // trailing space
        format!("\u{2014} {ORIGIN}\n"),        // no signature
        format!("\u{2014}  {b64}\n"),          // empty name
        format!("\u{2014} a+b {b64}\n"),       // plus in the name
        format!("\u{2014} {ORIGIN} {}\n", &b64[..b64.len() - 1]), // bad padding
        format!("\u{2014} {ORIGIN} AAAA\n"),   // shorter than a key id
    ] {
        let note = format!("{body}\n{line}");
        assert!(Note::parse(&note).is_err(), "{line:?}");
    }
    assert_eq!(Note::parse(&body), Err(CheckpointError::NoSignatures));
}

#[test]
fn body_parsing_is_strict() {
    let root = BASE64.encode([0xab; 32]);
    let good = format!("{ORIGIN}\n7\n{root}\ntime 5\n");
    assert!(Checkpoint::parse_body(&good).is_ok());
    let short_root = BASE64.encode([0xab; 31]);
    let cases = [
        format!("{ORIGIN}\n07\n{root}\ntime 5\n"), // leading zero
        format!("{ORIGIN}\n+7\n{root}\ntime 5\n"), // sign
        format!("{ORIGIN}\n-7\n{root}\ntime 5\n"),
        format!("{ORIGIN}\n\n{root}\ntime 5\n"), // empty size
        format!("{ORIGIN}\n18446744073709551616\n{root}\ntime 5\n"), // u64 overflow
        format!("{ORIGIN}\n7 \n{root}\ntime 5\n"),
        format!("{ORIGIN}\n7\n{short_root}\ntime 5\n"), // 31 bytes
        format!("{ORIGIN}\n7\n{}\ntime 5\n", root.trim_end_matches('=')), // unpadded
        format!("{ORIGIN}\n7\n{}\ntime 5\n", hex::encode([0xab; 32])),
        format!("{ORIGIN}\n7\n{root}\ntime 05\n"),
        format!("{ORIGIN}\n7\n{root}\ntime  5\n"),
        format!("{ORIGIN}\n7\n{root}\ntimestamp 5\n"),
        format!("{ORIGIN}\n7\n{root}\n"), // no time line
        format!("{ORIGIN}\n7\n{root}\ntime 5\nmore\n"), // extra extension line
        format!("{ORIGIN}\n7\n{root}\ntime 5"), // no final newline
        format!("\n7\n{root}\ntime 5\n"), // empty origin
        format!("field seal\n7\n{root}\ntime 5\n"), // space in origin
        format!("{}\n7\n{root}\ntime 5\n", "o".repeat(MAX_NAME_LEN + 1)),
    ];
    for c in &cases {
        assert!(Checkpoint::parse_body(c).is_err(), "{c:?}");
    }
    // Non-canonical base64: the last character before '=' carries 2 unused
    // bits; setting one spells the same bytes differently, and is refused.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = root.clone().into_bytes();
    let i = bytes.len() - 2;
    let pos = ALPHABET.iter().position(|&c| c == bytes[i]).unwrap();
    bytes[i] = ALPHABET[pos ^ 1];
    let noncanonical = String::from_utf8(bytes).unwrap();
    let text = format!("{ORIGIN}\n7\n{noncanonical}\ntime 5\n");
    assert_eq!(
        Checkpoint::parse_body(&text),
        Err(CheckpointError::BadBody(
            "root hash is not base64 of 32 bytes"
        ))
    );
}

#[test]
fn invalid_origins_and_key_names_cannot_be_signed() {
    let key = log_key();
    for origin in ["", "a b", "a\nb", "a+b", "a\u{3000}b"] {
        let cp = Checkpoint {
            origin: origin.into(),
            ..checkpoint()
        };
        assert_eq!(
            cp.sign(ORIGIN, &key),
            Err(CheckpointError::BadOrigin),
            "{origin:?}"
        );
    }
    for name in ["", "a b", "a+b"] {
        assert_eq!(
            checkpoint().sign(name, &key),
            Err(CheckpointError::BadKeyName),
            "{name:?}"
        );
    }
}

#[test]
fn verifier_key_round_trips_and_checks_its_id() {
    let vk = VerifierKey::new(ORIGIN, log_key().verifying_key()).unwrap();
    let s = vk.to_string();
    assert_eq!(s.parse::<VerifierKey>(), Ok(vk.clone()));
    let (name, rest) = s.split_once('+').unwrap();
    assert_eq!(name, ORIGIN);
    assert_eq!(&rest[..8], hex::encode(vk.key_id()));
    // Another name with the same id and key: the id no longer matches.
    let renamed = s.replacen(ORIGIN, "fieldseal.example/x", 1);
    assert!(renamed.parse::<VerifierKey>().is_err());
    assert!(s.to_uppercase().parse::<VerifierKey>().is_err());
    assert!("name+00000000".parse::<VerifierKey>().is_err());
}

/// The example of Go's `golang.org/x/mod/sumdb/note` documentation: a key,
/// its verifier key string and a note it signed. Ed25519 is deterministic, so
/// we must reproduce the note byte for byte.
#[test]
fn interoperates_with_go_sumdb_note() {
    let seed = BASE64
        .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
        .unwrap();
    assert_eq!(seed[0], SIG_TYPE_ED25519);
    let key = SigningKey::from_bytes(&seed[1..].try_into().unwrap());
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let vk = VerifierKey::new("PeterNeumann", key.verifying_key()).unwrap();
    assert_eq!(vk.to_string(), vkey);
    assert_eq!(vkey.parse::<VerifierKey>(), Ok(vk));

    let text = "If you think cryptography is the answer to your problem,\n\
                then you don't know what your problem is.\n";
    let want = format!(
        "{text}\n\u{2014} PeterNeumann \
         x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    assert_eq!(sign_note(text, "PeterNeumann", &key).unwrap(), want);
    let note = Note::parse(&want).unwrap();
    assert_eq!(note.text(), text);
    note.verify("PeterNeumann", &key.verifying_key()).unwrap();
}

proptest! {
    #[test]
    fn note_parsing_never_panics(s in "(?s).{0,400}") {
        let _ = Note::parse(&s);
        let _ = Checkpoint::parse_body(&s);
        let _ = s.parse::<VerifierKey>();
    }

    #[test]
    fn any_checkpoint_round_trips(size in any::<u64>(), time_unix in any::<u64>(), root in any::<[u8; 32]>()) {
        let cp = Checkpoint { origin: ORIGIN.into(), size, root, time_unix };
        let note = cp.sign(ORIGIN, &log_key()).unwrap();
        prop_assert_eq!(Checkpoint::verify(&note, ORIGIN, &log_key().verifying_key()), Ok(cp));
    }
}

//! Golden vectors for the frame codec, the sync messages, the receipt and
//! the media acknowledgement.
//!
//! `tests/vectors/frames.txt` holds, one per line, `name: hex` of fixed values;
//! `docs/FORMAT.md` quotes them. This test checks that encoding each value gives
//! exactly those bytes and that decoding the bytes gives the value back. After
//! an intentional format change, regenerate the file with
//! `FIELDSEAL_BLESS=1 cargo test -p fieldseal-proto --test frame_vectors` and
//! review the diff.

use ed25519_dalek::SigningKey;
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{sha256, DeviceId, Signer};
use fieldseal_proto::msg::*;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/frames.txt");

/// 2025-07-01T00:00:00Z, the day the Measures came into force.
const T0_US: i64 = 1_751_328_000_000_000;

fn device() -> DeviceId {
    DeviceId([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])
}

fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

fn entry() -> Vec<u8> {
    b"opaque signed entry bytes".to_vec()
}

/// The receipt covers a real entry: entry 4 of the sample chain of
/// `tests/vectors/entries.json` (device key seed `0x42` × 32). Its `entry_hash`
/// is that entry's hash (SHA-256 of the signing bytes, without the signature).
fn receipted_entry() -> SignedEntry {
    let key = SigningKey::from_bytes(&[0x42; 32]);
    sample::build(&key, &[2], 48).entries[4].clone()
}

fn receipt() -> Receipt {
    let e = receipted_entry();
    Receipt::sign(
        e.entry.device,
        e.seq(),
        e.hash(),
        T0_US + 1_500_000,
        1000,
        &server_key(),
    )
}

/// The media acknowledgement covers a real segment: entry 3 of the same
/// sample chain, whose media is the 48 stand-in bytes of `entries.json`.
fn acked_segment() -> (SignedEntry, Vec<u8>) {
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let chain = sample::build(&key, &[2], 48);
    (chain.entries[3].clone(), chain.media[&3].clone())
}

fn media_ack() -> MediaAck {
    let (e, _) = acked_segment();
    let s = e.entry.segment().expect("entry 3 is a segment");
    MediaAck::sign(
        e.entry.device,
        e.seq(),
        (s.media_sha256, s.media_len),
        T0_US + 2_500_000,
        &server_key(),
    )
}

fn messages() -> Vec<(&'static str, Message)> {
    let media_hash = sha256(b"segment 42");
    vec![
        (
            "hello",
            Message::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                device_id: device(),
                chain_head_seq: Some(41),
            }),
        ),
        (
            "hello_empty_chain",
            Message::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                device_id: device(),
                chain_head_seq: None,
            }),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                server_time_us: T0_US,
                next_seq_expected: 42,
                resend_media: SeqList::new(vec![3, 17]).unwrap(),
            }),
        ),
        (
            "submit_entry",
            Message::SubmitEntry(SubmitEntry {
                entry: EntryBytes::new(entry()).unwrap(),
            }),
        ),
        ("entry_receipt", Message::EntryReceipt(receipt())),
        (
            "entry_rejected",
            Message::EntryRejected(EntryRejected {
                seq: 42,
                code: RejectCode::Equivocation,
                detail: Detail::new("seq 42 differs").unwrap(),
            }),
        ),
        (
            "upload_query",
            Message::UploadQuery(UploadQuery {
                seq: 42,
                media_hash,
                media_len: 1_000_000,
            }),
        ),
        (
            "upload_offset",
            Message::UploadOffset(UploadOffset {
                seq: 42,
                offset: 65_536,
            }),
        ),
        (
            "upload_begin",
            Message::UploadBegin(UploadBegin {
                seq: 42,
                media_hash,
                offset: 65_536,
                len: 1_000_000,
            }),
        ),
        ("upload_ack", Message::UploadAck(media_ack())),
        (
            "upload_failed",
            Message::UploadFailed(UploadFailed {
                seq: 42,
                code: UploadFailCode::HashMismatch,
                detail: Detail::new("").unwrap(),
            }),
        ),
        (
            "ping",
            Message::Ping {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        (
            "pong",
            Message::Pong {
                nonce: 0x0102_0304_0506_0708,
            },
        ),
        (
            "error",
            Message::Error(ErrorMsg {
                code: ErrorCode::UnsupportedVersion,
                detail: Detail::new("v1 only").unwrap(),
            }),
        ),
        (
            "renew_cert",
            Message::RenewCert(RenewCert {
                cert_sha256: sha256(renewal_cert()),
            }),
        ),
        (
            "cert_renewed",
            Message::CertRenewed(CertRenewed {
                cert: fieldseal_proto::renew::CertBytes::new(renewal_cert().to_vec()).unwrap(),
            }),
        ),
        (
            "renew_refused",
            Message::RenewRefused(RenewRefused {
                code: fieldseal_proto::renew::RenewRefusal::NotDue,
                detail: Detail::new("ask later").unwrap(),
            }),
        ),
    ]
}

/// Stand-in bytes for a DER certificate: the frames carry certificates as
/// opaque bytes (the agent parses them, FORMAT.md §7.10).
fn renewal_cert() -> &'static [u8] {
    b"stand-in DER certificate"
}

/// Every vector in file order: frames, then the receipt's parts, then the
/// media acknowledgement's (signed with the same server key).
fn expected() -> Vec<(String, String)> {
    let r = receipt();
    let mut v: Vec<(String, String)> = messages()
        .into_iter()
        .map(|(name, m)| (format!("frame.{name}"), hex::encode(m.to_bytes())))
        .collect();
    v.push((
        "receipt.server_public_key".into(),
        hex::encode(server_key().public_key().as_bytes()),
    ));
    v.push((
        "receipt.signing_bytes".into(),
        hex::encode(r.signing_bytes()),
    ));
    v.push(("receipt.encoding".into(), hex::encode(r.to_bytes())));
    let a = media_ack();
    v.push(("ack.signing_bytes".into(), hex::encode(a.signing_bytes())));
    v.push(("ack.encoding".into(), hex::encode(a.to_bytes())));
    v.push((
        "stream.pipelined_upload".into(),
        hex::encode(pipelined_upload()),
    ));
    v
}

/// The whole agent side of a pipelined upload stream (protocol version 4,
/// FORMAT.md §7.5) of the acknowledged segment: `UploadBegin` at offset 0,
/// then the 48 media bytes unframed. The server's side is `frame.upload_ack`.
fn pipelined_upload() -> Vec<u8> {
    let (e, media) = acked_segment();
    let s = e.entry.segment().expect("entry 3 is a segment");
    let mut out = Message::UploadBegin(UploadBegin {
        seq: e.seq(),
        media_hash: s.media_sha256,
        offset: 0,
        len: s.media_len,
    })
    .to_bytes();
    out.extend_from_slice(&media);
    out
}

fn read_file() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(FILE).expect("read the vectors file");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, hex) = l.split_once(':').expect("`name: hex`");
            (name.trim().to_owned(), hex.trim().to_owned())
        })
        .collect()
}

#[test]
fn encodings_match_the_vectors_file() {
    let want = expected();
    if std::env::var_os("FIELDSEAL_BLESS").is_some() {
        let mut text = String::from(
            "# fieldseal golden vectors: frames of the sync protocol, a server receipt, a media ack\n\
             # and the agent side of a pipelined upload stream.\n\
             # `name: hex`. Generated by proto/tests/frame_vectors.rs; quoted in docs/FORMAT.md.\n\
             # The receipt and the media ack are signed with the ed25519 key whose 32-byte seed\n\
             # is 0x09 repeated.\n",
        );
        for (name, hex) in &want {
            text.push_str(&format!("{name}: {hex}\n"));
        }
        std::fs::write(FILE, text).expect("write the vectors file");
    }
    assert_eq!(read_file(), want);
}

#[test]
fn vectors_decode_to_their_values() {
    let file: std::collections::HashMap<String, String> = read_file().into_iter().collect();
    for (name, m) in messages() {
        let bytes = hex::decode(&file[&format!("frame.{name}")]).unwrap();
        assert_eq!(Message::from_bytes(&bytes), Ok(m), "{name}");
    }
    let r = Receipt::from_bytes(&hex::decode(&file["receipt.encoding"]).unwrap()).unwrap();
    assert_eq!(r, receipt());
    r.verify(&server_key().verifying_key()).unwrap();
    let a = MediaAck::from_bytes(&hex::decode(&file["ack.encoding"]).unwrap()).unwrap();
    assert_eq!(a, media_ack());
    let (e, media) = acked_segment();
    let want = (sha256(&media), media.len() as u64);
    a.verify_for(&server_key().verifying_key(), e.entry.device, 3, want)
        .unwrap();
}

#[test]
fn hand_checked_layouts() {
    // Written out by hand from docs/FORMAT.md, independently of the encoder.
    let hello = messages()[0].1.to_bytes();
    assert_eq!(
        hex::encode(hello),
        concat!(
            "01",
            "00000013",
            "0004",
            "0123456789abcdef",
            "01",
            "0000000000000029"
        )
    );
    // The pipelined stream: a 56-byte UploadBegin frame (seq 3, offset 0,
    // len 48), then exactly the 48 media bytes.
    let (_, media) = acked_segment();
    let stream = pipelined_upload();
    assert_eq!(stream.len(), 5 + 56 + 48);
    assert_eq!(&stream[..5], &[0x22, 0, 0, 0, 56]);
    assert_eq!(&stream[5..13], &3u64.to_be_bytes());
    assert_eq!(&stream[13..45], &sha256(&media));
    assert_eq!(&stream[45..53], &[0; 8]);
    assert_eq!(&stream[53..61], &48u64.to_be_bytes());
    assert_eq!(&stream[61..], &media[..]);
    let err = messages()[13].1.to_bytes();
    assert_eq!(
        hex::encode(err),
        concat!("3f", "00000009", "02", "07", "7631206f6e6c79")
    );
    let renew = messages()[14].1.to_bytes();
    assert_eq!(&renew[..5], &[0x40, 0, 0, 0, 32]);
    assert_eq!(&renew[5..], &sha256(renewal_cert()));
    let renewed = messages()[15].1.to_bytes();
    assert_eq!(&renewed[..9], &[0x41, 0, 0, 0, 28, 0, 0, 0, 24]);
    assert_eq!(&renewed[9..], renewal_cert());
    let refused = messages()[16].1.to_bytes();
    assert_eq!(
        hex::encode(refused),
        concat!("42", "0000000b", "04", "09", "61736b206c61746572")
    );
    let sb = receipt().signing_bytes();
    assert_eq!(&sb[..21], b"fieldseal/receipt/v1\0");
    assert_eq!(sb[21], 1);
    let e = receipted_entry();
    assert_eq!(&sb[22..30], &e.entry.device.0);
    assert_eq!(&sb[30..38], &4u64.to_be_bytes());
    assert_eq!(
        hex::encode(&sb[38..70]),
        "b5b6f4aefdc6e7390cedade3048b01e88f2f3be24dff99d8c65db43349c3aa5a",
        "the entry hash of entry 4 in entries.json"
    );
    let ab = media_ack().signing_bytes();
    assert_eq!(&ab[..23], b"fieldseal/media-ack/v1\0");
    assert_eq!(ab[23], 1);
    assert_eq!(&ab[32..40], &3u64.to_be_bytes());
    assert_eq!(&ab[72..80], &48u64.to_be_bytes(), "media_len");
    assert_eq!(&ab[80..88], &(T0_US + 2_500_000).to_be_bytes());
}

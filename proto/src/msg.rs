//! The messages of the agent↔server sync protocol.
//!
//! The protocol runs over QUIC with mutual TLS (DESIGN.md, "Sync"). The agent
//! opens every stream:
//!
//! - **The control stream** (the first bidirectional stream, for the whole
//!   connection): [`Hello`] → [`Welcome`], then [`SubmitEntry`] →
//!   [`Message::EntryReceipt`] or [`EntryRejected`] for each entry in chain order, plus
//!   [`Message::Ping`]/[`Message::Pong`] and [`ErrorMsg`]. One stream keeps entries in order.
//! - **One upload stream per segment** (bidirectional): [`UploadQuery`] →
//!   [`UploadOffset`], or [`Message::UploadAck`] at once when the server
//!   already holds the whole file; then [`UploadBegin`] followed by
//!   `len - offset` **raw** bytes of the segment (not framed) and the end of
//!   the agent's side of the stream; the server answers
//!   [`Message::UploadAck`], a [`MediaAck`] signed with its receipt key, once
//!   the bytes are verified and durable, or [`UploadFailed`].
//! - **Certificate renewal** (version 3, on the control stream):
//!   [`RenewCert`] → [`CertRenewed`] or [`RenewRefused`], answered in order
//!   with the entries (see [`crate::renew`]).
//!
//! Each message travels as one frame (see [`crate::frame`]); this module defines
//! the payloads. Every variable-length field is bounded by a `MAX_*` constant,
//! and the types that hold such fields ([`EntryBytes`], [`Detail`],
//! [`SeqList`]) enforce the bound when they are built, so encoding cannot fail
//! and never exceeds a frame. Numeric ranges on plain integer fields
//! (`offset <= len <= MAX_MEDIA_LEN`) are the sender's to respect; the decoder
//! rejects values outside them. Payload layouts (integers big-endian; see
//! `docs/FORMAT.md`, "Sync protocol"):
//!
//! ```text
//! type  message        payload
//! 0x01  Hello          protocol_version u16, device_id [8], has_head u8 (0|1), [chain_head_seq u64]
//! 0x02  Welcome        protocol_version u16, server_time_us i64, next_seq_expected u64,
//!                      count u16 (<= MAX_RESEND_MEDIA), count × seq u64
//! 0x10  SubmitEntry    len u32 (1..=MAX_SIGNED_ENTRY), len × u8
//! 0x11  EntryReceipt   receipt (129 bytes, see crate::receipt)
//! 0x12  EntryRejected  seq u64, code u8, detail text8 (<= MAX_DETAIL)
//! 0x20  UploadQuery    seq u64, media_hash [32], media_len u64 (<= MAX_MEDIA_LEN)
//! 0x21  UploadOffset   seq u64, offset u64 (<= MAX_MEDIA_LEN)
//! 0x22  UploadBegin    seq u64, media_hash [32], offset u64, len u64 (offset <= len <= MAX_MEDIA_LEN)
//! 0x23  UploadAck      media ack (129 bytes, see crate::ack)
//! 0x24  UploadFailed   seq u64, code u8, detail text8
//! 0x30  Ping           nonce u64
//! 0x40  RenewCert      cert_sha256 [32]                                  (version >= 3)
//! 0x41  CertRenewed    cert bytes32 (1..=MAX_CERT)                       (version >= 3)
//! 0x42  RenewRefused   code u8, detail text8                             (version >= 3)
//! 0x31  Pong           nonce u64
//! 0x3f  Error          code u8, detail text8
//! ```

use crate::ack::MediaAck;
use crate::codec::{check_len, put, Decode, DecodeError, Encode, Reader};
use crate::identity::{DeviceId, Hash32};
use crate::receipt::Receipt;
pub use crate::renew::{CertRenewed, RenewCert, RenewRefused};

/// The protocol version this implementation speaks. Version 2 made
/// `UploadAck` a signed [`MediaAck`] (version 1's carried no signature, yet let
/// the device delete its media); version 3 added certificate renewal
/// ([`RenewCert`]); version 4 lets an upload stream open with `UploadBegin`
/// at offset 0 and the bytes, without the `UploadQuery` round trip
/// ([`PIPELINED_UPLOAD_SINCE`]). The server answers a `Hello` of any version
/// from [`MIN_PROTOCOL_VERSION`] to this one with a `Welcome` of the same
/// version and refuses the others with [`ErrorCode::UnsupportedVersion`]; an
/// agent asks for renewal only when the `Welcome` says version 3 or later,
/// and pipelines an upload only when it says 4 or later.
pub const PROTOCOL_VERSION: u16 = 4;

/// The first version in which an upload stream may open with
/// `UploadBegin { offset: 0 }` followed by the bytes (FORMAT.md §7.5): the
/// server then takes the whole file, answering `UploadAck` at once (and
/// stopping the stream) if it holds it already.
pub const PIPELINED_UPLOAD_SINCE: u16 = 4;

/// The oldest version a server still serves: version 2 agents sync as
/// before and never renew (their certificates from before expiry was
/// introduced do not expire; those issued since do, and need an upgrade).
pub const MIN_PROTOCOL_VERSION: u16 = 2;

pub use crate::entry::MAX_SIGNED_ENTRY;

/// Largest human-readable detail, in bytes of UTF-8. It is a hint for a log
/// line, never a data channel; it must also fit a one-byte length prefix.
pub const MAX_DETAIL: usize = 200;

/// Most seqs a [`Welcome`] may ask to be (re)sent. The agent works through the
/// list and reconnects for the rest; 1024 seqs are over an hour of 4 s segments
/// and 8 KiB on the wire, well inside one frame.
pub const MAX_RESEND_MEDIA: usize = 1024;

/// Largest media file the protocol carries: 4 GiB − 1, the largest file a
/// FAT32 SD card (common in body cameras) can hold. A 4 s segment at 2 Mbit/s
/// is about 1 MB, so this only bounds what a server must be ready to receive.
pub const MAX_MEDIA_LEN: u64 = u32::MAX as u64;

/// A signed chain entry as opaque bytes, 1 to [`MAX_SIGNED_ENTRY`] long.
/// `entry.rs` decodes and verifies them; here they are only carried.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryBytes(Vec<u8>);

impl EntryBytes {
    /// Wrap signed entry bytes.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] above [`MAX_SIGNED_ENTRY`] bytes,
    /// [`DecodeError::InvalidValue`] for an empty entry.
    pub fn new(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        check_len("signed entry", bytes.len(), MAX_SIGNED_ENTRY)?;
        if bytes.is_empty() {
            return Err(DecodeError::InvalidValue {
                what: "signed entry length",
                value: 0,
            });
        }
        Ok(EntryBytes(bytes))
    }

    /// The entry's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The entry's bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// A short human-readable explanation: at most [`MAX_DETAIL`] bytes of UTF-8
/// without control characters (so that it can go into a log line as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Detail(String);

impl Detail {
    /// Check and wrap a detail.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] above [`MAX_DETAIL`] bytes,
    /// [`DecodeError::BadText`] if it contains a control character.
    pub fn new(s: impl Into<String>) -> Result<Self, DecodeError> {
        let s = s.into();
        check_len("detail", s.len(), MAX_DETAIL)?;
        if s.chars().any(char::is_control) {
            return Err(DecodeError::BadText { what: "detail" });
        }
        Ok(Detail(s))
    }

    /// Make any text into a detail: control characters become spaces and the
    /// text is cut at a character boundary to fit [`MAX_DETAIL`] bytes. For
    /// error messages whose length the caller does not control.
    pub fn lossy(s: &str) -> Self {
        let mut out = String::with_capacity(s.len().min(MAX_DETAIL));
        for c in s.chars() {
            let c = if c.is_control() { ' ' } else { c };
            if out.len() + c.len_utf8() > MAX_DETAIL {
                break;
            }
            out.push(c);
        }
        Detail(out)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A list of sequence numbers, at most [`MAX_RESEND_MEDIA`] long, in the order
/// the server prefers them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SeqList(Vec<u64>);

impl SeqList {
    /// Check and wrap a list.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`] above [`MAX_RESEND_MEDIA`] seqs.
    pub fn new(seqs: Vec<u64>) -> Result<Self, DecodeError> {
        check_len("resend list", seqs.len(), MAX_RESEND_MEDIA)?;
        Ok(SeqList(seqs))
    }

    /// The seqs.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }
}

/// Defines a one-byte code enum with its wire values, `from_u8` and `as_u8`.
macro_rules! wire_code {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code on the wire.
            pub fn as_u8(self) -> u8 {
                self as u8
            }

            /// The code for a wire value.
            ///
            /// # Errors
            /// [`DecodeError::InvalidValue`] for a value that is not defined.
            pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
                match v {
                    $( $value => Ok($name::$variant), )+
                    _ => Err(DecodeError::InvalidValue { what: $what, value: u64::from(v) }),
                }
            }

            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Self::from_u8(r.u8()?)
            }
        }
    };
}

wire_code! {
    /// Why the server refused a signed entry.
    RejectCode, "reject code" {
        /// The signature does not verify under the device key.
        BadSignature = 1,
        /// `prev_hash` is not the hash of the entry before it.
        BrokenLink = 2,
        /// The seq is not the one the server expects next.
        OutOfOrder = 3,
        /// The server holds a different entry with the same seq (raised as an alarm).
        Equivocation = 4,
        /// The entry names a device other than the one authenticated on this connection.
        WrongDevice = 5,
        /// The bytes are not a well-formed entry.
        Malformed = 6,
        /// The entry's format version is not one the server understands.
        UnsupportedVersion = 7,
        /// The server could not store the entry now; send it again later.
        Internal = 8,
    }
}

impl RejectCode {
    /// True when sending the same entry again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, RejectCode::OutOfOrder | RejectCode::Internal)
    }
}

wire_code! {
    /// Why the server refused an upload.
    UploadFailCode, "upload failure code" {
        /// The server holds no accepted entry for this seq: submit the entry first.
        UnknownEntry = 1,
        /// The media hash or length differ from those in the accepted entry.
        EntryMismatch = 2,
        /// The bytes received do not hash to `media_hash`.
        HashMismatch = 3,
        /// The stream ended before (or ran past) `len` bytes.
        LengthMismatch = 4,
        /// `offset` is not the offset the server holds; query again.
        BadOffset = 5,
        /// The server could not store the bytes now; retry later.
        Internal = 6,
    }
}

wire_code! {
    /// Why a peer is giving up on the connection or the exchange.
    ErrorCode, "error code" {
        /// A message arrived that is not allowed at this point of the exchange.
        UnexpectedMessage = 1,
        /// The peer's protocol version is not supported.
        UnsupportedVersion = 2,
        /// The device id in `Hello` is not the one of the TLS client certificate.
        WrongDevice = 3,
        /// A frame could not be decoded.
        Malformed = 4,
        /// The server is overloaded or failing; reconnect later.
        Internal = 5,
        /// The server is shutting down; reconnect later.
        ShuttingDown = 6,
    }
}

/// Agent → server, first on the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the agent speaks ([`PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// The agent's device id; must match its TLS client certificate.
    pub device_id: DeviceId,
    /// The seq of the agent's newest persisted entry, `None` for an empty chain.
    pub chain_head_seq: Option<u64>,
}

/// Server → agent, the answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version the server will use.
    pub protocol_version: u16,
    /// The server's clock, microseconds since the Unix epoch (for skew estimates).
    pub server_time_us: i64,
    /// The seq of the first entry the server does not hold (0 when it holds none).
    pub next_seq_expected: u64,
    /// Seqs whose media bytes the server lacks (or lost and wants again).
    pub resend_media: SeqList,
}

/// Agent → server: one signed chain entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitEntry {
    /// The entry's signed bytes.
    pub entry: EntryBytes,
}

/// Server → agent: the entry with this seq is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRejected {
    /// The seq the refused entry carried (as far as the server could read it).
    pub seq: u64,
    /// Why.
    pub code: RejectCode,
    /// A human-readable hint.
    pub detail: Detail,
}

/// Agent → server, first on an upload stream: how much of this segment do you hold?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadQuery {
    /// The seq of the segment entry.
    pub seq: u64,
    /// SHA-256 of the whole media file, as in the entry.
    pub media_hash: Hash32,
    /// Length of the whole media file, as in the entry.
    pub media_len: u64,
}

/// Server → agent: resume at `offset` (`offset < media_len`). A server that
/// already holds the whole file answers [`Message::UploadAck`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOffset {
    /// The seq of the query.
    pub seq: u64,
    /// How many leading bytes the server holds.
    pub offset: u64,
}

/// Agent → server: the bytes `offset..len` of the media file follow, raw, on
/// this stream, and then the agent finishes its side of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadBegin {
    /// The seq of the segment entry.
    pub seq: u64,
    /// SHA-256 of the whole media file.
    pub media_hash: Hash32,
    /// Where the bytes that follow start in the file.
    pub offset: u64,
    /// Length of the whole file; exactly `len - offset` raw bytes follow.
    pub len: u64,
}

impl UploadBegin {
    /// How many raw bytes follow the frame. A decoded `UploadBegin` always has
    /// `offset <= len`; for a hand-built one that does not, this is 0.
    pub fn raw_len(&self) -> u64 {
        self.len.saturating_sub(self.offset)
    }
}

/// Server → agent: the upload did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFailed {
    /// The seq of the segment entry.
    pub seq: u64,
    /// Why.
    pub code: UploadFailCode,
    /// A human-readable hint.
    pub detail: Detail,
}

/// Either side: give up on the exchange, then close the stream or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// Why.
    pub code: ErrorCode,
    /// A human-readable hint.
    pub detail: Detail,
}

/// The type code that starts every frame, one per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// [`Hello`].
    Hello = 0x01,
    /// [`Welcome`].
    Welcome = 0x02,
    /// [`SubmitEntry`].
    SubmitEntry = 0x10,
    /// [`Receipt`].
    EntryReceipt = 0x11,
    /// [`EntryRejected`].
    EntryRejected = 0x12,
    /// [`UploadQuery`].
    UploadQuery = 0x20,
    /// [`UploadOffset`].
    UploadOffset = 0x21,
    /// [`UploadBegin`].
    UploadBegin = 0x22,
    /// [`MediaAck`].
    UploadAck = 0x23,
    /// [`UploadFailed`].
    UploadFailed = 0x24,
    /// Ping.
    Ping = 0x30,
    /// Pong.
    Pong = 0x31,
    /// [`ErrorMsg`].
    Error = 0x3f,
    /// [`RenewCert`].
    RenewCert = 0x40,
    /// [`CertRenewed`].
    CertRenewed = 0x41,
    /// [`RenewRefused`].
    RenewRefused = 0x42,
}

impl MessageType {
    /// Every message type, in wire order.
    pub const ALL: &'static [MessageType] = &[
        MessageType::Hello,
        MessageType::Welcome,
        MessageType::SubmitEntry,
        MessageType::EntryReceipt,
        MessageType::EntryRejected,
        MessageType::UploadQuery,
        MessageType::UploadOffset,
        MessageType::UploadBegin,
        MessageType::UploadAck,
        MessageType::UploadFailed,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::Error,
        MessageType::RenewCert,
        MessageType::CertRenewed,
        MessageType::RenewRefused,
    ];

    /// The code on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The message type of a wire code.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] for a code no message has.
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        MessageType::ALL
            .iter()
            .copied()
            .find(|t| t.as_u8() == v)
            .ok_or(DecodeError::InvalidValue {
                what: "frame type",
                value: u64::from(v),
            })
    }
}

/// Any message of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Agent → server: who I am and how far my chain goes.
    Hello(Hello),
    /// Server → agent: what I hold.
    Welcome(Welcome),
    /// Agent → server: a signed entry.
    SubmitEntry(SubmitEntry),
    /// Server → agent: the entry is accepted, here is the signed receipt.
    EntryReceipt(Receipt),
    /// Server → agent: the entry is refused.
    EntryRejected(EntryRejected),
    /// Agent → server: how much of this segment do you hold?
    UploadQuery(UploadQuery),
    /// Server → agent: resume here.
    UploadOffset(UploadOffset),
    /// Agent → server: raw bytes follow.
    UploadBegin(UploadBegin),
    /// Server → agent: verified and durable, signed with the receipt key;
    /// the agent may delete its copy (after its keep period).
    UploadAck(MediaAck),
    /// Server → agent: the upload failed.
    UploadFailed(UploadFailed),
    /// Either side: are you there? (the nonce comes back in [`Message::Pong`]).
    Ping {
        /// Chosen by the sender, echoed by the receiver.
        nonce: u64,
    },
    /// The answer to [`Message::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
    },
    /// Either side: giving up.
    Error(ErrorMsg),
    /// Agent → server (version 3): renew my certificate.
    RenewCert(RenewCert),
    /// Server → agent: the new certificate.
    CertRenewed(CertRenewed),
    /// Server → agent: not renewed.
    RenewRefused(RenewRefused),
}

impl Message {
    /// The type code of this message's frame.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Welcome(_) => MessageType::Welcome,
            Message::SubmitEntry(_) => MessageType::SubmitEntry,
            Message::EntryReceipt(_) => MessageType::EntryReceipt,
            Message::EntryRejected(_) => MessageType::EntryRejected,
            Message::UploadQuery(_) => MessageType::UploadQuery,
            Message::UploadOffset(_) => MessageType::UploadOffset,
            Message::UploadBegin(_) => MessageType::UploadBegin,
            Message::UploadAck(_) => MessageType::UploadAck,
            Message::UploadFailed(_) => MessageType::UploadFailed,
            Message::Ping { .. } => MessageType::Ping,
            Message::Pong { .. } => MessageType::Pong,
            Message::Error(_) => MessageType::Error,
            Message::RenewCert(_) => MessageType::RenewCert,
            Message::CertRenewed(_) => MessageType::CertRenewed,
            Message::RenewRefused(_) => MessageType::RenewRefused,
        }
    }

    /// Append the payload (without the frame header) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello(m) => m.encode(out),
            Message::Welcome(m) => m.encode(out),
            Message::SubmitEntry(m) => m.encode(out),
            Message::EntryReceipt(m) => m.encode(out),
            Message::EntryRejected(m) => m.encode(out),
            Message::UploadQuery(m) => m.encode(out),
            Message::UploadOffset(m) => m.encode(out),
            Message::UploadBegin(m) => m.encode(out),
            Message::UploadAck(m) => m.encode(out),
            Message::UploadFailed(m) => m.encode(out),
            Message::Ping { nonce } | Message::Pong { nonce } => {
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Message::Error(m) => m.encode(out),
            Message::RenewCert(m) => m.encode(out),
            Message::CertRenewed(m) => m.encode(out),
            Message::RenewRefused(m) => m.encode(out),
        }
    }

    /// Decode the payload of a frame of type `ty`. The payload must be consumed
    /// exactly. Because the payload is complete, running out of bytes inside it
    /// is malformed, not "incomplete": this never returns
    /// [`DecodeError::Incomplete`].
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] (`what = "payload length"`) when the
    /// payload ends early, [`DecodeError::TrailingData`] when bytes remain,
    /// and any error of the message's own fields.
    pub fn decode_payload(ty: MessageType, payload: &[u8]) -> Result<Message, DecodeError> {
        fn exact<T: Decode>(payload: &[u8]) -> Result<T, DecodeError> {
            T::from_bytes(payload)
        }
        let m = match ty {
            MessageType::Hello => exact(payload).map(Message::Hello),
            MessageType::Welcome => exact(payload).map(Message::Welcome),
            MessageType::SubmitEntry => exact(payload).map(Message::SubmitEntry),
            MessageType::EntryReceipt => exact(payload).map(Message::EntryReceipt),
            MessageType::EntryRejected => exact(payload).map(Message::EntryRejected),
            MessageType::UploadQuery => exact(payload).map(Message::UploadQuery),
            MessageType::UploadOffset => exact(payload).map(Message::UploadOffset),
            MessageType::UploadBegin => exact(payload).map(Message::UploadBegin),
            MessageType::UploadAck => exact(payload).map(Message::UploadAck),
            MessageType::UploadFailed => exact(payload).map(Message::UploadFailed),
            MessageType::Ping => exact::<Nonce>(payload).map(|n| Message::Ping { nonce: n.0 }),
            MessageType::Pong => exact::<Nonce>(payload).map(|n| Message::Pong { nonce: n.0 }),
            MessageType::Error => exact(payload).map(Message::Error),
            MessageType::RenewCert => exact(payload).map(Message::RenewCert),
            MessageType::CertRenewed => exact(payload).map(Message::CertRenewed),
            MessageType::RenewRefused => exact(payload).map(Message::RenewRefused),
        };
        m.map_err(|e| match e {
            DecodeError::Incomplete { .. } => DecodeError::InvalidValue {
                what: "payload length",
                value: payload.len() as u64,
            },
            other => other,
        })
    }
}

/// The payload of Ping and Pong.
struct Nonce(u64);

impl Decode for Nonce {
    const NAME: &'static str = "ping";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Nonce(r.u64()?))
    }
}

fn decode_media_len(r: &mut Reader<'_>, what: &'static str) -> Result<u64, DecodeError> {
    let v = r.u64()?;
    if v > MAX_MEDIA_LEN {
        return Err(DecodeError::TooLong {
            what,
            len: v,
            max: MAX_MEDIA_LEN,
        });
    }
    Ok(v)
}

fn decode_detail(r: &mut Reader<'_>) -> Result<Detail, DecodeError> {
    // `text8` checks the bound and the characters exactly as `Detail::new` does.
    Ok(Detail(r.text8("detail", MAX_DETAIL)?))
}

impl Encode for Hello {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.protocol_version.to_be_bytes());
        out.extend_from_slice(&self.device_id.0);
        match self.chain_head_seq {
            None => put::bool(out, false),
            Some(seq) => {
                put::bool(out, true);
                out.extend_from_slice(&seq.to_be_bytes());
            }
        }
    }
}

impl Decode for Hello {
    const NAME: &'static str = "hello";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.u16()?;
        let device_id = DeviceId(r.array()?);
        let chain_head_seq = if r.bool("chain head present")? {
            Some(r.u64()?)
        } else {
            None
        };
        Ok(Hello {
            protocol_version,
            device_id,
            chain_head_seq,
        })
    }
}

impl Encode for Welcome {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.protocol_version.to_be_bytes());
        out.extend_from_slice(&self.server_time_us.to_be_bytes());
        out.extend_from_slice(&self.next_seq_expected.to_be_bytes());
        let seqs = self.resend_media.as_slice();
        let count = u16::try_from(seqs.len()).expect("SeqList is bounded by MAX_RESEND_MEDIA");
        out.extend_from_slice(&count.to_be_bytes());
        for s in seqs {
            out.extend_from_slice(&s.to_be_bytes());
        }
    }
}

impl Decode for Welcome {
    const NAME: &'static str = "welcome";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.u16()?;
        let server_time_us = r.i64()?;
        let next_seq_expected = r.u64()?;
        let count = usize::from(r.u16()?);
        check_len("resend list", count, MAX_RESEND_MEDIA)?;
        let mut seqs = Vec::with_capacity(count);
        for _ in 0..count {
            seqs.push(r.u64()?);
        }
        Ok(Welcome {
            protocol_version,
            server_time_us,
            next_seq_expected,
            resend_media: SeqList(seqs),
        })
    }
}

impl Encode for SubmitEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        put::bytes32(out, self.entry.as_bytes());
    }
}

impl Decode for SubmitEntry {
    const NAME: &'static str = "submit entry";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bytes = r.bytes32("signed entry", MAX_SIGNED_ENTRY)?;
        Ok(SubmitEntry {
            entry: EntryBytes::new(bytes.to_vec())?,
        })
    }
}

impl Encode for EntryRejected {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(self.code.as_u8());
        put::text8(out, self.detail.as_str());
    }
}

impl Decode for EntryRejected {
    const NAME: &'static str = "entry rejected";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(EntryRejected {
            seq: r.u64()?,
            code: RejectCode::decode(r)?,
            detail: decode_detail(r)?,
        })
    }
}

impl Encode for UploadQuery {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.media_hash);
        out.extend_from_slice(&self.media_len.to_be_bytes());
    }
}

impl Decode for UploadQuery {
    const NAME: &'static str = "upload query";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(UploadQuery {
            seq: r.u64()?,
            media_hash: r.array()?,
            media_len: decode_media_len(r, "media")?,
        })
    }
}

impl Encode for UploadOffset {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
    }
}

impl Decode for UploadOffset {
    const NAME: &'static str = "upload offset";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(UploadOffset {
            seq: r.u64()?,
            offset: decode_media_len(r, "upload offset")?,
        })
    }
}

impl Encode for UploadBegin {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.media_hash);
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
    }
}

impl Decode for UploadBegin {
    const NAME: &'static str = "upload begin";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let seq = r.u64()?;
        let media_hash = r.array()?;
        let offset = r.u64()?;
        let len = decode_media_len(r, "media")?;
        // An offset past the end would make `raw_len` negative: reject it here so
        // that every decoded `UploadBegin` describes a real byte range.
        if offset > len {
            return Err(DecodeError::InvalidValue {
                what: "upload offset",
                value: offset,
            });
        }
        Ok(UploadBegin {
            seq,
            media_hash,
            offset,
            len,
        })
    }
}

impl Encode for UploadFailed {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(self.code.as_u8());
        put::text8(out, self.detail.as_str());
    }
}

impl Decode for UploadFailed {
    const NAME: &'static str = "upload failed";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(UploadFailed {
            seq: r.u64()?,
            code: UploadFailCode::decode(r)?,
            detail: decode_detail(r)?,
        })
    }
}

impl Encode for ErrorMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code.as_u8());
        put::text8(out, self.detail.as_str());
    }
}

impl Decode for ErrorMsg {
    const NAME: &'static str = "error";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ErrorMsg {
            code: ErrorCode::decode(r)?,
            detail: decode_detail(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_are_distinct_and_round_trip() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::from_u8(t.as_u8()), Ok(*t));
        }
        let mut codes: Vec<u8> = MessageType::ALL.iter().map(|t| t.as_u8()).collect();
        codes.dedup();
        assert_eq!(codes.len(), MessageType::ALL.len());
        assert!(MessageType::from_u8(0).is_err());
    }

    #[test]
    fn enum_codes_round_trip_and_reject_unknown() {
        for c in RejectCode::ALL {
            assert_eq!(RejectCode::from_u8(c.as_u8()), Ok(*c));
        }
        for c in UploadFailCode::ALL {
            assert_eq!(UploadFailCode::from_u8(c.as_u8()), Ok(*c));
        }
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u8(c.as_u8()), Ok(*c));
        }
        assert_eq!(
            RejectCode::from_u8(0),
            Err(DecodeError::InvalidValue {
                what: "reject code",
                value: 0
            })
        );
        assert!(UploadFailCode::from_u8(200).is_err());
        assert!(ErrorCode::from_u8(255).is_err());
    }

    #[test]
    fn bounded_types_enforce_their_bounds() {
        assert!(EntryBytes::new(vec![0; MAX_SIGNED_ENTRY]).is_ok());
        assert!(matches!(
            EntryBytes::new(vec![0; MAX_SIGNED_ENTRY + 1]),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(EntryBytes::new(Vec::new()).is_err());
        assert!(Detail::new("x".repeat(MAX_DETAIL)).is_ok());
        assert!(Detail::new("x".repeat(MAX_DETAIL + 1)).is_err());
        assert!(Detail::new("a\nb").is_err());
        assert!(SeqList::new(vec![1; MAX_RESEND_MEDIA]).is_ok());
        assert!(SeqList::new(vec![1; MAX_RESEND_MEDIA + 1]).is_err());
    }

    #[test]
    fn lossy_detail_fits_and_keeps_char_boundaries() {
        // "执" is three bytes: 67 of them fit in 200 bytes (201 would not).
        let d = Detail::lossy(&"执".repeat(100));
        assert_eq!(d.as_str().len(), 198);
        assert_eq!(Detail::lossy("a\tb\u{7}").as_str(), "a b ");
        assert!(Detail::new(d.as_str()).is_ok());
    }

    #[test]
    fn upload_begin_rejects_offset_past_len() {
        let mut b = Vec::new();
        UploadBegin {
            seq: 1,
            media_hash: [0; 32],
            offset: 5,
            len: 5,
        }
        .encode(&mut b);
        assert!(UploadBegin::from_bytes(&b).is_ok());
        // offset is bytes 40..48: make it 6 > len 5.
        b[47] = 6;
        assert_eq!(
            UploadBegin::from_bytes(&b),
            Err(DecodeError::InvalidValue {
                what: "upload offset",
                value: 6
            })
        );
    }

    #[test]
    fn media_len_is_bounded() {
        let mut b = Vec::new();
        UploadQuery {
            seq: 1,
            media_hash: [0; 32],
            media_len: MAX_MEDIA_LEN + 1,
        }
        .encode(&mut b);
        assert!(matches!(
            UploadQuery::from_bytes(&b),
            Err(DecodeError::TooLong { what: "media", .. })
        ));
    }

    #[test]
    fn welcome_count_is_checked_before_reading() {
        // count 0xffff with no seqs behind it: TooLong, not Incomplete.
        let mut b = vec![0, 1];
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&[0xff, 0xff]);
        assert!(matches!(
            Welcome::from_bytes(&b),
            Err(DecodeError::TooLong {
                what: "resend list",
                ..
            })
        ));
    }

    #[test]
    fn short_payload_is_malformed_not_incomplete() {
        assert_eq!(
            Message::decode_payload(MessageType::Ping, &[0, 0, 0]),
            Err(DecodeError::InvalidValue {
                what: "payload length",
                value: 3
            })
        );
        assert_eq!(
            Message::decode_payload(MessageType::Ping, &[0; 9]),
            Err(DecodeError::TrailingData {
                what: "ping",
                count: 1
            })
        );
    }
}

/// Proptest strategies for every message, shared by the codec tests.
#[cfg(test)]
pub(crate) mod arb {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    pub fn detail() -> impl Strategy<Value = Detail> {
        // Any string, made to fit: exercises multi-byte characters near the bound.
        any::<String>().prop_map(|s| Detail::lossy(&s))
    }

    pub fn seq_list() -> impl Strategy<Value = SeqList> {
        prop_oneof![
            vec(any::<u64>(), 0..8),
            vec(any::<u64>(), MAX_RESEND_MEDIA..=MAX_RESEND_MEDIA),
        ]
        .prop_map(|v| SeqList::new(v).unwrap())
    }

    pub fn entry_bytes() -> impl Strategy<Value = EntryBytes> {
        prop_oneof![
            vec(any::<u8>(), 1..600),
            vec(any::<u8>(), MAX_SIGNED_ENTRY..=MAX_SIGNED_ENTRY),
        ]
        .prop_map(|v| EntryBytes::new(v).unwrap())
    }

    pub fn media_len() -> impl Strategy<Value = u64> {
        prop_oneof![0..=MAX_MEDIA_LEN, Just(MAX_MEDIA_LEN)]
    }

    pub fn hello() -> impl Strategy<Value = Hello> {
        (any::<u16>(), any::<[u8; 8]>(), any::<Option<u64>>()).prop_map(|(v, d, h)| Hello {
            protocol_version: v,
            device_id: DeviceId(d),
            chain_head_seq: h,
        })
    }

    pub fn welcome() -> impl Strategy<Value = Welcome> {
        (any::<u16>(), any::<i64>(), any::<u64>(), seq_list()).prop_map(|(v, t, n, r)| Welcome {
            protocol_version: v,
            server_time_us: t,
            next_seq_expected: n,
            resend_media: r,
        })
    }

    pub fn receipt() -> impl Strategy<Value = Receipt> {
        (
            any::<[u8; 8]>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<i64>(),
            any::<u64>(),
            any::<[u8; 64]>(),
        )
            .prop_map(|(d, seq, h, t, i, sig)| Receipt {
                device_id: DeviceId(d),
                seq,
                entry_hash: h,
                server_time_us: t,
                log_index: i,
                signature: sig,
            })
    }

    pub fn upload_begin() -> impl Strategy<Value = UploadBegin> {
        (any::<u64>(), any::<[u8; 32]>(), media_len(), any::<u64>()).prop_map(|(s, h, len, o)| {
            UploadBegin {
                seq: s,
                media_hash: h,
                offset: if len == 0 { 0 } else { o % (len + 1) },
                len,
            }
        })
    }

    pub fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            hello().prop_map(Message::Hello),
            welcome().prop_map(Message::Welcome),
            entry_bytes().prop_map(|entry| Message::SubmitEntry(SubmitEntry { entry })),
            receipt().prop_map(Message::EntryReceipt),
            (
                any::<u64>(),
                proptest::sample::select(RejectCode::ALL),
                detail()
            )
                .prop_map(|(seq, code, detail)| Message::EntryRejected(
                    EntryRejected { seq, code, detail }
                )),
            (any::<u64>(), any::<[u8; 32]>(), media_len()).prop_map(|(seq, h, l)| {
                Message::UploadQuery(UploadQuery {
                    seq,
                    media_hash: h,
                    media_len: l,
                })
            }),
            (any::<u64>(), media_len())
                .prop_map(|(seq, offset)| Message::UploadOffset(UploadOffset { seq, offset })),
            upload_begin().prop_map(Message::UploadBegin),
            (
                any::<[u8; 8]>(),
                any::<u64>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<i64>(),
                any::<[u8; 64]>(),
            )
                .prop_map(|(d, seq, h, len, t, sig)| Message::UploadAck(MediaAck {
                    device_id: DeviceId(d),
                    seq,
                    media_sha256: h,
                    media_len: len,
                    server_time_us: t,
                    signature: sig,
                })),
            (
                any::<u64>(),
                proptest::sample::select(UploadFailCode::ALL),
                detail()
            )
                .prop_map(|(seq, code, detail)| Message::UploadFailed(UploadFailed {
                    seq,
                    code,
                    detail
                })),
            any::<u64>().prop_map(|nonce| Message::Ping { nonce }),
            any::<u64>().prop_map(|nonce| Message::Pong { nonce }),
            (proptest::sample::select(ErrorCode::ALL), detail())
                .prop_map(|(code, detail)| Message::Error(ErrorMsg { code, detail })),
            any::<[u8; 32]>().prop_map(|cert_sha256| Message::RenewCert(RenewCert { cert_sha256 })),
            prop_oneof![
                vec(any::<u8>(), 1..600),
                vec(
                    any::<u8>(),
                    crate::enroll::MAX_CERT..=crate::enroll::MAX_CERT
                ),
            ]
            .prop_map(|der| Message::CertRenewed(CertRenewed {
                cert: crate::renew::CertBytes::new(der).unwrap()
            })),
            (
                proptest::sample::select(crate::renew::RenewRefusal::ALL),
                detail()
            )
                .prop_map(|(code, detail)| Message::RenewRefused(RenewRefused { code, detail })),
        ]
    }
}

//! Length-prefixed frames: how sync messages are cut out of a QUIC stream.
//!
//! A stream is a sequence of frames. Each frame is a one-byte message type, a
//! four-byte big-endian payload length and the payload (see [`crate::msg`] for
//! the payloads and `docs/FORMAT.md`, "Frames", for the normative layout):
//!
//! ```text
//! offset  size    field
//! 0       1       type     message type code (crate::msg::MessageType)
//! 1       4       length   payload length, u32 big-endian, <= MAX_FRAME_PAYLOAD
//! 5       length  payload  the message's fields, consumed exactly
//! ```
//!
//! Decoding is in two steps, as in mini-redis: [`Frame::check`] only looks at
//! the header and says "incomplete, read more", "malformed, reject" or "one
//! frame of `n` bytes is here"; [`Frame::parse`] then decodes that frame into a
//! [`Message`]. A bad type or an oversized length is reported as soon as the
//! header shows it, so a peer cannot make us wait for (or buffer) bytes that
//! can never form a valid frame. [`FrameBuffer`] wraps both for a driver that
//! receives bytes in arbitrary pieces, without ever holding more than one
//! maximal frame.
//!
//! Segment bytes are not framed: after an `UploadBegin` frame the rest of the
//! agent's side of an upload stream is raw media (see [`FrameBuffer::take_buffered`]).

use crate::codec::{check_len, Decode, DecodeError, Encode, Reader};
use crate::msg::{Message, MessageType};

/// Length of the frame header: type (1) and payload length (4).
pub const FRAME_HEADER_LEN: usize = 5;

/// Largest frame payload, 64 KiB. The largest message is a `Welcome` with a full
/// resend list (about 8 KiB), then a `SubmitEntry` (at most 4 KiB; entries are a
/// few hundred bytes). Segment bytes never travel in frames, so 64 KiB leaves
/// ample room to grow while bounding what a peer can make us buffer per stream.
pub const MAX_FRAME_PAYLOAD: usize = 64 * 1024;

/// Largest frame, header included: the most a [`FrameBuffer`] holds.
pub const MAX_FRAME_LEN: usize = FRAME_HEADER_LEN + MAX_FRAME_PAYLOAD;

/// One frame, split into its type and its (not yet decoded) payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message type of the header.
    pub message_type: MessageType,
    /// The payload bytes, exactly `length` of them.
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Is a whole frame at the start of `buf`? Returns its length (header and
    /// payload); the bytes after it are not looked at.
    ///
    /// # Errors
    /// - [`DecodeError::InvalidValue`] (`what = "frame type"`) as soon as the
    ///   first byte is not a known message type;
    /// - [`DecodeError::TooLong`] as soon as the header's length exceeds
    ///   [`MAX_FRAME_PAYLOAD`], before any of the payload has arrived;
    /// - [`DecodeError::Incomplete`] when the header or payload is not all there
    ///   yet (`needed` is how many more bytes are needed at least).
    pub fn check(buf: &[u8]) -> Result<usize, DecodeError> {
        Frame::split(buf).map(|(_, n)| n)
    }

    /// Split the frame at the start of `buf` into its header and payload,
    /// without decoding the payload. Returns the frame and its length.
    ///
    /// # Errors
    /// As [`Frame::check`].
    pub fn split(buf: &'a [u8]) -> Result<(Frame<'a>, usize), DecodeError> {
        let mut r = Reader::new(buf);
        let frame = Frame::read(&mut r)?;
        Ok((frame, r.position()))
    }

    fn read(r: &mut Reader<'a>) -> Result<Frame<'a>, DecodeError> {
        let message_type = MessageType::from_u8(r.u8()?)?;
        let len = r.u32()? as usize;
        check_len("frame payload", len, MAX_FRAME_PAYLOAD)?;
        Ok(Frame {
            message_type,
            payload: r.take(len)?,
        })
    }

    /// Decode the frame at the start of `buf` into a message. Returns the
    /// message and the frame's length; the bytes after it are not looked at.
    ///
    /// # Errors
    /// Everything [`Frame::check`] returns; then, for a complete frame, the
    /// payload's errors from [`Message::decode_payload`] (never `Incomplete`:
    /// a payload shorter than its message is malformed).
    pub fn parse(buf: &[u8]) -> Result<(Message, usize), DecodeError> {
        let (frame, n) = Frame::split(buf)?;
        Ok((frame.decode()?, n))
    }

    /// Decode this frame's payload.
    ///
    /// # Errors
    /// As [`Message::decode_payload`].
    pub fn decode(&self) -> Result<Message, DecodeError> {
        Message::decode_payload(self.message_type, self.payload)
    }
}

/// A message's encoding is its whole frame.
impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.message_type().as_u8());
        out.extend_from_slice(&[0; 4]);
        self.encode_payload(out);
        let len = out.len() - start - FRAME_HEADER_LEN;
        // Every message type bounds its fields so that it fits (see the
        // `largest_messages_fit` test); an oversized frame would be a bug here.
        assert!(len <= MAX_FRAME_PAYLOAD, "message payload of {len} bytes");
        let len = u32::try_from(len).expect("bounded by MAX_FRAME_PAYLOAD");
        out[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// Decoding a message reads one whole frame.
impl Decode for Message {
    const NAME: &'static str = "frame";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Frame::read(r)?.decode()
    }
}

/// Accumulates bytes received in arbitrary pieces and yields whole messages.
///
/// Sans-IO: the driver pushes what it read and pulls messages. The buffer never
/// holds more than [`MAX_FRAME_LEN`] bytes; [`FrameBuffer::push`] takes only as
/// much as fits, so the driver reads more once it has drained messages. Because
/// a frame is never longer than that, a full buffer always holds a whole frame
/// (or an error): the driver cannot get stuck.
///
/// After an error the buffer is poisoned and keeps returning that error: the
/// stream is out of sync and must be closed.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    failed: Option<DecodeError>,
}

impl FrameBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        FrameBuffer::default()
    }

    /// How many more bytes [`FrameBuffer::push`] would take now.
    pub fn space(&self) -> usize {
        MAX_FRAME_LEN - self.buf.len()
    }

    /// How many bytes are buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Append as many bytes of `data` as fit and return how many were taken;
    /// the caller keeps the rest and pushes it after draining messages.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.space());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The next whole message, or `None` if more bytes are needed.
    ///
    /// # Errors
    /// Any malformed-frame error of [`Frame::parse`] (never `Incomplete`, which
    /// is `Ok(None)`); once an error is returned, every later call returns it.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match Frame::parse(&self.buf) {
            Ok((msg, n)) => {
                self.buf.drain(..n);
                Ok(Some(msg))
            }
            Err(e) if e.is_incomplete() => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Take every buffered byte out of the buffer. After an `UploadBegin` the
    /// stream carries raw media: these are its first bytes, which arrived in
    /// the same read as the frame.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::arb;
    use crate::msg::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn frame(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![ty];
        b.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn ping_has_the_documented_bytes() {
        let b = Message::Ping {
            nonce: 0x0102_0304_0506_0708,
        }
        .to_bytes();
        assert_eq!(b, [0x30, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn unknown_type_is_rejected_from_the_first_byte() {
        let e = DecodeError::InvalidValue {
            what: "frame type",
            value: 0x99,
        };
        assert_eq!(Frame::check(&[0x99]), Err(e.clone()));
        assert_eq!(Frame::parse(&frame(0x99, &[0; 8])).unwrap_err(), e);
        assert!(Frame::check(&[0x00]).is_err());
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header() {
        let too_long = u32::try_from(MAX_FRAME_PAYLOAD + 1).unwrap().to_be_bytes();
        let mut b = vec![0x30];
        b.extend_from_slice(&too_long);
        assert_eq!(
            Frame::check(&b),
            Err(DecodeError::TooLong {
                what: "frame payload",
                len: (MAX_FRAME_PAYLOAD + 1) as u64,
                max: MAX_FRAME_PAYLOAD as u64
            })
        );
        // The largest allowed length only asks for more bytes.
        let max = u32::try_from(MAX_FRAME_PAYLOAD).unwrap().to_be_bytes();
        let mut b = vec![0x30];
        b.extend_from_slice(&max);
        assert_eq!(
            Frame::check(&b),
            Err(DecodeError::Incomplete {
                needed: MAX_FRAME_PAYLOAD
            })
        );
    }

    #[test]
    fn header_prefixes_are_incomplete() {
        assert_eq!(
            Frame::check(&[]),
            Err(DecodeError::Incomplete { needed: 1 })
        );
        assert_eq!(
            Frame::check(&[0x30, 0]),
            Err(DecodeError::Incomplete { needed: 3 })
        );
        assert_eq!(
            Frame::check(&[0x30, 0, 0, 0, 8, 1]),
            Err(DecodeError::Incomplete { needed: 7 })
        );
    }

    #[test]
    fn payload_must_be_consumed_exactly() {
        // A Ping with one byte too many inside its payload.
        assert_eq!(
            Frame::parse(&frame(0x30, &[0; 9])),
            Err(DecodeError::TrailingData {
                what: "ping",
                count: 1
            })
        );
        // A Ping with one byte too few: malformed, since the frame is complete.
        assert_eq!(
            Frame::parse(&frame(0x30, &[0; 7])),
            Err(DecodeError::InvalidValue {
                what: "payload length",
                value: 7
            })
        );
        // Bytes after the frame belong to the next frame: parse ignores them,
        // exact decoding rejects them.
        let mut b = frame(0x31, &[0; 8]);
        b.push(0x30);
        assert_eq!(Frame::parse(&b), Ok((Message::Pong { nonce: 0 }, 13)));
        assert_eq!(
            Message::from_bytes(&b),
            Err(DecodeError::TrailingData {
                what: "frame",
                count: 1
            })
        );
    }

    #[test]
    fn invalid_enum_values_are_rejected() {
        let mut p = 7u64.to_be_bytes().to_vec();
        p.push(0); // reject code 0 is not defined
        p.push(0); // empty detail
        assert_eq!(
            Frame::parse(&frame(0x12, &p)),
            Err(DecodeError::InvalidValue {
                what: "reject code",
                value: 0
            })
        );
        assert!(matches!(
            Frame::parse(&frame(0x24, &p)),
            Err(DecodeError::InvalidValue {
                what: "upload failure code",
                ..
            })
        ));
        assert!(matches!(
            Frame::parse(&frame(0x3f, &[9, 0])),
            Err(DecodeError::InvalidValue {
                what: "error code",
                ..
            })
        ));
        // Hello's presence byte must be 0 or 1.
        let mut p = vec![0, 1];
        p.extend_from_slice(&[0; 8]);
        p.push(2);
        assert!(matches!(
            Frame::parse(&frame(0x01, &p)),
            Err(DecodeError::InvalidValue {
                what: "chain head present",
                value: 2
            })
        ));
    }

    #[test]
    fn bad_detail_text_is_rejected() {
        let mut p = vec![1, 2, b'a', b'\n'];
        assert_eq!(
            Frame::parse(&frame(0x3f, &p)),
            Err(DecodeError::BadText { what: "detail" })
        );
        p[2] = 0xff; // not UTF-8
        p[3] = b'a';
        assert_eq!(
            Frame::parse(&frame(0x3f, &p)),
            Err(DecodeError::BadText { what: "detail" })
        );
        let mut p = vec![1, u8::try_from(MAX_DETAIL + 1).unwrap()];
        p.extend_from_slice(&[b'a'; MAX_DETAIL + 1]);
        assert!(matches!(
            Frame::parse(&frame(0x3f, &p)),
            Err(DecodeError::TooLong { what: "detail", .. })
        ));
    }

    #[test]
    fn oversized_or_empty_entry_is_rejected() {
        let mut p = u32::try_from(MAX_SIGNED_ENTRY + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        p.extend_from_slice(&[0; MAX_SIGNED_ENTRY + 1]);
        assert!(matches!(
            Frame::parse(&frame(0x10, &p)),
            Err(DecodeError::TooLong {
                what: "signed entry",
                ..
            })
        ));
        assert!(matches!(
            Frame::parse(&frame(0x10, &[0, 0, 0, 0])),
            Err(DecodeError::InvalidValue {
                what: "signed entry length",
                value: 0
            })
        ));
    }

    #[test]
    fn largest_messages_fit() {
        let welcome = Message::Welcome(Welcome {
            protocol_version: 1,
            server_time_us: 0,
            next_seq_expected: 0,
            resend_media: SeqList::new(vec![u64::MAX; MAX_RESEND_MEDIA]).unwrap(),
        });
        let entry = Message::SubmitEntry(SubmitEntry {
            entry: EntryBytes::new(vec![0xee; MAX_SIGNED_ENTRY]).unwrap(),
        });
        let detail = Detail::new("x".repeat(MAX_DETAIL)).unwrap();
        let error = Message::Error(ErrorMsg {
            code: ErrorCode::Internal,
            detail,
        });
        for m in [welcome, entry, error] {
            let b = m.to_bytes();
            assert!(b.len() <= MAX_FRAME_LEN);
            assert_eq!(Message::from_bytes(&b), Ok(m));
        }
    }

    #[test]
    fn frame_buffer_never_holds_more_than_one_frame() {
        let mut fb = FrameBuffer::new();
        let big = vec![0u8; MAX_FRAME_LEN + 100];
        assert_eq!(fb.push(&big), MAX_FRAME_LEN);
        assert_eq!(fb.space(), 0);
        assert_eq!(fb.push(&[1]), 0);
        // Type 0 is unknown: the full buffer yields an error, not a stall.
        assert!(fb.next_message().is_err());
        assert!(fb.next_message().is_err(), "errors are sticky");
    }

    #[test]
    fn frame_buffer_hands_over_raw_bytes_after_upload_begin() {
        let begin = Message::UploadBegin(UploadBegin {
            seq: 3,
            media_hash: [7; 32],
            offset: 0,
            len: 4,
        });
        if let Message::UploadBegin(b) = &begin {
            assert_eq!(b.raw_len(), 4);
        }
        let mut wire = begin.to_bytes();
        wire.extend_from_slice(b"\x47\x00\x11\x10");
        let mut fb = FrameBuffer::new();
        assert_eq!(fb.push(&wire), wire.len());
        assert_eq!(fb.next_message(), Ok(Some(begin)));
        assert_eq!(fb.take_buffered(), b"\x47\x00\x11\x10");
        assert!(fb.is_empty());
    }

    /// Feed `wire` in pieces of the given sizes; collect messages until the end or an error.
    fn feed(wire: &[u8], pieces: &[usize]) -> (Vec<Message>, Option<DecodeError>) {
        let mut fb = FrameBuffer::new();
        let mut out = Vec::new();
        let mut rest = wire;
        let mut sizes = pieces.iter().cycle();
        while !rest.is_empty() {
            let want = (*sizes.next().unwrap()).min(rest.len());
            let took = fb.push(&rest[..want]);
            rest = &rest[took..];
            loop {
                match fb.next_message() {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
            assert!(took > 0 || want == 0, "FrameBuffer stalled");
        }
        (out, None)
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in arb::message()) {
            let b = m.to_bytes();
            prop_assert_eq!(b[0], m.message_type().as_u8());
            prop_assert_eq!(Frame::check(&b), Ok(b.len()));
            prop_assert_eq!(Frame::parse(&b), Ok((m.clone(), b.len())));
            prop_assert_eq!(Message::from_bytes(&b), Ok(m.clone()));
            let mut payload = Vec::new();
            m.encode_payload(&mut payload);
            prop_assert_eq!(&b[FRAME_HEADER_LEN..], &payload[..]);
            prop_assert_eq!(Message::decode_payload(m.message_type(), &payload), Ok(m));
        }

        #[test]
        fn every_strict_prefix_is_incomplete(m in arb::message()) {
            let b = m.to_bytes();
            // Large frames: check every prefix near the edges and a sample between.
            let step = (b.len() / 64).max(1);
            let cuts = (0..b.len().min(80))
                .chain((0..b.len()).step_by(step))
                .chain(b.len().saturating_sub(80)..b.len());
            for n in cuts {
                let prefix = &b[..n];
                prop_assert!(Frame::check(prefix).unwrap_err().is_incomplete(), "check at {}", n);
                prop_assert!(Frame::parse(prefix).unwrap_err().is_incomplete(), "parse at {}", n);
                prop_assert!(Message::from_bytes(prefix).unwrap_err().is_incomplete());
            }
        }

        #[test]
        fn trailing_bytes_are_left_to_the_next_frame(m in arb::message(), extra in vec(any::<u8>(), 1..20)) {
            let mut b = m.to_bytes();
            let n = b.len();
            b.extend_from_slice(&extra);
            prop_assert_eq!(Frame::parse(&b), Ok((m, n)));
            prop_assert_eq!(
                Message::from_bytes(&b),
                Err(DecodeError::TrailingData { what: "frame", count: extra.len() })
            );
        }

        #[test]
        fn frame_buffer_yields_messages_in_order(
            msgs in vec(arb::message(), 0..6),
            pieces in vec(1usize..3000, 1..8),
        ) {
            let wire: Vec<u8> = msgs.iter().flat_map(Encode::to_bytes).collect();
            let (got, err) = feed(&wire, &pieces);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn arbitrary_bytes_are_consistent(b in vec(any::<u8>(), 0..300)) {
            match Frame::check(&b) {
                Ok(n) => match Frame::parse(&b) {
                    // What decodes re-encodes to the same bytes: one encoding per message.
                    Ok((m, used)) => {
                        prop_assert_eq!(used, n);
                        prop_assert_eq!(m.to_bytes(), &b[..n]);
                    }
                    Err(e) => prop_assert!(!e.is_incomplete()),
                },
                Err(e) => prop_assert_eq!(Frame::parse(&b).unwrap_err(), e),
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic(ty in proptest::sample::select(MessageType::ALL), p in vec(any::<u8>(), 0..120)) {
            if let Ok(m) = Message::decode_payload(ty, &p) {
                let mut again = Vec::new();
                m.encode_payload(&mut again);
                prop_assert_eq!(again, p);
            }
        }
    }
}

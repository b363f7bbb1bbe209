//! Framed messages on a QUIC stream (FORMAT.md §7): a reader that yields
//! whole messages and hands over the bytes read past the last frame (the
//! start of raw media), and a writer of one message. No protocol decisions.

use fieldseal_proto::codec::{DecodeError, Encode};
use fieldseal_proto::frame::FrameBuffer;
use fieldseal_proto::msg::Message;
use quinn::{RecvStream, SendStream};

/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why the next message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes are not a valid frame: the peer broke the protocol (the
    /// control stream answers `Error { Malformed }`).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream or connection failed.
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
}

/// Reads frames from a stream.
pub(super) struct FrameReader {
    recv: RecvStream,
    buf: FrameBuffer,
    pending: Vec<u8>,
}

impl FrameReader {
    pub(super) fn new(recv: RecvStream) -> Self {
        FrameReader {
            recv,
            buf: FrameBuffer::new(),
            pending: Vec::new(),
        }
    }

    /// The next message, `None` at the end of the stream.
    pub(super) async fn next(&mut self) -> Result<Option<Message>, FrameError> {
        loop {
            if !self.pending.is_empty() {
                let n = self.buf.push(&self.pending);
                self.pending.drain(..n);
            }
            if let Some(m) = self.buf.next_message()? {
                return Ok(Some(m));
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            match self.recv.read(&mut chunk).await? {
                None => return Ok(None),
                Some(n) => {
                    chunk.truncate(n);
                    self.pending.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// The bytes read past the last frame (the start of raw media) and the
    /// stream, for reading raw bytes.
    pub(super) fn into_raw(mut self) -> (Vec<u8>, RecvStream) {
        let mut v = self.buf.take_buffered();
        v.append(&mut self.pending);
        (v, self.recv)
    }
}

/// Send one message.
pub(super) async fn send_msg(send: &mut SendStream, m: &Message) -> Result<(), quinn::WriteError> {
    send.write_all(&m.to_bytes()).await
}

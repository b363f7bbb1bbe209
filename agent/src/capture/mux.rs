//! The recording's single MPEG-TS muxer, writing into memory so the byte stream can be cut.
//!
//! This is the only module of the crate with `unsafe` code: ffmpeg-next has no safe way to ask
//! a muxer to flush what it buffers (`av_write_frame(ctx, NULL)`) nor to flush the AVIO buffer
//! (`avio_flush`). Both are needed at every cut so that the bytes of everything written before
//! the cut are in the sink, and nothing after it.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use ffmpeg_next::{codec, encoder, format, Dictionary, Packet, Rational};

use super::{CaptureError, FfCtx};
use fieldseal_proto::entry::PTS_HZ;

/// The in-memory end of the muxer's AVIO: bytes accumulate until [`TsMuxer::cut`] takes them.
#[derive(Debug, Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One mpegts muxer for a whole recording, with stream 0 = video and 1 = audio.
pub(crate) struct TsMuxer {
    octx: format::context::Output,
    sink: Sink,
}

impl std::fmt::Debug for TsMuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsMuxer").finish_non_exhaustive()
    }
}

pub(crate) const VIDEO_STREAM: usize = 0;
pub(crate) const AUDIO_STREAM: usize = 1;

impl TsMuxer {
    /// Creates the muxer for opened encoders and writes the header (into memory).
    pub(crate) fn new(
        video: &encoder::Video,
        audio: &encoder::Audio,
    ) -> Result<Self, CaptureError> {
        let sink = Sink::default();
        let io = format::context::StreamIo::from_write(sink.clone()).ctx("allocating AVIO")?;
        let mut octx =
            format::output_to_stream(io, None, Some("mpegts")).ctx("creating mpegts muxer")?;
        let tb = Rational::new(1, i32::try_from(PTS_HZ).unwrap_or(90_000));
        {
            let mut ost = octx
                .add_stream(encoder::find(codec::Id::H264))
                .ctx("adding video stream")?;
            ost.set_parameters(video);
            ost.set_time_base(tb);
        }
        {
            let mut ost = octx
                .add_stream(encoder::find(codec::Id::AAC))
                .ctx("adding audio stream")?;
            ost.set_parameters(audio);
            ost.set_time_base(tb);
        }
        let mut opts = Dictionary::new();
        // Write our timestamps as given: they already start at PTS_BASE, so the muxer must not
        // shift them, and the reported start/end PTS are then the ones in the file.
        opts.set("mpegts_copyts", "1");
        // PCR runs this far (µs) ahead of DTS, as the ffmpeg CLI does by default (-muxdelay 0.7).
        opts.set("max_delay", "700000");
        octx.write_header_with(opts).ctx("writing mpegts header")?;
        for ost in octx.streams() {
            if ost.time_base() != tb {
                return Err(CaptureError::Source(format!(
                    "mpegts muxer chose time base {} instead of 1/90000",
                    ost.time_base()
                )));
            }
        }
        Ok(TsMuxer { octx, sink })
    }

    /// Writes one packet (timestamps in 90 kHz, stream index set) without libavformat's
    /// interleaving queue, so it is in the byte stream before the next cut.
    pub(crate) fn write(&mut self, packet: &Packet) -> Result<(), CaptureError> {
        packet.write(&mut self.octx).ctx("writing packet")?;
        Ok(())
    }

    /// Flushes the muxer and its AVIO and returns every byte written since the previous cut.
    pub(crate) fn cut(&mut self) -> Result<Vec<u8>, CaptureError> {
        self.flush()?;
        Ok(self.sink.take())
    }

    /// The bytes written since the previous cut, without taking them (the live file's view,
    /// capture/live.rs): whole TS packets right after [`TsMuxer::flush`].
    pub(crate) fn with_pending<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.sink.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Flushes the muxer and its AVIO: everything written so far is in the sink.
    pub(crate) fn flush(&mut self) -> Result<(), CaptureError> {
        // SAFETY: `octx` owns a valid, header-written AVFormatContext for as long as `self`
        // lives, and we hold `&mut self`, so nothing else uses it concurrently. A NULL packet is
        // the documented way to flush a muxer with AVFMT_ALLOW_FLUSH (mpegts has it), and `pb`
        // is the non-NULL custom AVIOContext that `output_to_stream` installed.
        let ret = unsafe {
            let ctx = self.octx.as_mut_ptr();
            let ret = ffmpeg_next::ffi::av_write_frame(ctx, std::ptr::null_mut());
            if ret >= 0 {
                ffmpeg_next::ffi::avio_flush((*ctx).pb);
            }
            ret
        };
        if ret < 0 {
            return Err(CaptureError::Ffmpeg {
                context: "flushing muxer",
                source: ffmpeg_next::Error::from(ret),
            });
        }
        Ok(())
    }

    /// Writes the trailer and returns the last bytes.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, CaptureError> {
        let mut bytes = self.cut()?;
        self.octx.write_trailer().ctx("writing mpegts trailer")?;
        // SAFETY: as in `cut`: valid context, exclusive access, custom AVIO installed.
        unsafe { ffmpeg_next::ffi::avio_flush((*self.octx.as_mut_ptr()).pb) };
        bytes.extend(self.sink.take());
        Ok(bytes)
    }
}

//! fieldseal agent: the edge recorder on body cameras and tablets.
//!
//! It captures audio-video without interruption and cuts it into MPEG-TS segments
//! ([`capture`]); the chain writer, durable spool and sync client build on those segments.
//! It never depends on the server crate.
//!
//! `unsafe` is denied crate-wide; the one exception is `capture::mux`, which needs two FFmpeg
//! calls that ffmpeg-next does not wrap (see its module docs).
#![deny(unsafe_code)]

pub mod capture;

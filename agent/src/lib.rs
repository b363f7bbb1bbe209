//! # fieldseal-agent
//!
//! The edge recorder: capture, segmenter, chain writer, durable spool and the
//! sync client ([`sync`]). It never depends on the server crate.
#![forbid(unsafe_code)]

pub mod sync;

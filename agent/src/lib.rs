//! fieldseal agent: the edge recorder on body cameras and tablets.
//!
//! It captures audio-video without interruption and cuts it into MPEG-TS
//! segments ([`capture`]); the [`recorder`] decides what joins the chain (pre-event
//! buffer, start, stop, tags, mute); the [`spool`] writes every segment and event
//! durably and signs it into the device's hash chain; [`run`] drives them, with a
//! local [`control`] socket for commands; the [`sync`] client sends entries
//! hash-first and segments after them over QUIC. It never depends on the server crate.
//!
//! On disk, every file operation of the spool and its readers goes through
//! [`spoolfs`] (the real filesystem, or an in-memory twin that simulates power
//! loss), whose `write_atomic` is the one durable whole-file write (spool
//! markers, enrolment files, key files); [`chainlog`] is the one reader of
//! `chain.log`, shared by the [`spool`], the sled [`index`] and the sync
//! client's [`syncstore`]. The run loop's storage, battery and clock decisions
//! are a pure function of readings in [`policy`].
//!
//! Every signature the device makes (chain entries, TLS client handshakes)
//! goes through one [`devicekey::DeviceKey`]: the key file ([`keyfile`]) or a
//! key inside a PKCS#11 token ([`devicekey::pkcs11`]).
//!
//! `unsafe` is denied crate-wide; the exceptions are `capture::mux`, which needs two FFmpeg
//! calls that ffmpeg-next does not wrap, and `capture::thp`, one `prctl` that keeps x264's
//! frames off transparent huge pages (see their module docs).
#![deny(unsafe_code)]

pub mod acks;
pub mod activity;
pub mod capture;
pub mod chainlog;
pub mod clock;
pub mod config;
pub mod control;
pub mod devicekey;
pub mod fault;
pub mod fsutil;
pub mod gps;
pub mod index;
pub mod keyfile;
pub mod localtime;
pub mod policy;
pub mod recorder;
pub mod run;
pub mod spool;
pub mod spoolfs;
pub mod statustext;
pub mod sync;
pub mod syncstore;

//! # fieldseal-proto
//!
//! The evidence format and the wire protocol of fieldseal, as pure functions over
//! bytes: chain entries and their canonical bytes, hashing, signing and
//! verification, the chain verifier and its report, the RFC 9162 transparency
//! log with inclusion and consistency proofs, signed checkpoints, and the frame
//! codec of the agent↔server protocol.
//!
//! What it does **not** do: any I/O. No files, sockets, clocks or global
//! randomness: the current time and a random number generator are arguments.
//! A check in `make test` keeps tokio, quinn and sled out of its dependency tree.
//!
//! The byte layouts are specified in `docs/FORMAT.md` at the repository root.
//!
//! Layout: [`entry`] (the entry header, signing and the chain head, with the
//! bodies in `entry::segment` and `entry::event`), [`chain`] (the chain
//! verifier and its report), [`chainlog`] (records laid end to end in a file;
//! it owns the record-header size), [`codec`] (`Encode`/`Decode` over a
//! `Reader`), [`identity`] (device ids, hashes, the `Signer` seam), [`msg`]
//! and [`frame`] (wire messages and their framing), [`enroll`], [`receipt`]
//! and [`ack`] (the server's signed statements), [`renew`] (renewing a
//! device certificate over the sync connection), [`sigbatch`] (many
//! signatures checked together, with `verify_strict`'s answers),
//! [`leaf`], [`merkle`] and [`checkpoint`] (the transparency log), [`sample`]
//! (sample chains for tests and benchmarks), [`package`] (the export package
//! and its verifier) over [`ustar`] and [`x509`] (the little of tar and
//! X.509 it needs).
#![forbid(unsafe_code)]

pub mod ack;
pub mod chain;
pub mod chainlog;
pub mod checkpoint;
pub mod codec;
pub mod enroll;
pub mod entry;
pub mod frame;
pub mod identity;
pub mod leaf;
pub mod merkle;
pub mod msg;
pub mod package;
pub mod receipt;
pub mod renew;
pub mod sample;
pub mod sigbatch;
pub mod ustar;
pub mod x509;

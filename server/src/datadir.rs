//! The server's data folder: the one type that knows where each file lives.
//! Every other module asks a [`DataDir`] for a path instead of joining names
//! itself, so the layout below is written down once:
//!
//! ```text
//! DIR/config.toml                            configuration (config.rs)
//! DIR/ca.key, DIR/ca.crt                     the device CA (pki.rs), key mode 0600
//! DIR/server.key, DIR/server.crt             the server's TLS certificate, key mode 0600
//! DIR/receipt.key, DIR/receipt.pub           the receipt and checkpoint signing key, hex
//! DIR/control.sock                           the running server's control socket (control.rs)
//! DIR/run.lock                               pid of the server running here, flock'ed (runlock.rs)
//! DIR/devices/<device_id>/chain.log          accepted signed entries (FORMAT.md §9 records)
//! DIR/devices/<device_id>/equivocations.log  the first refused conflicting entries (same record format)
//! DIR/devices/<device_id>/equivocations.json how many were refused, when (equivocation.rs)
//! DIR/leaves.log                             every leaf of the transparency log (leaflog.rs)
//! DIR/blobs/<aa>/<sha256hex>                 verified segment bytes (blobstore.rs; aa: first two hex digits)
//! DIR/blobs/tmp/<name>.<n>                   a blob put in progress (deleted at start-up)
//! DIR/partial/<device_id>-<seq>              bytes of an upload in progress (storage.rs)
//! DIR/damaged/<sha256hex>[.n]                blobs scrub found damaged, kept as found
//! DIR/damaged.log                            what scrub found, one JSON object per line
//! DIR/checkpoints.log                        signed log checkpoints (tlog.rs)
//! DIR/index/                                 the sled index (db/), rebuildable
//! ```
//!
//! Every folder is mode 0700 and every file 0600 (`fsutil.rs`); `run`
//! refuses a folder, key or index that other users can reach
//! ([`DataDir::private_paths`]).
//!
//! Device ids are 16 lowercase hex digits (`DeviceId`'s `Display`), hashes
//! 64. What it does not do: open, write or fsync anything but list the
//! device folders (`fsutil.rs` makes writes durable; the modules named above
//! own each file's format).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use fieldseal_proto::identity::{DeviceId, Hash32};

/// The layout of one server data folder. Cheap to clone; holds only the
/// folder's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The data folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DIR/config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `DIR/catalogue.toml`: the recording catalogue (Art. 27), if the body
    /// publishes its own; Article 27's own otherwise.
    pub fn catalogue(&self) -> PathBuf {
        self.root.join("catalogue.toml")
    }

    /// `DIR/ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// `DIR/ca.crt`: what a device is given to trust the server.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    /// `DIR/server.key`.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }

    /// `DIR/server.crt`.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }

    /// `DIR/receipt.key`.
    pub fn receipt_key(&self) -> PathBuf {
        self.root.join("receipt.key")
    }

    /// `DIR/receipt.pub`.
    pub fn receipt_pub(&self) -> PathBuf {
        self.root.join("receipt.pub")
    }

    /// The key files `init` creates, which it refuses to overwrite.
    pub fn key_files(&self) -> [PathBuf; 5] {
        [
            self.ca_key(),
            self.ca_cert(),
            self.server_key(),
            self.server_cert(),
            self.receipt_key(),
        ]
    }

    /// `DIR/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// `DIR/run.lock`: holds the pid of the server running on the folder,
    /// which keeps an exclusive `flock` on it.
    pub fn run_lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// What `run` requires to be the owner's alone: the folder, its secret
    /// keys and the index (which holds the users' password hashes). Inside
    /// a 0700 folder the rest is out of reach anyway.
    pub fn private_paths(&self) -> [PathBuf; 5] {
        [
            self.root.clone(),
            self.ca_key(),
            self.server_key(),
            self.receipt_key(),
            self.index(),
        ]
    }

    /// `DIR/index/`, the sled index.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }

    /// `DIR/leaves.log`.
    pub fn leaves_log(&self) -> PathBuf {
        self.root.join("leaves.log")
    }

    /// `DIR/checkpoints.log`.
    pub fn checkpoints_log(&self) -> PathBuf {
        self.root.join("checkpoints.log")
    }

    /// `DIR/damaged.log`.
    pub fn damaged_log(&self) -> PathBuf {
        self.root.join("damaged.log")
    }

    /// `DIR/damaged/`: quarantined blobs.
    pub fn damaged(&self) -> PathBuf {
        self.root.join("damaged")
    }

    /// `DIR/damaged/<sha256hex>`: where the first quarantined copy of a blob
    /// goes (later copies get `.1`, `.2`, … appended by the blob store).
    pub fn damaged_blob(&self, hash: &Hash32) -> PathBuf {
        self.damaged().join(hex::encode(hash))
    }

    /// `DIR/devices/`.
    pub fn devices(&self) -> PathBuf {
        self.root.join("devices")
    }

    /// `DIR/devices/<device_id>/`.
    pub fn device(&self, id: DeviceId) -> PathBuf {
        self.devices().join(id.to_string())
    }

    /// `DIR/devices/<device_id>/chain.log`.
    pub fn chain_log(&self, id: DeviceId) -> PathBuf {
        self.device(id).join("chain.log")
    }

    /// `DIR/devices/<device_id>/equivocations.log`.
    pub fn equivocations_log(&self, id: DeviceId) -> PathBuf {
        self.device(id).join("equivocations.log")
    }

    /// `DIR/devices/<device_id>/equivocations.json`: the count of every
    /// equivocation, kept in full or not.
    pub fn equivocations_summary(&self, id: DeviceId) -> PathBuf {
        self.device(id).join("equivocations.json")
    }

    /// `DIR/blobs/`.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// `DIR/blobs/<aa>/<sha256hex>`.
    pub fn blob(&self, hash: &Hash32) -> PathBuf {
        let hex = hex::encode(hash);
        self.blobs().join(&hex[..2]).join(hex)
    }

    /// `DIR/blobs/tmp/`: puts in progress. Its name is not two hex digits,
    /// so it is never taken for a blob folder.
    pub fn blob_tmp(&self) -> PathBuf {
        self.blobs().join("tmp")
    }

    /// `DIR/partial/`.
    pub fn partials(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// `DIR/partial/<device_id>-<seq>`.
    pub fn partial(&self, device: DeviceId, seq: u64) -> PathBuf {
        self.partials().join(format!("{device}-{seq}"))
    }

    /// The folders `init` creates empty.
    pub fn init_folders(&self) -> [PathBuf; 3] {
        [self.devices(), self.blobs(), self.partials()]
    }

    /// The devices that have a folder under `DIR/devices`, sorted by id.
    /// Names that are not device ids are skipped with a warning.
    ///
    /// # Errors
    /// I/O errors other than "no devices folder yet".
    pub fn device_ids(&self) -> io::Result<Vec<DeviceId>> {
        let rd = match fs::read_dir(self.devices()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for d in rd {
            let name = d?.file_name();
            match name.to_str().and_then(|n| n.parse::<DeviceId>().ok()) {
                Some(id) => out.push(id),
                None => tracing::warn!(name = ?name, "not a device folder; ignored"),
            }
        }
        out.sort_unstable_by_key(|d| d.0);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths are part of the on-disk format (`docs/SERVER.md`): these
    /// strings must not change.
    #[test]
    fn layout_is_the_documented_one() {
        let d = DataDir::new("/d");
        let id = DeviceId([0xab; 8]);
        let h = [0x0f; 32];
        let hex = "0f".repeat(32);
        let s = |p: PathBuf| p.to_str().unwrap().to_owned();
        assert_eq!(s(d.chain_log(id)), "/d/devices/abababababababab/chain.log");
        assert_eq!(
            s(d.equivocations_log(id)),
            "/d/devices/abababababababab/equivocations.log"
        );
        assert_eq!(
            s(d.equivocations_summary(id)),
            "/d/devices/abababababababab/equivocations.json"
        );
        assert_eq!(s(d.blob(&h)), format!("/d/blobs/0f/{hex}"));
        assert_eq!(s(d.blob_tmp()), "/d/blobs/tmp");
        assert_eq!(s(d.partial(id, 7)), "/d/partial/abababababababab-7");
        assert_eq!(s(d.damaged_blob(&h)), format!("/d/damaged/{hex}"));
        assert_eq!(s(d.damaged_log()), "/d/damaged.log");
        assert_eq!(s(d.leaves_log()), "/d/leaves.log");
        assert_eq!(s(d.checkpoints_log()), "/d/checkpoints.log");
        assert_eq!(s(d.index()), "/d/index");
        assert_eq!(s(d.control_socket()), "/d/control.sock");
        assert_eq!(s(d.run_lock()), "/d/run.lock");
        assert_eq!(s(d.config()), "/d/config.toml");
        let keys: Vec<String> = d.key_files().into_iter().map(s).collect();
        assert_eq!(
            keys,
            [
                "/d/ca.key",
                "/d/ca.crt",
                "/d/server.key",
                "/d/server.crt",
                "/d/receipt.key"
            ]
        );
        assert_eq!(s(d.receipt_pub()), "/d/receipt.pub");
    }

    #[test]
    fn device_ids_lists_device_folders_only() {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path());
        assert!(d.device_ids().unwrap().is_empty());
        for id in [DeviceId([2; 8]), DeviceId([1; 8])] {
            fs::create_dir_all(d.device(id)).unwrap();
        }
        fs::create_dir_all(d.devices().join("not-a-device")).unwrap();
        assert_eq!(
            d.device_ids().unwrap(),
            vec![DeviceId([1; 8]), DeviceId([2; 8])]
        );
    }
}

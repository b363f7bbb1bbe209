//! A throwaway softhsm2 token for tests and benchmarks: its own
//! `softhsm2.conf` and token folder under a temporary folder (never the
//! system's), one token initialised with `softhsm2-util --init-token`, all
//! removed on drop.
//!
//! softhsm2 reads `SOFTHSM2_CONF` when the module is initialised, so a
//! process that loads the module itself must set [`SoftHsm::env`] before
//! its first token operation; a child process gets it in its environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::pkcs11::TokenKey;

/// Where Debian's `softhsm2` puts its module.
pub const MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// A private softhsm2 with one initialised token.
#[derive(Debug)]
pub struct SoftHsm {
    /// The temporary folder holding the configuration and the token.
    pub dir: PathBuf,
    /// The module to load.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The user PIN.
    pub pin: String,
}

impl SoftHsm {
    /// The installed softhsm2 module, if any.
    pub fn module() -> Option<PathBuf> {
        MODULES.iter().map(PathBuf::from).find(|p| p.exists())
    }

    /// Make a private softhsm2 and initialise token `token` in it, or
    /// `None` if softhsm2 is not installed.
    ///
    /// # Panics
    /// If the folder cannot be made or `softhsm2-util` fails: test set-up.
    pub fn new(token: &str) -> Option<SoftHsm> {
        let module = Self::module()?;
        let dir = std::env::temp_dir().join(format!(
            "fieldseal-softhsm-{}-{}",
            std::process::id(),
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        ));
        std::fs::create_dir_all(dir.join("tokens")).expect("softhsm folder");
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.join("tokens").display()
            ),
        )
        .expect("softhsm2.conf");
        let hsm = SoftHsm {
            dir,
            module,
            token: token.to_string(),
            pin: "246810".into(),
        };
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", token])
            .args(["--so-pin", "13579135", "--pin", &hsm.pin])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .expect("run softhsm2-util (Debian package softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(hsm)
    }

    /// Its `softhsm2.conf`.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    /// The environment variable that points the module at it.
    pub fn env(&self) -> (&'static str, PathBuf) {
        ("SOFTHSM2_CONF", self.conf())
    }

    /// A key labelled `label` in its token.
    pub fn key(&self, label: &str) -> TokenKey {
        TokenKey {
            module: self.module.clone(),
            token: self.token.clone(),
            label: label.to_string(),
            pin_file: None,
        }
    }

    /// Write the PIN to `path`, mode 0600, as an operator would.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write_pin(&self, path: &Path) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .expect("pin file");
        std::io::Write::write_all(&mut f, format!("{}\n", self.pin).as_bytes()).expect("pin");
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! `DIR/config.toml`: the agent's settings. `init` writes a commented file with
//! the defaults; every field may be left out and takes its default, but the
//! file itself must be there and not empty: a missing or emptied file (a
//! folder never initialised, a power cut after `init`) is refused, not read
//! as "all defaults", so a device never records on settings nobody chose.

use std::path::Path;

use serde::Deserialize;

use crate::capture::{CaptureConfig, FrameRate, Pacing, SourceSpec};
use crate::devicekey::KeyStore;
use crate::spoolfs::{write_atomic_with, AtomicWrite, SpoolFs, StdFs};

/// Write [`DEFAULT_CONFIG`] to `dir/config.toml` durably (temp file, fsync,
/// link, fsync the folder) unless a file is there already. Returns whether it
/// wrote one. A plain write would leave an empty file after a power cut soon
/// after `init`, and the agent would record on defaults without a word.
///
/// # Errors
/// I/O errors.
pub fn write_default(dir: &Path) -> std::io::Result<bool> {
    write_default_with(&StdFs, dir)
}

/// [`write_default`] through the file operations `fs` (the power-loss twin
/// in tests).
///
/// # Errors
/// As [`write_default`].
pub fn write_default_with(fs: &dyn SpoolFs, dir: &Path) -> std::io::Result<bool> {
    write_with_key(fs, dir, &KeyStore::File)
}

/// Write [`DEFAULT_CONFIG`] with the `[key]` section of `key` (none for the
/// key file) to `dir/config.toml` durably, as [`write_default_with`]; a file
/// there already is kept (returns `false`).
///
/// # Errors
/// I/O errors.
pub fn write_with_key(fs: &dyn SpoolFs, dir: &Path, key: &KeyStore) -> std::io::Result<bool> {
    let keep = AtomicWrite {
        replace: false,
        private: false,
    };
    let text = format!("{DEFAULT_CONFIG}{}", key.config_section());
    match write_atomic_with(fs, &dir.join("config.toml"), text.as_bytes(), keep) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// The commented configuration `init` writes.
pub const DEFAULT_CONFIG: &str = r#"# fieldseal agent configuration. Every setting may be left out: the value
# shown is the default. Changes take effect the next time the agent starts.

[capture]
# Where audio-video comes from (overridden by --source):
#   "lavfi"                         synthetic camera: testsrc2 picture and a sine tone
#   "file:/path/to/media.mp4"       a media file played at its native rate
#   "v4l2:/dev/video0,alsa:hw:0"    a real camera and microphone
source = "lavfi"
width = 1280
height = 720
# Frames per second, exact: an integer (25, 30, 50, 60), a fraction in quotes
# ("30000/1001"), or 29.97 for NTSC's 30000/1001. A frame must last a whole
# number of 90 kHz ticks (24000/1001 and 60000/1001 are refused). At 30000/1001
# a 4-second segment is 120 frames (4.004 s).
fps = 30
# H.264 target bit rate, bit/s.
video_bitrate = 2000000
# x264 preset: faster presets use less CPU (battery) for larger files.
preset = "veryfast"
# Segment length in seconds; every segment starts with a keyframe.
segment_seconds = 4
# Seconds kept before recording is switched on (pre-event buffer); 0 turns it off
# (the camera then runs only while recording).
pre_event_seconds = 30
# While recording, the segment being encoded is written to its partial file as it
# is produced and made durable every this many ms of media: a power cut loses at
# most about this much (plus a few frames of encoder lookahead) instead of a whole
# segment. Each time costs two fdatasyncs (media and its progress note), about 240
# a minute at 500 ms, wear a body camera's flash takes easily; 0 turns streaming
# off (the segment is written whole at its end).
durable_every_ms = 500
sample_rate = 48000
channels = 1
audio_bitrate = 96000

[storage]
# Most bytes the spool (media and chain) may take. At the limit the agent signs a
# storage-full event and stops recording: it never deletes evidence the server
# has not acknowledged.
limit_bytes = 8589934592
# A storage-low event is signed when use crosses this percentage of the limit.
low_percent = 90
# How long a segment stays on the device after the server acknowledged it.
keep_after_ack_seconds = 86400

[gps]
# Positions from gpsd, the GPS daemon (Debian's gpsd package), over its JSON
# protocol. Off by default: a device without a receiver states "no fix
# (no-receiver)" in every entry and signs no position events. On, every
# segment states the latest fix at its last frame (or no fix, and why), and
# losing or regaining the fix or gpsd is signed as an event.
enabled = false
# Where gpsd listens, host:port.
gpsd = "127.0.0.1:2947"
# A fix counts for this many seconds after it came; then "no fix (fix-lost)".
max_fix_age_seconds = 5

# [key]
# Where the device key lives. Left out: the file device.key in this folder
# (mode 0600). `fieldseal-agent init --pkcs11 MODULE --token LABEL` writes this
# section instead, for a key generated inside a PKCS#11 token that never
# leaves it (docs/AGENT.md, "The device key"):
# store = "pkcs11"
# module = "/usr/lib/softhsm/libsofthsm2.so"
# token = "fieldseal"
# label = "fieldseal-device"
# pin_file = "/etc/fieldseal/pin"   # optional, mode 0600; else --pin - or --pin-file
"#;

/// The agent's settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Capture settings.
    pub capture: CaptureSection,
    /// Storage settings.
    pub storage: StorageSection,
    /// Where the device key lives.
    pub key: KeyStore,
    /// Position settings.
    pub gps: GpsSection,
}

/// `[capture]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // Documented in DEFAULT_CONFIG.
pub struct CaptureSection {
    pub source: String,
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    pub video_bitrate: u64,
    pub preset: String,
    pub segment_seconds: u32,
    pub pre_event_seconds: u32,
    pub durable_every_ms: u32,
    pub sample_rate: u32,
    pub channels: u16,
    pub audio_bitrate: u64,
}

impl Default for CaptureSection {
    fn default() -> Self {
        let c = CaptureConfig::default();
        CaptureSection {
            source: "lavfi".into(),
            width: c.width,
            height: c.height,
            fps: c.fps,
            video_bitrate: c.video_bitrate,
            preset: c.x264_preset,
            segment_seconds: c.segment_secs,
            pre_event_seconds: 30,
            durable_every_ms: crate::capture::live::DEFAULT_DURABLE_EVERY_MS,
            sample_rate: c.sample_rate,
            channels: c.channels,
            audio_bitrate: c.audio_bitrate,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // Documented in DEFAULT_CONFIG.
pub struct StorageSection {
    pub limit_bytes: u64,
    pub low_percent: u8,
    pub keep_after_ack_seconds: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            limit_bytes: 8 << 30,
            low_percent: 90,
            keep_after_ack_seconds: 86_400,
        }
    }
}

/// `[gps]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)] // Documented in DEFAULT_CONFIG.
pub struct GpsSection {
    pub enabled: bool,
    pub gpsd: String,
    pub max_fix_age_seconds: u32,
}

impl Default for GpsSection {
    fn default() -> Self {
        GpsSection {
            enabled: false,
            gpsd: "127.0.0.1:2947".into(),
            max_fix_age_seconds: 5,
        }
    }
}

impl GpsSection {
    /// The position source these settings ask for.
    pub fn start(&self) -> crate::gps::Gps {
        if self.enabled {
            crate::gps::Gps::start(
                &self.gpsd,
                std::time::Duration::from_secs(u64::from(self.max_fix_age_seconds)),
                crate::gps::Backoff::default(),
            )
        } else {
            crate::gps::Gps::off()
        }
    }

    fn check(&self) -> Result<(), String> {
        let port = self
            .gpsd
            .rsplit_once(':')
            .map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p > 0) {
            return Err(format!("gps.gpsd must be host:port, not {:?}", self.gpsd));
        }
        if self.max_fix_age_seconds == 0 {
            return Err("gps.max_fix_age_seconds must be at least 1".into());
        }
        Ok(())
    }
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not valid.
    #[error("{0}: {1}")]
    Parse(String, String),
    /// The file is not there.
    #[error("{0}: missing: is this an agent data folder? run `fieldseal-agent init --data {1}` (on a folder already initialised, restore the file)")]
    Missing(String, String),
    /// The file holds nothing (cut short by a power loss?).
    #[error("{0}: empty (cut short by a power loss?): restore it; the defaults are listed in docs/AGENT.md")]
    Empty(String),
}

impl AgentConfig {
    /// Load `DIR/config.toml`.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing, empty, unreadable or invalid file
    /// (unknown keys included).
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("config.toml");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing(
                    path.display().to_string(),
                    dir.display().to_string(),
                ))
            }
            Err(e) => return Err(ConfigError::Io(path.display().to_string(), e)),
        };
        // A file torn by a power cut is often zeros, or nothing at all.
        if text.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            return Err(ConfigError::Empty(path.display().to_string()));
        }
        let text = String::from_utf8(text)
            .map_err(|_| ConfigError::Parse(path.display().to_string(), "not UTF-8 text".into()))?;
        let cfg: AgentConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))?;
        cfg.gps
            .check()
            .map_err(|e| ConfigError::Parse(path.display().to_string(), e))?;
        if cfg.storage.low_percent == 0 || cfg.storage.low_percent > 100 {
            return Err(ConfigError::Parse(
                path.display().to_string(),
                "storage.low_percent must be 1..=100".into(),
            ));
        }
        Ok(cfg)
    }

    /// The capture configuration, with `source` overriding the file's.
    ///
    /// # Errors
    /// A source spec that does not parse.
    pub fn capture_config(
        &self,
        source: Option<&str>,
    ) -> Result<CaptureConfig, crate::capture::CaptureError> {
        let c = &self.capture;
        let spec: SourceSpec = source.unwrap_or(&c.source).parse()?;
        let cfg = CaptureConfig {
            source: spec,
            width: c.width,
            height: c.height,
            fps: c.fps,
            video_bitrate: c.video_bitrate,
            x264_preset: c.preset.clone(),
            segment_secs: c.segment_seconds,
            sample_rate: c.sample_rate,
            channels: c.channels,
            audio_bitrate: c.audio_bitrate,
            pacing: Pacing::RealTime,
            ..CaptureConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_default_parses_to_the_defaults() {
        let parsed: AgentConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        let d = AgentConfig::default();
        assert_eq!(parsed.capture.width, d.capture.width);
        assert_eq!(
            parsed.capture.pre_event_seconds,
            d.capture.pre_event_seconds
        );
        assert_eq!(parsed.storage.limit_bytes, d.storage.limit_bytes);
        assert!(parsed.capture_config(None).is_ok());
        assert!(!parsed.gps.enabled);
        assert_eq!(parsed.gps.gpsd, d.gps.gpsd);
        assert_eq!(parsed.gps.max_fix_age_seconds, d.gps.max_fix_age_seconds);
        assert!(parsed.gps.check().is_ok());
    }

    #[test]
    fn frame_rates_are_read_exactly() {
        let rate = |v: &str| {
            toml::from_str::<AgentConfig>(&format!("[capture]\nfps = {v}\n"))
                .map(|c| c.capture_config(None).unwrap().fps)
        };
        assert_eq!(rate("25").unwrap().to_string(), "25");
        assert_eq!(rate("\"30000/1001\"").unwrap(), FrameRate::NTSC);
        assert_eq!(rate("29.97").unwrap(), FrameRate::NTSC);
        for bad in ["7", "23.976", "\"24000/1001\"", "0", "\"thirty\""] {
            assert!(rate(bad).is_err(), "fps = {bad} should be refused");
        }
    }

    #[test]
    fn gps_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "gpsd = \"localhost\"",
            "gpsd = \":2947\"",
            "gpsd = \"127.0.0.1:0\"",
            "gpsd = \"127.0.0.1:99999\"",
            "max_fix_age_seconds = 0",
        ] {
            std::fs::write(
                dir.path().join("config.toml"),
                format!("[gps]\nenabled = true\n{bad}\n"),
            )
            .unwrap();
            let e = AgentConfig::load(dir.path()).unwrap_err();
            assert!(matches!(e, ConfigError::Parse(..)), "{bad}: {e}");
        }
        std::fs::write(
            dir.path().join("config.toml"),
            "[gps]\nenabled = true\ngpsd = \"[::1]:2947\"\n",
        )
        .unwrap();
        assert!(AgentConfig::load(dir.path()).unwrap().gps.enabled);
    }

    #[test]
    fn a_missing_or_emptied_file_is_refused_not_taken_for_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.toml: missing") && e.contains("fieldseal-agent init"),
            "{e}"
        );
        let p = dir.path().join("config.toml");
        for torn in [&b""[..], b"\n  \n", &[0u8; 64]] {
            std::fs::write(&p, torn).unwrap();
            let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("config.toml: empty"), "{e}");
        }
        // Cut in the middle of a line: names the file and the line.
        std::fs::write(
            &p,
            &DEFAULT_CONFIG.as_bytes()[..DEFAULT_CONFIG.find("= 1280").unwrap()],
        )
        .unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("line"), "{e}");
    }

    #[test]
    fn the_key_section_is_read_and_checked_with_the_rest() {
        use crate::devicekey::pkcs11::TokenKey;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::Pkcs11(TokenKey {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "cam".into(),
            label: "fieldseal-device".into(),
            pin_file: None,
        });
        let fs = StdFs;
        assert!(write_with_key(&fs, dir.path(), &store).unwrap());
        assert_eq!(AgentConfig::load(dir.path()).unwrap().key, store);
        std::fs::write(
            dir.path().join("config.toml"),
            format!("{DEFAULT_CONFIG}\n[key]\nstore = \"pkcs11\"\n"),
        )
        .unwrap();
        let e = AgentConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("needs `module`"), "{e}");
        std::fs::write(dir.path().join("config.toml"), DEFAULT_CONFIG).unwrap();
        assert_eq!(AgentConfig::load(dir.path()).unwrap().key, KeyStore::File);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "[capture]\nwidht = 3\n").unwrap();
        assert!(matches!(
            AgentConfig::load(dir.path()),
            Err(ConfigError::Parse(..))
        ));
    }

    #[test]
    fn init_survives_a_power_cut_right_after_it() {
        use crate::spoolfs::MemFs;
        let fs = MemFs::new(7);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        let key = crate::keyfile::create_with(&fs, dir).unwrap();
        assert!(write_default_with(&fs, dir).unwrap());
        // A second init keeps the settings the officer may have changed.
        assert!(!write_default_with(&fs, dir).unwrap());
        fs.power_loss(true);
        let files = fs.files();
        let get = |n: &str| String::from_utf8(files[&dir.join(n)].clone()).unwrap();
        assert_eq!(get("config.toml"), DEFAULT_CONFIG);
        assert_eq!(
            get(crate::keyfile::PUB_FILE).trim(),
            hex::encode(key.verifying_key().as_bytes())
        );
        assert_eq!(
            get(crate::keyfile::KEY_FILE).trim(),
            hex::encode(key.to_bytes())
        );
    }
}

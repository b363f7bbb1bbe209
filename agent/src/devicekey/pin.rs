//! A token's user PIN: from stdin (`--pin -`) or a file (`--pin-file FILE`,
//! or `pin_file` in `config.toml`), never from the command line, which every
//! user of the machine can read, and never written by the agent.

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cryptoki::types::AuthPin;

/// Where the PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// The first line of standard input.
    Stdin,
    /// The first line of a file only its owner may read.
    File(PathBuf),
}

impl PinSource {
    /// From the command line's `--pin` and `--pin-file`: `--pin -` is stdin;
    /// any other `--pin` value is refused (the command line is public).
    ///
    /// # Errors
    /// [`PinError::OnCommandLine`].
    pub fn from_args(
        pin: Option<&str>,
        pin_file: Option<PathBuf>,
    ) -> Result<Option<PinSource>, PinError> {
        match (pin, pin_file) {
            (Some("-"), _) => Ok(Some(PinSource::Stdin)),
            (Some(_), _) => Err(PinError::OnCommandLine),
            (None, Some(f)) => Ok(Some(PinSource::File(f))),
            (None, None) => Ok(None),
        }
    }
}

/// Errors reading a PIN.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// `--pin 1234`.
    #[error(
        "a PIN on the command line is readable by every user: give --pin - (stdin) or --pin-file FILE"
    )]
    OnCommandLine,
    /// The file or stdin could not be read.
    #[error("reading the PIN from {0}: {1}")]
    Io(String, std::io::Error),
    /// Group or others may read the file.
    #[error("{0}: readable by other users (mode {1:o}); run `chmod 600` on it")]
    TooOpen(String, u32),
    /// Nothing there.
    #[error("the PIN from {0} is empty")]
    Empty(String),
}

/// Read the PIN: the first line, without its line ending.
///
/// # Errors
/// [`PinError`]: unreadable, too open (a file), or empty.
pub fn read(source: &PinSource) -> Result<AuthPin, PinError> {
    read_text(source).map(AuthPin::from)
}

fn read_text(source: &PinSource) -> Result<String, PinError> {
    let (name, line) = match source {
        PinSource::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| PinError::Io("stdin".into(), e))?;
            ("stdin".to_string(), line)
        }
        PinSource::File(path) => {
            let name = path.display().to_string();
            let meta = std::fs::metadata(path).map_err(|e| PinError::Io(name.clone(), e))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(PinError::TooOpen(name, mode));
            }
            let text = std::fs::read_to_string(path).map_err(|e| PinError::Io(name.clone(), e))?;
            let line = text.lines().next().unwrap_or("").to_string();
            (name, line)
        }
    };
    let pin = line.trim_end_matches(['\n', '\r']);
    if pin.is_empty() {
        return Err(PinError::Empty(name));
    }
    Ok(pin.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_file_must_be_private_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "123456\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = PinSource::File(p.clone());
        assert!(matches!(read_text(&src), Err(PinError::TooOpen(_, 0o644))));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_text(&src).unwrap(), "123456");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(read_text(&src), Err(PinError::Empty(_))));
        std::fs::write(&p, "12 34\r\nignored\n").unwrap();
        assert_eq!(read_text(&src).unwrap(), "12 34");
    }

    #[test]
    fn the_command_line_takes_only_a_dash_or_a_file() {
        assert_eq!(
            PinSource::from_args(Some("-"), None).unwrap(),
            Some(PinSource::Stdin)
        );
        assert!(matches!(
            PinSource::from_args(Some("1234"), None),
            Err(PinError::OnCommandLine)
        ));
        assert_eq!(
            PinSource::from_args(None, Some("/p".into())).unwrap(),
            Some(PinSource::File("/p".into()))
        );
        assert_eq!(PinSource::from_args(None, None).unwrap(), None);
    }
}

//! Signs a chain of N entries (proto's sample chain: a recording of N-3
//! segments and its events) with the device key in a file or in a PKCS#11
//! token, and prints the seconds the chain took: `make bench` times the token
//! against the key file (scripts/bench/compute.sh, `bench_sign`).
//!
//! ```text
//! sign_entries file|token N
//! ```
//!
//! The token is softhsm2, in a private configuration made for the run
//! (`fieldseal_agent::devicekey::softhsm`), with a key generated in it as
//! `init --pkcs11` does. Both go through [`DeviceKey`], as the chain writer
//! does; set-up (making the token, logging in) is not timed.
//!
//! An example rather than a subcommand of `fieldseal-agent`, like
//! `hash_files`: that binary's start resolves FFmpeg's libraries.

use std::process::ExitCode;
use std::time::Instant;

use fieldseal_agent::devicekey::pkcs11::{generate, TokenSigner};
use fieldseal_agent::devicekey::softhsm::SoftHsm;
use fieldseal_agent::devicekey::DeviceKey;
use fieldseal_proto::identity::Signer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(kind), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: sign_entries file|token ENTRIES (at least 4)");
        return ExitCode::from(2);
    };
    if n < 4 {
        eprintln!("sign_entries: at least 4 entries (the sample's events)");
        return ExitCode::from(2);
    }
    // Kept alive for the run: dropping it deletes the token.
    let mut _hsm = None;
    let key: DeviceKey = match kind.as_str() {
        "file" => ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng).into(),
        "token" => {
            let Some(hsm) = SoftHsm::new("bench") else {
                eprintln!("sign_entries: softhsm2 is not installed (scripts/install-deps.sh)");
                return ExitCode::FAILURE;
            };
            let (var, conf) = hsm.env();
            // Before the module is loaded; nothing else runs yet.
            std::env::set_var(var, conf);
            let t = hsm.key("bench");
            let pin = || cryptoki::types::AuthPin::from(hsm.pin.clone());
            let signer = generate(&t, &pin()).and_then(|_| TokenSigner::open(&t, pin()));
            _hsm = Some(hsm);
            match signer {
                Ok(s) => DeviceKey::new(s),
                Err(e) => {
                    eprintln!("sign_entries: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        other => {
            eprintln!("sign_entries: `{other}`: file or token");
            return ExitCode::from(2);
        }
    };
    // The sample: agent-started, recording-started, N-3 segments, stopped.
    let t0 = Instant::now();
    let chain = fieldseal_proto::sample::build(&key, &[n - 3], 1);
    let secs = t0.elapsed().as_secs_f64();
    let last = chain.entries.last().expect("entries");
    // Each signature verifies (the token's were checked as they came, too).
    assert!(last.verify(&key.public_key()).is_ok());
    println!("{secs:.6} {}", chain.entries.len());
    ExitCode::SUCCESS
}

//! Write a sample evidence package (docs/FORMAT.md §9) signed by a new random
//! device key: what `make demo` verifies before the agent exists to record one.
//!
//! `cargo run -p fieldseal-proto --example sample_package -- OUT_DIR`

use ed25519_dalek::SigningKey;
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::Signer;
use fieldseal_proto::sample;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .expect("usage: sample_package OUT_DIR");
    std::fs::create_dir_all(out.join("media"))?;
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let chain = sample::build(&key, &[5, 3], 188 * 100);
    let mut log = Vec::new();
    for e in &chain.entries {
        chainlog::put_record(&mut log, &e.to_bytes());
    }
    std::fs::write(out.join("chain.log"), log)?;
    std::fs::write(
        out.join("device.pub"),
        hex::encode(key.verifying_key().as_bytes()) + "\n",
    )?;
    for (seq, bytes) in &chain.media {
        std::fs::write(out.join("media").join(format!("{seq:012}.ts")), bytes)?;
    }
    println!(
        "wrote {} entries and {} media files of device {} to {}",
        chain.entries.len(),
        chain.media.len(),
        key.device_id(),
        out.display()
    );
    Ok(())
}

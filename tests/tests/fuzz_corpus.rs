//! Replays the stored fuzz inputs (`fuzz/seeds/<target>/`, grown by
//! `make fuzz-short`) through every fuzz check, as a normal test: each input
//! through every decoder, not only its own target's — bytes that found their
//! way into one decoder's corpus are good hostile input for the others.
//! Fast (a few hundred small files); `make fuzz-short` runs the fuzzers.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

type Check = fn(&[u8]);

const CHECKS: [(&str, Check); 8] = [
    ("frame", checks::frame),
    ("receipt", checks::receipt),
    ("entry", checks::entry),
    ("chainlog", checks::chainlog),
    ("checkpoint", checks::checkpoint),
    ("proof", checks::proof),
    ("leaf", checks::leaf),
    ("enroll", checks::enroll),
];

#[test]
fn every_stored_fuzz_input_passes_every_check() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut inputs = 0;
    for (target, _) in CHECKS {
        let dir = seeds.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the seed corpus is part of the repository)",
                dir.display()
            )
        });
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            for (name, check) in CHECKS {
                let r = std::panic::catch_unwind(|| check(&data));
                assert!(
                    r.is_ok(),
                    "{} through the {name} check panicked",
                    path.display()
                );
            }
            n += 1;
        }
        assert!(n > 0, "no seeds for {target}");
        inputs += n;
    }
    eprintln!("{inputs} stored inputs × {} checks", CHECKS.len());
}

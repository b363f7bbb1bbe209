//! Records from a source into segment files and prints the capture's counters; used to measure
//! CPU and memory against the ffmpeg CLI (run under `/usr/bin/time -v`).
//!
//! ```text
//! cargo run --release -p fieldseal-agent --example capture_bench -- [SECS] [OUT_DIR] [fast] [SOURCE]
//! ```
//! Defaults: 20 s of `lavfi` at 1280x720@30, paced to real time, segments not written.

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use fieldseal_agent::capture::{Capture, CaptureConfig, FfmpegCapture, Pacing};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: u32 = args.first().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let out_dir = args.get(1).filter(|d| *d != "-").cloned();
    let fast = args.get(2).is_some_and(|a| a == "fast");
    let source = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_default();
    let cfg = CaptureConfig {
        source,
        max_media_secs: Some(secs),
        pacing: if fast {
            Pacing::AsFastAsPossible
        } else {
            Pacing::RealTime
        },
        ..CaptureConfig::default()
    };
    if let Some(d) = &out_dir {
        std::fs::create_dir_all(d)?;
    }
    let t0 = Instant::now();
    let (tx, rx) = sync_channel(4);
    let handle = FfmpegCapture::new(cfg).start(tx)?;
    let mut bytes = 0usize;
    for seg in rx.iter() {
        bytes += seg.bytes.len();
        println!("{seg:?}");
        if let Some(d) = &out_dir {
            std::fs::write(format!("{d}/seg{:05}.ts", seg.index), &seg.bytes)?;
        }
        if seg.is_final {
            break;
        }
    }
    let summary = handle.wait();
    if let Some(e) = summary.error {
        return Err(e.into());
    }
    println!(
        "wall {:.2?}, {bytes} bytes, {:?}",
        t0.elapsed(),
        summary.stats
    );
    Ok(())
}

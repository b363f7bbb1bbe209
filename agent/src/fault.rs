//! Named crash points for fault-injection tests.
//!
//! `FIELDSEAL_CRASH_AT=NAME:N` makes the process abort (no destructors, no
//! flush: as abrupt as a power cut for everything not yet written) the N-th
//! time execution passes the point NAME. Unset, a point costs one relaxed
//! atomic load. Points:
//!
//! | name | where |
//! | --- | --- |
//! | `segment-half-written` | half of a segment's bytes are in `.partial/` (written whole), or a streamed segment was made durable part-way (capture/live.rs) |
//! | `segment-before-rename` | the partial file is complete and fsynced, not renamed |
//! | `segment-after-rename` | the media file is in place, its entry not yet signed |
//! | `entry-before-fsync` | an entry is appended to `chain.log` but not fsynced |

//!
//! `FIELDSEAL_DROP_FRAMES=FIRST:COUNT` makes the capture drop the video
//! frames numbered `FIRST ..< FIRST + COUNT` (from 0, per capture) as if the
//! encoder had fallen behind: the same path as a real drop under load, which
//! a test cannot force reliably on a shared machine.
//!
//! `FIELDSEAL_FIRST_PTS=TICKS` makes every capture start its video at this
//! 90 kHz PTS instead of `capture::PTS_BASE`, so that a test records across
//! MPEG-TS's 33-bit wrap (2^33 ticks, 26.5 h) in seconds instead of a day.
//!
//! `FIELDSEAL_CAPTURE_CLOCK=PATH` makes the capture write, at the start of
//! the file PATH (outside the data folder), the 90 kHz end time of the
//! newest video frame it has taken from the source: the capture clock, which
//! the power-loss suite compares with the end of the media that survived a
//! cut (its loss window). Unset, it costs one load per frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let v = std::env::var("FIELDSEAL_CRASH_AT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Pass the crash point `name`.
pub fn point(name: &str) {
    if let Some((t, n)) = target() {
        if t == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("fieldseal: crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}

static DROP: OnceLock<Option<(u64, u64)>> = OnceLock::new();

/// True if the video frame numbered `n` of a capture is to be dropped
/// (`FIELDSEAL_DROP_FRAMES`). Unset, it costs one load.
pub fn drop_video_frame(n: u64) -> bool {
    let range = DROP.get_or_init(|| {
        let v = std::env::var("FIELDSEAL_DROP_FRAMES").ok()?;
        let (first, count) = v.split_once(':')?;
        Some((first.parse().ok()?, count.parse().ok()?))
    });
    range.is_some_and(|(first, count)| n >= first && n - first < count)
}

static FIRST_PTS: OnceLock<Option<i64>> = OnceLock::new();

/// The first video PTS a capture is to start at (`FIELDSEAL_FIRST_PTS`),
/// if set. A value that does not parse is ignored like an unset one; one the
/// capture refuses (below `PTS_BASE`) stops it before it records.
pub fn first_pts() -> Option<i64> {
    *FIRST_PTS.get_or_init(|| std::env::var("FIELDSEAL_FIRST_PTS").ok()?.parse().ok())
}

static CLOCK: OnceLock<Option<std::fs::File>> = OnceLock::new();

/// Report the capture clock (`FIELDSEAL_CAPTURE_CLOCK`): `end_pts`, the
/// 90 kHz end of the newest video frame taken from the source, overwritten
/// in place as one fixed-width line (a reader never sees two values mixed).
pub fn capture_clock(end_pts: i64) {
    let file = CLOCK.get_or_init(|| {
        let path = std::env::var_os("FIELDSEAL_CAPTURE_CLOCK")?;
        std::fs::File::create(path).ok()
    });
    if let Some(f) = file {
        use std::os::unix::fs::FileExt;
        let _ = f.write_at(format!("{end_pts:020}\n").as_bytes(), 0);
    }
}

//! End-to-end checks of the ffmpeg capture against `ffprobe` (required: the Makefile installs
//! it). They record from lavfi as fast as possible and inspect the real MPEG-TS bytes.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::sync_channel;

use fieldseal_agent::capture::{
    Capture, CaptureConfig, CaptureSummary, CapturedSegment, FfmpegCapture, FrameRate, Pacing,
    SourceSpec, PTS_BASE,
};

const FPS: u32 = 30;
const FRAME_TICKS: i64 = 90_000 / FPS as i64;
/// One AAC frame (1024 samples at 48 kHz) in 90 kHz ticks.
const AAC_TICKS: i64 = 1920;

fn small_config(secs: u32, segment_secs: u32) -> CaptureConfig {
    CaptureConfig {
        // Smaller than the default 720p to keep the test quick on a shared 2-core machine; the
        // benchmark example uses 1280x720.
        width: 640,
        height: 360,
        fps: FrameRate::new(FPS, 1).unwrap(),
        segment_secs,
        video_bitrate: 800_000,
        pacing: Pacing::AsFastAsPossible,
        max_media_secs: Some(secs),
        ..CaptureConfig::default()
    }
}

fn record(cfg: CaptureConfig) -> (Vec<CapturedSegment>, CaptureSummary) {
    let (tx, rx) = sync_channel(64);
    let handle = FfmpegCapture::new(cfg).start(tx).expect("capture starts");
    let summary = handle.wait();
    assert!(
        summary.error.is_none(),
        "capture ends cleanly: {:?}",
        summary.error
    );
    let mut segs: Vec<_> = rx.try_iter().collect();
    segs.extend(summary.undelivered.iter().cloned());
    (segs, summary)
}

#[derive(Debug, Clone, Copy)]
struct Pkt {
    stream: u32,
    pts: i64,
    dts: i64,
    key: bool,
}

fn ffprobe_packets(path: &Path) -> Vec<Pkt> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,pts,dts,flags",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert!(f.len() >= 4, "unexpected ffprobe line {l:?}");
            Pkt {
                stream: f[0].parse().unwrap(),
                pts: f[1].parse().unwrap(),
                dts: f[2].parse().unwrap(),
                key: f[3].starts_with('K'),
            }
        })
        .collect()
}

/// Container name, stream count and the sorted codec names of a file.
fn ffprobe_streams(path: &Path) -> (String, Vec<String>) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=format_name,nb_streams:stream=index,codec_name",
        ])
        .args(["-of", "csv"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut format = String::new();
    let mut codecs = std::collections::BTreeMap::new();
    for line in text.lines() {
        // Streams are listed once under the MPEG-TS program and once on their own: key by index.
        let f: Vec<&str> = line.split(',').collect();
        match f.as_slice() {
            ["format", n, name] => format = format!("{name},{n}"),
            ["stream", index, codec] | ["program", "stream", index, codec] => {
                codecs.insert(index.to_string(), (*codec).to_owned());
            }
            _ => {}
        }
    }
    let mut codecs: Vec<String> = codecs.into_values().collect();
    codecs.sort();
    (format, codecs)
}

fn write_segments(dir: &Path, segs: &[CapturedSegment]) -> std::path::PathBuf {
    let mut all = Vec::new();
    for s in segs {
        std::fs::write(dir.join(format!("seg{:05}.ts", s.index)), &s.bytes).unwrap();
        all.extend_from_slice(&s.bytes);
    }
    let path = dir.join("all.ts");
    std::fs::write(&path, all).unwrap();
    path
}

/// Decodes a file completely; FFmpeg must report no error.
fn assert_decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{}: {err}",
        path.display()
    );
}

/// Whether the PAT (PID 0) comes before the first elementary-stream packet (PIDs 0x100 and
/// 0x101, FFmpeg's defaults): then the segment opens with its tables and plays alone.
fn pat_before_media(bytes: &[u8]) -> bool {
    assert!(
        bytes.len() >= 188 && bytes.len() % 188 == 0,
        "whole TS packets"
    );
    for pkt in bytes.chunks(188) {
        assert_eq!(pkt[0], 0x47, "TS sync byte");
        match (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]) {
            0 => return true,
            0x100 | 0x101 => return false,
            _ => {}
        }
    }
    false
}

/// Asserts `ts` (in presentation order) has no gap or overlap larger than `max_step`.
fn assert_continuous(mut ts: Vec<i64>, max_step: i64, what: &str) {
    ts.sort_unstable();
    for w in ts.windows(2) {
        let step = w[1] - w[0];
        assert!(
            step > 0 && step <= max_step,
            "{what}: step {step} between {} and {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn six_seconds_in_two_second_segments_concatenate_seamlessly() {
    let secs = 6;
    let (segs, summary) = record(small_config(secs, 2));
    let dir = tempfile::tempdir().unwrap();
    let all = write_segments(dir.path(), &segs);

    // Segment metadata.
    assert_eq!(segs.len(), 3, "segments: {segs:?}");
    assert_eq!(segs[0].start_pts, PTS_BASE);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.index, i as u64);
        assert!(s.keyframe_start, "segment {i} starts with a keyframe");
        assert_eq!(s.video_frames, 60, "segment {i}");
        assert_eq!(
            s.end_pts - s.start_pts,
            i64::from(s.video_frames) * FRAME_TICKS
        );
        assert_eq!(s.is_final, i + 1 == segs.len());
    }
    for w in segs.windows(2) {
        assert_eq!(w[0].end_pts, w[1].start_pts);
        assert!(w[0].start_mono <= w[1].start_mono);
    }
    let total_samples: u64 = segs.iter().map(|s| s.audio_samples).sum();
    // Encoded samples include the AAC encoder's 1024 priming samples, in whole frames.
    let want = u64::from(secs) * 48_000;
    assert!(
        (want..=want + 2 * 1024).contains(&total_samples),
        "audio samples {total_samples}"
    );
    assert_eq!(summary.stats.frames_captured, u64::from(secs * FPS));
    assert_eq!(summary.stats.frames_encoded, u64::from(secs * FPS));
    assert_eq!(summary.stats.frames_dropped, 0);
    assert_eq!(summary.stats.segments_emitted, 3);

    // The concatenation, as ffprobe sees it.
    let pkts = ffprobe_packets(&all);
    let video: Vec<Pkt> = pkts.iter().copied().filter(|p| p.stream == 0).collect();
    let audio: Vec<Pkt> = pkts.iter().copied().filter(|p| p.stream == 1).collect();
    let frames = video.len() as i64;
    assert!(
        (frames - i64::from(secs * FPS)).abs() <= 1,
        "video frames {frames}"
    );
    assert_eq!(video.iter().map(|p| p.pts).min(), Some(PTS_BASE));
    assert_continuous(
        video.iter().map(|p| p.pts).collect(),
        FRAME_TICKS,
        "video pts",
    );
    assert_continuous(
        video.iter().map(|p| p.dts).collect(),
        FRAME_TICKS,
        "video dts",
    );
    assert!(!audio.is_empty());
    assert_continuous(
        audio.iter().map(|p| p.pts).collect(),
        AAC_TICKS,
        "audio pts",
    );
    let audio_end = audio.iter().map(|p| p.pts).max().unwrap() + AAC_TICKS;
    let video_end = segs.last().unwrap().end_pts;
    assert!(
        (audio_end - video_end).abs() <= 2 * AAC_TICKS,
        "audio ends {audio_end}, video {video_end}"
    );

    // Keyframes exactly at the segment starts.
    let keys: Vec<i64> = video.iter().filter(|p| p.key).map(|p| p.pts).collect();
    let starts: Vec<i64> = segs.iter().map(|s| s.start_pts).collect();
    assert_eq!(keys, starts);

    assert_decodes_cleanly(&all);

    // Each segment alone: valid MPEG-TS with h264 + aac, opening with PAT, starting on its
    // keyframe, decodable without errors.
    for s in &segs {
        assert!(
            pat_before_media(&s.bytes),
            "segment {} opens with the PAT",
            s.index
        );
        let path = dir.path().join(format!("seg{:05}.ts", s.index));
        let (format, codecs) = ffprobe_streams(&path);
        assert_eq!(format, "mpegts,2", "segment {}", s.index);
        assert_eq!(
            codecs,
            vec!["aac".to_owned(), "h264".to_owned()],
            "segment {}",
            s.index
        );
        let own = ffprobe_packets(&path);
        let v: Vec<&Pkt> = own.iter().filter(|p| p.stream == 0).collect();
        assert_eq!(
            v.len(),
            s.video_frames as usize,
            "segment {} frames",
            s.index
        );
        // The cut is exact: the audio the metadata claims is the audio in the bytes.
        let a = own.iter().filter(|p| p.stream == 1).count() as u64;
        // (The very last AAC packet may be short.)
        assert_eq!(
            a,
            s.audio_samples.div_ceil(1024),
            "segment {} audio",
            s.index
        );
        assert!(
            v[0].key && v[0].pts == s.start_pts,
            "segment {} first video packet {:?}",
            s.index,
            v[0]
        );
    }
}

#[test]
fn stop_emits_a_partial_final_segment() {
    // No media limit: runs until stopped, paced like a camera.
    let cfg = CaptureConfig {
        pacing: Pacing::RealTime,
        max_media_secs: None,
        ..small_config(0, 1)
    };
    let (tx, rx) = sync_channel(64);
    let handle = FfmpegCapture::new(cfg).start(tx).unwrap();
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("first segment");
    assert_eq!(first.video_frames, 30);
    handle.set_muted(true);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let summary = handle.stop();
    assert!(summary.error.is_none());
    let mut segs = vec![first];
    segs.extend(rx.try_iter());
    segs.extend(summary.undelivered);
    let last = segs.last().unwrap();
    assert!(last.is_final);
    assert!(last.video_frames > 0);
    assert_eq!(summary.stats.frames_dropped, 0);
    let frames: u64 = segs.iter().map(|s| u64::from(s.video_frames)).sum();
    assert_eq!(frames, summary.stats.frames_encoded);
    let dir = tempfile::tempdir().unwrap();
    let all = write_segments(dir.path(), &segs);
    let video: Vec<i64> = ffprobe_packets(&all)
        .iter()
        .filter(|p| p.stream == 0)
        .map(|p| p.pts)
        .collect();
    assert_eq!(video.len() as u64, frames);
    assert_continuous(video, FRAME_TICKS, "video pts");
}

#[test]
fn file_source_replays_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (segs, _) = record(small_config(2, 1));
    let src = write_segments(dir.path(), &segs);
    let cfg = CaptureConfig {
        source: SourceSpec::File(src),
        max_media_secs: None,
        ..small_config(0, 1)
    };
    let (segs2, summary) = record(cfg);
    let frames: u32 = segs2.iter().map(|s| s.video_frames).sum();
    assert!((59..=61).contains(&frames), "frames {frames}");
    assert_eq!(summary.stats.frames_dropped, 0);
}

#[test]
fn missing_devices_and_files_are_clear_errors() {
    for spec in [
        "v4l2:/dev/video-fieldseal-none",
        "file:/nonexistent/fieldseal.ts",
    ] {
        let cfg = CaptureConfig {
            source: spec.parse().unwrap(),
            ..small_config(1, 1)
        };
        let (tx, _rx) = sync_channel(1);
        let err = FfmpegCapture::new(cfg).start(tx).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not found"), "{spec}: {msg}");
    }
    // A path that exists but is no camera: FFmpeg's refusal, with context.
    let cfg = CaptureConfig {
        source: "v4l2:/dev/null".parse().unwrap(),
        ..small_config(1, 1)
    };
    let (tx, _rx) = sync_channel(1);
    let err = FfmpegCapture::new(cfg).start(tx).unwrap_err();
    assert!(err.to_string().contains("v4l2"), "{err}");
    let cfg = CaptureConfig {
        source: "lavfi:no_such_filter_xyz".parse().unwrap(),
        ..small_config(1, 1)
    };
    let (tx, _rx) = sync_channel(1);
    let err = FfmpegCapture::new(cfg).start(tx).unwrap_err();
    assert!(err.to_string().contains("bad lavfi graph"), "{err}");
}

/// Loudest sample of a file's audio in dB (-91 is digital silence).
fn max_volume_db(path: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "info", "-i"])
        .arg(path)
        .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("max_volume:"))
        .unwrap_or_else(|| panic!("no volumedetect output: {err}"));
    let v = line.split("max_volume:").nth(1).unwrap().trim();
    v.trim_end_matches(" dB").parse().unwrap()
}

#[test]
fn muted_audio_is_silence_and_stereo_25fps_works() {
    let cfg = CaptureConfig {
        fps: "25".parse().unwrap(),
        channels: 2,
        ..small_config(3, 1)
    };
    let (tx, rx) = sync_channel(64);
    let handle = FfmpegCapture::new(cfg).start(tx).unwrap();
    handle.set_muted(true);
    assert!(handle.is_muted());
    let summary = handle.wait();
    assert!(summary.error.is_none());
    let mut segs: Vec<_> = rx.try_iter().collect();
    segs.extend(summary.undelivered);
    assert_eq!(segs.len(), 3);
    assert!(segs
        .iter()
        .all(|s| s.video_frames == 25 && s.codec.channels == 2));
    assert_eq!(segs[1].end_pts - segs[1].start_pts, 90_000);
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path(), &segs);
    let last = dir.path().join("seg00002.ts");
    assert!(max_volume_db(&last) < -80.0, "muted audio is silent");

    // The same recording unmuted has the tone.
    let (loud, _) = record(small_config(1, 1));
    let path = dir.path().join("loud.ts");
    std::fs::write(&path, &loud[0].bytes).unwrap();
    assert!(max_volume_db(&path) > -30.0, "tone is audible");
}

/// Overloads the encoder (1080p, slow preset, paced) so that frames are dropped, and checks the
/// drops are counted and show as timestamp gaps rather than compressed time. Depends on the
/// machine being too slow for the load, so it is not run by default.
#[test]
#[ignore = "timing-dependent: needs an encoder slower than real time"]
fn overload_drops_are_counted_and_leave_gaps() {
    let cfg = CaptureConfig {
        width: 1920,
        height: 1080,
        x264_preset: "slower".into(),
        pacing: Pacing::RealTime,
        ..small_config(4, 2)
    };
    let (segs, summary) = record(cfg);
    let dropped = summary.stats.frames_dropped;
    assert!(dropped > 0, "expected drops: {:?}", summary.stats);
    let frames: u64 = segs.iter().map(|s| u64::from(s.video_frames)).sum();
    let last = segs.last().unwrap();
    let span = (last.end_pts - segs[0].start_pts) / FRAME_TICKS;
    // Video frames in the file plus the gaps cover the recording's real duration.
    assert!(
        frames < 120 && span >= 118,
        "frames {frames}, span {span}, {:?}",
        summary.stats
    );
}

/// NTSC's 30000/1001 across MPEG-TS's 33-bit wrap: the segments' PTS (the chain's timeline) run
/// on past 2^33 by exactly 3003 ticks a frame, while the bytes carry them modulo 2^33 and still
/// concatenate into one seamless stream that decodes cleanly.
#[test]
fn ntsc_across_the_33_bit_wrap_runs_on_and_concatenates_seamlessly() {
    const WRAP: i64 = 1 << 33;
    const NTSC_TICKS: i64 = 3003;
    // 1.5 segments of 30 frames before the wrap: the second segment holds it.
    let first_pts = WRAP - 45 * NTSC_TICKS;
    let (segs, _) = record(CaptureConfig {
        fps: FrameRate::NTSC,
        first_pts,
        ..small_config(4, 1)
    });
    let dir = tempfile::tempdir().unwrap();
    let all = write_segments(dir.path(), &segs);
    // 4 s at 30000/1001 are 120 frames, 30 (1.001 s) a segment.
    assert_eq!(segs.len(), 4, "segments: {segs:?}");
    assert_eq!(segs[0].start_pts, first_pts);
    for s in &segs {
        assert_eq!(s.video_frames, 30, "segment {}", s.index);
        assert_eq!(s.end_pts - s.start_pts, 30 * NTSC_TICKS);
        assert_eq!((s.codec.fps_num, s.codec.fps_den), (30_000, 1001));
    }
    for w in segs.windows(2) {
        assert_eq!(w[0].end_pts, w[1].start_pts);
    }
    assert!(segs[1].start_pts < WRAP && WRAP < segs[1].end_pts);

    // The stream's timestamps, as offsets from the first frame (ffprobe may show a wrapped
    // timestamp raw or already corrected: modulo 2^33 both are the same).
    let offset = |pts: i64| (pts - first_pts).rem_euclid(WRAP);
    let pkts = ffprobe_packets(&all);
    let video: Vec<Pkt> = pkts.iter().copied().filter(|p| p.stream == 0).collect();
    assert_eq!(video.len(), 120);
    let v: Vec<i64> = video.iter().map(|p| offset(p.pts)).collect();
    assert_eq!(v.iter().min(), Some(&0));
    assert_eq!(v.iter().max(), Some(&(119 * NTSC_TICKS)));
    assert_continuous(v, NTSC_TICKS, "video pts across the wrap");
    let a: Vec<i64> = pkts
        .iter()
        .filter(|p| p.stream == 1)
        .map(|p| (p.pts - first_pts + AAC_TICKS * 4).rem_euclid(WRAP))
        .collect();
    assert_continuous(a, AAC_TICKS, "audio pts across the wrap");
    let keys: Vec<i64> = video
        .iter()
        .filter(|p| p.key)
        .map(|p| offset(p.pts))
        .collect();
    let starts: Vec<i64> = segs.iter().map(|s| s.start_pts - first_pts).collect();
    assert_eq!(keys, starts);
    assert_decodes_cleanly(&all);
    for s in &segs {
        let own = ffprobe_packets(&dir.path().join(format!("seg{:05}.ts", s.index)));
        let v: Vec<&Pkt> = own.iter().filter(|p| p.stream == 0).collect();
        assert_eq!(v.len(), s.video_frames as usize, "segment {}", s.index);
        assert!(
            v[0].key && v[0].pts.rem_euclid(WRAP) == s.start_pts.rem_euclid(WRAP),
            "segment {} first video packet {:?}",
            s.index,
            v[0]
        );
    }
}

/// Armed by the writer, the capture streams each segment to its partial file as it is encoded
/// (issue 15): the finished file holds exactly the segment's bytes, hashed as written, and its
/// sidecar says what was durable at each point, up to the whole segment; a segment before the
/// arm is not streamed, and a file nobody keeps is deleted.
#[test]
fn armed_segments_are_streamed_to_their_partial_files_as_they_are_encoded() {
    use fieldseal_agent::capture::live::read_sidecar;
    use fieldseal_agent::capture::{LiveArm, LiveSpill};

    let dir = tempfile::tempdir().unwrap();
    let spill = LiveSpill::new(dir.path(), 250);
    spill.arm(Some(LiveArm {
        recording: [9; 16],
        base_index: 1,
        base_part: 5,
        case: Some("CJ-1".into()),
        activity: None,
        position: None,
        mono: (std::time::Instant::now(), 0),
    }));
    let mut cfg = small_config(6, 2);
    cfg.live = Some(spill.clone());
    let (segs, _) = record(cfg);
    assert_eq!(segs.len(), 3, "segments: {segs:?}");
    assert!(segs[0].streamed.is_none(), "before the arm's first index");
    for s in &segs[1..] {
        let f = s.streamed.as_ref().expect("streamed");
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            s.bytes,
            "segment {}",
            s.index
        );
        let mut h = fieldseal_proto::identity::Sha256Stream::new();
        h.update(&s.bytes);
        assert_eq!((f.len(), f.sha256()), (s.bytes.len() as u64, h.finish()));
        let text = std::fs::read(f.sidecar()).unwrap();
        let (draft, last) = read_sidecar(&text, f.len()).expect("a durable point");
        let part = 5 + u32::try_from(s.index - 1).unwrap();
        assert_eq!((draft.recording, draft.part), ([9; 16], part));
        assert_eq!(
            (draft.start_pts, draft.case.as_deref()),
            (s.start_pts, Some("CJ-1"))
        );
        assert_eq!(
            (
                last.len,
                last.end_pts,
                last.video_frames,
                last.audio_samples
            ),
            (f.len(), s.end_pts, s.video_frames, s.audio_samples)
        );
        // Durable as it went: 2 s of media at 250 ms, on whole TS packets.
        let points = String::from_utf8_lossy(&text).lines().count() - 1;
        assert!(
            points >= 4,
            "{points} durable points in segment {}",
            s.index
        );
        for line in String::from_utf8_lossy(&text).lines().skip(1) {
            let p: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(p["len"].as_u64().unwrap() % 188, 0, "{line}");
        }
    }
    assert!(spill.fsyncs() >= 8, "{} fsyncs", spill.fsyncs());
    let paths: Vec<_> = segs
        .iter()
        .filter_map(|s| s.streamed.as_ref().map(|f| f.path().to_owned()))
        .collect();
    drop(segs);
    assert!(paths.iter().all(|p| !p.exists()), "not kept: deleted");
}

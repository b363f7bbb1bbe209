//! The load generator's device side: a chain writer that signs one segment
//! entry per media file, and an in-memory sync store that times receipts.

use super::*;

/// Signs a device's chain: the entries a recording of segments makes.
#[derive(Debug)]
pub(crate) struct ChainWriter {
    pub(crate) key: SigningKey,
    pub(crate) head: ChainHead,
    pub(crate) recording: [u8; 16],
    pub(crate) part: u32,
    pub(crate) mono_us: u64,
    pub(crate) segment_secs: u32,
}

impl ChainWriter {
    pub(crate) fn new(key: SigningKey, segment_secs: u32) -> Self {
        let mut recording = [0u8; 16];
        recording.copy_from_slice(&key.verifying_key().to_bytes()[..16]);
        ChainWriter {
            key,
            head: ChainHead::GENESIS,
            recording,
            part: 0,
            mono_us: 1_000_000,
            segment_secs,
        }
    }

    pub(crate) fn clock(&self) -> Clock {
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Clock {
            wall_us,
            mono_us: self.mono_us,
            boot: 1,
        }
    }

    pub(crate) fn event(&mut self, event: Event) -> anyhow::Result<SignedEntry> {
        self.mono_us += 1000;
        let clock = self.clock();
        Ok(self
            .head
            .append(&self.key, clock, None, Body::Event(event))?)
    }

    /// The entries that open a chain and a recording.
    pub(crate) fn start(&mut self) -> anyhow::Result<Vec<SignedEntry>> {
        Ok(vec![
            self.event(Event::AgentStarted {
                software: "fieldseal-loadgen".into(),
            })?,
            self.event(Event::RecordingStarted {
                recording: self.recording,
                case: None,
                activity: None,
            })?,
        ])
    }

    pub(crate) fn segment(
        &mut self,
        media_sha256: Hash32,
        media_len: u64,
    ) -> anyhow::Result<SignedEntry> {
        let secs = i64::from(self.segment_secs);
        let start_pts = i64::from(self.part) * secs * PTS_HZ;
        let start_mono_us = self.mono_us;
        self.mono_us += u64::from(self.segment_secs) * 1_000_000;
        let clock = self.clock();
        let body = Body::Segment(SegmentBody {
            recording: self.recording,
            part: self.part,
            media_sha256,
            media_len,
            start_pts,
            end_pts: start_pts + secs * PTS_HZ,
            start_mono_us,
            video_frames: 30 * self.segment_secs,
            audio_samples: 48_000 * u64::from(self.segment_secs),
            codec: CodecParams {
                video: "h264".into(),
                width: 1280,
                height: 720,
                fps_num: 30,
                fps_den: 1,
                audio: "aac".into(),
                sample_rate: 48_000,
                channels: 1,
            },
            flags: 0,
            case: None,
            activity: None,
        });
        self.part += 1;
        Ok(self.head.append(&self.key, clock, None, body)?)
    }
}

#[derive(Debug, Default)]
pub(crate) struct StoreInner {
    pub(crate) entries: Vec<Vec<u8>>,
    pub(crate) pushed_at: Vec<Instant>,
    pub(crate) media: BTreeMap<u64, MediaRef>,
    pub(crate) receipts: BTreeMap<u64, ()>,
    pub(crate) acked: std::collections::BTreeSet<u64>,
}

/// Receipt latencies of every device, collected while a window is open.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    pub(crate) open: std::sync::atomic::AtomicBool,
    pub(crate) micros: Mutex<Vec<u64>>,
}

/// The agent's store as the sync client sees it, in memory, over media files
/// that already exist; it notes when each entry became durable and when its
/// receipt came back. Unlike the agent's `FsSyncStore` it does not fsync
/// receipts and acknowledgements (that is the agent's cost, not the link's
/// or the server's).
#[derive(Debug)]
pub(crate) struct BenchStore {
    pub(crate) inner: Mutex<StoreInner>,
    pub(crate) head: watch::Sender<Option<u64>>,
    pub(crate) latencies: Arc<Latencies>,
    /// Delete a media file once acknowledged (the device simulation makes
    /// one per segment and must not fill the disk).
    pub(crate) delete_acked: bool,
}

impl BenchStore {
    pub(crate) fn new(latencies: Arc<Latencies>, delete_acked: bool) -> Self {
        BenchStore {
            inner: Mutex::default(),
            head: watch::channel(None).0,
            latencies,
            delete_acked,
        }
    }

    pub(crate) fn push(&self, e: &SignedEntry, media: Option<PathBuf>) {
        let mut g = self.inner.lock().expect("lock");
        assert_eq!(e.seq(), g.entries.len() as u64, "entries in seq order");
        if let (Some(seg), Some(path)) = (e.entry.segment(), media) {
            g.media.insert(
                e.seq(),
                MediaRef {
                    path,
                    len: seg.media_len,
                    sha256: seg.media_sha256,
                },
            );
        }
        g.entries.push(e.to_bytes());
        g.pushed_at.push(Instant::now());
        let head = g.entries.len() as u64 - 1;
        drop(g);
        self.head.send_replace(Some(head));
    }

    /// (entries without a receipt, segments not acknowledged)
    pub(crate) fn pending(&self) -> (u64, u64) {
        let g = self.inner.lock().expect("lock");
        (
            g.entries.len() as u64 - g.receipts.len() as u64,
            g.media.len() as u64 - g.acked.len() as u64,
        )
    }
}

impl SyncStore for BenchStore {
    fn head(&self) -> Option<u64> {
        let g = self.inner.lock().expect("lock");
        (g.entries.len() as u64).checked_sub(1)
    }
    fn entry(&self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let g = self.inner.lock().expect("lock");
        Ok(usize::try_from(seq)
            .ok()
            .and_then(|i| g.entries.get(i))
            .cloned())
    }
    fn media(&self, seq: u64) -> io::Result<Option<MediaRef>> {
        Ok(self.inner.lock().expect("lock").media.get(&seq).cloned())
    }
    fn save_receipt(&self, r: &Receipt) -> io::Result<()> {
        let mut g = self.inner.lock().expect("lock");
        let at = usize::try_from(r.seq)
            .ok()
            .and_then(|i| g.pushed_at.get(i).copied());
        g.receipts.insert(r.seq, ());
        drop(g);
        if let Some(at) = at {
            if self.latencies.open.load(Ordering::Relaxed) {
                let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.latencies.micros.lock().expect("lock").push(us);
            }
        }
        Ok(())
    }
    fn media_acked(&self, ack: &fieldseal_proto::ack::MediaAck) -> io::Result<()> {
        let seq = ack.seq;
        let mut g = self.inner.lock().expect("lock");
        g.acked.insert(seq);
        let path = g.media.get(&seq).map(|m| m.path.clone());
        drop(g);
        if self.delete_acked {
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }
    fn is_acked(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").acked.contains(&seq)
    }
    fn has_receipt(&self, seq: u64) -> bool {
        self.inner.lock().expect("lock").receipts.contains_key(&seq)
    }
    fn subscribe(&self) -> watch::Receiver<Option<u64>> {
        self.head.subscribe()
    }
}

/// The media files of `dir`, sorted by name, with their lengths.
pub(crate) fn media_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let e = e?;
        if e.file_type()?.is_file() {
            v.push((e.path(), e.metadata()?.len()));
        }
    }
    v.sort();
    if v.is_empty() {
        bail!("{}: no media files", dir.display());
    }
    Ok(v)
}

pub(crate) fn hash_file(path: &Path) -> anyhow::Result<Hash32> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

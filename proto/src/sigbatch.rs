//! Many Ed25519 signatures checked together, with the answer of
//! [`VerifyingKey::verify_strict`] for each (`docs/FORMAT.md` §1), for
//! about half the work when there are hundreds of them.
//!
//! ```text
//! each signature: S < L, R canonical, R and A not of small order?  ── no ──► verify_strict alone
//! every R and every key A torsion-free? (128 random halves, ×L)     ── no ──► verify_strict each
//! Σ zᵢ(Rᵢ + kᵢAᵢ − SᵢB) = 0, one share per thread                  ── no ──► halve; ≤ 8 left: verify_strict each
//! ```
//!
//! # Why this gives the strict answer
//!
//! `verify_strict` accepts `R‖S` by key `A` over `M` iff `S < L`; the bytes
//! of `R` decompress to a point; neither that point nor `A` is of small
//! order; and the *bytes* of `[S]B − [k]A` equal those of `R`, with
//! `k = SHA-512(R‖A‖M) mod L`. Compressing a point gives its one canonical
//! encoding, so a non-canonical `R` (`y ≥ p`, or the sign of `x = 0` set)
//! never verifies; for a canonical one the last condition is the equation
//! `Dᵢ = [S]B − [k]A − R = 0` between points. The pre-checks of the first
//! line send everything else to `verify_strict` alone, which rejects it.
//!
//! The batch equation checks `Σ zᵢDᵢ = 0` with 128-bit `zᵢ` chosen after the
//! `Dᵢ` are fixed. In the subgroup of prime order `L` a nonzero `Dᵢ` survives
//! that with probability 2⁻¹²⁸. The curve's group is that subgroup times a
//! cyclic group of order 8, though, and a torsion part of `Dᵢ` vanishes
//! whenever 8 divides `zᵢ` (or 4, or 2): an `R` with a torsion component,
//! which only the key's holder can make verify otherwise, is rejected by
//! `verify_strict` but accepted by the batch equation for 1/8 to 1/2 of the
//! `z`, which depend on every other signature of the batch. This is why
//! ed25519-dalek's `verify_batch` (the same equation) cannot be made to agree
//! with `verify_strict` by cheap pre-checks, and why the second line is here:
//! when every `R` and every `A` is torsion-free, so is every `Dᵢ`.
//!
//! Checking a point for torsion is a multiplication by `L`, as dear as a
//! whole `verify_strict`. Instead each of 128 rounds sums a pseudo-random
//! half of the points and multiplies only the sum by `L`. The torsion part
//! of the sum is `Σ bᵢtᵢ` over the chosen bits `bᵢ`; when some `tⱼ ≠ 0`,
//! flipping `bⱼ` changes the sum, so at most one of the two is zero and a
//! round misses with probability at most 1/2: all 128 miss with at most 2⁻¹²⁸.
//!
//! Both the `zᵢ` and the halves come from SHA-512 over every input (each
//! `SHA-512(R‖A‖M)` and `S`, as ed25519-dalek's `verify_batch` feeds its
//! transcript), so the answers are reproducible and a signer cannot pick
//! them without changing what they depend on.
//!
//! The equation is written here over curve25519-dalek rather than calling
//! `verify_batch`: the torsion test needs every `R` decompressed, which
//! `verify_batch` would do a second time, and the one key of a chain enters
//! the sum once (`Σ zᵢkᵢ` times `A`) instead of once per signature, which
//! halves the multi-scalar multiplication.
//!
//! No I/O: threads come from `std::thread::scope`, their number from the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// One signature to check: `sig` by `key` over `msg`.
#[derive(Debug, Clone, Copy)]
pub struct SigCheck<'a> {
    /// The signer's public key.
    pub key: &'a VerifyingKey,
    /// The signed bytes.
    pub msg: &'a [u8],
    /// The signature, `R‖S`.
    pub sig: &'a [u8; 64],
}

impl SigCheck<'_> {
    /// `verify_strict`, the reference answer.
    pub fn verify_strict(&self) -> bool {
        self.key
            .verify_strict(self.msg, &Signature::from_bytes(self.sig))
            .is_ok()
    }
}

/// Below this many signatures they are checked one at a time: the torsion
/// test costs 128 multiplications by `L` whatever the count (about 4 ms on
/// one core), which a batch repays at about 20 µs saved per signature.
pub const BATCH_MIN: usize = 256;

/// Rounds of the torsion test: each misses a torsion component with
/// probability at most 1/2, and 2⁻¹²⁸ matches the batch equation's own bound.
const TORSION_ROUNDS: usize = 128;

/// Points per block when summing the rounds' halves: the 2⁶ sums of each
/// block's subsets are made once, then each round adds one of them. This
/// costs (2⁶ + 128) / 6 = 32 point additions per point, the fewest of any
/// block size, where adding each chosen point costs 64.
const BLOCK: usize = 6;

/// A share of the batch that fails is halved until this many are left,
/// which are checked one at a time.
const LEAF: usize = 8;

/// Failed batches, per thread's share, after which the rest of the share is
/// checked one at a time: with many bad signatures, halving costs more than
/// it saves (each failed batch of n costs about what n/6 single checks do).
const MAX_FAILED_BATCHES: usize = 24;

/// For each check, whether [`VerifyingKey::verify_strict`] accepts it: the
/// same answers, computed together on up to `threads` threads (0 counts as 1).
pub fn verify_strict_many(checks: &[SigCheck<'_>], threads: usize) -> Vec<bool> {
    let threads = threads.max(1);
    if checks.len() < BATCH_MIN {
        return one_at_a_time(checks, threads);
    }
    let keys = Keys::of(checks);
    let prepared: Vec<Option<Prepared>> = on_threads(checks, threads, |at, part| {
        part.iter()
            .enumerate()
            .map(|(i, c)| Prepared::of(at + i, c, &keys))
            .collect()
    });
    let mut out = vec![false; checks.len()];
    let mut alone = Vec::new();
    let mut batch = Vec::with_capacity(checks.len());
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Some(p) => batch.push(p),
            None => alone.push(i),
        }
    }
    let mut strict = |idx: &[usize]| {
        let picked: Vec<SigCheck<'_>> = idx.iter().map(|&i| checks[i]).collect();
        for (&i, ok) in idx.iter().zip(one_at_a_time(&picked, threads)) {
            out[i] = ok;
        }
    };
    strict(&alone);
    if batch.is_empty() {
        return out;
    }
    let seed = transcript(&batch);
    let size = batch.len().div_ceil(threads);
    let draw = |k: usize, part: &mut [Prepared]| {
        for (i, p) in part.iter_mut().enumerate() {
            p.draw(&seed, k * size + i);
        }
    };
    std::thread::scope(|s| {
        let mut parts = batch.chunks_mut(size).enumerate();
        let first = parts.next();
        for (k, part) in parts {
            s.spawn(move || draw(k, part));
        }
        if let Some((k, part)) = first {
            draw(k, part);
        }
    });
    if !torsion_free(&batch, &keys, &seed, threads) {
        strict(&batch.iter().map(|p| p.at).collect::<Vec<_>>());
        return out;
    }
    // Two shares per thread: a multi-scalar multiplication costs more per
    // point the fewer its points, so fewer parts than elsewhere.
    let verdicts: Vec<(usize, bool)> = on_parts(&batch, threads, 2, |_, share| {
        let mut verdicts = Vec::with_capacity(share.len());
        let mut failed = 0;
        check_share(share, &keys, checks, &mut failed, &mut verdicts);
        verdicts
    });
    for (i, ok) in verdicts {
        out[i] = ok;
    }
    out
}

/// `verify_strict` for each check, on up to `threads` threads: the
/// reference, and what small counts and every fallback use.
pub fn one_at_a_time(checks: &[SigCheck<'_>], threads: usize) -> Vec<bool> {
    // A thread is worth starting for a few signatures' work (~40 µs each).
    let threads = threads.clamp(1, checks.len().div_ceil(4).max(1));
    on_threads(checks, threads, |_, part| {
        part.iter().map(SigCheck::verify_strict).collect()
    })
}

/// `f(offset, part)` over contiguous parts of `items` on up to `threads`
/// threads (the caller's one of them), the results concatenated in order.
/// Each thread takes the next part when it is done with one, so that a core
/// shared with other work does less of it: [`PARTS_PER_THREAD`] parts each.
pub(crate) fn on_threads<T, R, F>(items: &[T], threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> Vec<R> + Sync,
{
    on_parts(items, threads, PARTS_PER_THREAD, f)
}

/// Parts per thread in [`on_threads`]: enough to even out a core that is
/// busy with something else, few enough that each part is still long
/// (thousands of point operations) next to taking it.
const PARTS_PER_THREAD: usize = 4;

fn on_parts<T, R, F>(items: &[T], threads: usize, per_thread: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(usize, &[T]) -> Vec<R> + Sync,
{
    let threads = threads.max(1);
    if threads == 1 || items.len() < 2 {
        return f(0, items);
    }
    let size = items.len().div_ceil(threads * per_thread).max(1);
    let parts: Vec<(usize, &[T])> = items
        .chunks(size)
        .enumerate()
        .map(|(k, part)| (k * size, part))
        .collect();
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Vec<R>>> = parts.iter().map(|_| Mutex::new(Vec::new())).collect();
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(at, part)) = parts.get(k) else {
            break;
        };
        let out = f(at, part);
        *done[k].lock().unwrap_or_else(PoisonError::into_inner) = out;
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.min(parts.len()))
            .map(|_| s.spawn(work))
            .collect();
        work();
        for h in helpers {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    done.into_iter()
        .flat_map(|d| d.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect()
}

/// The distinct keys of a set of checks.
struct Keys {
    /// Position in `points` by the key's bytes.
    index: HashMap<[u8; 32], usize>,
    /// Each key's point, as verification uses it.
    points: Vec<EdwardsPoint>,
    /// Of small order: `verify_strict` rejects everything it signed.
    weak: Vec<bool>,
}

impl Keys {
    fn of(checks: &[SigCheck<'_>]) -> Keys {
        let mut keys = Keys {
            index: HashMap::new(),
            points: Vec::new(),
            weak: Vec::new(),
        };
        for c in checks {
            let next = keys.points.len();
            if *keys.index.entry(c.key.to_bytes()).or_insert(next) == next {
                keys.points.push(c.key.to_edwards());
                keys.weak.push(c.key.is_weak());
            }
        }
        keys
    }

    fn position(&self, key: &VerifyingKey) -> usize {
        self.index[key.as_bytes()]
    }
}

/// One signature that passed the pre-checks, with what the equation needs.
struct Prepared {
    /// Its position among the checks.
    at: usize,
    /// Its key's position in [`Keys`].
    key: usize,
    r: EdwardsPoint,
    s: Scalar,
    /// `SHA-512(R‖A‖M)`: `k` reduced, and the transcript's record of R, A and M.
    hram: [u8; 64],
    k: Scalar,
    /// Its weight in the batch equation.
    z: Scalar,
    /// Bit `j`: whether round `j` of the torsion test takes `R`.
    rounds: u128,
}

impl Prepared {
    /// The pre-checks: `None` sends the signature to `verify_strict` alone
    /// (which rejects it).
    fn of(at: usize, c: &SigCheck<'_>, keys: &Keys) -> Option<Prepared> {
        let key = keys.position(c.key);
        if keys.weak[key] {
            return None;
        }
        let (r_bytes, s_bytes) = c.sig.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 of 64 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 of 64 bytes");
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
        if !canonical_point_encoding(&r_bytes) {
            return None;
        }
        let r = CompressedEdwardsY(r_bytes).decompress()?;
        if r.is_small_order() {
            return None;
        }
        let hram: [u8; 64] = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(c.key.as_bytes())
            .chain_update(c.msg)
            .finalize()
            .into();
        Some(Prepared {
            at,
            key,
            r,
            s,
            hram,
            k: Scalar::from_bytes_mod_order_wide(&hram),
            z: Scalar::ZERO,
            rounds: 0,
        })
    }

    /// Its weight and its rounds, as signature `i` of the batch.
    fn draw(&mut self, seed: &[u8; 64], i: usize) {
        let d = derive(seed, b"signature", i);
        self.z = Scalar::from(d.0);
        self.rounds = d.1;
    }
}

/// Whether `bytes` is the one encoding `compress` gives of the point it
/// names (if any): `y < p`, and the sign bit clear where `x = 0`
/// (`y = ±1`). The 19 values `p ≤ y < 2²⁵⁵` and the sign of a zero `x`
/// are what curve25519-dalek's decompression lets through.
pub fn canonical_point_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7;
    let mut y = *bytes;
    y[31] &= 0x7f;
    // p = 2²⁵⁵ − 19: little-endian 0xed, thirty 0xff, 0x7f.
    let top_all_ones = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff);
    if top_all_ones && y[0] >= 0xed {
        return false; // y ≥ p
    }
    let y_is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
    let y_is_minus_one = top_all_ones && y[0] == 0xec;
    !(sign == 1 && (y_is_one || y_is_minus_one))
}

/// The seed of every pseudo-random choice: SHA-512 over the count and each
/// signature's `SHA-512(R‖A‖M)` and `S`.
fn transcript(batch: &[Prepared]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(b"fieldseal/sigbatch/v1\0");
    h.update((batch.len() as u64).to_le_bytes());
    for p in batch {
        h.update(p.hram);
        h.update(p.s.as_bytes());
    }
    h.finalize().into()
}

/// Two 128-bit values for item `i` of a kind, from the seed.
fn derive(seed: &[u8; 64], kind: &[u8], i: usize) -> (u128, u128) {
    let d: [u8; 64] = Sha512::new()
        .chain_update(seed)
        .chain_update(kind)
        .chain_update((i as u64).to_le_bytes())
        .finalize()
        .into();
    let half = |b: &[u8]| u128::from_le_bytes(b.try_into().expect("16 bytes"));
    (half(&d[..16]), half(&d[16..32]))
}

/// Whether every `R` of the batch and every key is torsion-free, except with
/// probability 2⁻¹²⁸ (see the module doc).
fn torsion_free(batch: &[Prepared], keys: &Keys, seed: &[u8; 64], threads: usize) -> bool {
    let mut points: Vec<(EdwardsPoint, u128)> = batch.iter().map(|p| (p.r, p.rounds)).collect();
    points.extend(
        keys.points
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, derive(seed, b"key", i).1)),
    );
    let partial: Vec<[EdwardsPoint; TORSION_ROUNDS]> =
        on_threads(&points, threads, |_, part| vec![round_sums(part)]);
    let mut sums = [EdwardsPoint::identity(); TORSION_ROUNDS];
    for p in &partial {
        for (s, q) in sums.iter_mut().zip(p) {
            *s += q;
        }
    }
    on_threads(&sums, threads, |_, part| {
        vec![part.iter().all(EdwardsPoint::is_torsion_free)]
    })
    .into_iter()
    .all(|ok| ok)
}

/// For each round `j`, the sum of the points whose bit `j` is set.
fn round_sums(points: &[(EdwardsPoint, u128)]) -> [EdwardsPoint; TORSION_ROUNDS] {
    let mut sums = [EdwardsPoint::identity(); TORSION_ROUNDS];
    let mut subset = [EdwardsPoint::identity(); 1 << BLOCK];
    for block in points.chunks(BLOCK) {
        // subset[m] = the sum of the block's points whose bit is set in m.
        for m in 1..(1usize << block.len()) {
            subset[m] = subset[m & (m - 1)] + block[m.trailing_zeros() as usize].0;
        }
        for (j, sum) in sums.iter_mut().enumerate() {
            let m = block.iter().enumerate().fold(0usize, |m, (b, (_, bits))| {
                m | (((bits >> j) & 1) as usize) << b
            });
            if m != 0 {
                *sum += subset[m];
            }
        }
    }
    sums
}

/// Whether `Σ zᵢ(Rᵢ + kᵢAᵢ − SᵢB)` is the neutral point, with each key's
/// terms gathered: `[−Σ zᵢSᵢ]B + Σ [zᵢ]Rᵢ + Σ_A [Σ zᵢkᵢ]A`.
fn batch_holds(share: &[Prepared], keys: &Keys) -> bool {
    let mut b = Scalar::ZERO;
    let mut per_key: HashMap<usize, Scalar> = HashMap::new();
    for p in share {
        b -= p.z * p.s;
        *per_key.entry(p.key).or_insert(Scalar::ZERO) += p.z * p.k;
    }
    let scalars = std::iter::once(b)
        .chain(share.iter().map(|p| p.z))
        .chain(per_key.values().copied());
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(share.iter().map(|p| p.r))
        .chain(per_key.keys().map(|&k| keys.points[k]));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The verdicts of a share: all true if its batch equation holds; else each
/// half on its own, down to [`LEAF`] signatures or [`MAX_FAILED_BATCHES`]
/// failures, past which `verify_strict` decides.
fn check_share(
    share: &[Prepared],
    keys: &Keys,
    checks: &[SigCheck<'_>],
    failed: &mut usize,
    out: &mut Vec<(usize, bool)>,
) {
    if share.len() > LEAF && *failed < MAX_FAILED_BATCHES {
        if batch_holds(share, keys) {
            out.extend(share.iter().map(|p| (p.at, true)));
            return;
        }
        *failed += 1;
        let (a, b) = share.split_at(share.len() / 2);
        check_share(a, keys, checks, failed, out);
        check_share(b, keys, checks, failed, out);
        return;
    }
    out.extend(share.iter().map(|p| (p.at, checks[p.at].verify_strict())));
}

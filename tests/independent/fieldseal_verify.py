#!/usr/bin/env python3
"""Independent verifier for fieldseal evidence, written from docs/FORMAT.md alone.

Pure Python 3.11, standard library only. It implements:

* Ed25519 verification (RFC 8032 §5.1.7) with the strict checks: S < L,
  canonical point encodings, no small-order A or R;
* decoding of chain entries (FORMAT.md §3) and chain verification (§4), with
  the report of §5;
* chain logs and evidence packages (§9);
* RFC 9162 inclusion and consistency proofs and their encodings (§6.1-6.4);
* signed checkpoint notes and verifier keys (§6.5-6.6);
* receipts (§7.6) and the frames of the sync protocol (§7.3-7.4).

Usage:
    fieldseal_verify.py [--json] PACKAGE_DIR    exit 0 ok, 1 not ok, 2 unreadable
    fieldseal_verify.py --self-test VECTORS_DIR
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import unicodedata

# ---------------------------------------------------------------------------
# Ed25519 (RFC 8032), verification with strict checks; signing for self-tests.
# ---------------------------------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def _inv(x: int) -> int:
    return pow(x, P - 2, P)


def pt_add(p1, p2):
    """Addition in extended coordinates (complete formula for a = -1)."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def pt_neg(p1):
    x, y, z, t = p1
    return ((-x) % P, y, z, (-t) % P)


def pt_mul(k: int, p1):
    result = IDENTITY
    addend = p1
    while k > 0:
        if k & 1:
            result = pt_add(result, addend)
        addend = pt_add(addend, addend)
        k >>= 1
    return result


def pt_equal(p1, p2) -> bool:
    x1, y1, z1, _ = p1
    x2, y2, z2, _ = p2
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def pt_encode(p1) -> bytes:
    x, y, z, _ = p1
    zi = _inv(z)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def pt_decode(s: bytes):
    """Decode a point; None if the encoding is invalid or non-canonical."""
    if len(s) != 32:
        return None
    n = int.from_bytes(s, "little")
    sign = n >> 255
    y = n & ((1 << 255) - 1)
    if y >= P:  # non-canonical y
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x2 = u * _inv(v) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x == 0 and sign == 1:  # "-0": non-canonical
        return None
    if (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)


_BY = 4 * _inv(5) % P
BASE = pt_decode(_BY.to_bytes(32, "little"))


def is_small_order(p1) -> bool:
    return pt_equal(pt_mul(8, p1), IDENTITY)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 §5.1.7 verification, strict: S < L, canonical encodings of A
    and R, neither A nor R of small order; cofactorless equation."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a_pt = pt_decode(public_key)
    r_pt = pt_decode(signature[:32])
    if a_pt is None or r_pt is None:
        return False
    if is_small_order(a_pt) or is_small_order(r_pt):
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    # R' = [S]B - [h]A must equal R, compared by canonical encoding.
    r_check = pt_add(pt_mul(s, BASE), pt_neg(pt_mul(h, a_pt)))
    return pt_encode(r_check) == signature[:32]


def _secret_scalar(seed: bytes):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def ed25519_public_key(seed: bytes) -> bytes:
    a, _ = _secret_scalar(seed)
    return pt_encode(pt_mul(a, BASE))


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    a, prefix = _secret_scalar(seed)
    pub = pt_encode(pt_mul(a, BASE))
    r = int.from_bytes(hashlib.sha512(prefix + message).digest(), "little") % L
    r_enc = pt_encode(pt_mul(r, BASE))
    k = int.from_bytes(hashlib.sha512(r_enc + pub + message).digest(), "little") % L
    return r_enc + ((r + k * a) % L).to_bytes(32, "little")


# ---------------------------------------------------------------------------
# Byte reader (FORMAT.md §1)
# ---------------------------------------------------------------------------


class Malformed(Exception):
    pass


class Incomplete(Exception):
    pass


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Incomplete(f"need {n} bytes at offset {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big", signed=True)

    def u8(self):
        return self.uint(1)

    def u16(self):
        return self.uint(2)

    def u32(self):
        return self.uint(4)

    def u64(self):
        return self.uint(8)

    def i32(self):
        return self.sint(4)

    def i64(self):
        return self.sint(8)

    def boolean(self) -> bool:
        b = self.u8()
        if b > 1:
            raise Malformed(f"bool byte {b}")
        return b == 1

    def opt(self, read):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise Malformed(f"opt tag {tag}")

    def text8(self, maximum: int) -> str:
        n = self.u8()
        if n > maximum:
            raise Malformed(f"text of {n} bytes, at most {maximum}")
        raw = self.take(n)
        try:
            s = raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise Malformed("text is not UTF-8") from exc
        if any(unicodedata.category(ch) == "Cc" for ch in s):
            raise Malformed("control character in text")
        return s

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def finish(self):
        if self.pos != len(self.data):
            raise Malformed("trailing data")


# ---------------------------------------------------------------------------
# Device identity (§2) and chain entries (§3)
# ---------------------------------------------------------------------------

ENTRY_PREFIX = b"fieldseal/entry/v1\x00"
MAX_SIGNED_ENTRY = 4096
KIND_SEGMENT, KIND_EVENT = 1, 2

EVENT_NAMES = {
    1: "agent-started",
    2: "recording-started",
    3: "recording-stopped",
    4: "pre-event-attached",
    5: "audio-muted",
    6: "audio-unmuted",
    7: "storage-low",
    8: "storage-full",
    9: "battery-low",
    10: "clock-adjusted",
    11: "power-loss-recovered",
    12: "tag-changed",
    13: "identity-shown",
    14: "capture-backlog",
    15: "fix-acquired",
    16: "fix-lost",
    17: "receiver-unreachable",
    18: "receiver-back",
    19: "frames-dropped",
}
NO_FIX = {1: "no-receiver", 2: "receiver-unreachable", 3: "no-fix-yet", 4: "fix-lost"}
STOP_REASONS = {1: "user-stop", 2: "storage-full", 3: "battery-low", 4: "shutdown", 5: "capture-error"}


def device_id(public_key: bytes) -> bytes:
    return hashlib.sha256(b"fieldseal/device-id/v1\x00" + public_key).digest()[:8]


class Entry:
    """A decoded signed entry."""

    def __init__(self):
        self.fields: dict = {}
        self.signing_bytes = b""
        self.signature = b""
        self.raw = b""

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    @property
    def entry_hash(self) -> bytes:
        return hashlib.sha256(self.signing_bytes).digest()


def _read_point(r: Reader):
    lat = r.i32()
    lon = r.i32()
    acc = r.u16()
    if not -900000000 <= lat <= 900000000:
        raise Malformed("latitude out of range")
    if not -1800000000 <= lon <= 1800000000:
        raise Malformed("longitude out of range")
    return {"lat_e7": lat, "lon_e7": lon, "accuracy_m": acc}


def _read_position(r: Reader):
    """The position field (§3.1.1) as the report's position object, without seq."""
    tag = r.u8()
    none = {"lat_e7": None, "lon_e7": None, "accuracy_m": None, "fix_us": None, "no_fix": None}
    if tag == 0:
        return dict(none, status="unstated")
    if tag in (1, 2):
        p = dict(none, status="fix", **_read_point(r))
        if tag == 2:
            p["fix_us"] = r.i64()
        return p
    if tag == 3:
        why = r.u8()
        if why not in NO_FIX:
            raise Malformed(f"no-fix reason {why}")
        return dict(none, status="no-fix", no_fix=NO_FIX[why])
    raise Malformed(f"position tag {tag}")


def _read_segment(r: Reader) -> dict:
    f = {}
    f["recording"] = r.take(16)
    f["part"] = r.u32()
    f["media_sha256"] = r.take(32)
    f["media_len"] = r.u64()
    f["start_pts"] = r.i64()
    f["end_pts"] = r.i64()
    if f["end_pts"] < f["start_pts"]:
        raise Malformed("end_pts < start_pts")
    f["start_mono_us"] = r.u64()
    f["video_frames"] = r.u32()
    f["audio_samples"] = r.u64()
    f["video_codec"] = r.text8(16)
    f["width"] = r.u16()
    f["height"] = r.u16()
    f["fps_num"] = r.u32()
    f["fps_den"] = r.u32()
    f["audio_codec"] = r.text8(16)
    f["sample_rate"] = r.u32()
    f["channels"] = r.u8()
    f["flags"] = r.u8()
    if f["flags"] & ~0x03:
        raise Malformed("unknown segment flag")
    f["case"] = r.opt(lambda: r.text8(64))
    f["activity"] = r.opt(lambda: r.text8(64))
    return f


def _read_event(r: Reader) -> dict:
    code = r.u8()
    if code not in EVENT_NAMES:
        raise Malformed(f"event code {code}")
    f = {"code": code, "event": EVENT_NAMES[code]}
    if code == 1:
        f["software"] = r.text8(64)
    elif code == 2:
        f["recording"] = r.take(16)
        f["case"] = r.opt(lambda: r.text8(64))
        f["activity"] = r.opt(lambda: r.text8(64))
    elif code == 3:
        f["recording"] = r.take(16)
        reason = r.u8()
        if reason not in STOP_REASONS:
            raise Malformed(f"stop reason {reason}")
        f["reason"] = STOP_REASONS[reason]
    elif code == 4:
        f["recording"] = r.take(16)
        f["segments"] = r.u32()
        f["media_us"] = r.u64()
    elif code in (5, 6):
        pass
    elif code in (7, 8):
        f["used_bytes"] = r.u64()
        f["limit_bytes"] = r.u64()
    elif code == 9:
        f["percent"] = r.u8()
        if f["percent"] > 100:
            raise Malformed("battery percent > 100")
    elif code == 10:
        f["old_wall_us"] = r.i64()
        f["new_wall_us"] = r.i64()
    elif code == 11:
        f["last_seq"] = r.opt(r.u64)
        f["last_wall_us"] = r.i64()
        f["gap_us"] = r.u64()
        f["salvaged"] = r.u32()
    elif code == 12:
        f["case"] = r.opt(lambda: r.text8(64))
        f["activity"] = r.opt(lambda: r.text8(64))
    elif code == 13:
        f["officer"] = r.opt(lambda: r.text8(64))
    elif code == 14:
        f["pending_segments"] = r.u32()
        f["dropped_frames"] = r.u64()
    elif code == 15:
        f["fix_us"] = r.i64()
    elif code == 16:
        f["last_fix_us"] = r.i64()
    elif code == 17:
        f["last_fix_us"] = r.opt(r.i64)
    elif code == 19:
        f["recording"] = r.take(16)
        f["part"] = r.u32()
        f["first_pts"] = r.i64()
        f["end_pts"] = r.i64()
        if f["end_pts"] < f["first_pts"]:
            raise Malformed("frames-dropped end_pts < first_pts")
        f["frames"] = r.u32()
    return f


def decode_entry(data: bytes) -> Entry:
    """Decode a signed entry exactly (§3); raises Malformed or Incomplete."""
    if len(data) > MAX_SIGNED_ENTRY:
        raise Malformed("signed entry longer than 4096 bytes")
    r = Reader(data)
    if r.take(19) != ENTRY_PREFIX:
        raise Malformed("bad prefix")
    e = Entry()
    f = e.fields
    f["version"] = r.u8()
    if f["version"] != 1:
        raise Malformed(f"entry version {f['version']}")
    f["device_id"] = r.take(8)
    f["seq"] = r.u64()
    f["prev_hash"] = r.take(32)
    f["wall_us"] = r.i64()
    f["mono_us"] = r.u64()
    f["boot"] = r.u32()
    f["position"] = _read_position(r)
    f["kind"] = r.u8()
    if f["kind"] == KIND_SEGMENT:
        f.update(_read_segment(r))
    elif f["kind"] == KIND_EVENT:
        f.update(_read_event(r))
    else:
        raise Malformed(f"kind {f['kind']}")
    end = r.pos
    e.signature = r.take(64)
    r.finish()
    e.signing_bytes = data[:end]
    e.raw = data
    return e


# ---------------------------------------------------------------------------
# Chain verification (§4) and the report (§5)
# ---------------------------------------------------------------------------


KIND_ORDER = [
    "malformed", "wrong-device", "bad-signature", "broken-link", "equivocation", "missing-entry",
    "media-mismatch", "missing-media", "time-backwards", "unexplained-gap", "head-mismatch", "truncated-chain", "out-of-order",
    "frame-count-mismatch",
]


def _finding(seq, kind, detail):
    return {"seq": seq, "kind": kind, "detail": detail}


def _dur_us(seg: Entry) -> int:
    return max(0, (seg.end_pts - seg.start_pts) * 10**6 // 90000)


def verify_chain(public_key: bytes, items, media=None, head=None, ordered=False, tolerance_pts=0):
    """Verify a chain (§4).

    items:  list of bytes (signed entries) or ("finding", kind, detail) tuples
            for problems found while reading a container (chain log).
    media:  None, or dict seq -> (sha256 bytes, length) or None when absent.
    head:   None, or (seq, entry_hash bytes) from the server's receipts.
    Returns the report dict of §5.
    """
    findings = []
    container = []  # findings about the container (chain log): placed first (§9)
    dev = device_id(public_key)
    rejected = set()  # seqs of entries rejected in step 2
    primary: dict[int, Entry] = {}  # seq -> the kept version (step 4)
    highest = None  # step 3: highest seq of the decoded entries so far
    for item in items:
        if isinstance(item, tuple):
            container.append(_finding(None, item[1], item[2]))
            continue
        # Step 1: decode.
        try:
            e = decode_entry(item)
        except (Malformed, Incomplete) as exc:
            findings.append(_finding(None, "malformed", f"entry does not decode: {exc}"))
            continue
        # Step 3: order, over every decoded entry (valid or rejected).
        if ordered:
            if highest is not None and e.seq <= highest:
                findings.append(_finding(e.seq, "out-of-order", f"seq {e.seq} after seq {highest}"))
            highest = e.seq if highest is None else max(highest, e.seq)
        # Step 2: device (first), then signature.
        if e.device_id != dev:
            findings.append(_finding(e.seq, "wrong-device", f"entry names device {e.device_id.hex()}"))
            rejected.add(e.seq)
            continue
        if not ed25519_verify(public_key, e.signing_bytes, e.signature):
            findings.append(_finding(e.seq, "bad-signature", "signature does not verify"))
            rejected.add(e.seq)
            continue
        # Step 4: equivocation and the kept version.
        kept = primary.get(e.seq)
        if kept is None:
            primary[e.seq] = e
        elif kept.entry_hash != e.entry_hash:
            findings.append(_finding(e.seq, "equivocation", f"two different entries with seq {e.seq}"))
            nxt = primary.get(e.seq + 1)
            if nxt is not None and nxt.prev_hash == e.entry_hash:
                primary[e.seq] = e

    # Step 5: holes. Seqs of rejected entries count as present and extend the range.
    present = set(primary) | rejected
    top = max(present) if present else None
    if head is not None and (top is None or head[0] > top):
        top = head[0]
    if top is not None:
        seq = 0
        while seq <= top:
            if seq not in present:
                start = seq
                while seq <= top and seq not in present:
                    seq += 1
                findings.append(_finding(start, "missing-entry", f"seqs {start}..{seq - 1} absent"))
            else:
                seq += 1

    # Step 6: receipts' head, against the kept version only.
    if head is not None:
        hseq, hhash = head
        if hseq not in primary:
            findings.append(_finding(hseq, "truncated-chain", f"receipts prove entry {hseq} {hhash.hex()}"))
        elif primary[hseq].entry_hash != hhash:
            findings.append(_finding(hseq, "head-mismatch", f"receipts prove entry {hseq} {hhash.hex()}"))

    # Step 7: links, between kept versions.
    for seq in sorted(primary):
        e = primary[seq]
        if seq == 0:
            if e.prev_hash != bytes(32):
                findings.append(_finding(0, "broken-link", "entry 0 prev_hash is not zero"))
        elif seq - 1 in primary and e.prev_hash != primary[seq - 1].entry_hash:
            findings.append(_finding(seq, "broken-link", "prev_hash differs from predecessor"))

    # Step 8: time.
    for seq in sorted(primary):
        if seq - 1 not in primary:
            continue
        p, e = primary[seq - 1], primary[seq]
        # Two independent checks: one entry can get two findings.
        if e.boot < p.boot:
            findings.append(_finding(seq, "time-backwards", "boot decreases"))
        elif e.boot == p.boot and e.mono_us < p.mono_us:
            findings.append(_finding(seq, "time-backwards", "monotonic clock decreases"))
        if e.wall_us < p.wall_us and not (e.kind == KIND_EVENT and e.code == 10):
            findings.append(_finding(seq, "time-backwards", "wall clock decreases"))

    # Step 9: gaps.
    gaps = []
    segs = [primary[s] for s in sorted(primary) if primary[s].kind == KIND_SEGMENT]
    for a, b in zip(segs, segs[1:]):
        if any(s not in primary for s in range(a.seq + 1, b.seq)):
            continue  # a hole between them: not consecutive
        if (
            b.recording == a.recording
            and b.part == a.part + 1
            and abs(b.start_pts - a.end_pts) <= tolerance_pts
        ):
            continue
        if b.boot == a.boot:
            gap_us = b.start_mono_us - (a.start_mono_us + _dur_us(a))
        else:
            wall_a = a.wall_us - (a.mono_us - a.start_mono_us)
            wall_b = b.wall_us - (b.mono_us - b.start_mono_us)
            gap_us = wall_b - (wall_a + _dur_us(a))
        gap_us = max(0, gap_us)
        events = [primary[s] for s in range(a.seq + 1, b.seq) if primary[s].kind == KIND_EVENT]
        reason, reason_seq = None, None
        for ev in events:
            if ev.code == 11:
                reason, reason_seq = "power-loss", ev.seq
                break
        if reason is None:
            for ev in events:
                if ev.code == 3:
                    reason, reason_seq = ev.reason, ev.seq
                    break
        if reason is None:
            for ev in events:
                if ev.code == 8:
                    reason, reason_seq = "storage-full", ev.seq
                    break
        gaps.append(
            {
                "after_seq": a.seq,
                "before_seq": b.seq,
                "seconds": gap_us / 1e6,
                "reason": reason,
                "reason_seq": reason_seq,
            }
        )
        if reason is None:
            findings.append(_finding(b.seq, "unexplained-gap", f"{gap_us / 1e6} s after seq {a.seq}"))

    # Step 10: media.
    media_verified = 0
    if media is not None:
        for seq in sorted(primary):
            e = primary[seq]
            if e.kind != KIND_SEGMENT:
                continue
            obs = media.get(seq)
            if obs is None:
                findings.append(_finding(seq, "missing-media", "no media file"))
            elif obs[0] != e.media_sha256 or obs[1] != e.media_len:
                findings.append(_finding(seq, "media-mismatch", "media SHA-256 or length differs"))
            else:
                media_verified += 1

    # Step 11: frame counts against spans, unless a frames-dropped event names the segment.
    named = {
        (e.recording, e.part) for e in primary.values() if e.kind == KIND_EVENT and e.code == 19
    }
    for seq in sorted(primary):
        e = primary[seq]
        if e.kind != KIND_SEGMENT or e.flags & 0x01 or e.fps_num == 0 or e.fps_den == 0:
            continue
        den = 90000 * e.fps_den
        expected = (2 * (e.end_pts - e.start_pts) * e.fps_num + den) // (2 * den)
        if abs(expected - e.video_frames) > 1 and (e.recording, e.part) not in named:
            findings.append(
                _finding(seq, "frame-count-mismatch", f"{e.video_frames} frames, span holds {expected}")
            )

    # Report (§5): every count is over the kept versions.
    distinct = [primary[q] for q in sorted(primary)]
    media_seconds = 0.0
    for seq in sorted(primary):
        if primary[seq].kind == KIND_SEGMENT:
            media_seconds += (primary[seq].end_pts - primary[seq].start_pts) / 90000
    head_seq = max(primary) if primary else None
    findings = container + findings
    # "sorted by seq (null first), then kind": kinds in the order §5 lists them.
    findings.sort(key=lambda f: (f["seq"] is not None, f["seq"] or 0, KIND_ORDER.index(f["kind"])))
    return {
        "ok": not findings,
        "device": dev.hex(),
        "entries": len(distinct),
        "segments": sum(1 for e in distinct if e.kind == KIND_SEGMENT),
        "events": sum(1 for e in distinct if e.kind == KIND_EVENT),
        "head_seq": head_seq,
        "head_hash": primary[head_seq].entry_hash.hex() if head_seq is not None else None,
        "media_seconds": media_seconds,
        "media_verified": media_verified,
        "gaps": gaps,
        "positions": [
            dict(primary[seq].position, seq=seq)
            for seq in sorted(primary)
            if primary[seq].kind == KIND_SEGMENT
        ],
        "findings": findings,
    }


# ---------------------------------------------------------------------------
# Chain log and evidence packages (§9)
# ---------------------------------------------------------------------------


class Unreadable(Exception):
    pass


# Characters with the Unicode White_Space property (what §9 means by whitespace).
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def read_chain_log(data: bytes):
    """Split a chain log into records (§9). A torn tail, or a record length of
    0 or above 4096 (damage: reading stops there), becomes a
    ("finding", "malformed", detail) item."""
    items = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            items.append(("finding", "malformed", f"torn tail: {len(data) - pos} byte(s) at offset {pos}"))
            break
        n = int.from_bytes(data[pos : pos + 2], "big")
        if n > MAX_SIGNED_ENTRY or n == 0:
            items.append(("finding", "malformed", f"chain.log is damaged at byte {pos}: record length {n}"))
            break
        if pos + 2 + n > len(data):
            items.append(("finding", "malformed", f"torn tail: record of {n} bytes at offset {pos}"))
            break
        items.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return items


def put_record(entry: bytes) -> bytes:
    return len(entry).to_bytes(2, "big") + entry


def _decompresses(s: bytes) -> bool:
    """§9: the key bytes decompress to a curve point (y taken modulo p, and the
    sign of x = 0 not checked, as the reference library does)."""
    y = (int.from_bytes(s, "little") & ((1 << 255) - 1)) % P
    x2 = (y * y - 1) * _inv((D * y * y + 1) % P) % P
    return x2 == 0 or pow(x2, (P - 1) // 2, P) == 1


def read_package(path: str):
    """Read an evidence package; returns (public_key, items, media, head)."""
    try:
        with open(os.path.join(path, "device.pub"), "rb") as fh:
            pub_text = fh.read()
        with open(os.path.join(path, "chain.log"), "rb") as fh:
            log = fh.read()
    except OSError as exc:
        raise Unreadable(str(exc)) from exc
    # §9, as the reference reads them: UTF-8; device.pub trimmed of Unicode
    # White_Space; head.txt split at White_Space runs, words after the second ignored.
    try:
        pub_str = pub_text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"device.pub: {exc}") from exc
    pub_str = re.sub(f"^[{WHITE_SPACE}]+|[{WHITE_SPACE}]+$", "", pub_str)
    if not re.fullmatch(r"[0-9a-fA-F]{64}", pub_str):
        raise Unreadable("device.pub is not 64 hex digits")
    public_key = bytes.fromhex(pub_str)
    if not _decompresses(public_key):
        raise Unreadable("device.pub is not an Ed25519 public key")
    head = None
    head_path = os.path.join(path, "head.txt")
    if os.path.exists(head_path):
        try:
            with open(head_path, "rb") as fh:
                text = fh.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Unreadable(f"head.txt: {exc}") from exc
        parts = [w for w in re.split(f"[{WHITE_SPACE}]+", text) if w]
        if (
            len(parts) < 2
            or not re.fullmatch(r"\+?[0-9]+", parts[0])
            or int(parts[0]) >= 2**64
            or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[1])
        ):
            raise Unreadable("head.txt is not 'SEQ ENTRY_HASH'")
        head = (int(parts[0]), bytes.fromhex(parts[1]))
    items = read_chain_log(log)
    media = {}
    for item in items:
        if isinstance(item, tuple):
            continue
        try:
            e = decode_entry(item)
        except (Malformed, Incomplete):
            continue
        if e.kind != KIND_SEGMENT or e.seq in media:
            continue
        mpath = os.path.join(path, "media", f"{e.seq:012d}.ts")
        try:
            h = hashlib.sha256()
            size = 0
            with open(mpath, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
            media[e.seq] = (h.digest(), size)
        except OSError:
            media[e.seq] = None
    return public_key, items, media, head


def verify_package(path: str) -> dict:
    public_key, items, media, head = read_package(path)
    return verify_chain(public_key, items, media=media, head=head, ordered=True)


# ---------------------------------------------------------------------------
# Transparency log (§6.1-6.4)
# ---------------------------------------------------------------------------

EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF_HASHES = 64


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaf_hashes) -> bytes:
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(merkle_root(leaf_hashes[:k]), merkle_root(leaf_hashes[k:]))


def verify_inclusion(leaf: bytes, index: int, size: int, proof, root: bytes) -> bool:
    if index >= size:
        return False
    f, s, r = index, size - 1, leaf
    for c in proof:
        if s == 0:
            return False
        if f % 2 == 1 or f == s:
            r = node_hash(c, r)
            if f % 2 == 0:
                while f % 2 == 0 and f != 0:
                    f >>= 1
                    s >>= 1
        else:
            r = node_hash(r, c)
        f >>= 1
        s >>= 1
    return s == 0 and r == root


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes, proof) -> bool:
    if m > n:
        return False
    proof = list(proof)
    if m == 0:
        return not proof and old_root == EMPTY_ROOT
    if m == n:
        return not proof and old_root == new_root
    if m & (m - 1) == 0:
        proof = [old_root] + proof
    if not proof:
        return False
    f, s = m - 1, n - 1
    while f % 2 == 1:
        f >>= 1
        s >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if s == 0:
            return False
        if f % 2 == 1 or f == s:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if f % 2 == 0:
                while f % 2 == 0 and f != 0:
                    f >>= 1
                    s >>= 1
        else:
            sr = node_hash(sr, c)
        f >>= 1
        s >>= 1
    return s == 0 and fr == old_root and sr == new_root


def decode_proof(data: bytes):
    """InclusionProof / ConsistencyProof (§6.4): (a u64, b u64, [hashes])."""
    r = Reader(data)
    a, b = r.u64(), r.u64()
    count = r.u8()
    if count > MAX_PROOF_HASHES:
        raise Malformed("more than 64 proof hashes")
    hashes = [r.take(32) for _ in range(count)]
    r.finish()
    return a, b, hashes


def encode_proof(a: int, b: int, hashes) -> bytes:
    return a.to_bytes(8, "big") + b.to_bytes(8, "big") + bytes([len(hashes)]) + b"".join(hashes)


# ---------------------------------------------------------------------------
# Checkpoints and signed notes (§6.5-6.6)
# ---------------------------------------------------------------------------

MAX_NOTE_LEN = 8192
MAX_SIGNATURES = 16
EM_DASH = "\u2014"


def strict_b64(s: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s) or len(s) % 4 != 0:
        raise Malformed("not standard padded base64")
    raw = base64.b64decode(s, validate=True)
    if base64.b64encode(raw).decode() != s:
        raise Malformed("non-canonical base64 (unused bits set)")
    return raw


def _valid_name(name: str) -> bool:
    return (
        len(name) > 0
        and "+" not in name
        and not any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in name)
    )


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def parse_verifier_key(vkey: str):
    vkey = vkey.strip("\n")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise Malformed("verifier key needs name+id+key")
    name, kid_hex, b64 = parts
    if not _valid_name(name) or not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
        raise Malformed("bad verifier key name or key id")
    raw = strict_b64(b64)
    if len(raw) != 33 or raw[0] != 0x01:
        raise Malformed("verifier key is not an Ed25519 key")
    pub = raw[1:]
    if key_id(name, pub).hex() != kid_hex:
        raise Malformed("verifier key id does not match")
    return name, pub


def parse_checkpoint_text(text: bytes):
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed("checkpoint not UTF-8") from exc
    if not s.endswith("\n"):
        raise Malformed("checkpoint text must end in a newline")
    lines = s[:-1].split("\n")
    if len(lines) != 4:
        raise Malformed(f"checkpoint has {len(lines)} lines, needs 4")
    origin, size_s, root_s, time_line = lines
    if not 1 <= len(origin.encode()) <= 256 or not _valid_name(origin):
        raise Malformed("bad origin")

    def decimal(v):
        if not re.fullmatch(r"0|[1-9][0-9]*", v) or int(v) >= 2**64:
            raise Malformed(f"bad decimal {v!r}")
        return int(v)

    size = decimal(size_s)
    root = strict_b64(root_s)
    if len(root) != 32:
        raise Malformed("root is not 32 bytes")
    if not time_line.startswith("time "):
        raise Malformed("fourth line must be 'time <seconds>'")
    t = decimal(time_line[5:])
    return {"origin": origin, "size": size, "root": root, "time": t}


def verify_checkpoint(note: bytes, name: str, public_key: bytes):
    """Verify a signed checkpoint note (§6.6); returns the parsed checkpoint."""
    if len(note) > MAX_NOTE_LEN:
        raise Malformed("note too long")
    try:
        s = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed("note not UTF-8") from exc
    if any(b < 0x20 and b != 0x0A for b in note):
        raise Malformed("control byte in note")
    idx = note.rfind(b"\n\n")
    if idx < 0:
        raise Malformed("no empty line")
    text = note[: idx + 1]
    sig_part = note[idx + 2 :].decode("utf-8")
    if not sig_part.endswith("\n"):
        raise Malformed("signature block must end in a newline")
    lines = sig_part[:-1].split("\n")
    if not 1 <= len(lines) <= MAX_SIGNATURES:
        raise Malformed("bad number of signature lines")
    del s
    kid = key_id(name, public_key)
    matched = 0
    for line in lines:
        if not line.startswith(EM_DASH + " "):
            raise Malformed("signature line must start with an em dash")
        rest = line[2:].split(" ")
        if len(rest) != 2 or not _valid_name(rest[0]):
            raise Malformed("bad signature line")
        blob = strict_b64(rest[1])
        if len(blob) < 5:
            raise Malformed("signature blob too short")
        if rest[0] != name or blob[:4] != kid:
            continue
        if len(blob) != 68 or not ed25519_verify(public_key, text, blob[4:]):
            raise Malformed("signature of the trusted key does not verify")
        matched += 1
    if matched == 0:
        raise Malformed("no signature by the trusted key")
    return parse_checkpoint_text(text)


# ---------------------------------------------------------------------------
# Receipts (§7.6) and frames (§7.3-7.4)
# ---------------------------------------------------------------------------

RECEIPT_PREFIX = b"fieldseal/receipt/v1\x00"


def decode_receipt(enc: bytes) -> dict:
    if len(enc) != 129:
        raise Malformed("receipt is not 129 bytes")
    if enc[0] != 0x01:
        raise Malformed("receipt version")
    r = Reader(enc)
    r.u8()
    rec = {
        "device_id": r.take(8),
        "seq": r.u64(),
        "entry_hash": r.take(32),
        "server_time_us": r.i64(),
        "log_index": r.u64(),
        "signature": r.take(64),
    }
    r.finish()
    rec["signing_bytes"] = RECEIPT_PREFIX + enc[:65]
    return rec


def verify_receipt(enc: bytes, server_public_key: bytes) -> dict:
    rec = decode_receipt(enc)
    if not ed25519_verify(server_public_key, rec["signing_bytes"], rec["signature"]):
        raise Malformed("receipt signature does not verify")
    return rec


MEDIA_ACK_PREFIX = b"fieldseal/media-ack/v1\x00"


def decode_media_ack(enc: bytes) -> dict:
    """§7.6 "Media acknowledgement": 129 bytes, version 1."""
    if len(enc) != 129:
        raise Malformed("media ack is not 129 bytes")
    if enc[0] != 0x01:
        raise Malformed("media ack version")
    r = Reader(enc)
    r.u8()
    ack = {
        "device_id": r.take(8),
        "seq": r.u64(),
        "media_sha256": r.take(32),
        "media_len": r.u64(),
        "server_time_us": r.i64(),
        "signature": r.take(64),
    }
    r.finish()
    ack["signing_bytes"] = MEDIA_ACK_PREFIX + enc[:65]
    return ack


def verify_media_ack(enc: bytes, server_public_key: bytes) -> dict:
    ack = decode_media_ack(enc)
    if not ed25519_verify(server_public_key, ack["signing_bytes"], ack["signature"]):
        raise Malformed("media ack signature does not verify")
    return ack


MAX_FRAME_PAYLOAD = 65536
MAX_DETAIL = 200
MAX_RESEND_MEDIA = 1024
MAX_MEDIA_LEN = 2**32 - 1
FRAME_TYPES = {
    0x01: "Hello",
    0x02: "Welcome",
    0x10: "SubmitEntry",
    0x11: "EntryReceipt",
    0x12: "EntryRejected",
    0x20: "UploadQuery",
    0x21: "UploadOffset",
    0x22: "UploadBegin",
    0x23: "UploadAck",
    0x24: "UploadFailed",
    0x30: "Ping",
    0x31: "Pong",
    0x3F: "Error",
    0x40: "RenewCert",
    0x41: "CertRenewed",
    0x42: "RenewRefused",
}
REJECT_CODES = range(1, 9)
UPLOAD_FAIL_CODES = range(1, 7)
ERROR_CODES = range(1, 7)
RENEW_REFUSAL_CODES = range(1, 6)
MAX_CERT = 16 * 1024


def _code(r: Reader, allowed) -> int:
    c = r.u8()
    if c not in allowed:
        raise Malformed(f"code {c}")
    return c


def decode_message(mtype: int, payload: bytes) -> dict:
    r = Reader(payload)
    m = {"type": FRAME_TYPES[mtype]}
    if mtype == 0x01:
        m["protocol_version"] = r.u16()
        m["device_id"] = r.take(8)
        m["chain_head_seq"] = r.u64() if r.boolean() else None
    elif mtype == 0x02:
        m["protocol_version"] = r.u16()
        m["server_time_us"] = r.i64()
        m["next_seq_expected"] = r.u64()
        count = r.u16()
        if count > MAX_RESEND_MEDIA:
            raise Malformed("resend_media count")
        m["resend_media"] = [r.u64() for _ in range(count)]
    elif mtype == 0x10:
        n = r.u32()
        if not 1 <= n <= MAX_SIGNED_ENTRY:
            raise Malformed("entry length")
        m["entry"] = r.take(n)
    elif mtype == 0x11:
        m["receipt"] = decode_receipt(r.take(r.remaining()))
    elif mtype in (0x12, 0x24):
        m["seq"] = r.u64()
        m["code"] = _code(r, REJECT_CODES if mtype == 0x12 else UPLOAD_FAIL_CODES)
        m["detail"] = r.text8(MAX_DETAIL)
    elif mtype == 0x20:
        m["seq"] = r.u64()
        m["media_hash"] = r.take(32)
        m["media_len"] = r.u64()
        if m["media_len"] > MAX_MEDIA_LEN:
            raise Malformed("media_len")
    elif mtype == 0x21:
        m["seq"] = r.u64()
        m["offset"] = r.u64()
        if m["offset"] > MAX_MEDIA_LEN:
            raise Malformed("offset")
    elif mtype == 0x22:
        m["seq"] = r.u64()
        m["media_hash"] = r.take(32)
        m["offset"] = r.u64()
        m["len"] = r.u64()
        if not m["offset"] <= m["len"] <= MAX_MEDIA_LEN:
            raise Malformed("offset/len")
    elif mtype == 0x23:
        m["ack"] = decode_media_ack(r.take(r.remaining()))
    elif mtype in (0x30, 0x31):
        m["nonce"] = r.u64()
    elif mtype == 0x3F:
        m["code"] = _code(r, ERROR_CODES)
        m["detail"] = r.text8(MAX_DETAIL)
    elif mtype == 0x40:
        m["cert_sha256"] = r.take(32)
    elif mtype == 0x41:
        n = r.u32()
        if not 1 <= n <= MAX_CERT:
            raise Malformed("certificate length")
        m["cert"] = r.take(n)
    elif mtype == 0x42:
        m["code"] = _code(r, RENEW_REFUSAL_CODES)
        m["detail"] = r.text8(MAX_DETAIL)
    r.finish()
    return m


def decode_frame(buf: bytes):
    """§7.3: returns ("wait", None), ("malformed", reason) or ("frame", (message, used))."""
    if not buf:
        return "wait", None
    if buf[0] not in FRAME_TYPES:
        return "malformed", "unknown type"
    if len(buf) < 5:
        return "wait", None
    length = int.from_bytes(buf[1:5], "big")
    if length > MAX_FRAME_PAYLOAD:
        return "malformed", "payload too long"
    if len(buf) < 5 + length:
        return "wait", None
    try:
        return "frame", (decode_message(buf[0], buf[5 : 5 + length]), 5 + length)
    except (Malformed, Incomplete) as exc:
        return "malformed", str(exc)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def human(report: dict) -> str:
    lines = [
        f"device {report['device']}: {'OK' if report['ok'] else 'NOT OK'}",
        f"{report['entries']} entries ({report['segments']} segments, {report['events']} events), "
        f"head {report['head_seq']}, {report['media_seconds']} s of media, "
        f"{report['media_verified']} media files verified",
    ]
    for g in report["gaps"]:
        lines.append(f"gap after {g['after_seq']} before {g['before_seq']}: {g['seconds']} s, reason {g['reason']}")
    for p in report["positions"]:
        if p["status"] == "fix":
            lines.append(f"segment {p['seq']}: {p['lat_e7'] / 1e7:.7f}, {p['lon_e7'] / 1e7:.7f}, "
                         f"accuracy {p['accuracy_m']} m, fix time {p['fix_us']}")
        else:
            lines.append(f"segment {p['seq']}: {p['status']} {p['no_fix'] or ''}".rstrip())
    for f in report["findings"]:
        lines.append(f"finding: seq {f['seq']} {f['kind']}: {f['detail']}")
    return "\n".join(lines)


def main(argv) -> int:
    if len(argv) >= 2 and argv[0] == "--self-test":
        return self_test(argv[1])
    as_json = False
    if argv and argv[0] == "--json":
        as_json = True
        argv = argv[1:]
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        report = verify_package(argv[0])
    except Unreadable as exc:
        print(f"unreadable package: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if as_json else human(report))
    return 0 if report["ok"] else 1


# ---------------------------------------------------------------------------
# Self-test
# ---------------------------------------------------------------------------


class SelfTest:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")


def _raises(fn) -> bool:
    try:
        fn()
    except (Malformed, Incomplete):
        return True
    return False


def _write_package(root, pub_hex, entries, media, head=None):
    os.makedirs(os.path.join(root, "media"), exist_ok=True)
    with open(os.path.join(root, "device.pub"), "w") as fh:
        fh.write(pub_hex + "\n")
    with open(os.path.join(root, "chain.log"), "wb") as fh:
        fh.write(b"".join(put_record(e) for e in entries))
    for seq, data in media.items():
        with open(os.path.join(root, "media", f"{seq:012d}.ts"), "wb") as fh:
            fh.write(data)
    if head is not None:
        with open(os.path.join(root, "head.txt"), "w") as fh:
            fh.write(f"{head[0]} {head[1]}\n")


def _kinds(report):
    return sorted((f["seq"] if f["seq"] is not None else -1, f["kind"]) for f in report["findings"])


class EntryBuilder:
    """Builds and signs entries for negative self-tests (encoder of §3)."""

    def __init__(self, seed: bytes):
        self.seed = seed
        self.pub = ed25519_public_key(seed)
        self.dev = device_id(self.pub)

    @staticmethod
    def _text(s: str) -> bytes:
        b = s.encode()
        return bytes([len(b)]) + b

    def header(self, seq, prev, wall, mono, boot, kind):
        return (
            ENTRY_PREFIX
            + b"\x01"
            + self.dev
            + seq.to_bytes(8, "big")
            + prev
            + wall.to_bytes(8, "big", signed=True)
            + mono.to_bytes(8, "big")
            + boot.to_bytes(4, "big")
            + b"\x00"
            + bytes([kind])
        )

    def segment_body(self, rec, part, media, start_pts, end_pts, start_mono):
        return (
            rec
            + part.to_bytes(4, "big")
            + hashlib.sha256(media).digest()
            + len(media).to_bytes(8, "big")
            + start_pts.to_bytes(8, "big", signed=True)
            + end_pts.to_bytes(8, "big", signed=True)
            + start_mono.to_bytes(8, "big")
            + ((end_pts - start_pts) * 30 // 90000).to_bytes(4, "big")  # every frame of the span
            + (0).to_bytes(8, "big")
            + self._text("h264")
            + (640).to_bytes(2, "big")
            + (480).to_bytes(2, "big")
            + (30).to_bytes(4, "big")
            + (1).to_bytes(4, "big")
            + self._text("")
            + (0).to_bytes(4, "big")
            + b"\x00\x00\x00\x00"
        )

    def sign(self, signing: bytes) -> bytes:
        return signing + ed25519_sign(self.seed, signing)


def _chain(builder, specs):
    """specs: list of (kind, body, wall, mono, boot). Returns signed entries."""
    out, prev = [], bytes(32)
    for seq, (kind, body, wall, mono, boot) in enumerate(specs):
        sb = builder.header(seq, prev, wall, mono, boot, kind) + body
        out.append(builder.sign(sb))
        prev = hashlib.sha256(sb).digest()
    return out


def self_test(vdir: str) -> int:
    t = SelfTest()
    tmp = tempfile.mkdtemp(prefix="fieldseal-indep-")
    try:
        _self_test_ed25519(t)
        _self_test_entries(t, vdir, tmp)
        _self_test_positions(t, vdir, tmp)
        _self_test_dropped(t, vdir, tmp)
        _self_test_merkle(t, vdir)
        _self_test_checkpoint(t, vdir)
        _self_test_frames(t, vdir)
        _self_test_gaps(t, tmp)
    except Exception as exc:  # a crash is a failure, reported as such
        import traceback

        traceback.print_exc()
        t.check(False, f"self-test crashed: {exc!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{t.passed} passed, {t.failed} failed")
    return 0 if t.failed == 0 else 1


def _self_test_ed25519(t):
    # RFC 8032 §7.1 test 1 and 2 (empty message; one byte 0x72).
    sk = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    t.check(ed25519_public_key(sk) == pk, "RFC 8032 test 1 public key")
    t.check(ed25519_sign(sk, b"") == sig, "RFC 8032 test 1 signature")
    t.check(ed25519_verify(pk, b"", sig), "RFC 8032 test 1 verifies")
    t.check(not ed25519_verify(pk, b"x", sig), "RFC 8032 test 1 wrong message")
    sk2 = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    pk2 = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    t.check(ed25519_public_key(sk2) == pk2, "RFC 8032 test 2 public key")
    t.check(ed25519_verify(pk2, b"\x72", ed25519_sign(sk2, b"\x72")), "RFC 8032 test 2 verifies")
    # Strictness: S + L (non-canonical S) must be refused.
    s_big = (int.from_bytes(sig[32:], "little") + L).to_bytes(32, "little")
    t.check(not ed25519_verify(pk, b"", sig[:32] + s_big), "non-canonical S refused")
    # Small-order public key (identity, y = 1) and small-order R.
    ident = (1).to_bytes(32, "little")
    t.check(not ed25519_verify(ident, b"", ident + bytes(32)), "small-order A refused")
    t.check(not ed25519_verify(pk, b"", ident + sig[32:]), "small-order R refused")
    # Non-canonical encoding: y = p + 1 encodes the identity non-canonically.
    noncanon = (P + 1).to_bytes(32, "little")
    t.check(pt_decode(noncanon) is None, "non-canonical y refused")
    t.check(pt_decode((1 | (1 << 255)).to_bytes(32, "little")) is None, "x = 0 with sign bit refused")
    # A point of order 8 (small order but not the identity).
    order8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
    p8 = pt_decode(order8)
    t.check(p8 is not None and is_small_order(p8), "order-8 point is small order")
    t.check(not ed25519_verify(order8, b"", sig), "order-8 A refused")


def _self_test_positions(t, vdir, tmp):
    """§8.2: every form of the position field and the position events."""
    with open(os.path.join(vdir, "positions.json")) as fh:
        v = json.load(fh)
    pub = bytes.fromhex(v["public_key"])
    raws = [bytes.fromhex(ve["signed_entry"]) for ve in v["entries"]]
    for i, raw in enumerate(raws):
        e = decode_entry(raw)
        t.check(e.entry_hash.hex() == v["entries"][i]["entry_hash"], f"position entry {i} hash")
        t.check(ed25519_verify(pub, e.signing_bytes, e.signature), f"position entry {i} signature")
    names = [decode_entry(raw).fields.get("event") for raw in raws]
    t.check(
        names[1:3] == ["receiver-unreachable", "receiver-back"] and names[5] == "fix-acquired"
        and names[7] == "fix-lost" and names[11] == "receiver-unreachable",
        f"position events: {names}",
    )
    t.check(decode_entry(raws[7]).last_fix_us == 1782896417000000, "fix-lost names the last fix")
    t.check(decode_entry(raws[1]).last_fix_us is None, "receiver-unreachable without a fix")
    media = {m["seq"]: bytes.fromhex(m["bytes"]) for m in v["media"]}
    d = os.path.join(tmp, "positions")
    _write_package(d, pub.hex(), raws, media)
    rep = verify_package(d)
    exp = v["report"]
    for field in exp:
        if field != "findings":
            t.check(rep[field] == exp[field], f"positions report {field}: {rep[field]!r} != {exp[field]!r}")
    t.check(_kinds(rep) == _kinds(exp), "positions report findings")
    # A tag, a reason or a range outside the format is malformed (§3.1.1):
    # entry 4 states no-fix-yet (03 03) 88 bytes in, after the header fields.
    at = 19 + 1 + 8 + 8 + 32 + 8 + 8 + 4
    for bad, what in [(bytes([4]), "tag 4"), (bytes([3, 0]), "reason 0"), (bytes([3, 5]), "reason 5")]:
        raw = raws[4][:at] + bad + raws[4][at + 2:]
        t.check(_raises(lambda: decode_entry(raw)), f"position {what} refused")


def _self_test_dropped(t, vdir, tmp):
    """§8.3: a frames-dropped event, and a segment short of frames with none."""
    with open(os.path.join(vdir, "dropped.json")) as fh:
        v = json.load(fh)
    pub = bytes.fromhex(v["public_key"])
    raws = [bytes.fromhex(ve["signed_entry"]) for ve in v["entries"]]
    for i, raw in enumerate(raws):
        e = decode_entry(raw)
        t.check(e.entry_hash.hex() == v["entries"][i]["entry_hash"], f"dropped entry {i} hash")
        t.check(ed25519_verify(pub, e.signing_bytes, e.signature), f"dropped entry {i} signature")
    ev = decode_entry(raws[4])
    t.check(ev.event == "frames-dropped" and ev.part == 1 and ev.frames == 15, "frames-dropped fields")
    t.check(ev.end_pts - ev.first_pts == 15 * 3000, "frames-dropped span")
    media = {m["seq"]: bytes.fromhex(m["bytes"]) for m in v["media"]}
    d = os.path.join(tmp, "dropped")
    _write_package(d, pub.hex(), raws, media)
    rep = verify_package(d)
    exp = v["report"]
    for field in exp:
        if field != "findings":
            t.check(rep[field] == exp[field], f"dropped report {field}: {rep[field]!r} != {exp[field]!r}")
    t.check(_kinds(rep) == _kinds(exp) == [(5, "frame-count-mismatch")], f"dropped findings {_kinds(rep)}")
    # Without the event, segment 3 is a finding too; a span running backwards is malformed.
    d = os.path.join(tmp, "dropped-no-event")
    _write_package(d, pub.hex(), raws[:4] + raws[5:], media)
    t.check(
        (3, "frame-count-mismatch") in _kinds(verify_package(d)),
        f"segment 3 without its event: {_kinds(verify_package(d))}",
    )
    at = len(raws[4]) - 64 - 4 - 8
    bad = raws[4][:at] + (0).to_bytes(8, "big") + raws[4][at + 8:]
    t.check(_raises(lambda: decode_entry(bad)), "frames-dropped end_pts < first_pts refused")


def _self_test_entries(t, vdir, tmp):
    with open(os.path.join(vdir, "entries.json")) as fh:
        v = json.load(fh)
    seed = bytes.fromhex(v["secret_key_seed"])
    pub = bytes.fromhex(v["public_key"])
    t.check(ed25519_public_key(seed) == pub, "public key from seed")
    t.check(device_id(pub).hex() == v["device_id"], "device id")
    t.check(v["device_id"] == "fbde642ca462ee6f", "device id as in FORMAT.md §2")
    raws = []
    prev = bytes(32)
    for i, ve in enumerate(v["entries"]):
        raw = bytes.fromhex(ve["signed_entry"])
        raws.append(raw)
        try:
            e = decode_entry(raw)
        except (Malformed, Incomplete) as exc:
            t.check(False, f"entry {i} decodes: {exc}")
            continue
        t.check(e.seq == ve["seq"] == i, f"entry {i} seq")
        t.check(len(e.signing_bytes) == ve["signing_bytes_len"], f"entry {i} signing bytes length")
        t.check(e.entry_hash.hex() == ve["entry_hash"], f"entry {i} entry hash")
        t.check(e.device_id == device_id(pub), f"entry {i} device id")
        t.check(ed25519_verify(pub, e.signing_bytes, e.signature), f"entry {i} signature")
        t.check(e.prev_hash == prev, f"entry {i} link")
        t.check(ed25519_sign(seed, e.signing_bytes) == e.signature, f"entry {i} deterministic signature")
        prev = e.entry_hash
    # The worked example of §3.5.
    e2 = decode_entry(raws[2])
    t.check(
        (e2.case, e2.activity, e2.video_codec, e2.audio_codec, e2.width, e2.height, e2.end_pts)
        == ("CJ-2026-0001", "seizure", "h264", "aac", 1280, 720, 360000),
        "worked example entry 2 fields",
    )
    t.check(decode_entry(raws[0]).software == "fieldseal-sample", "worked example entry 0 software")
    media = {}
    for m in v["media"]:
        data = bytes.fromhex(m["bytes"])
        t.check(hashlib.sha256(data).hexdigest() == m["sha256"], f"media {m['seq']} sha256")
        media[m["seq"]] = data

    # Bit flips: every byte of every entry, one bit each; the entry must then
    # fail to decode, name another device or fail its signature.
    for i, raw in enumerate(raws):
        bad = 0
        for pos in range(len(raw)):
            flipped = bytearray(raw)
            flipped[pos] ^= 1 << (pos % 8)
            try:
                e = decode_entry(bytes(flipped))
                ok = e.device_id == device_id(pub) and ed25519_verify(pub, e.signing_bytes, e.signature)
            except (Malformed, Incomplete):
                ok = False
            if ok:
                bad += 1
        t.check(bad == 0, f"entry {i}: {bad} bit flips went unnoticed")
    # Truncations and trailing data.
    t.check(_raises(lambda: decode_entry(raws[0][:-1])), "truncated entry refused")
    t.check(_raises(lambda: decode_entry(raws[0] + b"\x00")), "trailing byte refused")

    expected = v["report"]

    def package(name, entries=None, med=None, head=None, pub_hex=None, raw_log=None):
        d = os.path.join(tmp, name)
        _write_package(d, pub_hex or pub.hex(), raws if entries is None else entries,
                       media if med is None else med, head)
        if raw_log is not None:
            with open(os.path.join(d, "chain.log"), "wb") as fh:
                fh.write(raw_log)
        return verify_package(d)

    rep = package("good")
    for field in ("ok", "device", "entries", "segments", "events", "head_seq", "head_hash",
                  "media_seconds", "media_verified", "gaps", "positions"):
        t.check(rep[field] == expected[field], f"report field {field}: {rep[field]!r} != {expected[field]!r}")
    t.check(_kinds(rep) == _kinds(expected), "report findings")

    # Package-level damage.
    for i in range(len(raws)):
        flipped = list(raws)
        b = bytearray(raws[i])
        b[len(b) // 2] ^= 0x10
        flipped[i] = bytes(b)
        r = package(f"flip{i}", entries=flipped)
        t.check(not r["ok"], f"package with entry {i} flipped is not ok")
    r = package("media-flip", med={2: bytes([media[2][0] ^ 1]) + media[2][1:], 3: media[3]})
    t.check(_kinds(r) == [(2, "media-mismatch")] and r["media_verified"] == 1, f"media flip: {_kinds(r)}")
    r = package("media-short", med={2: media[2], 3: media[3][:-1]})
    t.check(_kinds(r) == [(3, "media-mismatch")], f"media length: {_kinds(r)}")
    r = package("media-gone", med={2: media[2]})
    t.check(_kinds(r) == [(3, "missing-media")], f"missing media: {_kinds(r)}")
    r = package("delete1", entries=raws[:1] + raws[2:])
    t.check((1, "missing-entry") in _kinds(r) and not r["ok"] and r["entries"] == 4, f"deleted entry: {_kinds(r)}")
    r = package("dup", entries=raws[:3] + raws[2:])
    t.check(_kinds(r) == [(2, "out-of-order")] and r["entries"] == 5, f"duplicated record: {_kinds(r)}")
    r = package("swap", entries=raws[:2] + [raws[3], raws[2]] + raws[4:])
    t.check((2, "out-of-order") in _kinds(r), f"swapped records: {_kinds(r)}")
    r = package("tail-cut", entries=raws[:4], head=(4, v["entries"][4]["entry_hash"]))
    t.check((4, "truncated-chain") in _kinds(r) and (4, "missing-entry") in _kinds(r), f"cut tail: {_kinds(r)}")
    r = package("head-ok", head=(4, v["entries"][4]["entry_hash"]))
    t.check(r["ok"], "receipts' head matches")
    r = package("head-wrong", head=(4, "00" * 32))
    t.check(_kinds(r) == [(4, "head-mismatch")], f"wrong head hash: {_kinds(r)}")
    log = b"".join(put_record(x) for x in raws)
    r = package("torn", raw_log=log[:-10])
    t.check(_kinds(r) == [(-1, "malformed")] and r["head_seq"] == 3, f"torn tail: {_kinds(r)}")
    r = package("torn1", raw_log=log + b"\x01")
    t.check(_kinds(r) == [(-1, "malformed")] and r["ok"] is False, f"one-byte torn tail: {_kinds(r)}")
    other = ed25519_public_key(bytes([7]) * 32)
    r = package("other-key", pub_hex=other.hex())
    t.check(_kinds(r) == [(i, "wrong-device") for i in range(5)], f"other device.pub: {_kinds(r)}")
    # A key with the same device id cannot be made; a bad signature needs the
    # right device id: re-sign entry 1 with another key but keep its bytes.
    b = bytearray(raws[1])
    b[-1] ^= 0x01
    r = package("badsig", entries=raws[:1] + [bytes(b)] + raws[2:])
    # §4 step 2/5: a rejected entry is reported for that, not again as missing.
    t.check(_kinds(r) == [(1, "bad-signature")] and r["entries"] == 4, f"bad signature: {_kinds(r)}")
    # ... and still counts for order (step 3): forged 2, then the real 2.
    b2 = bytearray(raws[2])
    b2[-1] ^= 0x01
    r = package("badsig-order", entries=raws[:2] + [bytes(b2)] + raws[2:])
    t.check(_kinds(r) == [(2, "bad-signature"), (2, "out-of-order")], f"forged then real: {_kinds(r)}")
    # Damage: a record length above 4096 (or 0) stops the reading (§9).
    log = b"".join(put_record(x) for x in raws[:2]) + b"\x10\x01" + b"".join(put_record(x) for x in raws[2:])
    r = package("oversize", raw_log=log)
    t.check(_kinds(r) == [(-1, "malformed")] and r["entries"] == 2 and r["head_seq"] == 1,
            f"oversized record length: {_kinds(r)} {r['entries']}")
    log = b"".join(put_record(x) for x in raws[:2]) + b"\x00\x00" + b"".join(put_record(x) for x in raws[2:])
    r = package("zero-len", raw_log=log)
    t.check(_kinds(r) == [(-1, "malformed")] and r["entries"] == 2, f"zero record length: {_kinds(r)}")
    # Unreadable packages.
    d = os.path.join(tmp, "unreadable")
    _write_package(d, "XYZ", raws, media)
    t.check(_raises_unreadable(lambda: verify_package(d)), "bad device.pub is unreadable")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        codes = [main(["--json", x]) for x in (d, os.path.join(tmp, "good"), os.path.join(tmp, "media-flip"))]
    t.check(codes == [2, 0, 1], f"CLI exit codes unreadable/ok/not ok: {codes}")


def _raises_unreadable(fn):
    try:
        fn()
    except Unreadable:
        return True
    return False


def _self_test_gaps(t, tmp):
    b = EntryBuilder(bytes([5]) * 32)
    rec1, rec2 = bytes([1]) * 16, bytes([2]) * 16
    m = [bytes([i]) * 10 for i in range(4)]
    ev_start = bytes([2, 1]) + b._text("x")  # agent-started "x"
    stop = bytes([2, 3]) + rec1 + b"\x01"  # recording-stopped user-stop

    def seg(rec, part, mi, sp, ep, smono):
        return b.segment_body(rec, part, m[mi], sp, ep, smono)

    base = 1_700_000_000_000_000
    # Segments of 4 s (360000 pts). Segment rec2 starts 10 s after rec1 part 1 ends.
    specs = [
        (2, ev_start[1:], base, 1_000_000, 1),
        (1, seg(rec1, 0, 0, 0, 360000, 1_000_000), base + 5_000_000, 5_000_000, 1),
        (1, seg(rec1, 1, 1, 360000, 720000, 5_000_000), base + 9_000_000, 9_000_000, 1),
        (2, stop[1:], base + 9_500_000, 9_500_000, 1),
        (1, seg(rec2, 0, 2, 0, 360000, 19_000_000), base + 23_000_000, 23_000_000, 1),
    ]
    entries = _chain(b, specs)
    d = os.path.join(tmp, "gap-explained")
    _write_package(d, b.pub.hex(), entries, {1: m[0], 2: m[1], 4: m[2]})
    r = verify_package(d)
    t.check(r["ok"] and r["gaps"] == [{"after_seq": 2, "before_seq": 4, "seconds": 10.0,
                                       "reason": "user-stop", "reason_seq": 3}], f"explained gap: {r['gaps']}")
    t.check(r["media_seconds"] == 12.0 and r["media_verified"] == 3, "gap chain media")
    # Without the stop event: unexplained gap.
    specs2 = specs[:3] + [(2, bytes([6]), base + 9_500_000, 9_500_000, 1)] + specs[4:]
    d = os.path.join(tmp, "gap-unexplained")
    _write_package(d, b.pub.hex(), _chain(b, specs2), {1: m[0], 2: m[1], 4: m[2]})
    r = verify_package(d)
    t.check(_kinds(r) == [(4, "unexplained-gap")] and r["gaps"][0]["reason"] is None, f"unexplained gap {_kinds(r)}")
    # Across a reboot with power-loss-recovered: wall-clock gap.
    plr = bytes([11]) + b"\x01" + (2).to_bytes(8, "big") + (base + 9_000_000).to_bytes(8, "big") + \
        (20_000_000).to_bytes(8, "big") + (0).to_bytes(4, "big")
    specs3 = specs[:3] + [(2, plr, base + 29_000_000, 100, 2),
                          (1, seg(rec2, 0, 2, 0, 360000, 1_000_000), base + 34_000_000, 5_000_000, 2)]
    d = os.path.join(tmp, "gap-power")
    _write_package(d, b.pub.hex(), _chain(b, specs3), {1: m[0], 2: m[1], 4: m[2]})
    r = verify_package(d)
    # wall(a) = base+9e6 - (9e6-5e6) = base+5e6; end = base+9e6; wall(b) = base+34e6-4e6 = base+30e6.
    t.check(r["ok"] and r["gaps"] == [{"after_seq": 2, "before_seq": 4, "seconds": 21.0,
                                       "reason": "power-loss", "reason_seq": 3}], f"power-loss gap {r['gaps']}")
    # Time going backwards; clock-adjusted exempts wall clock only.
    specs4 = [specs[0], (2, bytes([5]), base - 1, 2_000_000, 1)]
    d = os.path.join(tmp, "time-back")
    _write_package(d, b.pub.hex(), _chain(b, specs4), {})
    t.check(_kinds(verify_package(d)) == [(1, "time-backwards")], "wall clock backwards")
    adj = bytes([10]) + base.to_bytes(8, "big") + (base - 10).to_bytes(8, "big")
    specs5 = [specs[0], (2, adj, base - 1, 2_000_000, 1)]
    d = os.path.join(tmp, "clock-adj")
    _write_package(d, b.pub.hex(), _chain(b, specs5), {})
    t.check(verify_package(d)["ok"], "clock-adjusted may go back")
    specs6 = [specs[0], (2, bytes([5]), base + 1, 500, 1)]
    d = os.path.join(tmp, "mono-back")
    _write_package(d, b.pub.hex(), _chain(b, specs6), {})
    t.check(_kinds(verify_package(d)) == [(1, "time-backwards")], "monotonic clock backwards")
    specs7 = [(2, ev_start[1:], base, 1_000_000, 2), (2, bytes([5]), base + 1, 2_000_000, 1)]
    d = os.path.join(tmp, "boot-back")
    _write_package(d, b.pub.hex(), _chain(b, specs7), {})
    t.check(_kinds(verify_package(d)) == [(1, "time-backwards")], "boot backwards")
    # Equivocation (unordered set) and a broken link.
    e_a = _chain(b, specs4)
    e_b = _chain(b, [specs[0], (2, bytes([6]), base + 1, 2_000_000, 1)])
    r = verify_chain(b.pub, [e_a[0], e_a[1], e_b[1], e_a[1]], media={})
    t.check(_kinds(r) == [(1, "equivocation"), (1, "time-backwards")] and r["entries"] == 2, f"equivocation {_kinds(r)}")
    # §4 step 4: A, B, B gives one finding per differing arrival.
    r = verify_chain(b.pub, [e_a[0], e_a[1], e_b[1], e_b[1]], media={})
    t.check([k for k in _kinds(r) if k[1] == "equivocation"] == [(1, "equivocation")] * 2, f"A, B, B {_kinds(r)}")
    # The kept version: the first in input order, unless the successor, seen
    # before the later version, links to it.
    x = _chain(b, [specs[0], (2, bytes([5]), base + 1, 2_000_000, 1), (2, bytes([6]), base + 2, 3_000_000, 1)])
    y = _chain(b, [specs[0], (2, bytes([6]), base + 1, 2_000_000, 1)])
    r = verify_chain(b.pub, [x[0], y[1], x[2], x[1]], media={})
    t.check(_kinds(r) == [(1, "equivocation")] and r["entries"] == 3, f"later version kept {_kinds(r)}")
    r = verify_chain(b.pub, [x[0], y[1], x[1], x[2]], media={})
    t.check(_kinds(r) == [(1, "equivocation"), (2, "broken-link")], f"first version kept {_kinds(r)}")
    sb = b.header(1, bytes([9]) * 32, base + 1, 2_000_000, 1, 2) + bytes([5])
    r = verify_chain(b.pub, [e_a[0], b.sign(sb)], media={})
    t.check(_kinds(r) == [(1, "broken-link")], f"broken link {_kinds(r)}")
    sb = b.header(0, bytes([9]) * 32, base, 1_000_000, 1, 2) + bytes([5])
    r = verify_chain(b.pub, [b.sign(sb)], media={})
    t.check(_kinds(r) == [(0, "broken-link")], f"entry 0 prev_hash {_kinds(r)}")
    # Malformed field values inside a validly signed entry.
    for name, body in [("bad kind", None), ("bad event", bytes([15])), ("bad reason", bytes([3]) + rec1 + b"\x06"),
                       ("battery 101", bytes([9, 101])), ("control char", bytes([1, 1, 0x07]))]:
        hdr = b.header(0, bytes(32), base, 1, 1, 3 if body is None else 2)
        raw = b.sign(hdr + (body or b""))
        t.check(_raises(lambda raw=raw: decode_entry(raw)), f"{name} is malformed")


def _self_test_merkle(t, vdir):
    with open(os.path.join(vdir, "merkle.json")) as fh:
        v = json.load(fh)
    leaves = [bytes.fromhex(x) for x in v["leaf_data"]]
    lh = [leaf_hash(x) for x in leaves]
    t.check([h.hex() for h in lh] == v["leaf_hashes"], "leaf hashes")
    roots = {}
    for r in v["roots"]:
        roots[r["size"]] = bytes.fromhex(r["root"])
        t.check(merkle_root(lh[: r["size"]]) == roots[r["size"]], f"root of size {r['size']}")
    for p in v["inclusion"]:
        m, n = p["leaf_index"], p["tree_size"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        enc = bytes.fromhex(p["encoded"])
        t.check(decode_proof(enc) == (m, n, proof), f"inclusion {m}/{n} decodes")
        t.check(encode_proof(m, n, proof) == enc, f"inclusion {m}/{n} encodes")
        t.check(verify_inclusion(lh[m], m, n, proof, roots[n]), f"inclusion {m}/{n} verifies")
        t.check(not verify_inclusion(lh[m], m, n, proof + [lh[0]], roots[n]), f"inclusion {m}/{n} extra hash")
        if proof:
            t.check(not verify_inclusion(lh[m], m, n, proof[:-1], roots[n]), f"inclusion {m}/{n} short")
            bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:]
            t.check(not verify_inclusion(lh[m], m, n, bad, roots[n]), f"inclusion {m}/{n} tampered")
        other = (m + 1) % n
        if other != m:
            t.check(not verify_inclusion(lh[other], other, n, proof, roots[n]) or
                    proof == [], f"inclusion {m}/{n} wrong leaf")
        t.check(not verify_inclusion(lh[m], n, n, proof, roots[n]), f"inclusion {m}/{n} index out of range")
    for p in v["consistency"]:
        m, n = p["old_size"], p["new_size"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        enc = bytes.fromhex(p["encoded"])
        t.check(decode_proof(enc) == (m, n, proof), f"consistency {m}->{n} decodes")
        t.check(encode_proof(m, n, proof) == enc, f"consistency {m}->{n} encodes")
        t.check(verify_consistency(m, n, roots[m], roots[n], proof), f"consistency {m}->{n} verifies")
        t.check(not verify_consistency(m, n, roots[m], roots[n], proof + [lh[0]]), f"consistency {m}->{n} extra")
        if proof:
            bad = proof[:-1] + [bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
            t.check(not verify_consistency(m, n, roots[m], roots[n], bad), f"consistency {m}->{n} tampered")
        if m < n:
            t.check(not verify_consistency(m, n, roots[n], roots[n], proof) or m == 0 and False,
                    f"consistency {m}->{n} wrong old root")
    t.check(_raises(lambda: decode_proof(encode_proof(0, 1, []) + b"\x00")), "proof trailing byte")
    t.check(_raises(lambda: decode_proof(bytes(16) + bytes([65]))), "proof count > 64")
    # Document values (§6.7).
    t.check(lh[2].hex().startswith("fca89f57") and roots[7].hex().startswith("0b007fb9"), "doc leaf/root values")


def _self_test_checkpoint(t, vdir):
    with open(os.path.join(vdir, "checkpoint.txt"), "rb") as fh:
        note = fh.read()
    with open(os.path.join(vdir, "checkpoint.vkey")) as fh:
        vkey = fh.read()
    name, pub = parse_verifier_key(vkey)
    t.check(name == "fieldseal.example/log", "verifier key name")
    t.check(pub == ed25519_public_key(bytes([1]) * 32), "verifier key from seed 01..01")
    t.check(key_id(name, pub).hex() == "16089939", "key id")
    cp = verify_checkpoint(note, name, pub)
    with open(os.path.join(vdir, "merkle.json")) as fh:
        roots = {r["size"]: r["root"] for r in json.load(fh)["roots"]}
    t.check(cp["size"] == 7 and cp["root"].hex() == roots[7], "checkpoint root is the size-7 root")
    t.check(cp["time"] == 1767225600 and cp["origin"] == name, "checkpoint time and origin")
    text_len = note.index(b"\n\n") + 1
    t.check(text_len == 85, "signed text is 85 bytes")
    # Negative: altered text, foreign-only signature, extra line, lost signature.
    t.check(_raises(lambda: verify_checkpoint(note.replace(b"\n7\n", b"\n8\n"), name, pub)), "altered size refused")
    other = ed25519_public_key(bytes([2]) * 32)
    t.check(_raises(lambda: verify_checkpoint(note, name, other)), "other key: no matching line")
    text = note[:text_len]
    foreign = base64.b64encode(b"\x00\x00\x00\x00" + bytes(64)).decode()
    witnessed = note + f"\u2014 witness {foreign}\n".encode()
    t.check(not _raises(lambda: verify_checkpoint(witnessed, name, pub)), "foreign signature ignored")
    extra = text + b"extra\n"
    sig = ed25519_sign(bytes([1]) * 32, extra)
    extra_note = extra + b"\n" + f"\u2014 {name} ".encode() + base64.b64encode(key_id(name, pub) + sig) + b"\n"
    t.check(_raises(lambda: verify_checkpoint(extra_note, name, pub)), "extra checkpoint line refused")
    t.check(_raises(lambda: verify_checkpoint(note.replace(b"\n", b"\r\n"), name, pub)), "CR refused")

    def signed(txt: bytes) -> bytes:
        blob = key_id(name, pub) + ed25519_sign(bytes([1]) * 32, txt)
        return txt + b"\n" + f"\u2014 {name} ".encode() + base64.b64encode(blob) + b"\n"

    t.check(verify_checkpoint(signed(text), name, pub) == cp, "re-signed checkpoint verifies")
    for label, bad_text in [
        ("leading zero in size", text.replace(b"\n7\n", b"\n07\n")),
        ("no time line", text[: text.index(b"time")]),
        ("time without value", text.replace(b"time 1767225600", b"time ")),
        ("origin with a space", text.replace(b"fieldseal.example/log", b"fieldseal example")),
        ("short root", text.replace(b"CwB/uRXrmyoUb1SxyG7FO2ZPjkVbdmCwtu4T7cDZIcA=", b"CwB/uRXr")),
    ]:
        t.check(_raises(lambda bt=bad_text: verify_checkpoint(signed(bt), name, pub)), f"checkpoint {label} refused")
    t.check(_raises(lambda: verify_checkpoint(note[:-1], name, pub)), "missing final newline refused")
    t.check(_raises(lambda: parse_verifier_key(vkey.replace("16089939", "16089938"))), "bad key id refused")
    t.check(_raises(lambda: strict_b64("AB==")) and _raises(lambda: strict_b64("AA")), "strict base64")


def _self_test_frames(t, vdir):
    vals = {}
    with open(os.path.join(vdir, "frames.txt")) as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                k, val = line.split(": ", 1)
                vals[k] = bytes.fromhex(val)
    media_hash = hashlib.sha256(b"segment 42").digest()
    dev = bytes.fromhex("0123456789abcdef")
    expect = {
        "hello": {"protocol_version": 4, "device_id": dev, "chain_head_seq": 41},
        "hello_empty_chain": {"protocol_version": 4, "device_id": dev, "chain_head_seq": None},
        "welcome": {"protocol_version": 4, "server_time_us": 1751328000000000, "next_seq_expected": 42,
                    "resend_media": [3, 17]},
        "submit_entry": {"entry": b"opaque signed entry bytes"},
        "entry_rejected": {"seq": 42, "code": 4, "detail": "seq 42 differs"},
        "upload_query": {"seq": 42, "media_hash": media_hash, "media_len": 1000000},
        "upload_offset": {"seq": 42, "offset": 65536},
        "upload_begin": {"seq": 42, "media_hash": media_hash, "offset": 65536, "len": 1000000},
        "upload_ack": {},
        "upload_failed": {"seq": 42, "code": 3, "detail": ""},
        "ping": {"nonce": 0x0102030405060708},
        "pong": {"nonce": 0x0102030405060708},
        "error": {"code": 2, "detail": "v1 only"},
        "renew_cert": {"cert_sha256": hashlib.sha256(b"stand-in DER certificate").digest()},
        "cert_renewed": {"cert": b"stand-in DER certificate"},
        "renew_refused": {"code": 4, "detail": "ask later"},
    }
    for name, fields in expect.items():
        frame = vals[f"frame.{name}"]
        status, res = decode_frame(frame)
        if status != "frame":
            t.check(False, f"frame {name}: {status} {res}")
            continue
        msg, used = res
        t.check(used == len(frame), f"frame {name} length")
        t.check(all(msg.get(k) == val for k, val in fields.items()), f"frame {name} fields {msg}")
        t.check(decode_frame(frame[:-1])[0] == "wait", f"frame {name} truncated: wait")
        grown = frame[:1] + (len(frame) - 4).to_bytes(4, "big") + frame[5:] + b"\x00"
        t.check(decode_frame(grown)[0] == "malformed", f"frame {name} trailing byte: malformed")
    t.check(decode_frame(b"\x05")[0] == "malformed", "unknown frame type")
    t.check(decode_frame(b"\x30\x00\x01\x00\x01")[0] == "malformed", "frame length > 65536")
    t.check(decode_frame(b"\x30\x00")[0] == "wait", "short header waits")
    # Receipt.
    seed = bytes([9]) * 32
    spk = vals["receipt.server_public_key"]
    t.check(ed25519_public_key(seed) == spk, "server key from seed 09..09")
    enc = vals["receipt.encoding"]
    rec = verify_receipt(enc, spk)
    t.check(rec["signing_bytes"] == vals["receipt.signing_bytes"], "receipt signing bytes")
    t.check(len(rec["signing_bytes"]) == 86, "receipt signing bytes are 86 bytes")
    # §7.7: the receipt is for entry 4 of entries.json; its entry_hash is the
    # §3.2 entry hash (SHA-256 of the signing bytes, without the signature).
    with open(os.path.join(vdir, "entries.json"), encoding="utf-8") as fh:
        vec = json.load(fh)
    e4 = decode_entry(bytes.fromhex(vec["entries"][4]["signed_entry"]))
    t.check((rec["device_id"], rec["seq"], rec["server_time_us"], rec["log_index"])
            == (e4.device_id, 4, 1751328001500000, 1000), "receipt fields")
    t.check(rec["entry_hash"] == e4.entry_hash, "receipt entry hash = entry hash of entry 4")
    t.check(rec["entry_hash"] != hashlib.sha256(bytes.fromhex(vec["entries"][4]["signed_entry"])).digest(),
            "receipt entry hash does not cover the signature")
    status, res = decode_frame(vals["frame.entry_receipt"])
    t.check(status == "frame" and res[0]["receipt"]["signature"] == rec["signature"], "EntryReceipt frame")
    bad = bytearray(enc)
    bad[10] ^= 1
    t.check(_raises(lambda: verify_receipt(bytes(bad), spk)), "altered receipt refused")
    t.check(_raises(lambda: decode_receipt(b"\x02" + enc[1:])), "receipt version 2 refused")
    t.check(_raises(lambda: decode_receipt(enc + b"\x00")), "receipt of 130 bytes refused")
    # Media acknowledgement (§7.6): segment 3 of entries.json, same server key.
    aenc = vals["ack.encoding"]
    ack = verify_media_ack(aenc, spk)
    t.check(ack["signing_bytes"] == vals["ack.signing_bytes"], "media ack signing bytes")
    t.check(len(ack["signing_bytes"]) == 88, "media ack signing bytes are 88 bytes")
    m3 = next(m for m in vec["media"] if m["seq"] == 3)
    t.check((ack["device_id"], ack["seq"], ack["media_sha256"].hex(), ack["media_len"])
            == (e4.device_id, 3, m3["sha256"], len(bytes.fromhex(m3["bytes"]))), "media ack fields name segment 3")
    status, res = decode_frame(vals["frame.upload_ack"])
    t.check(status == "frame" and res[0]["ack"]["signature"] == ack["signature"], "UploadAck frame")
    t.check(_raises(lambda: verify_media_ack(enc, spk)), "a receipt is not a media ack")
    bad = bytearray(aenc)
    bad[40] ^= 1
    t.check(_raises(lambda: verify_media_ack(bytes(bad), spk)), "altered media ack refused")
    # §7.5 pipelined upload (version 4): UploadBegin at offset 0 for segment 3,
    # then its bytes unframed; the acknowledgement above answers it.
    stream = vals["stream.pipelined_upload"]
    status, res = decode_frame(stream)
    m3_bytes = bytes.fromhex(m3["bytes"])
    t.check(status == "frame", f"pipelined stream opens with a frame: {status}")
    if status == "frame":
        msg, used = res
        t.check((msg.get("seq"), msg.get("media_hash"), msg.get("offset"), msg.get("len"))
                == (3, hashlib.sha256(m3_bytes).digest(), 0, len(m3_bytes)), f"pipelined UploadBegin {msg}")
        t.check(stream[used:] == m3_bytes, "pipelined stream: the media bytes follow unframed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

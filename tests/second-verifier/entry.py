"""Chain entries (docs/FORMAT.md §1–§3): decode a signed entry exactly, or say
why it is malformed."""

import hashlib
import unicodedata

ENTRY_PREFIX = b"fieldseal/entry/v1\x00"
MAX_SIGNED_ENTRY = 4096


class Malformed(Exception):
    """Bytes that are not a valid encoding."""


class Reader:
    """A cursor over bytes; running out of bytes is malformed here (a
    verifier treats incomplete and malformed alike)."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Malformed("incomplete")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n):
        return int.from_bytes(self.take(n), "big")

    def sint(self, n):
        return int.from_bytes(self.take(n), "big", signed=True)

    def flag(self, what):
        b = self.uint(1)
        if b > 1:
            raise Malformed(f"{what}: {b} is not 0 or 1")
        return b == 1

    def text(self, limit):
        n = self.uint(1)
        if n > limit:
            raise Malformed(f"text of {n} bytes, at most {limit}")
        try:
            s = self.take(n).decode("utf-8")
        except UnicodeDecodeError as e:
            raise Malformed("text is not UTF-8") from e
        if any(unicodedata.category(c) == "Cc" for c in s):
            raise Malformed("text holds a control character")
        return s

    def opt(self, read):
        return read() if self.flag("option") else None

    def end(self):
        if self.pos != len(self.data):
            raise Malformed("trailing data")


def device_id(public_key):
    return hashlib.sha256(b"fieldseal/device-id/v1\x00" + public_key).digest()[:8]


NO_FIX = {1: "no-receiver", 2: "receiver-unreachable", 3: "no-fix-yet", 4: "fix-lost"}


def _position(r):
    """§3.1.1, as the members of a §5 position object (without seq)."""
    p = {"status": "unstated", "lat_e7": None, "lon_e7": None, "accuracy_m": None,
         "fix_us": None, "no_fix": None}
    tag = r.uint(1)
    if tag in (1, 2):
        lat, lon, acc = r.sint(4), r.sint(4), r.uint(2)
        if not -900000000 <= lat <= 900000000 or not -1800000000 <= lon <= 1800000000:
            raise Malformed("position out of range")
        p.update(status="fix", lat_e7=lat, lon_e7=lon, accuracy_m=acc)
        if tag == 2:
            p["fix_us"] = r.sint(8)
    elif tag == 3:
        why = r.uint(1)
        if why not in NO_FIX:
            raise Malformed(f"no-fix reason {why}")
        p.update(status="no-fix", no_fix=NO_FIX[why])
    elif tag != 0:
        raise Malformed(f"position tag {tag}")
    return p


def _segment(r):
    s = {"recording": r.take(16), "part": r.uint(4), "media_sha256": r.take(32),
         "media_len": r.uint(8), "start_pts": r.sint(8), "end_pts": r.sint(8),
         "start_mono_us": r.uint(8), "video_frames": r.uint(4), "audio_samples": r.uint(8),
         "video_codec": r.text(16), "width": r.uint(2), "height": r.uint(2),
         "fps_num": r.uint(4), "fps_den": r.uint(4), "audio_codec": r.text(16),
         "sample_rate": r.uint(4), "channels": r.uint(1), "flags": r.uint(1)}
    if s["end_pts"] < s["start_pts"]:
        raise Malformed("end_pts before start_pts")
    if s["flags"] & ~0x03:
        raise Malformed("unknown flag bits")
    s["case"] = r.opt(lambda: r.text(64))
    s["activity"] = r.opt(lambda: r.text(64))
    return s


STOP_REASONS = {1: "user-stop", 2: "storage-full", 3: "battery-low", 4: "shutdown",
                5: "capture-error"}


def _event(r):
    code = r.uint(1)
    ev = {"code": code}
    if code == 1:
        ev["software"] = r.text(64)
    elif code == 2:
        ev.update(recording=r.take(16), case=r.opt(lambda: r.text(64)),
                  activity=r.opt(lambda: r.text(64)))
    elif code == 3:
        ev["recording"] = r.take(16)
        reason = r.uint(1)
        if reason not in STOP_REASONS:
            raise Malformed(f"stop reason {reason}")
        ev["reason"] = STOP_REASONS[reason]
    elif code == 4:
        ev.update(recording=r.take(16), segments=r.uint(4), media_us=r.uint(8))
    elif code in (5, 6):
        pass
    elif code in (7, 8):
        ev.update(used=r.uint(8), limit=r.uint(8))
    elif code == 9:
        if r.uint(1) > 100:
            raise Malformed("battery percent above 100")
    elif code == 10:
        ev.update(old=r.sint(8), new=r.sint(8))
    elif code == 11:
        ev.update(last_seq=r.opt(lambda: r.uint(8)), last_wall_us=r.sint(8),
                  gap_us=r.uint(8), salvaged=r.uint(4))
    elif code == 12:
        r.opt(lambda: r.text(64))
        r.opt(lambda: r.text(64))
    elif code == 13:
        r.opt(lambda: r.text(64))
    elif code == 14:
        ev.update(pending=r.uint(4), dropped=r.uint(8))
    elif code in (15, 16):
        ev["fix_us"] = r.sint(8)
    elif code == 17:
        ev["last_fix_us"] = r.opt(lambda: r.sint(8))
    elif code == 18:
        pass
    elif code == 19:
        ev.update(recording=r.take(16), part=r.uint(4), first_pts=r.sint(8),
                  end_pts=r.sint(8), frames=r.uint(4))
        if ev["end_pts"] < ev["first_pts"]:
            raise Malformed("frames-dropped end_pts before first_pts")
    else:
        raise Malformed(f"event code {code}")
    return ev


def decode_signed(data):
    """A dict of the entry's fields, its entry hash and signature; raises
    Malformed."""
    if len(data) > MAX_SIGNED_ENTRY:
        raise Malformed("signed entry above 4096 bytes")
    r = Reader(data)
    if r.take(len(ENTRY_PREFIX)) != ENTRY_PREFIX:
        raise Malformed("prefix")
    if r.uint(1) != 1:
        raise Malformed("version")
    e = {"device_id": r.take(8), "seq": r.uint(8), "prev_hash": r.take(32),
         "wall_us": r.sint(8), "mono_us": r.uint(8), "boot": r.uint(4)}
    e["position"] = _position(r)
    kind = r.uint(1)
    if kind == 1:
        e["segment"], e["event"] = _segment(r), None
    elif kind == 2:
        e["segment"], e["event"] = None, _event(r)
    else:
        raise Malformed(f"kind {kind}")
    signing = data[:r.pos]
    e["signature"] = r.take(64)
    r.end()
    e["signing_bytes"] = signing
    e["hash"] = hashlib.sha256(signing).digest()
    return e

"""Chain verification (docs/FORMAT.md §4) and its report (§5)."""

import ed25519
from entry import Malformed, decode_signed, device_id

KINDS = ["malformed", "wrong-device", "bad-signature", "broken-link", "equivocation",
         "missing-entry", "media-mismatch", "missing-media", "time-backwards",
         "unexplained-gap", "head-mismatch", "truncated-chain", "out-of-order",
         "frame-count-mismatch"]


def _finding(seq, kind, detail=""):
    return {"seq": seq, "kind": kind, "detail": detail}


def _decode_and_check(key, entries, ordered, findings):
    """Steps 1–3: decoded valid entries in input order, and rejected seqs."""
    me = device_id(key)
    valid, rejected, highest = [], set(), None
    for raw in entries:
        try:
            e = decode_signed(raw)
        except Malformed as err:
            findings.append(_finding(None, "malformed", str(err)))
            continue
        seq = e["seq"]
        if ordered:
            if highest is not None and seq <= highest:
                findings.append(_finding(seq, "out-of-order"))
            highest = seq if highest is None else max(highest, seq)
        if e["device_id"] != me:
            findings.append(_finding(seq, "wrong-device"))
            rejected.add(seq)
        elif not ed25519.verify(key, e["signing_bytes"], e["signature"]):
            findings.append(_finding(seq, "bad-signature"))
            rejected.add(seq)
        else:
            valid.append(e)
    return valid, rejected


def _keep(valid, findings):
    """Step 4: one kept entry per seq."""
    kept = {}
    for e in valid:
        seq, old = e["seq"], kept.get(e["seq"])
        if old is None:
            kept[seq] = e
        elif old["hash"] != e["hash"]:
            findings.append(_finding(seq, "equivocation"))
            nxt = kept.get(seq + 1)
            if nxt is not None and nxt["prev_hash"] == e["hash"]:
                kept[seq] = e
    return kept


def _holes(kept, rejected, head, findings):
    """Step 5."""
    present = set(kept) | rejected
    tops = list(present) + ([head[0]] if head else [])
    if not tops:
        return
    expect = 0
    for s in sorted(present) + [max(tops) + 1]:
        if s > expect:
            findings.append(_finding(expect, "missing-entry"))
        expect = max(expect, s + 1)


def _head(kept, head, findings):
    """Step 6."""
    if head is None:
        return
    seq, want = head
    if seq not in kept:
        findings.append(_finding(seq, "truncated-chain"))
    elif kept[seq]["hash"] != want:
        findings.append(_finding(seq, "head-mismatch"))


def _links_and_time(kept, findings):
    """Steps 7 and 8."""
    for seq in sorted(kept):
        e = kept[seq]
        if seq == 0 and e["prev_hash"] != bytes(32):
            findings.append(_finding(seq, "broken-link"))
        p = kept.get(seq - 1) if seq > 0 else None
        if p is None:
            continue
        if e["prev_hash"] != p["hash"]:
            findings.append(_finding(seq, "broken-link"))
        if e["boot"] < p["boot"] or (e["boot"] == p["boot"] and e["mono_us"] < p["mono_us"]):
            findings.append(_finding(seq, "time-backwards"))
        adjusted = e["event"] is not None and e["event"]["code"] == 10
        if e["wall_us"] < p["wall_us"] and not adjusted:
            findings.append(_finding(seq, "time-backwards"))


def _reason(ev):
    if ev is None:
        return None
    return {11: (3, "power-loss"), 3: (2, ev.get("reason")), 8: (1, "storage-full")}.get(ev["code"])


def _gap_us(a, b):
    sa, sb = a["segment"], b["segment"]
    dur = (sa["end_pts"] - sa["start_pts"]) * 10**6 // 90000
    if a["boot"] == b["boot"]:
        us = sb["start_mono_us"] - (sa["start_mono_us"] + dur)
    else:
        wall_a = a["wall_us"] - (a["mono_us"] - sa["start_mono_us"])
        wall_b = b["wall_us"] - (b["mono_us"] - sb["start_mono_us"])
        us = wall_b - (wall_a + dur)
    return max(us, 0)


def _gaps(kept, tol, findings):
    """Step 9, and the media seconds of §5."""
    gaps, seconds, a, held = [], 0.0, None, None
    for seq in sorted(kept):
        e = kept[seq]
        r = _reason(e["event"])
        if r is not None and (held is None or r[0] > held[0]):
            held = (r[0], r[1], seq)
        s = e["segment"]
        if s is not None:
            seconds += float(s["end_pts"] - s["start_pts"]) / 90000.0
            if a is not None:
                sa = a["segment"]
                contiguous = (s["recording"] == sa["recording"] and s["part"] == sa["part"] + 1
                              and abs(s["start_pts"] - sa["end_pts"]) <= tol)
                if not contiguous:
                    if held is None:
                        findings.append(_finding(seq, "unexplained-gap"))
                    gaps.append({"after_seq": a["seq"], "before_seq": seq,
                                 "seconds": float(_gap_us(a, e)) / 1000000.0,
                                 "reason": held[1] if held else None,
                                 "reason_seq": held[2] if held else None})
            a, held = e, None
        if seq + 1 not in kept:
            a, held = None, None
    return gaps, seconds


def _media(kept, media, findings):
    """Step 10."""
    if media is None:
        return 0
    verified = 0
    for seq in sorted(kept):
        s = kept[seq]["segment"]
        if s is None:
            continue
        seen = media.get(seq)
        if seen == "released":  # §4 step 10: deliberately not held
            continue
        if seen is None:
            findings.append(_finding(seq, "missing-media"))
        elif seen != (s["media_sha256"], s["media_len"]):
            findings.append(_finding(seq, "media-mismatch"))
        else:
            verified += 1
    return verified


def _frame_counts(kept, findings):
    """Step 11: a segment short of (or over) the frames its span holds at its
    rate, by more than one, that no frames-dropped event names."""
    named = {(e["event"]["recording"], e["event"]["part"]) for e in kept.values()
             if e["event"] is not None and e["event"]["code"] == 19}
    for seq in sorted(kept):
        s = kept[seq]["segment"]
        if s is None or s["flags"] & 0x01 or not s["fps_num"] or not s["fps_den"]:
            continue
        ticks = 90000 * s["fps_den"]
        expected = (2 * (s["end_pts"] - s["start_pts"]) * s["fps_num"] + ticks) // (2 * ticks)
        if abs(expected - s["video_frames"]) > 1 and (s["recording"], s["part"]) not in named:
            findings.append(_finding(seq, "frame-count-mismatch"))


def verify_chain(key, entries, media=None, head=None, tol=0, ordered=True, early=()):
    """The §5 report as a dict. `media` maps seq to (sha256, length) or
    "released";
    `head` is (seq, entry hash); `early` are findings placed first (§9)."""
    findings = []
    valid, rejected = _decode_and_check(key, entries, ordered, findings)
    kept = _keep(valid, findings)
    _holes(kept, rejected, head, findings)
    _head(kept, head, findings)
    _links_and_time(kept, findings)
    gaps, seconds = _gaps(kept, tol, findings)
    verified = _media(kept, media, findings)
    _frame_counts(kept, findings)
    findings = list(early) + findings
    findings.sort(key=lambda f: (f["seq"] is not None, f["seq"] or 0, KINDS.index(f["kind"])))
    segments = sum(1 for e in kept.values() if e["segment"] is not None)
    top = max(kept) if kept else None
    return {"ok": not findings, "device": device_id(key).hex(), "entries": len(kept),
            "segments": segments, "events": len(kept) - segments, "head_seq": top,
            "head_hash": kept[top]["hash"].hex() if kept else None,
            "media_seconds": seconds, "media_verified": verified, "gaps": gaps,
            "positions": [dict(kept[s]["position"], seq=s) for s in sorted(kept)
                          if kept[s]["segment"] is not None],
            "findings": findings}

"""The transparency log (docs/FORMAT.md §6): Merkle hashing and proofs, leaf
data, signed checkpoint notes and verifier keys; and the receipt of §7.6."""

import base64
import binascii
import hashlib
import re

import ed25519
from entry import Malformed, Reader


def sha(b):
    return hashlib.sha256(b).digest()


def leaf_hash(data):
    return sha(b"\x00" + data)


def node(left, right):
    return sha(b"\x01" + left + right)


def _split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(hashes):
    if not hashes:
        return sha(b"")
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node(root(hashes[:k]), root(hashes[k:]))


def verify_inclusion(h, m, n, proof, want):
    if m >= n:
        return False
    f, s, r = m, n - 1, h
    for c in proof:
        if s == 0:
            return False
        if f % 2 == 1 or f == s:
            r = node(c, r)
            if f % 2 == 0:
                while f % 2 == 0 and f != 0:
                    f, s = f >> 1, s >> 1
        else:
            r = node(r, c)
        f, s = f >> 1, s >> 1
    return s == 0 and r == want


def verify_consistency(m, n, a, b, proof):
    if m > n:
        return False
    if m == 0:
        return not proof and a == sha(b"")
    if m == n:
        return not proof and a == b
    if m & (m - 1) == 0:
        proof = [a] + list(proof)
    if not proof:
        return False
    f, s = m - 1, n - 1
    while f % 2 == 1:
        f, s = f >> 1, s >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if s == 0:
            return False
        if f % 2 == 1 or f == s:
            fr, sr = node(c, fr), node(c, sr)
            if f % 2 == 0:
                while f % 2 == 0 and f != 0:
                    f, s = f >> 1, s >> 1
        else:
            sr = node(sr, c)
        f, s = f >> 1, s >> 1
    return s == 0 and fr == a and sr == b


def decode_proof(b):
    """§6.4: (first, second, hashes) of an inclusion or consistency proof."""
    r = Reader(b)
    first, second, count = r.uint(8), r.uint(8), r.uint(1)
    if count > 64:
        raise Malformed("more than 64 proof hashes")
    hashes = [r.take(32) for _ in range(count)]
    r.end()
    return first, second, hashes


def decode_leaf(b):
    """§6.8: the leaf's fields, or Malformed."""
    r = Reader(b)
    if r.take(18) != b"fieldseal/leaf/v1\x00":
        raise Malformed("leaf prefix")
    t = r.uint(1)
    if t == 1:
        out = {"type": "entry", "device": r.take(8), "seq": r.uint(8),
               "entry_hash": r.take(32), "server_time_us": r.sint(8)}
    elif t == 2:
        out = {"type": "custody", "time_us": r.sint(8), "action": r.uint(1),
               "actor": r.text(64), "device": r.take(8), "first": r.uint(8),
               "last": r.uint(8)}
        if not 1 <= out["action"] <= 13 or out["last"] < out["first"]:
            raise Malformed("custody action or range")
        out["case"] = r.opt(lambda: r.text(64))
        out["detail"] = r.opt(lambda: r.text(200))
    else:
        raise Malformed("leaf type")
    r.end()
    return out


def _b64(s):
    if not re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", s):
        raise Malformed("not standard padded base64")
    b = base64.b64decode(s, validate=True)
    if base64.b64encode(b).decode() != s:
        raise Malformed("base64 with unused bits set")
    return b


def _is_name(s):
    ws = re.compile(r"[\s\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
    return (1 <= len(s.encode()) <= 256 and "+" not in s and not ws.search(s)
            and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in s))


def key_id(name, public):
    return sha(name.encode() + b"\n\x01" + public)[:4]


def parse_vkey(text):
    """§6.6 verifier key: (name, public key)."""
    name, kid, rest = text.split("+", 2)
    blob = _b64(rest)
    if not _is_name(name) or not re.fullmatch(r"[0-9a-f]{8}", kid):
        raise Malformed("verifier key name or id")
    if len(blob) != 33 or blob[0] != 1 or ed25519.decode_point(blob[1:]) is None:
        raise Malformed("verifier key")
    if key_id(name, blob[1:]).hex() != kid:
        raise Malformed("verifier key id")
    return name, blob[1:]


def _decimal(s):
    if not re.fullmatch(r"0|[1-9][0-9]*", s) or int(s) >= 2**64:
        raise Malformed(f"not a decimal u64: {s!r}")
    return int(s)


def verify_checkpoint(note, name, public):
    """§6.5–6.6: (origin, size, root, time) of a note signed by the key."""
    raw = note.encode()
    if len(raw) > 8192 or any(c < 0x20 and c != 0x0A for c in raw):
        raise Malformed("note too long or holds a control byte")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise Malformed("no signature block")
    text, sigs = note[:cut + 1], note[cut + 2:-1].split("\n")
    if len(sigs) > 16:
        raise Malformed("too many signatures")
    kid, matched = key_id(name, public), 0
    for line in sigs:
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", line)
        if not m or not _is_name(m.group(1)):
            raise Malformed("signature line")
        blob = _b64(m.group(2))
        if len(blob) < 5:
            raise Malformed("signature blob under 5 bytes")
        if m.group(1) != name or blob[:4] != kid:
            continue
        if len(blob) != 68 or not ed25519.verify(public, text.encode(), blob[4:]):
            raise Malformed("a signature by the key does not verify")
        matched += 1
    if matched == 0:
        raise Malformed("no signature by the key")
    lines = text.split("\n")
    if len(lines) != 5 or lines[4] != "" or not lines[3].startswith("time "):
        raise Malformed("checkpoint text is not four lines")
    if not _is_name(lines[0]):
        raise Malformed("origin")
    rt = _b64(lines[2])
    if len(rt) != 32:
        raise Malformed("root")
    return lines[0], _decimal(lines[1]), rt, _decimal(lines[3][5:])


def verify_receipt(enc, public):
    """§7.6: the receipt's fields, if it is 129 bytes and its signature holds."""
    if len(enc) != 129 or enc[0] != 1:
        raise Malformed("receipt length or version")
    signing = b"fieldseal/receipt/v1\x00" + enc[:65]
    if not ed25519.verify(public, signing, enc[65:]):
        raise Malformed("receipt signature")
    r = Reader(enc[1:65])
    return {"device": r.take(8), "seq": r.uint(8), "entry_hash": r.take(32),
            "server_time_us": r.sint(8), "log_index": r.uint(8)}


def split_hex(s):
    return binascii.unhexlify(s)

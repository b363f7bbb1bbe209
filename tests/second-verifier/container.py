"""The containers of an export package, from docs/FORMAT.md alone: the ustar
file (§10.1) and the little DER of its X.509 certificates (§10.4)."""

import hashlib

from entry import Malformed

BLOCK = 512
MAX_META = 256 << 20  # §10.5: a non-media member above this is unreadable


class Unreadable(Exception):
    """The file cannot be read as a package (exit 2)."""


def is_media(name):
    return name.startswith("fieldseal-package/devices/") and "/media/" in name


def _octal(field):
    """Octal digits with leading spaces and trailing NULs or spaces (§10.1)."""
    s = field.decode("ascii", "replace").lstrip(" ").rstrip("\x00 ")
    if not s or any(c not in "01234567" for c in s):
        return None
    return int(s, 8)


def _header(block, at):
    """A member's (name, size), None for a zero block, or Unreadable."""
    if block == bytes(BLOCK):
        return None
    bad = lambda why: Unreadable(f"bad ustar header at byte {at}: {why}")  # noqa: E731
    want = _octal(block[148:156])
    if want is None or sum(block[:148]) + 8 * 0x20 + sum(block[156:]) != want:
        raise bad("checksum")
    if block[257:263] != b"ustar\x00" or block[263:265] != b"00":
        raise bad("magic or version")
    if block[156:157] not in (b"0", b"\x00"):
        raise bad("typeflag")
    if block[345] != 0:  # §10.1: an empty prefix, its first byte NUL
        raise bad("prefix")
    raw = block[0:100]
    name = raw.split(b"\x00", 1)[0]
    if (not name or any(not 0x21 <= c <= 0x7E for c in name)
            or raw[len(name):] != bytes(100 - len(name))):
        raise bad("name")
    size = _octal(block[124:136])
    if size is None:
        raise bad("size")
    return name.decode("ascii"), size


def read_tar(path):
    """The members in archive order: (name, size, sha256, bytes or None for media)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise Unreadable(f"{path}: {e}") from e
    out, at = [], 0
    while True:
        block = data[at:at + BLOCK]
        if len(block) < BLOCK:
            raise Unreadable(f"ends inside the archive at byte {at}")
        h = _header(block, at)
        if h is None:
            rest = data[at + BLOCK:]
            if len(rest) < BLOCK or rest.count(0) != len(rest):
                raise Unreadable("not a complete tar archive")
            return out
        name, size = h
        if not is_media(name) and size > MAX_META:
            raise Unreadable(f"member {name} is too large")
        body = data[at + BLOCK:at + BLOCK + size]
        pad = -size % BLOCK
        if len(body) < size or len(data) < at + BLOCK + size + pad:
            raise Unreadable(f"ends inside member {name}")
        out.append((name, size, hashlib.sha256(body).digest(),
                    None if is_media(name) else body))
        at += BLOCK + size + pad


# --- DER, as much as §10.4 needs ---------------------------------------------

ED25519_ALG = bytes.fromhex("300506032b6570")
CN_OID = bytes.fromhex("0603550403")


def _tlv(b, pos):
    """(tag, value start, end) of the element at pos: single-byte tag,
    definite minimal length."""
    if pos + 2 > len(b):
        raise Malformed("DER: incomplete")
    tag, n = b[pos], b[pos + 1]
    pos += 2
    if n >= 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > len(b) or b[pos] == 0:
            raise Malformed("DER: bad length")
        n = int.from_bytes(b[pos:pos + k], "big")
        if n < 0x80 or n < 1 << (8 * (k - 1)):
            raise Malformed("DER: length not minimal")
        pos += k
    if tag & 0x1F == 0x1F:
        raise Malformed("DER: multi-byte tag")
    if pos + n > len(b):
        raise Malformed("DER: incomplete")
    return tag, pos, pos + n


def _children(b, start, end):
    """The elements between start and end: [(tag, whole TLV, value)]."""
    out = []
    while start < end:
        tag, v, e = _tlv(b[:end], start)
        out.append((tag, b[start:e], b[v:e]))
        start = e
    return out


def _key_bits(tag, value, n):
    if tag != 0x03 or len(value) != n + 1 or value[0] != 0:
        raise Malformed(f"DER: not a BIT STRING of {n} bytes")
    return value[1:]


def parse_certificate(der):
    """§10.4 step 1–2: {tbs, signature, issuer, subject, key}."""
    tag, v, e = _tlv(der, 0)
    if tag != 0x30 or e != len(der):
        raise Malformed("certificate: not one SEQUENCE")
    parts = _children(der, v, e)
    if len(parts) != 3 or parts[0][0] != 0x30 or parts[1][1] != ED25519_ALG:
        raise Malformed("certificate: not TBS, Ed25519, signature")
    sig = _key_bits(parts[2][0], parts[2][2], 64)
    tbs_tlv, tbs = parts[0][1], parts[0][2]
    f = _children(tbs, 0, len(tbs))
    if f and f[0][0] == 0xA0:
        f = f[1:]
    if (len(f) < 6 or f[0][0] != 0x02 or f[1][1] != ED25519_ALG
            or any(x[0] != 0x30 for x in f[2:6])):
        raise Malformed("TBS: fields")
    spki = _children(f[5][2], 0, len(f[5][2]))
    if len(spki) != 2 or spki[0][1] != ED25519_ALG:
        raise Malformed("TBS: not an Ed25519 key")
    key = _key_bits(spki[1][0], spki[1][2], 32)
    return {"tbs": tbs_tlv, "signature": sig, "issuer": f[2][1], "subject": f[4][1],
            "subject_value": f[4][2], "key": key}


def common_names(subject_value):
    """The common names of a Name (SEQUENCE OF SET OF AttributeTypeAndValue)."""
    out = []
    for tag, _, rdn in _children(subject_value, 0, len(subject_value)):
        if tag != 0x31:
            raise Malformed("Name: not a SET")
        for tag2, _, atv in _children(rdn, 0, len(rdn)):
            kv = _children(atv, 0, len(atv)) if tag2 == 0x30 else []
            if len(kv) != 2:
                raise Malformed("Name: attribute")
            if kv[0][1] == CN_OID:
                if kv[1][0] not in (0x0C, 0x13):
                    raise Malformed("Name: CN is not UTF8String or PrintableString")
                out.append(kv[1][2].decode("utf-8"))
    return out

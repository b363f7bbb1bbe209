"""Ed25519 signature verification (RFC 8032 §5.1.7), with the strict checks
docs/FORMAT.md §1 asks for: S < L, no small-order public key or R, and the
cofactorless equation [S]B = R + [k]A. Verification only: nothing here signs.

Written from the RFC's description for the second verifier; plain Python
integers, so it is slow (a few ms per signature) and not constant time, which
is fine for checking public data.
"""

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

# Points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, xy = T/Z.
IDENTITY = (0, 1, 1, 0)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(k, p):
    acc = IDENTITY
    while k:
        if k & 1:
            acc = _add(acc, p)
        p = _add(p, p)
        k >>= 1
    return acc


def _same(p, q):
    x1, y1, z1, _ = p
    x2, y2, z2, _ = q
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def _x_from_y(y, sign):
    """x for y on the curve with the given low bit, or None."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(b, lenient=False):
    """The point encoded by 32 bytes, or None. RFC 8032 §5.1.3 refuses a
    y >= p and x = 0 with the sign bit set; with `lenient` (how FORMAT.md §9
    reads device.pub) y is taken modulo p and that sign bit is not refused."""
    if len(b) != 32:
        return None
    n = int.from_bytes(b, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        if not lenient:
            return None
        y %= P
    x = _x_from_y(y, sign)
    if x is None and lenient and sign:
        x = _x_from_y(y, 0)
        if x != 0:
            x = None
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def small_order(p):
    return _same(_mul(8, p), IDENTITY)


BASE = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def verify(public, message, signature):
    """True iff `signature` (64 bytes) is a strict Ed25519 signature of
    `message` by the 32-byte `public` key."""
    if len(signature) != 64 or len(public) != 32:
        return False
    a = decode_point(public, lenient=True)
    r = decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L or small_order(a) or small_order(r):
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return _same(_mul(s, BASE), _add(r, _mul(k, a)))


def encode_point(p):
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def public_key(seed):
    """The public key of a 32-byte secret seed (RFC 8032 §5.1.5), to check
    that a vector's seed and public key belong together."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return encode_point(_mul(a, BASE))

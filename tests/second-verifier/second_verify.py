#!/usr/bin/env python3
"""A second fieldseal verifier, written from docs/FORMAT.md alone (Python 3,
standard library only). tests/tests/second_verifier.rs runs it against the
reference; GAPS.md lists where the document was not enough.

    second_verify.py package [--json] [--no-media] DIR   verify a §9 package
    second_verify.py package [--json] FILE               verify a §10 export package
    second_verify.py vectors DIR [FORMAT.md]              check proto/tests/vectors
                                                          (and the sample chain of §8.1)

Exit status as fieldseal-verify (§9): 0 ok, 1 findings, 2 unreadable. For
`vectors`: 0 when every check passes, 1 otherwise.
"""

import hashlib
import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import container  # noqa: E402
import ed25519  # noqa: E402
import package  # noqa: E402
import tlog  # noqa: E402
from chain import verify_chain  # noqa: E402
from entry import Malformed, decode_signed, device_id  # noqa: E402


Unreadable = container.Unreadable  # the package cannot be read (exit 2)


def split_chain_log(b):
    """§9: the records, and the finding for a torn tail or damage, if any."""
    records, o = [], 0
    while o < len(b):
        if len(b) - o < 2:
            return records, {"seq": None, "kind": "malformed", "detail": "torn tail"}
        n = int.from_bytes(b[o:o + 2], "big")
        if n == 0 or n > 4096:
            return records, {"seq": None, "kind": "malformed", "detail": f"damaged at {o}"}
        if len(b) - o - 2 < n:
            return records, {"seq": None, "kind": "malformed", "detail": "torn tail"}
        records.append(b[o + 2:o + 2 + n])
        o += 2 + n
    return records, None


def _text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise Unreadable(f"{path}: {e}") from e


def read_key(d):
    word = _text(os.path.join(d, "device.pub")).strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", word):
        raise Unreadable("device.pub: not 64 hex digits")
    key = bytes.fromhex(word)
    if ed25519.decode_point(key, lenient=True) is None:
        raise Unreadable("device.pub: not an Ed25519 point")
    return key


def read_head(d):
    path = os.path.join(d, "head.txt")
    if not os.path.lexists(path):
        return None
    words = _text(path).split()
    if (len(words) < 2 or not re.fullmatch(r"\+?[0-9]+", words[0])
            or int(words[0]) >= 2**64 or not re.fullmatch(r"[0-9a-fA-F]{64}", words[1])):
        raise Unreadable("head.txt: not \"SEQ ENTRY_HASH\"")
    return int(words[0]), bytes.fromhex(words[1])


def observe_media(d, records):
    media = {}
    for raw in records:
        try:
            e = decode_signed(raw)
        except Malformed:
            continue
        if e["segment"] is None:
            continue
        try:
            with open(os.path.join(d, "media", f"{e['seq']:012}.ts"), "rb") as f:
                data = f.read()
        except OSError:
            continue
        media[e["seq"]] = (hashlib.sha256(data).digest(), len(data))
    return media


def verify_package(d, use_media=True):
    key = read_key(d)
    head = read_head(d)
    try:
        with open(os.path.join(d, "chain.log"), "rb") as f:
            log = f.read()
    except OSError as e:
        raise Unreadable(f"chain.log: {e}") from e
    records, damage = split_chain_log(log)
    media = observe_media(d, records) if use_media else None
    return verify_chain(key, records, media=media, head=head, ordered=True,
                        early=[damage] if damage else [])


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def check(self, what, cond):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")


def _load(d, name):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return json.load(f) if name.endswith(".json") else f.read()


def check_entries(c, d, name="entries.json"):
    v = _load(d, name)
    seed, pub = bytes.fromhex(v["secret_key_seed"]), bytes.fromhex(v["public_key"])
    c.check("seed gives the public key", ed25519.public_key(seed) == pub)
    c.check("device id", device_id(pub).hex() == v["device_id"])
    raws = []
    for item in v["entries"]:
        raw = bytes.fromhex(item["signed_entry"])
        e = decode_signed(raw)
        raws.append(raw)
        c.check(f"entry {item['seq']} hash", e["hash"].hex() == item["entry_hash"])
        c.check(f"entry {item['seq']} seq", e["seq"] == item["seq"])
        c.check(f"entry {item['seq']} signing bytes",
                len(e["signing_bytes"]) == item["signing_bytes_len"])
    media = {}
    for m in v["media"]:
        b = bytes.fromhex(m["bytes"])
        c.check(f"media {m['seq']} sha256", hashlib.sha256(b).hexdigest() == m["sha256"])
        media[m["seq"]] = (hashlib.sha256(b).digest(), len(b))
    report = verify_chain(pub, raws, media=media, ordered=True)
    c.check(f"{name} report", _same(report, v["report"]))


def _same(a, b):
    """Two reports are the same report with each finding's detail ignored (§5)."""
    def strip(r):
        return dict(r, findings=[dict(f, detail="") for f in r["findings"]])
    return strip(a) == strip(b)


def check_positions(c, d):
    check_entries(c, d, "positions.json")


def check_dropped(c, d):
    check_entries(c, d, "dropped.json")


def check_merkle(c, d):
    v = _load(d, "merkle.json")
    data = [bytes.fromhex(x) for x in v["leaf_data"]]
    hashes = [tlog.leaf_hash(x) for x in data]
    c.check("leaf hashes", [h.hex() for h in hashes] == v["leaf_hashes"])
    roots = {r["size"]: bytes.fromhex(r["root"]) for r in v["roots"]}
    for n, r in roots.items():
        c.check(f"root {n}", tlog.root(hashes[:n]) == r)
    for p in v["inclusion"]:
        m, n, proof = p["leaf_index"], p["tree_size"], [bytes.fromhex(h) for h in p["proof"]]
        c.check(f"inclusion {m}/{n}", tlog.verify_inclusion(hashes[m], m, n, proof, roots[n]))
        c.check(f"inclusion {m}/{n} encoding",
                tlog.decode_proof(bytes.fromhex(p["encoded"])) == (m, n, proof))
        if proof:
            bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
            c.check(f"inclusion {m}/{n} tampered",
                    not tlog.verify_inclusion(hashes[m], m, n, bad, roots[n]))
    for p in v["consistency"]:
        m, n, proof = p["old_size"], p["new_size"], [bytes.fromhex(h) for h in p["proof"]]
        c.check(f"consistency {m}->{n}",
                tlog.verify_consistency(m, n, roots[m], roots[n], proof))
        c.check(f"consistency {m}->{n} encoding",
                tlog.decode_proof(bytes.fromhex(p["encoded"])) == (m, n, proof))


def check_checkpoint(c, d):
    name, pub = tlog.parse_vkey(_load(d, "checkpoint.vkey").strip())
    note = _load(d, "checkpoint.txt")
    origin, size, rt, _time = tlog.verify_checkpoint(note, name, pub)
    roots = {r["size"]: r["root"] for r in _load(d, "merkle.json")["roots"]}
    c.check("checkpoint origin and root", origin == name and rt.hex() == roots[size])
    text, sig = note.split("\n\n")
    c.check("checkpoint twice-signed line accepted",
            _verifies(text + "\n\n" + sig + sig, name, pub))
    c.check("checkpoint altered size refused",
            not _verifies(note.replace(f"\n{size}\n", f"\n{size + 1}\n"), name, pub))


def _verifies(note, name, pub):
    try:
        tlog.verify_checkpoint(note, name, pub)
        return True
    except Malformed:
        return False


def check_leaves(c, d):
    for name, leaf in _load(d, "leaves.json").items():
        data = bytes.fromhex(leaf["data"])
        tlog.decode_leaf(data)
        c.check(f"{name} hash", tlog.leaf_hash(data).hex() == leaf["leaf_hash"])


def check_receipt(c, d):
    kv = dict(line.split(": ", 1) for line in _load(d, "frames.txt").splitlines()
              if line and not line.startswith("#"))
    pub = bytes.fromhex(kv["receipt.server_public_key"])
    enc = bytes.fromhex(kv["receipt.encoding"])
    r = tlog.verify_receipt(enc, pub)
    entries = _load(d, "entries.json")["entries"]
    c.check("receipt names entry 4", r["entry_hash"].hex() == entries[4]["entry_hash"])
    c.check("receipt signing bytes",
            b"fieldseal/receipt/v1\x00" + enc[:65] == bytes.fromhex(kv["receipt.signing_bytes"]))


def check_doc_sample(c, doc_path, marker="sample-chain"):
    """FORMAT.md §8.1 (or §8.2, §8.3) alone: the printed chain and media give the printed report."""
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    block = doc.split(f"<!-- {marker}:begin")[1].split(f"<!-- {marker}:end")[0]
    text, report = block.split("```text\n")[1].split("```\n\n```json\n")
    report = json.loads(report.split("```")[0])
    pub = bytes.fromhex(re.search(r"public key +([0-9a-f]{64})", text).group(1))
    raws, media = [], {}
    for part in text.split("\n\n")[1:]:
        head, *lines = part.strip().split("\n")
        data = bytes.fromhex("".join(x for x in lines if not x.startswith("entry hash")))
        if head.startswith("entry "):
            raws.append(data)
        else:
            seq = int(re.match(r"media/(\d+)\.ts", head).group(1))
            media[seq] = (hashlib.sha256(data).digest(), len(data))
    c.check(f"FORMAT.md {marker} gives its report",
            _same(verify_chain(pub, raws, media=media, ordered=True), report))


def self_test(d, doc=None):
    c = Checks()
    steps = [check_entries, check_positions, check_dropped, check_merkle, check_checkpoint, check_leaves,
             check_receipt]
    if doc:
        steps.append(lambda c, _d: check_doc_sample(c, doc))
        steps.append(lambda c, _d: check_doc_sample(c, doc, "position-chain"))
        steps.append(lambda c, _d: check_doc_sample(c, doc, "dropped-chain"))
    for step in steps:
        try:
            step(c, d)
        except Exception as e:  # a vector that does not even decode is a failure
            c.check(f"{step.__name__}: {e!r}", False)
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


def main(argv):
    if len(argv) in (2, 3) and argv[0] == "vectors":
        return self_test(*argv[1:])
    if argv[:1] != ["package"]:
        print(__doc__, file=sys.stderr)
        return 2
    flags = [a for a in argv[1:] if a.startswith("--")]
    dirs = [a for a in argv[1:] if not a.startswith("--")]
    if len(dirs) != 1 or not set(flags) <= {"--json", "--no-media"}:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if os.path.isfile(dirs[0]):
            if "--no-media" in flags:
                raise Unreadable("--no-media is for package folders only")
            report = package.verify(container.read_tar(dirs[0]))
        else:
            report = verify_package(dirs[0], use_media="--no-media" not in flags)
    except Unreadable as e:
        print(f"second_verify: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, ensure_ascii=False) if "--json" in flags else
          f"{report.get('device', report.get('case'))}: "
          f"{'OK' if report['ok'] else 'FAILED'} {report['findings']}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

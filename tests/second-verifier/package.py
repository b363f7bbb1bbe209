"""Export package verification (docs/FORMAT.md §10.5) and its report."""

import hashlib
import json
import re

import ed25519
import tlog
from chain import verify_chain
from container import common_names, parse_certificate
from entry import Malformed, decode_signed, device_id

ROOT = "fieldseal-package/"
README, CA, RECEIPT, VKEY = (ROOT + "README.txt", ROOT + "keys/ca.crt",
                             ROOT + "keys/receipt.pub", ROOT + "keys/log.vkey")
COMPLIANCE, CHECKPOINT, PROOFS = (ROOT + "compliance.json", ROOT + "log/checkpoint.txt",
                                  ROOT + "log/proofs.json")
MANIFEST, SIG = ROOT + "manifest.json", ROOT + "manifest.sig"
ACTIONS = ["view", "export", "link", "unlink", "verify", "hold", "release", "repair",
           "login", "login-failed", "denied", "account", "expire"]


def dev(d, what):
    return f"{ROOT}devices/{d}/{what}"


def sha_hex(b):
    return hashlib.sha256(b).hexdigest()


class Ctx:
    def __init__(self, members):
        self.members = members  # [(name, size, sha256, bytes or None)]
        self.by_name = {}
        self.findings = []
        self.receipt_key = self.ca = self.checkpoint = None
        self.proofs = {}

    def add(self, kind, member=None, device=None, seq=None, detail=""):
        self.findings.append({"kind": kind, "member": member, "device": device,
                              "seq": seq, "detail": detail})

    def data(self, name):
        m = self.by_name.get(name)
        if m is None or m[3] is None:
            self.add("member-missing", member=name)
            return None
        return m[3]

    def prove(self, index, leaf):
        """§10.5 step 5/6: True, or a finding (False)."""
        if self.checkpoint is None:
            return False
        if index not in self.proofs:
            self.add("inclusion", detail=f"no proof of leaf {index}")
            return False
        data, path = self.proofs[index]
        _, size, root, _ = self.checkpoint
        if data != leaf or not tlog.verify_inclusion(tlog.leaf_hash(leaf), index, size,
                                                     path, root):
            self.add("inclusion", detail=f"leaf {index}")
            return False
        return True


def key_member(b):
    """§10.2: 64 lowercase hex digits and one LF, a valid point."""
    if b is None or not re.fullmatch(rb"[0-9a-f]{64}\n", b):
        return None
    key = bytes.fromhex(b[:64].decode())
    return key if ed25519.decode_point(key, lenient=True) is not None else None


def ca_key(der):
    c = parse_certificate(der)
    if c["issuer"] != c["subject"] or not ed25519.verify(c["key"], c["tbs"], c["signature"]):
        raise Malformed("CA certificate is not self-signed")
    return c


def read_keys(cx, fp):
    d = cx.data(RECEIPT)
    if d is not None:
        cx.receipt_key = key_member(d)
        if cx.receipt_key is None:
            cx.add("key", member=RECEIPT)
        else:
            fp["receipt"] = sha_hex(cx.receipt_key)
    d = cx.data(CA)
    if d is not None:
        try:
            cx.ca = ca_key(d)
            fp["ca"] = sha_hex(cx.ca["key"])
        except Malformed:
            cx.add("certificate", member=CA)


def _no_dup_pairs(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Malformed("duplicate JSON member")
    return dict(pairs)


def _exact(obj, spec):
    """obj is a dict with exactly spec's members, of spec's types."""
    if not isinstance(obj, dict) or set(obj) != set(spec):
        raise Malformed("members")
    for k, t in spec.items():
        v = obj[k]
        if t == "u64" and not (type(v) is int and 0 <= v < 2**64):
            raise Malformed(k)
        if t == "i64" and not (type(v) is int and -2**63 <= v < 2**63):
            raise Malformed(k)
        if t == "str" and not isinstance(v, str):
            raise Malformed(k)
        if t == "strs" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise Malformed(k)
        if isinstance(t, dict):
            if not isinstance(v, list):
                raise Malformed(k)
            for x in v:
                _exact(x, t)
    return obj


MANIFEST_SPEC = {
    "format": "str", "case": "str", "export_id": "str", "created_us": "i64",
    "devices": {"device": "str", "first_seq": "u64", "last_seq": "u64", "from_seq": "u64",
                "to_seq": "u64", "head_seq": "u64"},
    "withheld": {"device": "str", "seq": "u64", "reason": "str"},
    "members": {"name": "str", "size": "u64", "sha256": "str"},
}


def parse_json(b, spec):
    try:
        return _exact(json.loads(b.decode("utf-8"), object_pairs_hook=_no_dup_pairs), spec)
    except (ValueError, UnicodeDecodeError, Malformed):
        return None


def read_manifest(cx):
    j = cx.data(MANIFEST)
    if j is None:
        return None
    m = parse_json(j, MANIFEST_SPEC)
    if m is None or m["format"] != "fieldseal-package/1":
        cx.add("manifest", member=MANIFEST)
        return None
    sig = cx.data(SIG)
    if sig is not None and cx.receipt_key is not None:
        ok = re.fullmatch(rb"[0-9a-f]{128}\n", sig) and ed25519.verify(
            cx.receipt_key, b"fieldseal/package/v1\x00" + j, bytes.fromhex(sig[:128].decode()))
        if not ok:
            cx.add("manifest-signature", member=SIG)
    if [x[0] for x in cx.members[-2:]] != [MANIFEST, SIG]:
        cx.add("member-order")
    compare_members(cx, m)
    return m


def compare_members(cx, m):
    listed = {x["name"] for x in m["members"]}
    for x in m["members"]:
        a = cx.by_name.get(x["name"])
        if a is None:
            cx.add("member-missing", member=x["name"])
        elif a[1] != x["size"] or a[2].hex() != x["sha256"].lower() \
                or not re.fullmatch(r"[0-9a-fA-F]{64}", x["sha256"]):
            cx.add("member-altered", member=x["name"])
    for a in cx.members:
        if a[0] not in listed and a[0] not in (MANIFEST, SIG):
            cx.add("member-extra", member=a[0])
    order = [a[0] for a in cx.members if a[0] in listed]
    want = [x["name"] for x in m["members"] if x["name"] in cx.by_name]
    if order != want:
        cx.add("member-order")


PROOFS_SPEC = {"tree_size": "u64", "leaves": {"index": "u64", "leaf": "str", "proof": "strs"}}


def read_log(cx, report):
    vkey = None
    d = cx.data(VKEY)
    if d is not None:
        try:
            text = d.decode("utf-8")
            if not text.endswith("\n"):
                raise Malformed("no LF")
            vkey = tlog.parse_vkey(text[:-1])
            report["fingerprints"]["log"] = sha_hex(vkey[1])
            report["fingerprints"]["log_vkey"] = text[:-1]
        except (Malformed, UnicodeDecodeError, ValueError):
            cx.add("key", member=VKEY)
    d = cx.data(CHECKPOINT)
    if d is not None and vkey is not None:
        try:
            cx.checkpoint = tlog.verify_checkpoint(d.decode("utf-8"), *vkey)
            report["tree_size"], report["checkpoint_time"] = cx.checkpoint[1], cx.checkpoint[3]
        except (Malformed, UnicodeDecodeError):
            cx.add("checkpoint", member=CHECKPOINT)
    d = cx.data(PROOFS)
    if d is None:
        return
    p = parse_json(d, PROOFS_SPEC)
    if p is None:
        cx.add("inclusion", member=PROOFS)
        return
    if cx.checkpoint is not None and cx.checkpoint[1] != p["tree_size"]:
        cx.add("inclusion", member=PROOFS)
    for x in p["leaves"]:
        hexes = [x["leaf"]] + x["proof"]
        if (not all(re.fullmatch(r"(?:[0-9a-fA-F]{2})*", h) for h in hexes)
                or not all(len(h) == 64 for h in x["proof"])):
            cx.add("inclusion", member=PROOFS)
            continue
        cx.proofs[x["index"]] = (bytes.fromhex(x["leaf"]),
                                 [bytes.fromhex(h) for h in x["proof"]])


def split_log(b):
    """§9 framing: (records, sound) where sound means no damage, no torn tail."""
    records, o = [], 0
    while o < len(b):
        n = int.from_bytes(b[o:o + 2], "big") if len(b) - o >= 2 else None
        if n is None or n == 0 or n > 4096 or len(b) - o - 2 < n:
            return records, False
        records.append(b[o + 2:o + 2 + n])
        o += 2 + n
    return records, True


def device_key(cx, d):
    name = dev(d, "device.pub")
    b = cx.data(name)
    if b is None:
        return None
    key = key_member(b)
    if key is None:
        cx.add("key", member=name, device=d)
        return None
    if device_id(key).hex() != d:
        cx.add("key", member=name, device=d)
    der = cx.data(dev(d, "device.crt"))
    if der is None:
        return key
    try:
        c = parse_certificate(der)
        problem = cx.ca is not None and (
            c["issuer"] != cx.ca["subject"]
            or not ed25519.verify(cx.ca["key"], c["tbs"], c["signature"])
            or c["key"] != key or common_names(c["subject_value"]) != [d])
    except (Malformed, UnicodeDecodeError):
        problem = True
    if problem:
        cx.add("certificate", member=dev(d, "device.crt"), device=d)
    return key


def _decode(raw):
    try:
        return decode_signed(raw)
    except Malformed:
        return None


def check_range(cx, d, r, entries):
    to_ok = r["to_seq"] == r["last_seq"] + 1 or (
        r["to_seq"] == r["last_seq"] == r["head_seq"])
    if (r["first_seq"] > r["last_seq"] or r["from_seq"] != max(r["first_seq"] - 1, 0)
            or not to_ok or r["to_seq"] > r["head_seq"]):
        cx.add("range", device=d)
    seqs = [e["seq"] if e else None for e in entries]
    if seqs != list(range(r["from_seq"], r["to_seq"] + 1)):
        cx.add("range", member=dev(d, "chain.log"), device=d)


def observations(cx, m, d, entries):
    withheld = {w["seq"] for w in m["withheld"] if w["device"] == d}
    out = {}
    for e in entries:
        if e is None or e["segment"] is None:
            continue
        a = cx.by_name.get(dev(d, f"media/{e['seq']:012}.ts"))
        if a is not None:
            out[e["seq"]] = (a[2], a[1])
        elif e["seq"] in withheld:
            out[e["seq"]] = "released"
    return out


def verify_device(cx, m, r):
    d = r["device"]
    if not re.fullmatch(r"[0-9a-f]{16}", d):
        cx.add("manifest")
        return None
    key = device_key(cx, d)
    if key is None:
        return None
    log = cx.data(dev(d, "chain.log")) or b""
    records, sound = split_log(log)
    if not sound:
        cx.add("malformed", member=dev(d, "chain.log"))
    entries = [_decode(x) for x in records]
    check_range(cx, d, r, entries)
    rep = verify_chain(key, records, media=observations(cx, m, d, entries), ordered=True)
    rep["findings"] = [f for f in rep["findings"] if not (
        r["from_seq"] > 0 and f["kind"] == "missing-entry" and f["seq"] == 0)]
    rep["ok"] = not rep["findings"]
    for f in rep["findings"]:
        cx.add(f["kind"], device=d, seq=f["seq"], detail=f["detail"])
    check_receipts(cx, d, entries)
    return rep


def check_receipts(cx, d, entries):
    name = dev(d, "receipts.log")
    b = cx.data(name)
    if b is None:
        return
    records, sound = split_log(b)
    if not sound:
        cx.add("receipt", member=name, device=d)
        return
    if len(records) != len(entries):
        cx.add("receipt", member=name, device=d)
    for rec, e in zip(records, entries):
        if e is None:
            continue
        r = _receipt(cx, rec)
        if r is None or r["device"].hex() != d or r["seq"] != e["seq"] \
                or r["entry_hash"] != e["hash"]:
            cx.add("receipt", device=d, seq=e["seq"])
            continue
        leaf = (b"fieldseal/leaf/v1\x00\x01" + r["device"] + r["seq"].to_bytes(8, "big")
                + r["entry_hash"] + r["server_time_us"].to_bytes(8, "big", signed=True))
        if not cx.prove(r["log_index"], leaf) and cx.checkpoint is not None:
            cx.findings[-1].update(device=d, seq=e["seq"])


def _receipt(cx, rec):
    """The receipt's fields, if it decodes and (with a receipt key) verifies."""
    try:
        r = _decode_receipt(rec)
        if cx.receipt_key is not None:
            tlog.verify_receipt(rec, cx.receipt_key)
        return r
    except Malformed:
        return None


def _decode_receipt(rec):
    if len(rec) != 129 or rec[0] != 1:
        raise Malformed("receipt")
    return {"device": rec[1:9], "seq": int.from_bytes(rec[9:17], "big"),
            "entry_hash": rec[17:49],
            "server_time_us": int.from_bytes(rec[49:57], "big", signed=True),
            "log_index": int.from_bytes(rec[57:65], "big")}


def custody(cx, m):
    out = []
    for index in sorted(cx.proofs):
        data = cx.proofs[index][0]
        try:
            leaf = tlog.decode_leaf(data)
        except Malformed:
            continue
        if leaf["type"] != "custody" or not cx.prove(index, data):
            continue
        out.append({"index": index, "time_us": leaf["time_us"],
                    "action": ACTIONS[leaf["action"] - 1], "actor": leaf["actor"],
                    "device": leaf["device"].hex(), "first_seq": leaf["first"],
                    "last_seq": leaf["last"], "case": leaf["case"], "detail": leaf["detail"]})
    want = f"package {m['export_id']}"
    for r in m["devices"]:
        if not any(c["action"] == "export" and c["device"] == r["device"]
                   and (c["first_seq"], c["last_seq"]) == (r["first_seq"], r["last_seq"])
                   and c["case"] == m["case"] and c["detail"] == want for c in out):
            cx.add("custody")
    return out


def check_compliance(cx, case):
    d = cx.data(COMPLIANCE)
    if d is None:
        return
    try:
        v = json.loads(d.decode("utf-8"))
        ok = isinstance(v, dict) and v.get("case") == case
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        cx.add("compliance", member=COMPLIANCE)


def verify(members):
    """§10.5: the report of a package whose members are
    [(name, size, sha256, bytes or None for media)], in archive order."""
    cx = Ctx(members)
    for m in members:
        if m[0] in cx.by_name:
            cx.add("member-extra", member=m[0])
        cx.by_name[m[0]] = m
    report = {"ok": False, "case": None, "export_id": None, "created_us": None,
              "fingerprints": {"ca": None, "receipt": None, "log": None, "log_vkey": None},
              "tree_size": None, "checkpoint_time": None, "members": len(members),
              "devices": [], "withheld": [], "custody": [], "findings": []}
    read_keys(cx, report["fingerprints"])
    m = read_manifest(cx)
    read_log(cx, report)
    if m is not None:
        report.update(case=m["case"], export_id=m["export_id"], created_us=m["created_us"],
                      withheld=m["withheld"])
        for r in m["devices"]:
            rep = verify_device(cx, m, r)
            if rep is not None:
                report["devices"].append(rep)
        report["custody"] = custody(cx, m)
        check_compliance(cx, m["case"])
    report["findings"] = cx.findings
    report["ok"] = not cx.findings
    return report

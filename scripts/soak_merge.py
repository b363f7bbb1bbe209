#!/usr/bin/env python3
"""Fold one part of a soak run into the soak's kept results (scripts/soak.sh).

Arguments: RESULTS_DIR PART STATUS SECONDS LOG FIGURES STARTED COMMIT SCALE

The kept results are two files in RESULTS_DIR, committed with the report so that
docs/RELIABILITY.md can be checked against its figures and a part can be run
again on its own (`SOAK_ONLY=powercut make soak`) without losing the others:

  figures.jsonl  one line per scenario, as the tests write it to
                 FIELDSEAL_FAULT_LOG, with "part" added
  parts.jsonl    one line per part: its status, seconds, when and on which
                 commit and scale it ran, and the counts only its log has
                 (server kills, spool power losses, fuzz runs)

The part's earlier lines in both files are replaced; the other parts' stay.
"""
import json
import os
import re
import sys

results, part, status, seconds, log_path, figures_path, started, commit, scale = sys.argv[1:10]


def read_jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def write_jsonl(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


try:
    log = open(log_path, errors="replace").read()
except OSError:
    log = ""

# The counts each part was asked for (soak.sh sets them from the scale unless
# given), so that a part run with other counts says so.
PART_VARS = {
    "network": ["FIELDSEAL_NET_SECONDS", "FIELDSEAL_NET_PROFILES", "FIELDSEAL_PARTITIONS",
                "FIELDSEAL_REBINDS"],
    "attacks": ["FIELDSEAL_FLOOD", "FIELDSEAL_BAD_FRAMES"],
    "spool": ["FIELDSEAL_SPOOL_STEPS"],
    "binaries": ["FIELDSEAL_AGENT_KILLS", "FIELDSEAL_CLOCK_JUMPS"],
    "server_crash": ["FIELDSEAL_SERVER_KILLS"],
    "powercut": ["FIELDSEAL_POWER_CUTS"],
    "sim": ["FIELDSEAL_SIM_STEPS"],
    "access_log": ["FIELDSEAL_AUDIT_ROUNDS"],
}
line = {"part": part, "status": status, "seconds": int(seconds), "started": started,
        "commit": commit, "scale": scale}
asked = {v: os.environ[v] for v in PART_VARS.get(part, []) if v in os.environ}
if asked:
    line["asked"] = asked
if part == "server_crash":
    m = re.search(r"^(\d+) kills in", log, re.M)
    kills = int(m.group(1)) if m else 0
    line["server_kills"] = kills + len(re.findall(r"^  and again", log, re.M))
    line["server_points"] = len(re.findall(r"^crashed at ", log, re.M))
elif part == "spool":
    m = re.search(r"(\d+) power losses over (\d+) operations", log)
    line["spool_losses"] = int(m.group(1)) if m else 0
elif part.startswith("fuzz-"):
    m = re.findall(r"Done (\d+) runs", log)
    line["fuzz_runs"] = int(m[-1]) if m else None
if status != "ok":
    line["failures"] = re.findall(r"FAILED with seed.*|panicked at.*", log)[:5]

os.makedirs(results, exist_ok=True)
figs = [r for r in read_jsonl(os.path.join(results, "figures.jsonl")) if r.get("part") != part]
figs += [dict(r, part=part) for r in read_jsonl(figures_path)]
write_jsonl(os.path.join(results, "figures.jsonl"), figs)
parts = [p for p in read_jsonl(os.path.join(results, "parts.jsonl")) if p["part"] != part]
write_jsonl(os.path.join(results, "parts.jsonl"), parts + [line])

#!/usr/bin/env python3
"""Prints one closing line, `N passed, N failed, N skipped`, over every test case of every
build directory given, read from meson's testlog.json. A cmocka program counts its cases
(from its "[  PASSED  ] N test(s)." lines, one per backend group); any other test counts as
one. A program that failed without a cmocka failure line (a crash, a leak report at exit, a
failed group setup) counts one failure more, so no failure can hide. Extra counts can be
passed as NAME=passed/failed, e.g. install=1/0, and a log by its path (DIR/meson-logs/X.json,
from meson test --logbase X, or build-matrix/matrix.json, which scripts/build-matrix.sh writes
in the same form, one entry per configuration). Exits 1 when anything failed or nothing ran."""
import json
import re
import sys

PATTERNS = {
    "passed": re.compile(r"^\[  PASSED  \] (\d+) test", re.M),
    "failed": re.compile(r"^\[  FAILED  \] (\d+) test", re.M),
    "skipped": re.compile(r"^\[  SKIPPED \] (\d+) test", re.M),
}


def count_log(path, totals):
    with open(path) as log:
        for line in log:
            entry = json.loads(line)
            out = (entry.get("stdout") or "") + (entry.get("stderr") or "")
            counts = {k: sum(int(n) for n in p.findall(out)) for k, p in PATTERNS.items()}
            ok = entry["result"] in ("OK", "EXPECTEDFAIL")
            if entry["result"] == "SKIP":
                counts = {"passed": 0, "failed": 0, "skipped": max(1, counts["skipped"])}
            elif not any(counts.values()):
                counts["passed" if ok else "failed"] = 1
            elif not ok and counts["failed"] == 0:
                counts["failed"] = 1
            for k in totals:
                totals[k] += counts[k]
            if not ok and entry["result"] != "SKIP":
                print(f"FAILED: {path}: {entry['name']} ({entry['result']})")


def main(args):
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for arg in args:
        if "=" in arg:
            _, counts = arg.split("=", 1)
            passed, failed = counts.split("/")
            totals["passed"] += int(passed)
            totals["failed"] += int(failed)
        else:
            log = arg if arg.endswith(".json") else f"{arg}/meson-logs/testlog.json"
            try:
                count_log(log, totals)
            except FileNotFoundError:
                print(f"FAILED: {arg}: no test log (the build or the test run did not happen)")
                totals["failed"] += 1
    line = f"{totals['passed']} passed, {totals['failed']} failed"
    if totals["skipped"]:
        line += f", {totals['skipped']} skipped"
    print(line)
    return 1 if totals["failed"] or not totals["passed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

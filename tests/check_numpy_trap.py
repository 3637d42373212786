#!/usr/bin/env python3
"""Runs examples/numpy_trap and checks the story it tells: after `del huge` the 64 MiB buffer is
still held, all of it by a small view; the report names the lines of numpy_trap.c that made the
buffer and the column (found in the source, not hard-coded); after the copy only the column's
16 KiB are left and nothing is held by views.
Usage: check_numpy_trap.py PROGRAM SOURCE"""
import re
import subprocess
import sys


def line_of(source, needle):
    for number, text in enumerate(open(source), 1):
        if needle in text:
            return number
    raise SystemExit(f"check_numpy_trap: {needle!r} not found in {source}")


def main(program, source):
    run = subprocess.run([program], capture_output=True, text=True, timeout=120)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    problems = []
    if run.returncode != 0:
        problems.append(f"exit status {run.returncode}")
    mem = re.compile(r"host +([\d.]+) KiB, device +([\d.]+) KiB, held alive by small views +"
                     r"([\d.]+) KiB")
    rows = [tuple(float(x) for x in m.groups()) for m in mem.finditer(run.stdout)]
    if len(rows) != 2:
        problems.append(f"{len(rows)} memory lines, expected 2")
    else:
        (host0, dev0, held0), (host1, dev1, held1) = rows
        if held0 != 65536.0 or host0 + dev0 < 65536.0:
            problems.append(f"before the copy: host {host0}, device {dev0}, held {held0} KiB; "
                            "expected 64 MiB held by the view")
        if held1 != 0.0 or host1 + dev1 != 16.0:
            problems.append(f"after the copy: host {host1}, device {dev1}, held {held1} KiB; "
                            "expected 16 KiB and nothing held")
    made = line_of(source, "twin_array_zeros(ctx")
    col = line_of(source, "twin_array_index(huge")
    if not re.search(rf"^ +64\.0 MiB .* 1 view covering 0\.0% +made at \S*numpy_trap\.c:{made}$",
                     run.stdout, re.M):
        problems.append(f"no report line for the 64 MiB buffer made at numpy_trap.c:{made}")
    if not re.search(rf"^ +view f32\[4096\] at \S*numpy_trap\.c:{col} owner \"loader\"$",
                     run.stdout, re.M):
        problems.append(f"no report line for the column made at numpy_trap.c:{col}")
    for p in problems:
        print(f"check_numpy_trap: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

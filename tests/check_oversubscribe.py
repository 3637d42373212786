#!/usr/bin/env python3
"""Runs examples/oversubscribe and checks its story. With spilling (TWIN_SPILL unset): exit 0,
every value right, exactly twelve spills writing back 768 MiB (the arrays beyond the four the
256 MiB budget holds), and a report of sixteen 64 MiB buffers, all valid on the host, made on the
line of oversubscribe.c that makes them, twelve of them with their device copy spilled. With
TWIN_SPILL=off: exit 1 at the fifth array, with the error that names the size, the budget, what
each step freed, and the holders with that line and the reason they stay.
Usage: check_oversubscribe.py PROGRAM SOURCE auto|off"""
import os
import re
import subprocess
import sys

MIB64 = 64 << 20


def line_of(source, needle):
    for number, text in enumerate(open(source), 1):
        if needle in text:
            return number
    raise SystemExit(f"check_oversubscribe: {needle!r} not found in {source}")


def check_auto(run, made):
    problems = []
    if run.returncode != 0:
        problems.append(f"exit status {run.returncode}")
    if "all 16 arrays hold the values written on the device" not in run.stdout:
        problems.append("no line saying all 16 arrays are right")
    m = re.search(r"spills (\d+), written back (\d+) MiB, device memory freed (\d+) MiB",
                  run.stdout)
    if not m or m.groups() != ("12", "768", "768"):
        problems.append(f"spills: {m.group(0) if m else 'no line'}; expected 12, 768, 768")
    if "allocations under pressure 12, failed 0" not in run.stdout:
        problems.append("expected 12 allocations under pressure, none failed")
    rows = re.findall(rf"^ +64\.0 MiB +host (\w+) +device (\w+) .* made at \S*oversubscribe\.c:"
                      rf"{made}$", run.stdout, re.M)
    if len(rows) != 16:
        problems.append(f"{len(rows)} report lines of 64 MiB buffers made at line {made}, "
                        "expected 16")
    spilled = sum(1 for host, device in rows if device == "spilled")
    if spilled != 12 or any(host != "valid" for host, _ in rows):
        problems.append(f"report: {spilled} buffers spilled, expected 12, all valid on the host")
    return problems


def check_off(run, made):
    problems = []
    if run.returncode != 1:
        problems.append(f"exit status {run.returncode}, expected 1")
    wanted = [
        "oversubscribe: array 5 of 16: ",
        "TWIN_ERR_OUT_OF_DEVICE_MEMORY",
        f"cannot allocate {MIB64} bytes of device memory",
        "trimmed redundant copies (0 bytes freed), spilled nothing (spilling is off)",
        f"device budget {4 * MIB64} bytes",
        f"device memory held now {4 * MIB64} bytes",
    ]
    for w in wanted:
        if w not in run.stderr:
            problems.append(f"stderr lacks {w!r}")
    holders = re.findall(rf"{MIB64} bytes made at \S*oversubscribe\.c:{made} \(spilling is off",
                         run.stderr)
    if len(holders) != 3:
        problems.append(f"{len(holders)} holders named with the line and the reason, expected 3")
    if "all 16 arrays" in run.stdout:
        problems.append("it says all arrays are right")
    return problems


def main(program, source, mode):
    env = dict(os.environ)
    env.pop("TWIN_SPILL", None)
    if mode == "off":
        env["TWIN_SPILL"] = "off"
    run = subprocess.run([program], capture_output=True, text=True, timeout=300, env=env)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    made = line_of(source, "twin_array_new(ctx, TWIN_U32")
    problems = check_off(run, made) if mode == "off" else check_auto(run, made)
    for p in problems:
        print(f"check_oversubscribe: {mode}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

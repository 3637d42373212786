#!/usr/bin/env python3
"""Runs `debug_misuse MODE` (with TWIN_DEBUG=1 from the test's environment) and checks that
twin caught the misuse: the program was stopped by SIGABRT, and stderr names the call at fault
and the line that made the array, which the program printed as "expect: FILE:LINE". When the
program also printed "begun: FILE:LINE" (an access left open), the report must name that line
as where the access began, instead of saying the array was already released.
Usage: check_misuse.py PROGRAM MODE CALL"""
import re
import signal
import subprocess
import sys


def check_kind(stdout, report):
    """What the report must say besides the call and the creation line."""
    begun = re.search(r"^begun: (\S+)$", stdout, re.M)
    if begun:
        want = f"begun at {begun.group(1)} by "
        if want not in report:
            return [f"the report does not name where the open access began, '{want.strip()}'"]
        return []
    if "already released" not in report:
        return ["the report does not say the array was already released"]
    return []


def main(program, mode, call):
    run = subprocess.run([program, mode], capture_output=True, text=True, timeout=60)
    sys.stdout.write(run.stdout)
    sys.stderr.write(run.stderr)
    problems = []
    if run.returncode != -signal.SIGABRT:
        problems.append(f"exit status {run.returncode}, expected death by SIGABRT")
    m = re.search(r"^expect: (\S+)$", run.stdout, re.M)
    if not m:
        problems.append("the program printed no expect: line")
    else:
        want = f"made at {m.group(1)} "
        report = [l for l in run.stderr.splitlines() if l.startswith("twin: TWIN_DEBUG: ")]
        if len(report) != 1:
            problems.append(f"{len(report)} TWIN_DEBUG report lines, expected 1")
        elif f"TWIN_DEBUG: {call}(0x" not in report[0] or want not in report[0]:
            problems.append(f"the report does not name {call} and '{want.strip()}'")
        else:
            problems += check_kind(run.stdout, report[0])
    for p in problems:
        print(f"check_misuse: {mode}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

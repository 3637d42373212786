#!/usr/bin/env python3
"""Runs examples/mpi/heat on 1, 2 and 4 ranks for each device spec given (a "+copy" suffix
means TWIN_COHERENCE=copy) and checks that every run gathers a bit-identical plate (the hash
of its bytes), and that one exchange moved exactly its strips between host and device in copy
mode and nothing where buffers are one copy.

Usage: check_heat.py MPIRUN HEAT STEPS SPEC...
"""
import os
import re
import subprocess
import sys


def run(mpirun, heat, steps, np, spec):
    env = dict(os.environ)
    env["TWIN_DEVICE"] = spec.split("+")[0]
    env["TWIN_COHERENCE"] = "copy" if spec.endswith("+copy") else "auto"
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(np), heat, "240", steps]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if out.returncode != 0:
        sys.exit(f"{spec} on {np} ranks failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def main():
    mpirun, heat, steps, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    hashes = {}
    failed = False
    for spec in specs:
        for np in (1, 2, 4):
            text = run(mpirun, heat, steps, np, spec)
            plate = re.search(r"plate: hash ([0-9a-f]+)", text)
            moved = re.search(r"strips (\d+) bytes out, (\d+) in; moved to the host (\d+), to the "
                              r"device (\d+)", text)
            if not plate or not moved:
                sys.exit(f"{spec} on {np} ranks: unexpected output:\n{text}")
            out, into, to_host, to_device = map(int, moved.groups())
            copies = spec.endswith("+copy") and not spec.startswith("host")
            want = (out, into) if copies else (0, 0)
            if (to_host, to_device) != want:
                print(f"{spec} on {np} ranks: one exchange moved {to_host} / {to_device} bytes, "
                      f"expected {want[0]} / {want[1]}")
                failed = True
            hashes[(spec, np)] = plate.group(1)
            print(f"{spec:12} {np} ranks: plate {plate.group(1)}, exchange moved "
                  f"{to_host} + {to_device} bytes for strips of {out} + {into}")
    if len(set(hashes.values())) != 1:
        print("the plates differ:", hashes)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

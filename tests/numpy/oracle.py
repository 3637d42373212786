#!/usr/bin/env python3
"""A differential test of twin's views and copies with NumPy as the oracle.

usage: oracle.py CHAIN_DRIVER SPEC [--chains N] [--seed S]

Writes N random chains (seeded: the same seed gives the same chains; TWIN_ORACLE_SEED
overrides the default), runs them through chain_driver on backend group SPEC (host, opencl,
opencl+copy) in one process, and checks every answer against NumPy:
- a base array of a random dtype and shape (zero-length axes and 0-d included) with values
  chosen to hit conversion edges (NaN, infinities, halves, values beyond every integer range);
- 1 to 5 views: slices (negative steps, bounds beyond the axis, omitted bounds, empty results),
  transposes, reshapes (twin must refuse exactly those NumPy cannot make as a view, with
  TWIN_ERR_NOT_VIEWABLE), broadcasts and indexes (out-of-range ones refused);
- the last view read through the host (twin_array_read) and through a device round trip
  (twin_array_copy runs on the device, then the copy is read);
- a copy into a view of a fresh array of another dtype (transposed, reversed, or broadcast
  from the source), converted by twin's documented rules (twin_copy in twin.h), written here in
  NumPy; then the destination view, its whole base and its device copy are read back.
Every mismatch prints the seed, the chain and what differed; the exit status is 1 if any."""
import argparse
import os
import subprocess
import sys
import warnings

import numpy as np

DTYPES = ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64"]
NP = {"i8": np.int8, "u8": np.uint8, "i16": np.int16, "u16": np.uint16, "i32": np.int32,
      "u32": np.uint32, "i64": np.int64, "u64": np.uint64, "f32": np.float32,
      "f64": np.float64}
FLOAT_EDGES = [float("nan"), float("inf"), -float("inf"), -1.5, -0.5, 0.5, 1.5, 2.5, -0.0,
               127.5, 128.0, 255.9, 256.0, -129.0, 32768.0, 65535.5, 2.0**31, -2.0**31 - 1,
               2.0**32, 1e10, -1e10, 2.0**63, -2.0**63, 2.0**64, 3e38, 1e300, -1e300, 1e-300]


def values(rng, dt, n):
    if dt[0] == "f":
        xs = [rng.choice(FLOAT_EDGES) if rng.random() < 0.4 else rng.uniform(-300, 300)
              for _ in range(n)]
        with np.errstate(all="ignore"):
            return np.array(xs, dtype=NP[dt])
    info = np.iinfo(NP[dt])
    edges = [info.min, info.max, 0, 1, -1 if info.min else 2, info.max // 2 + 1]
    xs = [rng.choice(edges) if rng.random() < 0.3 else rng.randint(int(info.min), int(info.max))
          for _ in range(n)]
    return np.array(xs, dtype=NP[dt])


def text(x, dt):
    return float(x).hex() if dt[0] == "f" else str(int(x))


def convert(x, to):
    """twin's conversion rules: int to int wraps, to float rounds to nearest even in one step,
    float to int truncates and saturates, NaN to 0."""
    to = np.dtype(to)
    if x.dtype == to:
        return x.copy()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if to.kind == "f" or x.dtype.kind in "iu":
            return x.astype(to)  # NumPy's C casts: wrap, and a single rounding
        f = x.astype(np.float64)  # exact for f32
        info = np.iinfo(to)
        lo, hi = float(info.min), float(info.max) + 1.0  # hi is 2^bits: exact
        t = np.trunc(f)
        out = np.zeros(f.shape, to)
        ok = ~np.isnan(t) & (t >= lo) & (t < hi)
        out[ok] = t[ok].astype(to)
        out[~np.isnan(t) & (t >= hi)] = info.max
        out[~np.isnan(t) & (t < lo)] = info.min
        return out


class Chain:
    """Commands for the driver, each with what NumPy says the answer must be."""

    def __init__(self):
        self.steps = []  # (command, expected status, expected array or None)
        self.regs = 0

    def add(self, cmd, status="TWIN_OK", data=None):
        self.steps.append((cmd, status, data))

    def reg(self):
        self.regs += 1
        return self.regs - 1


def shape_text(shape):
    return f"{len(shape)} " + " ".join(str(d) for d in shape)


def random_shape(rng):
    return [rng.choice([0, 1, 2, 3, 4, 5]) if rng.random() < 0.08 else rng.randint(1, 5)
            for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 3, 4]))]


def bound(rng, n):
    return None if rng.random() < 0.25 else rng.randint(-n - 3, n + 3)


def op_slice(rng, c, r, a):
    sl, words = [], []
    for n in a.shape:
        start, stop = bound(rng, n), bound(rng, n)
        step = None if rng.random() < 0.2 else rng.choice([1, 1, 2, 3, -1, -1, -2, -3])
        sl.append(slice(start, stop, step))
        words += ["N" if v is None else str(v) for v in (start, stop, step)]
    out = c.reg()
    c.add(f"slice {out} {r} " + " ".join(words))
    return out, a[tuple(sl) + (Ellipsis,)]  # a 0-d view, never a scalar


def op_transpose(rng, c, r, a):
    perm = list(range(a.ndim))
    rng.shuffle(perm)
    out = c.reg()
    c.add(f"transpose {out} {r} " + " ".join(map(str, perm)))
    return out, a.transpose(perm)


def factor_shape(rng, n):
    """A random shape of n elements, with ones sprinkled in."""
    if n == 0:
        dims = [0] + [rng.randint(1, 3) for _ in range(rng.randint(0, 2))]
    else:
        dims, left = [], n
        for _ in range(rng.randint(0, 3)):
            d = rng.choice([d for d in range(1, left + 1) if left % d == 0])
            dims.append(d)
            left //= d
        dims.append(left)
    if rng.random() < 0.3:
        dims.insert(rng.randint(0, len(dims)), 1)
    rng.shuffle(dims)
    return dims


def op_reshape(rng, c, r, a):
    shape = factor_shape(rng, a.size)
    words = list(map(str, shape))
    if a.size and shape and rng.random() < 0.3:
        k = rng.randrange(len(shape))
        words[k] = str(2**64 - 1)  # TWIN_INFER
    v = a.view()
    try:
        v.shape = shape
    except AttributeError:  # NumPy would need a copy: twin must refuse
        c.add(f"reshape {c.reg()} {r} {len(shape)} " + " ".join(words), "TWIN_ERR_NOT_VIEWABLE")
        return r, a
    out = c.reg()
    c.add(f"reshape {out} {r} {len(shape)} " + " ".join(words))
    return out, v


def op_broadcast(rng, c, r, a):
    shape = [rng.randint(1, 3) for _ in range(rng.randint(0, 2))]
    shape += [rng.randint(1, 4) if d == 1 and rng.random() < 0.5 else d for d in a.shape]
    if len(shape) > 8:
        shape = list(a.shape)
    out = c.reg()
    c.add(f"broadcast {out} {r} {shape_text(shape)}")
    return out, np.broadcast_to(a, shape)


def op_index(rng, c, r, a):
    if a.ndim == 0:
        return r, a
    axis = rng.randrange(a.ndim)
    n = a.shape[axis]
    i = rng.randint(-n - 2, n + 1)
    out = c.reg()
    if not -n <= i < n:
        c.add(f"index {out} {r} {axis} {i}", "TWIN_ERR_INVALID_ARGUMENT")
        return r, a
    c.add(f"index {out} {r} {axis} {i}")
    return out, a[(slice(None),) * axis + (i, Ellipsis)]  # a 0-d view, never a scalar


def reads(c, r, a):
    c.add(f"read {r}", data=a)
    c.add(f"devread {r}", data=a)


def copy_into(rng, c, r, a):
    """Copies view a (register r) into a view of a fresh array of a random dtype."""
    dt = rng.choice(DTYPES)
    lead = [rng.randint(1, 3)] if rng.random() < 0.25 and a.ndim < 8 else []
    shape = lead + list(a.shape)
    perm = list(range(len(shape)))
    rng.shuffle(perm)
    base = np.zeros([shape[p] for p in perm], NP[dt])
    b = c.reg()
    c.add(f"zeros {b} {dt} {shape_text(base.shape)}")
    inverse = list(np.argsort(perm))
    d = c.reg()
    c.add(f"transpose {d} {b} " + " ".join(map(str, inverse)))
    dst = base.transpose(inverse)
    if dst.ndim and rng.random() < 0.5:  # walk the destination backwards too
        d2 = c.reg()
        c.add(f"slice {d2} {d} " + " ".join("N N -1" for _ in range(dst.ndim)))
        d, dst = d2, dst[(slice(None, None, -1),) * dst.ndim]
    dst[...] = convert(np.broadcast_to(a, dst.shape), NP[dt])
    c.add(f"copy {d} {r}")
    c.add(f"read {d}", data=dst)
    c.add(f"read {b}", data=base)
    c.add(f"devread {d}", data=dst)


def make_chain(rng):
    c = Chain()
    dt = rng.choice(DTYPES)
    shape = random_shape(rng)
    a = values(rng, dt, int(np.prod(shape, dtype=np.int64))).reshape(shape)
    r = c.reg()
    c.add(f"base {r} {dt} {shape_text(shape)} " + " ".join(text(x, dt) for x in a.ravel()))
    ops = [op_slice, op_slice, op_transpose, op_reshape, op_reshape, op_broadcast, op_index]
    for _ in range(rng.randint(1, 5)):
        r, a = rng.choice(ops)(rng, c, r, a)
    reads(c, r, a)
    copy_into(rng, c, r, a)
    c.add("reset", "TWIN_OK 0 0")
    return c


def parse(tok, kind):
    if kind == "f":
        return float("nan") if "nan" in tok else float.fromhex(tok)
    return int(tok)


def check_step(step, line):
    """None when the driver's answer matches, else what differs."""
    cmd, status, data = step
    words = line.split()
    if status == "TWIN_OK 0 0":
        return None if words[:3] == ["TWIN_OK", "0", "0"] else f"expected nothing alive, got {line}"
    if not words or words[0] != status:
        return f"expected {status}, got: {line}"
    if data is None:
        return None
    kind = data.dtype.kind
    got = [parse(t, kind) for t in words[1:]]
    want = [float(x) if kind == "f" else int(x) for x in np.ravel(data)]
    same = len(got) == len(want) and all(
        g == w or (kind == "f" and g != g and w != w) for g, w in zip(got, want))
    if same:
        return None
    return f"values differ:\n      NumPy: {want}\n      twin:  {got}"


def run(driver, spec, chains, seed):
    lines = [step[0] for c in chains for step in c.steps]
    proc = subprocess.run([driver, spec], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout.splitlines()
    if proc.returncode != 0 or len(out) < len(lines):
        sys.stderr.write(proc.stderr[-4000:])
        print(f"chain_driver {spec} exited with {proc.returncode} after {len(out)} of "
              f"{len(lines)} answers (seed {seed})")
        return len(chains)
    failed, at = 0, 0
    for n, c in enumerate(chains):
        problems = []
        for k, step in enumerate(c.steps):
            why = check_step(step, out[at + k])
            if why:
                problems.append(f"  step {k}: {step[0][:200]}\n    {why}")
        at += len(c.steps)
        if problems:
            failed += 1
            if failed <= 10:
                print(f"FAIL {spec} seed {seed} chain {n}:")
                print("\n".join(f"  {s[0][:200]}" for s in c.steps))
                print("\n".join(problems))
    return failed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("driver")
    p.add_argument("spec")
    p.add_argument("--chains", type=int, default=300)
    p.add_argument("--seed", type=int, default=int(os.environ.get("TWIN_ORACLE_SEED", "9")))
    args = p.parse_args()
    import random
    rng = random.Random(args.seed)
    chains = [make_chain(rng) for _ in range(args.chains)]
    failed = run(args.driver, args.spec, chains, args.seed)
    steps = sum(len(c.steps) for c in chains)
    print(f"{args.spec}: {len(chains) - failed} of {len(chains)} chains ({steps} calls) agree "
          f"with NumPy {np.__version__} (seed {args.seed})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

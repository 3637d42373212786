#!/usr/bin/env python3
"""Writes the fuzz target's seed inputs into tests/fuzz/corpus/ (seed-*): one short call
sequence per area, encoded as fuzz_calls.c decodes them, so fuzzing starts from inputs that
reach every call. Run it again after changing the input layout. Regressions of findings
(regress-*) are minimised crash inputs kept beside them, not made here."""
import os
import struct
import sys

MAKE, SLICE, INDEX, TRANSPOSE, RESHAPE, BROADCAST, AS_STRIDED, EXPAND = 0, 2, 3, 4, 5, 6, 7, 8
COPY, FILL, READ, WRITE, BEGIN, END, POKE, UNREF, REF, ARRAY_COPY = range(9, 19)
NEW, ZEROS, FROM_HOST = range(3)
I8, U8, I16, U16, I32, U32, I64, U64, F32, F64 = range(10)
FMT = {I8: "b", U8: "B", I16: "h", U16: "H", I32: "i", U32: "I", I64: "q", U64: "Q", F32: "f",
       F64: "d"}
NONE = "none"
PD_SPECIAL = {NONE: 0, "min+1": 1, "max": 2, "max-1": 3, "2^62": 6, "-2^62": 7, "2^32": 11,
              "2^31": 13}
HUGE_DIM = {2**31: 0, 2**32: 1, 2**61: 2, 2**62: 3, 2**63: 4}
INFER = "infer"


def dim(d):
    if d == INFER:
        return [0xE8]
    if d in HUGE_DIM:
        return [0xF0 | HUGE_DIM[d]]
    assert 0 <= d <= 8
    return [d]


def pd(v):
    if v in PD_SPECIAL:
        return [0xE0 | PD_SPECIAL[v]]
    assert -16 <= v <= 16
    return [v + 16]


def bound(v):
    if v == NONE:
        return [0]
    if v in PD_SPECIAL:
        return [0xE0 | PD_SPECIAL[v]]
    assert -16 <= v <= 16
    return [48 + (v + 16 - 15) % 33]


def values(dtype, xs):
    return list(struct.pack("<" + FMT[dtype] * len(xs), *xs))


def make(kind, dtype, shape, out, data=()):
    b = [MAKE, kind, dtype, len(shape), out] + sum((dim(d) for d in shape), [])
    return b + (values(dtype, data) if kind == FROM_HOST else [])


def slice_(src, out, *axes):
    return [SLICE, src, out] + sum((bound(a) + bound(b) + bound(c) for a, b, c in axes), [])


def index(src, axis, i, out):
    return [INDEX, src, axis + 10, out] + pd(i)


def transpose(src, out, perm=None):
    if perm is None:
        return [TRANSPOSE, src, out, 0]
    return [TRANSPOSE, src, out, 1] + [p + len(perm) + 1 for p in perm]


def reshape(src, shape, out, op=RESHAPE):
    return [op, src, len(shape), out] + sum((dim(d) for d in shape), [])


def as_strided(src, shape, strides, offset, out):
    b = [AS_STRIDED, src, len(shape), out]
    for d, s in zip(shape, strides):
        b += dim(d) + pd(s)
    return b + pd(offset)


SEEDS = {
    "views": make(FROM_HOST, I32, (3, 4), 0, range(12)) + slice_(0, 1, (NONE, NONE, -1), (1, -1, 2))
    + [READ, 1, 0] + transpose(0, 2) + index(2, 1, -1, 3) + [READ, 3, 0]
    + make(ZEROS, F32, (4, 3), 4) + [COPY, 4, 2, READ, 4, 0] + [UNREF, 0, UNREF, 2],
    "zero-length": make(ZEROS, I16, (0, 3), 0) + slice_(0, 1, (1, NONE, 1), (NONE, NONE, 2))
    + index(0, 1, 2, 2) + reshape(0, (3, 0), 3) + reshape(0, (INFER, 3), 4)
    + reshape(0, (1, 3), 5, BROADCAST) + [READ, 0, 0],
    "zero-d": make(FROM_HOST, F64, (), 0, [2.5]) + reshape(0, (1, 1), 1) + [EXPAND, 0, 10, 2]
    + reshape(0, (4, 2), 3, BROADCAST) + [READ, 3, 0, FILL, 0] + values(F64, [-7.0]) + [READ, 1, 0],
    "as-strided": make(FROM_HOST, U8, (8,), 0, range(8)) + as_strided(0, (3, 2), (1, 3), 0, 1)
    + as_strided(0, (2, 2), (0, -1), 7, 2) + as_strided(0, (4,), (3,), 1, 3)
    + as_strided(0, (2,), ("2^62",), 0, 4) + as_strided(0, (0, 5), ("max", 1), 8, 5)
    + [READ, 1, 0, READ, 2, 0],
    "host-access": make(FROM_HOST, I64, (2, 3), 0, range(6)) + transpose(0, 1)
    + [BEGIN, 0, 3, BEGIN, 0, 1, BEGIN, 1, 2] + values(I64, [9, 8, 7, 6, 5, 4])
    + [POKE, 1, 4, 0] + values(I64, [-1]) + [FILL, 0] + values(I64, [3])
    + [END, 1, END, 0, FILL, 0] + values(I64, [3]) + [END, 0, END, 0, READ, 0, 0],
    "reshape": make(FROM_HOST, U16, (2, 3, 4), 0, range(24)) + reshape(0, (6, 4), 1)
    + transpose(0, 2) + reshape(2, (INFER,), 3) + slice_(0, 4, (NONE, NONE, 1), (NONE, NONE, 2),
                                                           (NONE, NONE, 1))
    + reshape(4, (2, 8), 5) + reshape(0, (4, 1, 3, 2), 6) + [READ, 6, 0],
    "casts": make(FROM_HOST, F64, (8,), 0, [float("nan"), float("inf"), -1.5, 1e10, -1e10, 0.5,
                                            2.0**63, -2.0**63 - 4096])
    + make(NEW, I32, (8,), 1) + [COPY, 1, 0] + make(NEW, U8, (8,), 2) + [COPY, 2, 0]
    + make(NEW, F32, (8,), 3) + [COPY, 3, 0] + make(FROM_HOST, I64, (3,), 4, [-1, 300, 2**40 + 7])
    + make(NEW, U16, (3,), 5) + [COPY, 5, 4] + make(NEW, F32, (3,), 6) + [COPY, 6, 4],
    "refs": make(FROM_HOST, I8, (5,), 0, range(5)) + [REF, 0, 1] + slice_(1, 2, (NONE, NONE, 2))
    + [UNREF, 0, BEGIN, 1, 1, UNREF, 1, READ, 2, 0] + [ARRAY_COPY, 0, 2, 3]
    + [ARRAY_COPY, 1, 2, 4, UNREF, 2, READ, 3, 0],
    "broadcast-copy": make(FROM_HOST, U32, (3, 1), 0, [1, 2, 3]) + reshape(0, (2, 3, 4), 1, BROADCAST)
    + make(ZEROS, I64, (3, 4), 2) + [COPY, 2, 0, COPY, 1, 2] + slice_(2, 3, (NONE, NONE, -1),
                                                                      (NONE, NONE, -2))
    + [COPY, 3, 2, WRITE, 3] + values(I64, range(6)) + [READ, 2, 0],
    "huge-zero": make(NEW, F64, (0, 2**62, 8), 0) + transpose(0, 1) + slice_(0, 2, (NONE, NONE, 1),
                                                                             (3, NONE, 1),
                                                                             (NONE, NONE, "max"))
    + index(0, 1, "min+1", 3) + reshape(0, (8, 0), 4, BROADCAST) + [READ, 0, 0],
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())

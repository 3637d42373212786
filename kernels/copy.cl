/* Copies between strided views. The host (backends/opencl/ops.c) first reduces a copy to the
 * fewest axes (size-1 axes dropped, axes sorted by destination stride, adjacent axes merged
 * where both views are contiguous across them) and then picks one of:
 *
 *   copy1_<bits>    1-D, any strides; each work item copies `chunk` consecutive elements.
 *   copyt_<bits>    2-D where the source runs fastest along axis 0 and the destination along
 *                   axis 1 (a transpose): each work item moves one TWIN_TB x TWIN_TB block.
 *   copyn_<bits>    N-d (1..8 axes), any strides; `chunk` elements per work item.
 *   convert_<s>_<d> N-d with a dtype conversion (see common.cl for the rules).
 *
 * <bits> is u8/u16/u32/u64: a copy without conversion moves bits, so it only depends on the
 * element size. Shapes and strides of N-d kernels travel as long8 arguments (unused lanes 0).
 * Giving each work item many elements amortises PoCL's per-work-item cost: measured on PoCL 3.1
 * (2 cores), 1-D chunks of 64 and N-d chunks of 256 run at about memcpy speed. */

#define TWIN_COPY_STRETCH(d, s, run, d0, s0, T)                                                \
  for (long j = 0; j < (run); j++)                                                             \
    dst[(d) + j * (d0)] = src[(s) + j * (s0)]

#define TWIN_COPY_KERNELS(bn, T)                                                               \
  kernel void copy1_##bn(global T *dst, long doff, long ds, global const T *src, long soff,    \
                         long ss, long n, long chunk) {                                        \
    long start = (long)get_global_id(0) * chunk;                                               \
    long end = min(start + chunk, n);                                                          \
    global T *d = dst + doff;                                                                  \
    global const T *s = src + soff;                                                            \
    /* Strides known to the compiler let it vectorise: a unit-stride side, and a stride-2      \
     * source (every other element or column) read as whole vectors and shuffled. */           \
    if (ds == 1 && ss == 2) {                                                                  \
      for (long i = start; i < end; i++)                                                       \
        d[i] = s[i * 2];                                                                       \
    } else if (ds == 1) {                                                                      \
      for (long i = start; i < end; i++)                                                       \
        d[i] = s[i * ss];                                                                      \
    } else if (ss == 1) {                                                                      \
      for (long i = start; i < end; i++)                                                       \
        d[i * ds] = s[i];                                                                      \
    } else {                                                                                   \
      for (long i = start; i < end; i++)                                                       \
        d[i * ds] = s[i * ss];                                                                 \
    }                                                                                          \
  }                                                                                            \
                                                                                               \
  kernel void copyt_##bn(global T *dst, long doff, long d0, long d1, global const T *src,      \
                         long soff, long s0, long s1, long n0, long n1) {                      \
    long b1 = (long)get_global_id(0) * TWIN_TB, b0 = (long)get_global_id(1) * TWIN_TB;        \
    if (b0 >= n0 || b1 >= n1)                                                                  \
      return;                                                                                  \
    long d = doff + b0 * d0 + b1 * d1, s = soff + b0 * s0 + b1 * s1;                           \
    if (b0 + TWIN_TB <= n0 && b1 + TWIN_TB <= n1) {                                            \
      /* Read along the source's fast axis, write along the destination's. */                \
      T t[TWIN_TB][TWIN_TB];                                                                   \
      for (int j = 0; j < TWIN_TB; j++)                                                        \
        for (int i = 0; i < TWIN_TB; i++)                                                      \
          t[j][i] = src[s + i * s0 + j * s1];                                                  \
      for (int i = 0; i < TWIN_TB; i++)                                                        \
        for (int j = 0; j < TWIN_TB; j++)                                                      \
          dst[d + i * d0 + j * d1] = t[j][i];                                                  \
      return;                                                                                  \
    }                                                                                          \
    long m0 = min((long)TWIN_TB, n0 - b0), m1 = min((long)TWIN_TB, n1 - b1);                   \
    for (long i = 0; i < m0; i++)                                                              \
      for (long j = 0; j < m1; j++)                                                            \
        dst[d + i * d0 + j * d1] = src[s + i * s0 + j * s1];                                   \
  }                                                                                            \
                                                                                               \
  kernel void copyn_##bn(global T *dst, long doff, global const T *src, long soff, int ndim,   \
                         long8 shape, long8 dstrides, long8 sstrides, long n, long chunk) {    \
    long start = (long)get_global_id(0) * chunk;                                               \
    if (start >= n)                                                                            \
      return;                                                                                  \
    long sh[8], ds[8], ss[8];                                                                  \
    TWIN_UNPACK8(shape, sh);                                                                   \
    TWIN_UNPACK8(dstrides, ds);                                                                \
    TWIN_UNPACK8(sstrides, ss);                                                                \
    TWIN_ND_WALK(ndim, sh, ds, ss, doff, soff, start, min(start + chunk, n),                   \
                 TWIN_COPY_STRETCH, T);                                                        \
  }

TWIN_BITS(TWIN_COPY_KERNELS)

#define TWIN_CONVERT_STRETCH(d, s, run, d0, s0, S, dn, D, sk, dk)                              \
  for (long j = 0; j < (run); j++) {                                                           \
    S x = src[(s) + j * (s0)];                                                                 \
    dst[(d) + j * (d0)] = TWIN_CONVERT_##sk##_##dk(dn, D, x);                                  \
  }

/* One converting kernel per (source, destination) pair. The same-dtype ones exist only for
 * regularity: the host uses the bit copies for those, and for same-size integer pairs. */
#define TWIN_CONVERT_KERNEL(sn, S, sk, dn, D, dk)                                              \
  kernel void convert_##sn##_##dn(global D *dst, long doff, global const S *src, long soff,    \
                                  int ndim, long8 shape, long8 dstrides, long8 sstrides,       \
                                  long n, long chunk) {                                        \
    long start = (long)get_global_id(0) * chunk;                                               \
    if (start >= n)                                                                            \
      return;                                                                                  \
    long sh[8], ds[8], ss[8];                                                                  \
    TWIN_UNPACK8(shape, sh);                                                                   \
    TWIN_UNPACK8(dstrides, ds);                                                                \
    TWIN_UNPACK8(sstrides, ss);                                                                \
    TWIN_ND_WALK(ndim, sh, ds, ss, doff, soff, start, min(start + chunk, n),                   \
                 TWIN_CONVERT_STRETCH, S, dn, D, sk, dk);                                      \
  }

TWIN_DTYPES(TWIN_CONVERT_KERNEL, i8, char, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, u8, uchar, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, i16, short, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, u16, ushort, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, i32, int, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, u32, uint, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, i64, long, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, u64, ulong, int)
TWIN_DTYPES(TWIN_CONVERT_KERNEL, f32, float, flt)
TWIN_IF_FP64(TWIN_DTYPES(TWIN_CONVERT_KERNEL, f64, double, flt))

/* Fills a strided view with one value. A fill writes bits, so the kernels depend only on the
 * element size; the value arrives as an argument of that size.
 *
 *   fill1_<bits>  1-D, any stride; each work item writes `chunk` consecutive elements (the
 *                 contiguous case vectorises to full-width stores).
 *   filln_<bits>  N-d (1..8 axes), any strides; `chunk` elements per work item. */

#define TWIN_FILL_STRETCH(d, s, run, d0, s0, T)                                                \
  for (long j = 0; j < (run); j++)                                                             \
    dst[(d) + j * (d0)] = value

#define TWIN_FILL_KERNELS(bn, T)                                                               \
  kernel void fill1_##bn(global T *dst, long doff, long ds, long n, long chunk, T value) {     \
    long start = (long)get_global_id(0) * chunk;                                               \
    long end = min(start + chunk, n);                                                          \
    global T *d = dst + doff;                                                                  \
    if (ds == 1) {                                                                             \
      for (long i = start; i < end; i++)                                                       \
        d[i] = value;                                                                          \
    } else {                                                                                   \
      for (long i = start; i < end; i++)                                                       \
        d[i * ds] = value;                                                                     \
    }                                                                                          \
  }                                                                                            \
                                                                                               \
  kernel void filln_##bn(global T *dst, long doff, int ndim, long8 shape, long8 dstrides,      \
                         long n, long chunk, T value) {                                        \
    long start = (long)get_global_id(0) * chunk;                                               \
    if (start >= n)                                                                            \
      return;                                                                                  \
    long sh[8], ds[8], ss[8] = {0};                                                            \
    TWIN_UNPACK8(shape, sh);                                                                   \
    TWIN_UNPACK8(dstrides, ds);                                                                \
    TWIN_ND_WALK(ndim, sh, ds, ss, doff, 0L, start, min(start + chunk, n), TWIN_FILL_STRETCH,  \
                 T);                                                                           \
  }

TWIN_BITS(TWIN_FILL_KERNELS)

/* Shared definitions of twin's built-in kernels. The files of kernels/ are concatenated, in the
 * order kernels/meson.build lists them, into ONE program per context; f64 parts are compiled
 * only with -DTWIN_FP64 (the device has cl_khr_fp64).
 *
 * Index arithmetic is in long (64-bit) everywhere: offsets and strides are in elements, strides
 * may be negative or zero, and a buffer may hold more than 2^31 elements. */

#ifdef TWIN_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define TWIN_IF_FP64(x) x
#else
#define TWIN_IF_FP64(x)
#endif

/* Elements per work item of the chunked kernels come from the host (an argument), so one
 * compiled kernel serves every element size; the work-group sizes are chosen by the host too. */

/* The 2-D transposing copy gives each work item a TWIN_TB x TWIN_TB block held in private
 * memory. On CPU devices (PoCL) this beats a local-memory tile by 3-4x: a work-group barrier
 * splits the work-item loop in two and the tile round trip costs more than it saves. */
#define TWIN_TB 8

/* ---- Conversion rules -------------------------------------------------------------------
 * Must agree bit for bit with backends/host/ops.c (the differential tests compare them):
 * - integer -> integer wraps modulo 2^n (the low n bits are kept);
 * - any -> float rounds to nearest even (a single rounding, also for i64/u64 -> f32);
 * - float -> integer truncates toward zero, saturates at the destination's limits, and NaN
 *   becomes 0. This is written out rather than left to convert_T_sat_rtz so that it does not
 *   depend on how a device implements the builtin.
 * The bounds are powers of two, exact in float, so comparing a float or a double against them
 * decides the range without rounding. */
#define TWIN_SAT(D, x, LO, HI, DMIN, DMAX)                                                     \
  ((x) != (x) ? (D)0 : (x) <= (LO) ? (D)(DMIN) : (x) >= (HI) ? (D)(DMAX) : (D)(x))

#define TWIN_SAT_i8(x) TWIN_SAT(char, x, -0x1p7f, 0x1p7f, CHAR_MIN, CHAR_MAX)
#define TWIN_SAT_u8(x) TWIN_SAT(uchar, x, 0.0f, 0x1p8f, 0, UCHAR_MAX)
#define TWIN_SAT_i16(x) TWIN_SAT(short, x, -0x1p15f, 0x1p15f, SHRT_MIN, SHRT_MAX)
#define TWIN_SAT_u16(x) TWIN_SAT(ushort, x, 0.0f, 0x1p16f, 0, USHRT_MAX)
#define TWIN_SAT_i32(x) TWIN_SAT(int, x, -0x1p31f, 0x1p31f, INT_MIN, INT_MAX)
#define TWIN_SAT_u32(x) TWIN_SAT(uint, x, 0.0f, 0x1p32f, 0, UINT_MAX)
#define TWIN_SAT_i64(x) TWIN_SAT(long, x, -0x1p63f, 0x1p63f, LONG_MIN, LONG_MAX)
#define TWIN_SAT_u64(x) TWIN_SAT(ulong, x, 0.0f, 0x1p64f, 0, ULONG_MAX)

/* TWIN_CONVERT_<source kind>_<destination kind>(destination name, D, x); kinds: int, flt. */
#define TWIN_CONVERT_int_int(dn, D, x) ((D)(x))
#define TWIN_CONVERT_int_flt(dn, D, x) ((D)(x))
#define TWIN_CONVERT_flt_flt(dn, D, x) ((D)(x))
#define TWIN_CONVERT_flt_int(dn, D, x) TWIN_SAT_##dn(x)

/* X(name, type, kind) for every dtype the device supports. */
#define TWIN_DTYPES(X, ...)                                                                    \
  X(__VA_ARGS__, i8, char, int)                                                                \
  X(__VA_ARGS__, u8, uchar, int)                                                               \
  X(__VA_ARGS__, i16, short, int)                                                              \
  X(__VA_ARGS__, u16, ushort, int)                                                             \
  X(__VA_ARGS__, i32, int, int)                                                                \
  X(__VA_ARGS__, u32, uint, int)                                                               \
  X(__VA_ARGS__, i64, long, int)                                                               \
  X(__VA_ARGS__, u64, ulong, int)                                                              \
  X(__VA_ARGS__, f32, float, flt)                                                              \
  TWIN_IF_FP64(X(__VA_ARGS__, f64, double, flt))

/* X(name, type) for the element sizes of bit copies and fills: 1, 2, 4 and 8 bytes. */
#define TWIN_BITS(X)                                                                           \
  X(u8, uchar)                                                                                 \
  X(u16, ushort)                                                                               \
  X(u32, uint)                                                                                 \
  X(u64, ulong)

/* Copies the 8 lanes of a long8 into a private long[8]. Lane by lane, not vstore8: passing a
 * long8 to a function by value makes clang warn, once per call, that the AVX argument ABI
 * changes without avx512f (PoCL's build log then holds hundreds of warnings). */
#define TWIN_UNPACK8(v, a)                                                                     \
  do {                                                                                         \
    (a)[0] = (v).s0;                                                                           \
    (a)[1] = (v).s1;                                                                           \
    (a)[2] = (v).s2;                                                                           \
    (a)[3] = (v).s3;                                                                           \
    (a)[4] = (v).s4;                                                                           \
    (a)[5] = (v).s5;                                                                           \
    (a)[6] = (v).s6;                                                                           \
    (a)[7] = (v).s7;                                                                           \
  } while (0)

/* Walks elements [start, end) of an N-d iteration space in C order: sets up the multi-index of
 * `start` and the element offsets d (dst) and s (src), then runs BODY(d, s, run, d0, s0, ...)
 * once per stretch along the last axis, passing on the extra arguments. sh/ds/ss are private
 * long[8] arrays, ndim >= 1. */
#define TWIN_ND_WALK(ndim, sh, ds, ss, doff, soff, start, end, BODY, ...)                      \
  do {                                                                                         \
    long idx_[8], rem_ = (start), d_ = (doff), s_ = (soff);                                    \
    int last_ = (ndim)-1;                                                                      \
    for (int k_ = last_; k_ >= 0; k_--) {                                                      \
      long q_ = rem_ / sh[k_], i_ = rem_ - q_ * sh[k_];                                        \
      idx_[k_] = i_;                                                                           \
      rem_ = q_;                                                                               \
      d_ += i_ * ds[k_];                                                                       \
      s_ += i_ * ss[k_];                                                                       \
    }                                                                                          \
    long left_ = (end) - (start);                                                              \
    for (;;) {                                                                                 \
      long run_ = min(sh[last_] - idx_[last_], left_);                                         \
      BODY(d_, s_, run_, ds[last_], ss[last_], __VA_ARGS__);                                   \
      left_ -= run_;                                                                           \
      if (left_ == 0)                                                                          \
        break;                                                                                 \
      /* The stretch reached the end of the last axis: carry into the outer axes. */          \
      d_ += run_ * ds[last_];                                                                  \
      s_ += run_ * ss[last_];                                                                  \
      idx_[last_] += run_;                                                                     \
      for (int k_ = last_; k_ > 0 && idx_[k_] == sh[k_]; k_--) {                               \
        d_ += ds[k_ - 1] - sh[k_] * ds[k_];                                                    \
        s_ += ss[k_ - 1] - sh[k_] * ss[k_];                                                    \
        idx_[k_] = 0;                                                                          \
        idx_[k_ - 1]++;                                                                        \
      }                                                                                        \
    }                                                                                          \
  } while (0)

/* The built-in copy and fill in plain C, on host memory: the host backend's members, what core
 * runs for a backend without its own, and the reference that the OpenCL kernels (the .cl files
 * of kernels/) must match bit for bit.
 * Deliberately plain: it walks the views as given, without the axis merging the OpenCL backend
 * does, so a differential test compares two independent paths.
 *
 * Conversion rules (documented at twin_copy):
 * - integer -> integer wraps modulo 2^n: the value goes through uint64_t, and narrowing an
 *   unsigned value keeps its low bits (gcc and clang also define the signed case that way);
 * - any -> float rounds to nearest even, in one step (no detour through double for i64/u64);
 * - float -> integer truncates toward zero, saturates at the type's limits, NaN gives 0. */
#include <stdint.h>
#include <string.h>

#include "ground.h"

/* Bounds are powers of two, exact in float and double, so the comparisons are exact. */
#define SAT(D, x, LO, HI, DMIN, DMAX)                                                              \
  ((x) != (x) ? (D)0 : (x) <= (LO) ? (D)(DMIN) : (x) >= (HI) ? (D)(DMAX) : (D)(x))

#define DEFINE_TO_INT(dn, D, LO, HI, DMIN, DMAX)                                                   \
  static inline D dn##_from_f32(float x) {                                                         \
    return SAT(D, x, LO, HI, DMIN, DMAX);                                                          \
  }                                                                                                \
  static inline D dn##_from_f64(double x) {                                                        \
    return SAT(D, x, LO, HI, DMIN, DMAX);                                                          \
  }                                                                                                \
  static inline D dn##_from_int(uint64_t x) {                                                      \
    return (D)x;                                                                                   \
  }

DEFINE_TO_INT(i8, int8_t, -0x1p7f, 0x1p7f, INT8_MIN, INT8_MAX)
DEFINE_TO_INT(u8, uint8_t, 0.0f, 0x1p8f, 0, UINT8_MAX)
DEFINE_TO_INT(i16, int16_t, -0x1p15f, 0x1p15f, INT16_MIN, INT16_MAX)
DEFINE_TO_INT(u16, uint16_t, 0.0f, 0x1p16f, 0, UINT16_MAX)
DEFINE_TO_INT(i32, int32_t, -0x1p31f, 0x1p31f, INT32_MIN, INT32_MAX)
DEFINE_TO_INT(u32, uint32_t, 0.0f, 0x1p32f, 0, UINT32_MAX)
DEFINE_TO_INT(i64, int64_t, -0x1p63f, 0x1p63f, INT64_MIN, INT64_MAX)
DEFINE_TO_INT(u64, uint64_t, 0.0f, 0x1p64f, 0, UINT64_MAX)

/* TO_<dst>(x) converts x of any twin element type; _Generic picks the rule by x's type. */
#define TO_INT(dn, x)                                                                              \
  _Generic((x), float : dn##_from_f32, double : dn##_from_f64, default : dn##_from_int)(x)
#define TO_i8(x) TO_INT(i8, x)
#define TO_u8(x) TO_INT(u8, x)
#define TO_i16(x) TO_INT(i16, x)
#define TO_u16(x) TO_INT(u16, x)
#define TO_i32(x) TO_INT(i32, x)
#define TO_u32(x) TO_INT(u32, x)
#define TO_i64(x) TO_INT(i64, x)
#define TO_u64(x) TO_INT(u64, x)
#define TO_f32(x) ((float)(x))
#define TO_f64(x) ((double)(x))

/* X(..., name, C type, enum) for every dtype: the destinations of a conversion. */
#define DTYPES(X, ...)                                                                             \
  X(__VA_ARGS__, i8, int8_t, TWIN_I8)                                                              \
  X(__VA_ARGS__, u8, uint8_t, TWIN_U8)                                                             \
  X(__VA_ARGS__, i16, int16_t, TWIN_I16)                                                           \
  X(__VA_ARGS__, u16, uint16_t, TWIN_U16)                                                          \
  X(__VA_ARGS__, i32, int32_t, TWIN_I32)                                                           \
  X(__VA_ARGS__, u32, uint32_t, TWIN_U32)                                                          \
  X(__VA_ARGS__, i64, int64_t, TWIN_I64)                                                           \
  X(__VA_ARGS__, u64, uint64_t, TWIN_U64)                                                          \
  X(__VA_ARGS__, f32, float, TWIN_F32)                                                             \
  X(__VA_ARGS__, f64, double, TWIN_F64)

/* Converts n elements of one row; strides in elements. */
typedef void (*convert_row_fn)(char *dst, ptrdiff_t ds, const char *src, ptrdiff_t ss, size_t n);

#define DEFINE_ROW(sn, S, se, dn, D, de)                                                           \
  static void row_##sn##_##dn(char *dst, ptrdiff_t ds, const char *src, ptrdiff_t ss, size_t n) {  \
    D *d = (D *)dst;                                                                               \
    const S *s = (const S *)src;                                                                   \
    for (size_t i = 0; i < n; i++)                                                                 \
      d[(ptrdiff_t)i * ds] = TO_##dn(s[(ptrdiff_t)i * ss]);                                        \
  }
/* X(name, C type, enum) for every dtype: the sources. (The same list as DTYPES; a macro cannot
 * expand itself, so the nested loop needs two.) */
#define SOURCES(X)                                                                                 \
  X(i8, int8_t, TWIN_I8)                                                                           \
  X(u8, uint8_t, TWIN_U8)                                                                          \
  X(i16, int16_t, TWIN_I16)                                                                        \
  X(u16, uint16_t, TWIN_U16)                                                                       \
  X(i32, int32_t, TWIN_I32)                                                                        \
  X(u32, uint32_t, TWIN_U32)                                                                       \
  X(i64, int64_t, TWIN_I64)                                                                        \
  X(u64, uint64_t, TWIN_U64)                                                                       \
  X(f32, float, TWIN_F32)                                                                          \
  X(f64, double, TWIN_F64)

#define DEFINE_ROWS_FROM(sn, S, se) DTYPES(DEFINE_ROW, sn, S, se)
SOURCES(DEFINE_ROWS_FROM)

#define ROW_ENTRY(sn, S, se, dn, D, de) [se][de] = row_##sn##_##dn,
#define ROW_ENTRIES_FROM(sn, S, se) DTYPES(ROW_ENTRY, sn, S, se)
static const convert_row_fn convert_rows[TWIN_DTYPE_COUNT][TWIN_DTYPE_COUNT] = {
    SOURCES(ROW_ENTRIES_FROM)};

/* Calls row(arg, d, s) for every row (run along the last axis) of the iteration space, with the
 * addresses of the row's first elements; strides in bytes. ndim 0 is one row of one element.
 * The space must not be empty. */
typedef void (*row_visit_fn)(const void *arg, char *d, const char *s);

static void for_each_row(char *d, const ptrdiff_t *dstep, const char *s, const ptrdiff_t *sstep,
                         const size_t *shape, int ndim, row_visit_fn row, const void *arg) {
  size_t rows = 1, index[TWIN_MAX_DIMS] = {0};
  for (int i = 0; i + 1 < ndim; i++)
    rows *= shape[i];
  for (size_t r = 0; r < rows; r++) {
    row(arg, d, s);
    for (int ax = ndim - 2; ax >= 0; ax--) {
      d += dstep[ax];
      s += sstep[ax];
      if (++index[ax] < shape[ax])
        break;
      d -= dstep[ax] * (ptrdiff_t)shape[ax];
      s -= sstep[ax] * (ptrdiff_t)shape[ax];
      index[ax] = 0;
    }
  }
}

static size_t elements(const twin__view *v) {
  size_t n = 1;
  for (int i = 0; i < v->ndim; i++)
    n *= v->shape[i];
  return n;
}

static char *first_element(const twin__view *v) {
  return (char *)v->mem + v->offset * twin_dtype_size(v->dtype);
}

static void byte_steps(const twin__view *v, ptrdiff_t *steps) {
  for (int i = 0; i < v->ndim; i++)
    steps[i] = v->strides[i] * (ptrdiff_t)twin_dtype_size(v->dtype);
}

typedef struct convert_args {
  convert_row_fn fn;
  size_t n;         /* row length */
  ptrdiff_t ds, ss; /* row strides in elements */
} convert_args;

static void convert_visit(const void *arg, char *d, const char *s) {
  const convert_args *c = arg;
  c->fn(d, c->ds, s, c->ss, c->n);
}

twin_status twin__host_copy(twin_context *ctx, const twin__view *dst, const twin__view *src) {
  (void)ctx;
  if (elements(dst) == 0)
    return TWIN_OK;
  if (dst->dtype == src->dtype) {
    twin__strided_copy(first_element(dst), dst->strides, first_element(src), src->strides,
                       dst->shape, dst->ndim, twin_dtype_size(dst->dtype));
    return TWIN_OK;
  }
  int last = dst->ndim - 1;
  convert_args c = {convert_rows[src->dtype][dst->dtype], dst->ndim ? dst->shape[last] : 1,
                    dst->ndim ? dst->strides[last] : 0, dst->ndim ? src->strides[last] : 0};
  ptrdiff_t dstep[TWIN_MAX_DIMS], sstep[TWIN_MAX_DIMS];
  byte_steps(dst, dstep);
  byte_steps(src, sstep);
  for_each_row(first_element(dst), dstep, first_element(src), sstep, dst->shape, dst->ndim,
               convert_visit, &c);
  return TWIN_OK;
}

typedef struct fill_args {
  size_t n, item; /* row length, element size */
  ptrdiff_t ds;   /* row stride in elements */
  union {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
  } value;
} fill_args;

#define FILL_ROW(T, field)                                                                         \
  do {                                                                                             \
    T *p = (T *)d;                                                                                 \
    for (size_t i = 0; i < f->n; i++)                                                              \
      p[(ptrdiff_t)i * f->ds] = f->value.field;                                                    \
  } while (0)

static void fill_visit(const void *arg, char *d, const char *s) {
  (void)s;
  const fill_args *f = arg;
  switch (f->item) {
  case 1:
    if (f->ds == 1)
      memset(d, f->value.u8, f->n);
    else
      FILL_ROW(uint8_t, u8);
    break;
  case 2:
    FILL_ROW(uint16_t, u16);
    break;
  case 4:
    FILL_ROW(uint32_t, u32);
    break;
  default:
    FILL_ROW(uint64_t, u64);
    break;
  }
}

twin_status twin__host_fill(twin_context *ctx, const twin__view *dst, const void *value) {
  (void)ctx;
  if (elements(dst) == 0)
    return TWIN_OK;
  int last = dst->ndim - 1;
  fill_args f = {dst->ndim ? dst->shape[last] : 1,
                 twin_dtype_size(dst->dtype),
                 dst->ndim ? dst->strides[last] : 0,
                 {0}};
  memcpy(&f.value, value, f.item); /* a fill writes bits: no float arithmetic on the value */
  ptrdiff_t dstep[TWIN_MAX_DIMS];
  byte_steps(dst, dstep);
  /* A fill has no source; the walker is given dst twice rather than stepping a null pointer. */
  char *first = first_element(dst);
  for_each_row(first, dstep, first, dstep, dst->shape, dst->ndim, fill_visit, &f);
  return TWIN_OK;
}

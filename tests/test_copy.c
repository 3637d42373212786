/* The built-in operations: twin_copy (strided views, broadcasting, dtype conversion, overlap),
 * twin_fill, twin_array_contiguous and twin_array_copy, on every backend (test_opencl_copy.c
 * holds the OpenCL kernel program behind them). The differential test runs random copies on the
 * fixture's backend and, from identical data, in a separate host context, and requires both buffers
 * to agree bit for bit; it also checks the host result against a plain reference written here. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"

/* ---- helpers ---- */

/* splitmix64: a fixed seed makes every run visit the same cases. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static size_t below(uint64_t *rng, size_t n) {
  return (size_t)(next_random(rng) % n);
}

/* A 1-D array of n elements of dtype t holding the given bytes. */
static twin_array *from_bytes(twin_context *ctx, twin_dtype t, size_t n, const void *data) {
  twin_array *a;
  assert_ok(twin_array_from_host(ctx, t, 1, &n, data, &a));
  return a;
}

static twin_array *view_of(twin_array *base, int ndim, const size_t *shape,
                           const ptrdiff_t *strides, ptrdiff_t offset) {
  twin_array *v;
  assert_ok(twin_array_as_strided(base, ndim, shape, strides, offset, &v));
  return v;
}

static twin_array *i32_range(twin_context *ctx, size_t n, int32_t first) {
  int32_t *data = malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = first + (int32_t)i;
  twin_array *a = from_bytes(ctx, TWIN_I32, n, data);
  free(data);
  return a;
}

static void read_i32(twin_array *a, int32_t *out) {
  assert_ok(twin_array_read(a, out, twin_array_nbytes(a)));
}

static bool device_has_fp64(const twin_fixture *f) {
  return twin_context_device(f->ctx)->fp64;
}

/* ---- the reference: element conversion as twin_copy documents it ---- */

typedef struct loaded {
  enum { SIGNED, UNSIGNED, FLOATING } kind;
  int64_t i;
  uint64_t u;
  double f; /* exact for f32 sources */
} loaded;

static loaded load(const void *p, twin_dtype t) {
  loaded v = {SIGNED, 0, 0, 0};
  switch (t) {
#define LOAD_INT(E, T, K, field)                                                                   \
  case E: {                                                                                        \
    T x;                                                                                           \
    memcpy(&x, p, sizeof x);                                                                       \
    v.kind = K;                                                                                    \
    v.field = x;                                                                                   \
    break;                                                                                         \
  }
    LOAD_INT(TWIN_I8, int8_t, SIGNED, i)
    LOAD_INT(TWIN_I16, int16_t, SIGNED, i)
    LOAD_INT(TWIN_I32, int32_t, SIGNED, i)
    LOAD_INT(TWIN_I64, int64_t, SIGNED, i)
    LOAD_INT(TWIN_U8, uint8_t, UNSIGNED, u)
    LOAD_INT(TWIN_U16, uint16_t, UNSIGNED, u)
    LOAD_INT(TWIN_U32, uint32_t, UNSIGNED, u)
    LOAD_INT(TWIN_U64, uint64_t, UNSIGNED, u)
    LOAD_INT(TWIN_F32, float, FLOATING, f)
    LOAD_INT(TWIN_F64, double, FLOATING, f)
#undef LOAD_INT
  }
  return v;
}

/* The low bits of an integer value, for wrapping. */
static uint64_t bits_of(loaded v) {
  return v.kind == SIGNED ? (uint64_t)v.i : v.u;
}

/* float -> integer: truncate, saturate, NaN -> 0. Returns the result's bits. */
static uint64_t saturate(double f, twin_dtype t) {
  int bits = (int)twin_dtype_size(t) * 8;
  bool is_signed = t == TWIN_I8 || t == TWIN_I16 || t == TWIN_I32 || t == TWIN_I64;
  double hi = ldexp(1.0, is_signed ? bits - 1 : bits), lo = is_signed ? -hi : 0.0;
  uint64_t mask = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
  if (isnan(f))
    return 0;
  if (f <= lo)
    return is_signed ? (UINT64_C(1) << (bits - 1)) & mask : 0; /* the minimum's bits */
  if (f >= hi)
    return is_signed ? mask >> 1 : mask;
  double t_ = trunc(f);
  return t_ < 0 ? (uint64_t)(int64_t)t_ & mask : (uint64_t)t_ & mask;
}

static void store_bits(void *p, uint64_t bits, size_t size) {
  /* Little-endian hosts only, as every machine twin is tested on. */
  memcpy(p, &bits, size);
}

static void convert_one(void *dst, twin_dtype dt, const void *src, twin_dtype st) {
  if (dt == st) { /* bits as they are, signalling NaNs included */
    memcpy(dst, src, twin_dtype_size(dt));
    return;
  }
  loaded v = load(src, st);
  if (dt == TWIN_F32) {
    float x = v.kind == SIGNED ? (float)v.i : v.kind == UNSIGNED ? (float)v.u : (float)v.f;
    memcpy(dst, &x, sizeof x);
  } else if (dt == TWIN_F64) {
    double x = v.kind == SIGNED ? (double)v.i : v.kind == UNSIGNED ? (double)v.u : v.f;
    memcpy(dst, &x, sizeof x);
  } else if (v.kind == FLOATING) {
    store_bits(dst, saturate(v.f, dt), twin_dtype_size(dt));
  } else {
    store_bits(dst, bits_of(v), twin_dtype_size(dt));
  }
}

/* One view inside a buffer: shape, strides and offset in elements. */
typedef struct layout {
  int ndim;
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  ptrdiff_t offset;
} layout;

/* The reference copy, element by element with NumPy's broadcasting, on raw buffers. */
static void reference_copy(void *dbuf, twin_dtype dt, const layout *d, const void *sbuf,
                           twin_dtype st, const layout *s) {
  size_t total = 1, dsize = twin_dtype_size(dt), ssize = twin_dtype_size(st);
  for (int i = 0; i < d->ndim; i++)
    total *= d->shape[i];
  for (size_t lin = 0; lin < total; lin++) {
    ptrdiff_t doff = d->offset, soff = s->offset;
    size_t rem = lin;
    for (int i = d->ndim - 1; i >= 0; i--) {
      size_t idx = rem % d->shape[i];
      rem /= d->shape[i];
      doff += (ptrdiff_t)idx * d->strides[i];
      int j = i - (d->ndim - s->ndim);
      if (j >= 0 && s->shape[j] != 1)
        soff += (ptrdiff_t)idx * s->strides[j];
    }
    convert_one((char *)dbuf + (size_t)doff * dsize, dt, (const char *)sbuf + (size_t)soff * ssize,
                st);
  }
}

/* ---- random data and layouts ---- */

static double random_float_value(uint64_t *rng) {
  static const double special[] = {0.0,
                                   -0.0,
                                   INFINITY,
                                   -INFINITY,
                                   NAN,
                                   0.5,
                                   -0.5,
                                   -1.0,
                                   -1.5,
                                   127.5,
                                   128.0,
                                   -128.5,
                                   -129.0,
                                   255.5,
                                   256.0,
                                   32767.5,
                                   32768.0,
                                   65535.9,
                                   65536.0,
                                   2147483520.,
                                   2147483648.0,
                                   -2147483648.0,
                                   -2147483904.,
                                   4294967295.5,
                                   4294967296.0,
                                   9.2233720368547748e18,
                                   9.2233720368547758e18,
                                   -9.2233720368547758e18,
                                   1.8446744073709550e19,
                                   1.8446744073709552e19,
                                   1e30,
                                   -1e30,
                                   1e300,
                                   1.4e-45,
                                   1e-310,
                                   3.4028235677973366e38,
                                   16777217.0};
  switch (below(rng, 4)) {
  case 0:
    return special[below(rng, sizeof special / sizeof special[0])];
  default: {
    double m = (double)(next_random(rng) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    return ldexp(m, (int)below(rng, 140) - 70);
  }
  }
}

/* n random elements of dtype t: random bits for integers and, for floats, a mix of random bit
 * patterns (NaN payloads, subnormals, infinities), edge values and values of every scale. */
static void random_elements(uint64_t *rng, twin_dtype t, size_t n, void *out) {
  size_t size = twin_dtype_size(t);
  for (size_t i = 0; i < n; i++) {
    char *p = (char *)out + i * size;
    uint64_t bits = next_random(rng);
    if ((t == TWIN_F32 || t == TWIN_F64) && below(rng, 4) != 0) {
      double f = random_float_value(rng);
      if (t == TWIN_F32) {
        float x = (float)f;
        memcpy(p, &x, sizeof x);
      } else {
        memcpy(p, &f, sizeof f);
      }
    } else {
      memcpy(p, &bits, size);
    }
  }
}

/* A random layout of the given shape: axes in a random memory order, with random gaps,
 * random signs and a random (often unaligned) offset; stride-0 axes only when alias. Returns
 * the element count of a buffer that holds it with some slack on both sides. */
static size_t random_layout(uint64_t *rng, layout *l, bool alias) {
  int perm[TWIN_MAX_DIMS];
  for (int i = 0; i < l->ndim; i++)
    perm[i] = i;
  for (int i = l->ndim - 1; i > 0; i--) {
    int j = (int)below(rng, (size_t)i + 1), t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  if (below(rng, 3) == 0) /* often keep C order: the common case */
    for (int i = 0; i < l->ndim; i++)
      perm[i] = i;
  ptrdiff_t step = 1 + (below(rng, 4) == 0 ? (ptrdiff_t)below(rng, 3) : 0);
  for (int k = l->ndim - 1; k >= 0; k--) {
    int ax = perm[k];
    l->strides[ax] = step;
    size_t n = l->shape[ax] ? l->shape[ax] : 1;
    step = step * (ptrdiff_t)n + (below(rng, 4) == 0 ? (ptrdiff_t)below(rng, 3) : 0);
  }
  ptrdiff_t lo = 0, hi = 0;
  for (int i = 0; i < l->ndim; i++) {
    if (alias && below(rng, 8) == 0)
      l->strides[i] = 0;
    if (below(rng, 3) == 0)
      l->strides[i] = -l->strides[i];
    ptrdiff_t span = l->strides[i] * (ptrdiff_t)(l->shape[i] ? l->shape[i] - 1 : 0);
    if (span < 0)
      lo += span;
    else
      hi += span;
  }
  l->offset = -lo + (ptrdiff_t)below(rng, 6);
  return (size_t)(l->offset + hi + 1) + below(rng, 6);
}

static size_t random_axis(uint64_t *rng, int ndim) {
  static const size_t most[TWIN_MAX_DIMS + 1] = {1, 70, 40, 12, 7, 4, 3, 3, 2};
  return 1 + below(rng, most[ndim]);
}

/* ---- the differential test ---- */

/* Every (src, dst) dtype pair once, then random cases. */
#define PAIR_CASES (TWIN_DTYPE_COUNT * TWIN_DTYPE_COUNT)
#define RANDOM_CASES 400

typedef struct diff_case {
  twin_dtype st, dt;
  layout s, d;
  size_t sbuf, dbuf; /* buffer sizes in elements */
} diff_case;

/* A random case; `pair` >= 0 forces the dtypes (src pair / 10, dst pair % 10) and at least
 * one element. */
static void random_case(uint64_t *rng, bool fp64, int pair, diff_case *c) {
  int dtypes = fp64 ? TWIN_DTYPE_COUNT : TWIN_DTYPE_COUNT - 1;
  c->st = (twin_dtype)below(rng, (size_t)dtypes);
  c->dt = below(rng, 3) == 0 ? c->st : (twin_dtype)below(rng, (size_t)dtypes);
  if (pair >= 0) {
    c->st = (twin_dtype)(pair / TWIN_DTYPE_COUNT);
    c->dt = (twin_dtype)(pair % TWIN_DTYPE_COUNT);
  }
  c->d.ndim = (int)below(rng, TWIN_MAX_DIMS + 1);
  for (int i = 0; i < c->d.ndim; i++)
    c->d.shape[i] = below(rng, 40) == 0 && pair < 0 ? 0 : random_axis(rng, c->d.ndim);
  /* The source: the same shape, or one that broadcasts to it. */
  c->s.ndim = c->d.ndim;
  memcpy(c->s.shape, c->d.shape, sizeof c->s.shape);
  if (below(rng, 4) == 0) {
    int drop = (int)below(rng, (size_t)c->d.ndim + 1);
    c->s.ndim = c->d.ndim - drop;
    for (int j = 0; j < c->s.ndim; j++)
      c->s.shape[j] = below(rng, 3) == 0 ? 1 : c->d.shape[j + drop];
  } else if (c->d.ndim < TWIN_MAX_DIMS && below(rng, 12) == 0) {
    c->s.ndim = c->d.ndim + 1; /* a leading length-1 axis is ignored */
    c->s.shape[0] = 1;
    memcpy(c->s.shape + 1, c->d.shape, sizeof(size_t) * (size_t)c->d.ndim);
  }
  c->sbuf = random_layout(rng, &c->s, true);
  c->dbuf = random_layout(rng, &c->d, false);
}

/* Runs case c in ctx from the given initial buffers; returns dst's whole buffer in out. */
static void run_case(twin_context *ctx, const diff_case *c, const void *sdata, const void *ddata,
                     void *out) {
  twin_array *sb = from_bytes(ctx, c->st, c->sbuf, sdata);
  twin_array *db = from_bytes(ctx, c->dt, c->dbuf, ddata);
  twin_array *sv = view_of(sb, c->s.ndim, c->s.shape, c->s.strides, c->s.offset);
  twin_array *dv = view_of(db, c->d.ndim, c->d.shape, c->d.strides, c->d.offset);
  assert_ok(twin_copy(dv, sv));
  assert_ok(twin_array_read(db, out, c->dbuf * twin_dtype_size(c->dt)));
  twin_array_unref(sv);
  twin_array_unref(dv);
  twin_array_unref(sb);
  twin_array_unref(db);
}

static void print_case(int n, const diff_case *c) {
  print_error("case %d: %s -> %s, dst ndim %d, src ndim %d\n", n, twin_dtype_name(c->st),
              twin_dtype_name(c->dt), c->d.ndim, c->s.ndim);
  for (int i = 0; i < c->d.ndim; i++)
    print_error("  dst axis %d: %zu x %td\n", i, c->d.shape[i], c->d.strides[i]);
  for (int i = 0; i < c->s.ndim; i++)
    print_error("  src axis %d: %zu x %td\n", i, c->s.shape[i], c->s.strides[i]);
  print_error("  offsets dst %td src %td\n", c->d.offset, c->s.offset);
}

static void test_copy_differential_against_host(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *host;
  assert_ok(twin_context_new("host", &host));
  uint64_t rng = 20261125;
  bool fp64 = device_has_fp64(f);
  for (int n = 0; n < PAIR_CASES + RANDOM_CASES; n++) {
    diff_case c;
    int pair = n < PAIR_CASES ? n : -1;
    bool f64_pair = pair / TWIN_DTYPE_COUNT == TWIN_F64 || pair % TWIN_DTYPE_COUNT == TWIN_F64;
    if (!fp64 && pair >= 0 && f64_pair)
      continue;
    random_case(&rng, fp64, pair, &c);
    size_t sbytes = c.sbuf * twin_dtype_size(c.st), dbytes = c.dbuf * twin_dtype_size(c.dt);
    char *sdata = malloc(sbytes), *ddata = malloc(dbytes), *expect = malloc(dbytes);
    char *got = malloc(dbytes), *oracle = malloc(dbytes);
    random_elements(&rng, c.st, c.sbuf, sdata);
    random_elements(&rng, c.dt, c.dbuf, ddata);
    memcpy(expect, ddata, dbytes);
    reference_copy(expect, c.dt, &c.d, sdata, c.st, &c.s);
    run_case(f->ctx, &c, sdata, ddata, got);
    run_case(host, &c, sdata, ddata, oracle);
    bool same = memcmp(got, oracle, dbytes) == 0, right = memcmp(oracle, expect, dbytes) == 0;
    if (!same || !right) {
      print_case(n, &c);
      print_error("  %s\n", !same ? "the backend differs from the host backend"
                                  : "the host backend differs from the reference");
    }
    free(sdata);
    free(ddata);
    free(expect);
    free(got);
    free(oracle);
    assert_true(same);
    assert_true(right);
  }
  twin_context_unref(host);
}

/* ---- hand-picked copies ---- */

static void test_copy_contiguous_and_broadcast(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 24, 0), *b, *row, *col;
  size_t shape[] = {2, 3, 4};
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 3, shape, &b));
  twin_array *a3 = view_of(a, 3, shape, (ptrdiff_t[]){12, 4, 1}, 0);
  assert_ok(twin_copy(b, a3));
  int32_t got[24];
  read_i32(b, got);
  for (int i = 0; i < 24; i++)
    assert_int_equal(got[i], i);
  /* A row (4,) and a column (3, 1) broadcast over (2, 3, 4). */
  row = view_of(a, 1, (size_t[]){4}, (ptrdiff_t[]){1}, 4);
  assert_ok(twin_copy(b, row));
  read_i32(b, got);
  for (int i = 0; i < 24; i++)
    assert_int_equal(got[i], 4 + i % 4);
  col = view_of(a, 2, (size_t[]){3, 1}, (ptrdiff_t[]){5, 1}, 1);
  assert_ok(twin_copy(b, col));
  read_i32(b, got);
  for (int i = 0; i < 24; i++)
    assert_int_equal(got[i], 1 + 5 * ((i / 4) % 3));
  twin_array_unref(a3);
  twin_array_unref(row);
  twin_array_unref(col);
  twin_array_unref(a);
  twin_array_unref(b);
}

static void test_copy_zero_length_axes(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {3, 0, 2};
  twin_array *a, *b, *c, *one = i32_range(f->ctx, 1, 5);
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 3, shape, &a));
  assert_ok(twin_array_new(f->ctx, TWIN_I16, 3, shape, &b));
  assert_ok(twin_copy(b, a));
  assert_ok(twin_copy(b, one)); /* (1,) broadcasts to (3, 0, 2) */
  int16_t v = 9;
  assert_ok(twin_fill(b, &v));
  assert_ok(twin_array_copy(a, &c));
  assert_int_equal(twin_array_size(c), 0);
  assert_int_equal(twin_array_shape(c)[0], 3);
  /* A zero-length axis does not broadcast to 1, nor 2 to 0. */
  twin_array *empty;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, (size_t[]){0}, &empty));
  assert_status(twin_copy(one, empty), TWIN_ERR_SHAPE_MISMATCH);
  twin_array *two = i32_range(f->ctx, 2, 0);
  assert_status(twin_copy(empty, two), TWIN_ERR_SHAPE_MISMATCH);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_array_unref(one);
  twin_array_unref(two);
  twin_array_unref(empty);
}

static void test_copy_scalars_and_length_one_axes(void **state) {
  twin_fixture *f = fixture(state);
  float pi = 3.25f;
  twin_array *s, *t, *m;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 0, NULL, &pi, &s));
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 0, NULL, &t));
  assert_ok(twin_copy(t, s));
  int32_t x;
  assert_ok(twin_array_read(t, &x, sizeof x));
  assert_int_equal(x, 3);
  /* A 0-d source broadcasts to any shape. */
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 2, (size_t[]){2, 3}, &m));
  assert_ok(twin_copy(m, t));
  int32_t got[6];
  read_i32(m, got);
  for (int i = 0; i < 6; i++)
    assert_int_equal(got[i], 3);
  /* Length-1 axes may carry any stride; a leading one of the source is ignored. */
  twin_array *base = i32_range(f->ctx, 12, 0);
  twin_array *odd = view_of(base, 4, (size_t[]){1, 2, 1, 3}, (ptrdiff_t[]){1000, 6, -77, 2}, 1);
  twin_array *d;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 3, (size_t[]){2, 1, 3}, &d));
  assert_ok(twin_copy(d, odd));
  read_i32(d, got);
  for (int i = 0; i < 6; i++)
    assert_int_equal(got[i], 1 + 6 * (i / 3) + 2 * (i % 3));
  twin_array_unref(s);
  twin_array_unref(t);
  twin_array_unref(m);
  twin_array_unref(base);
  twin_array_unref(odd);
  twin_array_unref(d);
}

static void test_copy_negative_strides(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 20, 0), *d;
  twin_array *rev = view_of(a, 2, (size_t[]){4, 5}, (ptrdiff_t[]){-5, -1}, 19);
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 2, (size_t[]){4, 5}, &d));
  assert_ok(twin_copy(d, rev));
  int32_t got[20];
  read_i32(d, got);
  for (int i = 0; i < 20; i++)
    assert_int_equal(got[i], 19 - i);
  /* Into a reversed destination: the same as reading reversed. */
  twin_array *b = i32_range(f->ctx, 20, 100);
  twin_array *drev = view_of(b, 1, (size_t[]){20}, (ptrdiff_t[]){-1}, 19);
  twin_array *flat = view_of(a, 1, (size_t[]){20}, (ptrdiff_t[]){1}, 0);
  assert_ok(twin_copy(drev, flat));
  read_i32(b, got);
  for (int i = 0; i < 20; i++)
    assert_int_equal(got[i], 19 - i);
  twin_array_unref(rev);
  twin_array_unref(drev);
  twin_array_unref(flat);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(d);
}

static void test_copy_eight_dimensions(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {2, 1, 3, 2, 1, 2, 3, 2}, n = 144;
  twin_array *a = i32_range(f->ctx, n, 0), *d;
  /* The axes of a C-contiguous array of the reversed shape, reversed: a full transpose. */
  size_t src_shape[8];
  ptrdiff_t c_strides[8], strides[8], s = 1;
  for (int i = 0; i < 8; i++)
    src_shape[i] = shape[7 - i];
  for (int i = 7; i >= 0; i--) {
    c_strides[i] = s;
    s *= (ptrdiff_t)src_shape[i];
  }
  for (int i = 0; i < 8; i++)
    strides[i] = c_strides[7 - i];
  twin_array *t = view_of(a, 8, shape, strides, 0);
  assert_ok(twin_array_new(f->ctx, TWIN_I64, 8, shape, &d));
  assert_ok(twin_copy(d, t));
  int64_t got[144];
  assert_ok(twin_array_read(d, got, sizeof got));
  for (size_t lin = 0; lin < n; lin++) {
    size_t rem = lin;
    ptrdiff_t off = 0;
    for (int i = 7; i >= 0; i--) {
      off += (ptrdiff_t)(rem % shape[i]) * strides[i];
      rem /= shape[i];
    }
    assert_int_equal(got[lin], off);
  }
  twin_array_unref(t);
  twin_array_unref(a);
  twin_array_unref(d);
}

static void test_copy_misaligned_offsets(void **state) {
  twin_fixture *f = fixture(state);
  uint8_t bytes[200];
  for (int i = 0; i < 200; i++)
    bytes[i] = (uint8_t)i;
  twin_array *a = from_bytes(f->ctx, TWIN_U8, 200, bytes);
  twin_array *b = from_bytes(f->ctx, TWIN_U8, 200, bytes);
  twin_array *sv = view_of(a, 1, (size_t[]){131}, (ptrdiff_t[]){1}, 3);
  twin_array *dv = view_of(b, 1, (size_t[]){131}, (ptrdiff_t[]){1}, 61);
  assert_ok(twin_copy(dv, sv));
  uint8_t got[200];
  assert_ok(twin_array_read(b, got, sizeof got));
  for (int i = 0; i < 200; i++)
    assert_int_equal(got[i], i >= 61 && i < 192 ? i - 58 : i);
  /* Odd element offsets of 8-byte elements, converting. */
  double d[40];
  for (int i = 0; i < 40; i++)
    d[i] = i + 0.75;
  if (device_has_fp64(f)) {
    float fl[40] = {0};
    twin_array *da = from_bytes(f->ctx, TWIN_F64, 40, d);
    twin_array *fa = from_bytes(f->ctx, TWIN_F32, 40, fl);
    twin_array *dsv = view_of(da, 2, (size_t[]){3, 5}, (ptrdiff_t[]){7, 1}, 1);
    twin_array *fdv = view_of(fa, 2, (size_t[]){3, 5}, (ptrdiff_t[]){11, 2}, 3);
    assert_ok(twin_copy(fdv, dsv));
    assert_ok(twin_array_read(fa, fl, sizeof fl));
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++)
        assert_true(fl[3 + 11 * i + 2 * j] == (float)(1 + 7 * i + j) + 0.75f);
    assert_true(fl[0] == 0.0f && fl[4] == 0.0f);
    twin_array_unref(dsv);
    twin_array_unref(fdv);
    twin_array_unref(da);
    twin_array_unref(fa);
  }
  twin_array_unref(sv);
  twin_array_unref(dv);
  twin_array_unref(a);
  twin_array_unref(b);
}

static void test_copy_transpose_blocks(void **state) {
  twin_fixture *f = fixture(state);
  /* Sizes that leave partial 8x8 blocks on both edges, and a strided transpose. */
  const size_t sizes[][2] = {{37, 21}, {64, 64}, {9, 130}, {1, 17}};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t r = sizes[k][0], c = sizes[k][1];
    twin_array *a = i32_range(f->ctx, 2 * r * c, 0), *d;
    /* a viewed as (c, r) with every other element of (r, 2c) rows, transposed. */
    twin_array *t = view_of(a, 2, (size_t[]){c, r}, (ptrdiff_t[]){2, (ptrdiff_t)(2 * c)}, 0);
    assert_ok(twin_array_new(f->ctx, TWIN_I32, 2, (size_t[]){c, r}, &d));
    assert_ok(twin_copy(d, t));
    int32_t *got = malloc(r * c * sizeof *got);
    read_i32(d, got);
    for (size_t i = 0; i < c; i++)
      for (size_t j = 0; j < r; j++)
        assert_int_equal(got[i * r + j], (int32_t)(2 * i + 2 * c * j));
    free(got);
    twin_array_unref(t);
    twin_array_unref(a);
    twin_array_unref(d);
  }
}

/* Shifted by one element within one buffer: the result of copying through a temporary. */
static void test_copy_overlapping_views(void **state) {
  twin_fixture *f = fixture(state);
  int32_t got[10];
  for (int dir = 0; dir < 2; dir++) {
    twin_array *a = i32_range(f->ctx, 10, 0);
    twin_array *lo = view_of(a, 1, (size_t[]){9}, (ptrdiff_t[]){1}, 0);
    twin_array *hi = view_of(a, 1, (size_t[]){9}, (ptrdiff_t[]){1}, 1);
    assert_ok(dir == 0 ? twin_copy(hi, lo) : twin_copy(lo, hi));
    read_i32(a, got);
    for (int i = 0; i < 10; i++)
      assert_int_equal(got[i], dir == 0 ? (i ? i - 1 : 0) : (i < 9 ? i + 1 : 9));
    twin_array_unref(lo);
    twin_array_unref(hi);
    twin_array_unref(a);
  }
  /* A square matrix copied onto its own transpose: a transpose in place. */
  twin_array *m = i32_range(f->ctx, 16, 0);
  twin_array *rows = view_of(m, 2, (size_t[]){4, 4}, (ptrdiff_t[]){4, 1}, 0);
  twin_array *cols = view_of(m, 2, (size_t[]){4, 4}, (ptrdiff_t[]){1, 4}, 0);
  assert_ok(twin_copy(rows, cols));
  int32_t mt[16];
  read_i32(m, mt);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      assert_int_equal(mt[4 * i + j], 4 * j + i);
  twin_array_unref(rows);
  twin_array_unref(cols);
  twin_array_unref(m);
}

static void test_copy_onto_itself(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 12, 3);
  twin_array *v1 = view_of(a, 2, (size_t[]){3, 2}, (ptrdiff_t[]){4, -1}, 1);
  twin_array *v2 = view_of(a, 2, (size_t[]){3, 2}, (ptrdiff_t[]){4, -1}, 1);
  assert_ok(twin_copy(a, a));
  assert_ok(twin_copy(v1, v1));
  assert_ok(twin_copy(v1, v2));
  int32_t got[12];
  read_i32(a, got);
  for (int i = 0; i < 12; i++)
    assert_int_equal(got[i], 3 + i);
  twin_array_unref(v1);
  twin_array_unref(v2);
  twin_array_unref(a);
}

/* Views of one buffer that do not overlap copy directly, on either side. */
static void test_copy_between_views_of_one_buffer(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 20, 0);
  twin_array *even = view_of(a, 1, (size_t[]){10}, (ptrdiff_t[]){2}, 0);
  twin_array *front = view_of(a, 1, (size_t[]){5}, (ptrdiff_t[]){1}, 0);
  assert_ok(twin_copy(even, even)); /* the same object twice: nothing to do */
  twin_array *tail = view_of(a, 1, (size_t[]){5}, (ptrdiff_t[]){-1}, 19);
  assert_ok(twin_copy(front, tail));
  int32_t got[20];
  read_i32(a, got);
  for (int i = 0; i < 20; i++)
    assert_int_equal(got[i], i < 5 ? 19 - i : i);
  twin_array_unref(even);
  twin_array_unref(front);
  twin_array_unref(tail);
  twin_array_unref(a);
}

/* ---- fills ---- */

static void test_fill_strided_view_leaves_the_gaps(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 100, 0);
  /* Rows 1..8, every other column from the right end: a 2-D view with a negative stride. */
  twin_array *v = view_of(a, 2, (size_t[]){8, 5}, (ptrdiff_t[]){10, -2}, 19);
  int32_t seven = 7, got[100];
  assert_ok(twin_fill(v, &seven));
  read_i32(a, got);
  for (int i = 0; i < 100; i++) {
    int r = i / 10, c = i % 10;
    bool in = r >= 1 && r <= 8 && c % 2 == 1;
    assert_int_equal(got[i], in ? 7 : i);
  }
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_fill_every_dtype(void **state) {
  twin_fixture *f = fixture(state);
  for (int t = 0; t < TWIN_DTYPE_COUNT; t++) {
    twin_dtype dt = (twin_dtype)t;
    if (dt == TWIN_F64 && !device_has_fp64(f))
      continue;
    size_t size = twin_dtype_size(dt), n = 3 * 7 * 5 + 37;
    unsigned char value[8];
    for (size_t i = 0; i < size; i++)
      value[i] = (unsigned char)(0x81 + 13 * i); /* for floats: a pattern, possibly a NaN */
    unsigned char *expect = calloc(n, size), *got = malloc(n * size);
    twin_array *a;
    assert_ok(twin_array_zeros(f->ctx, dt, 1, &n, &a));
    /* The first 37 elements, contiguous, then a strided 3-D block after them. */
    twin_array *head = view_of(a, 1, (size_t[]){37}, (ptrdiff_t[]){1}, 0);
    twin_array *block = view_of(a, 3, (size_t[]){3, 2, 5}, (ptrdiff_t[]){35, 7 * 2, 1}, 37);
    assert_ok(twin_fill(head, value));
    assert_ok(twin_fill(block, value));
    for (size_t i = 0; i < 37; i++)
      memcpy(expect + i * size, value, size);
    for (size_t i = 0; i < 3; i++)
      for (size_t j = 0; j < 2; j++)
        for (size_t k = 0; k < 5; k++)
          memcpy(expect + (37 + 35 * i + 14 * j + k) * size, value, size);
    assert_ok(twin_array_read(a, got, n * size));
    assert_memory_equal(got, expect, n * size);
    free(expect);
    free(got);
    twin_array_unref(head);
    twin_array_unref(block);
    twin_array_unref(a);
  }
}

/* ---- conversions ---- */

static void test_conversion_edge_values(void **state) {
  twin_fixture *f = fixture(state);
  static const float fv[] = {
      NAN,           -NAN,           INFINITY,      -INFINITY,      -1.5f,
      -0.5f,         -0.0f,          0.0f,          0.5f,           1.5f,
      127.5f,        128.0f,         255.5f,        256.0f,         -128.5f,
      -129.0f,       2147483520.0f,  2147483648.0f, -2147483648.0f, 4294967296.0f,
      9.2233720e18f, -9.2233720e18f, 1.8446744e19f, 3e9f,           1e30f,
      -1e30f,        1.4e-45f,       65535.9f,      -32768.5f};
  enum { N = sizeof fv / sizeof fv[0] };
  twin_array *src = from_bytes(f->ctx, TWIN_F32, N, fv);
  for (int t = 0; t < TWIN_DTYPE_COUNT; t++) {
    twin_dtype dt = (twin_dtype)t;
    if (dt == TWIN_F64 && !device_has_fp64(f))
      continue;
    size_t size = twin_dtype_size(dt);
    unsigned char got[N * 8], expect[N * 8];
    twin_array *d;
    assert_ok(twin_array_new(f->ctx, dt, 1, (size_t[]){N}, &d));
    assert_ok(twin_copy(d, src));
    assert_ok(twin_array_read(d, got, N * size));
    for (int i = 0; i < N; i++)
      convert_one(expect + (size_t)i * size, dt, &fv[i], TWIN_F32);
    assert_memory_equal(got, expect, N * size);
    twin_array_unref(d);
  }
  twin_array_unref(src);

  /* Spot checks of the documented examples. */
  float minus = -1.5f, big = 1e10f, nan_ = NAN;
  int32_t three_hundred = 300, minus_one = -1;
  twin_array *a = from_bytes(f->ctx, TWIN_F32, 1, &minus), *u8, *i32, *u16;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, (size_t[]){1}, &u8));
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, (size_t[]){1}, &i32));
  assert_ok(twin_array_new(f->ctx, TWIN_U16, 1, (size_t[]){1}, &u16));
  uint8_t b;
  int32_t i;
  uint16_t h;
  assert_ok(twin_copy(u8, a));
  assert_ok(twin_array_read(u8, &b, 1));
  assert_int_equal(b, 0);
  twin_array_unref(a);
  a = from_bytes(f->ctx, TWIN_F32, 1, &big);
  assert_ok(twin_copy(i32, a));
  assert_ok(twin_array_read(i32, &i, 4));
  assert_int_equal(i, INT32_MAX);
  twin_array_unref(a);
  a = from_bytes(f->ctx, TWIN_F32, 1, &nan_);
  assert_ok(twin_copy(i32, a));
  assert_ok(twin_array_read(i32, &i, 4));
  assert_int_equal(i, 0);
  twin_array_unref(a);
  a = from_bytes(f->ctx, TWIN_I32, 1, &three_hundred);
  assert_ok(twin_copy(u8, a));
  assert_ok(twin_array_read(u8, &b, 1));
  assert_int_equal(b, 44);
  twin_array_unref(a);
  a = from_bytes(f->ctx, TWIN_I32, 1, &minus_one);
  assert_ok(twin_copy(u16, a));
  assert_ok(twin_array_read(u16, &h, 2));
  assert_int_equal(h, 65535);
  twin_array_unref(a);
  twin_array_unref(u8);
  twin_array_unref(i32);
  twin_array_unref(u16);
}

/* Integers to floats round once, to nearest even, also from 64 bits. */
static void test_conversion_rounding_to_float(void **state) {
  twin_fixture *f = fixture(state);
  const int64_t iv[] = {16777217,
                        -16777219,
                        INT64_MAX,
                        INT64_MIN,
                        (INT64_C(1) << 53) + 1,
                        (INT64_C(1) << 62) + (INT64_C(1) << 38) + 1};
  const uint64_t uv[] = {UINT64_MAX, (UINT64_C(1) << 63) + (UINT64_C(1) << 39),
                         (UINT64_C(1) << 63) + (UINT64_C(1) << 39) + 1, 16777217};
  twin_array *ia = from_bytes(f->ctx, TWIN_I64, 6, iv), *ua = from_bytes(f->ctx, TWIN_U64, 4, uv);
  twin_array *fa;
  float fl[6];
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 1, (size_t[]){6}, &fa));
  assert_ok(twin_copy(fa, ia));
  assert_ok(twin_array_read(fa, fl, sizeof fl));
  for (int k = 0; k < 6; k++)
    assert_true(fl[k] == (float)iv[k]);
  assert_true(fl[0] == 16777216.0f && fl[1] == -16777220.0f);
  twin_array *fu = view_of(fa, 1, (size_t[]){4}, (ptrdiff_t[]){1}, 0);
  assert_ok(twin_copy(fu, ua));
  assert_ok(twin_array_read(fu, fl, 4 * sizeof(float)));
  assert_true(fl[0] == 0x1p64f);
  assert_true(fl[1] == 0x1p63f); /* a tie: to even */
  assert_true(fl[2] == 0x1p63f + 0x1p40f);
  if (device_has_fp64(f)) {
    double dv[] = {1e300, -1e300, 1.0 + 0x1p-24, 1.0 + 3 * 0x1p-24, 0x1p-149 * 0.5};
    twin_array *da = from_bytes(f->ctx, TWIN_F64, 5, dv);
    twin_array *f5 = view_of(fa, 1, (size_t[]){5}, (ptrdiff_t[]){1}, 0);
    assert_ok(twin_copy(f5, da));
    assert_ok(twin_array_read(f5, fl, 5 * sizeof(float)));
    assert_true(isinf(fl[0]) && fl[0] > 0 && isinf(fl[1]) && fl[1] < 0);
    assert_true(fl[2] == 1.0f);
    assert_true(fl[3] == 1.0f + 0x1p-22f);
    assert_true(fl[4] == 0.0f); /* half the smallest subnormal: a tie, to even (zero) */
    twin_array_unref(da);
    twin_array_unref(f5);
  }
  twin_array_unref(ia);
  twin_array_unref(ua);
  twin_array_unref(fa);
  twin_array_unref(fu);
}

/* ---- contiguous and array_copy ---- */

static void test_contiguous_returns_itself_or_a_compact_copy(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 12, 0), *c, *t, *ct;
  assert_ok(twin_array_contiguous(a, &c));
  assert_ptr_equal(c, a);
  twin_array_unref(c);
  t = view_of(a, 2, (size_t[]){4, 3}, (ptrdiff_t[]){1, 4}, 0); /* a (3, 4) transposed */
  assert_false(twin_array_is_contiguous(t));
  assert_ok(twin_array_contiguous(t, &ct));
  assert_ptr_not_equal(ct, t);
  assert_true(twin_array_is_contiguous(ct));
  assert_int_equal(twin_array_ndim(ct), 2);
  assert_int_equal(twin_array_shape(ct)[0], 4);
  int32_t got[12];
  read_i32(ct, got);
  for (int i = 0; i < 12; i++)
    assert_int_equal(got[i], (i % 3) * 4 + i / 3);
  /* A broadcast view: read-only and not contiguous, its compact copy is writable. */
  twin_array *bc, *cb;
  assert_ok(twin_array_broadcast_to(a, 2, (size_t[]){2, 12}, &bc));
  assert_ok(twin_array_contiguous(bc, &cb));
  int32_t zero = 0;
  assert_ok(twin_fill(cb, &zero));
  assert_status(twin_array_contiguous(NULL, &c), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_contiguous(a, NULL), TWIN_ERR_INVALID_ARGUMENT);
  twin_array_unref(bc);
  twin_array_unref(cb);
  twin_array_unref(t);
  twin_array_unref(ct);
  twin_array_unref(a);
}

static void test_array_copy_lets_the_big_base_go(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {256, 256};
  float *data = malloc(256 * 256 * sizeof *data);
  for (int i = 0; i < 256 * 256; i++)
    data[i] = (float)i;
  twin_array *big, *corner, *copy;
  twin_stats before = fixture_stats(f);
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 2, shape, data, &big));
  free(data);
  corner = view_of(big, 2, (size_t[]){4, 4}, (ptrdiff_t[]){256, 1}, 256 * 10 + 20);
  assert_ok(twin_array_copy(corner, &copy));
  twin_array_unref(corner);
  twin_array_unref(big);
  twin_stats st = fixture_stats(f);
  size_t host = st.host_bytes - before.host_bytes, device = st.device_bytes - before.device_bytes;
  assert_int_equal(st.buffers - before.buffers, 1);
  assert_int_equal(st.arrays - before.arrays, 1);
  assert_true(host <= 64 && device <= 64 && host + device >= 64);
  float got[16];
  assert_ok(twin_array_read(copy, got, sizeof got));
  for (int i = 0; i < 16; i++)
    assert_true(got[i] == (float)(256 * (10 + i / 4) + 20 + i % 4));
  twin_array_unref(copy);
  assert_status(twin_array_copy(NULL, &copy), TWIN_ERR_INVALID_ARGUMENT);
}

/* On a device with two copies, a copy moves the source to the device once and nothing else;
 * on a zero-copy device it moves nothing at all. */
static void test_copy_moves_only_the_source(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = i32_range(f->ctx, 1000, 0), *b;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, (size_t[]){1000}, &b));
  twin_stats before = fixture_stats(f);
  assert_ok(twin_copy(b, a));
  assert_ok(twin_copy(b, a));
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_device - before.bytes_to_device,
                   f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(after.bytes_to_host - before.bytes_to_host, 0);
  twin_array_unref(a);
  twin_array_unref(b);
}

/* ---- bad inputs ---- */

static void test_copy_bad_inputs(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a, *b, *c = i32_range(f->ctx, 5, 0);
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, (size_t[]){3, 4}, &a));
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, (size_t[]){4, 3}, &b));
  twin_stats live = fixture_stats(f);
  assert_status(twin_copy(a, c), TWIN_ERR_SHAPE_MISMATCH);
  assert_non_null(strstr(twin_last_error(), "(3, 4)"));
  assert_non_null(strstr(twin_last_error(), "(5,)"));
  assert_status(twin_copy(a, b), TWIN_ERR_SHAPE_MISMATCH);
  twin_array *three;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 3, (size_t[]){2, 3, 4}, &three));
  assert_status(twin_copy(a, three), TWIN_ERR_SHAPE_MISMATCH); /* a leading 2 cannot go */
  assert_status(twin_copy(NULL, a), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "dst"));
  assert_status(twin_copy(a, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "src"));
  int32_t v = 1;
  assert_status(twin_fill(NULL, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_fill(a, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "value"));
  /* A broadcast view is read-only. */
  twin_array *ro;
  assert_ok(twin_array_broadcast_to(c, 2, (size_t[]){2, 5}, &ro));
  assert_status(twin_copy(ro, ro), TWIN_ERR_READ_ONLY);
  assert_status(twin_fill(ro, &v), TWIN_ERR_READ_ONLY);
  /* Arrays of two contexts. */
  twin_context *other;
  assert_ok(fixture_open(f->spec, &other));
  twin_array *x;
  assert_ok(twin_array_zeros(other, TWIN_I32, 2, (size_t[]){3, 4}, &x));
  assert_status(twin_copy(a, x), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "different contexts"));
  twin_array_unref(x);
  twin_context_unref(other);
  twin_array_unref(ro);
  twin_array_unref(three);
  /* Nothing was made or changed by the failures. */
  twin_stats now = fixture_stats(f);
  assert_int_equal(now.arrays, live.arrays);
  assert_int_equal(now.buffers, live.buffers);
  int32_t got[12];
  read_i32(a, got);
  for (int i = 0; i < 12; i++)
    assert_int_equal(got[i], 0);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
}

/* A copy into an array with a conflicting access open is refused, and changes nothing. */
static void test_copy_refuses_busy_arrays(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 8, 0), *b = i32_range(f->ctx, 8, 10);
  void *p;
  assert_ok(twin_host_begin(b, TWIN_WRITE, &p));
  assert_status(twin_copy(b, a), TWIN_ERR_BUSY);
  assert_status(twin_copy(a, b), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(b));
  int32_t got[8];
  read_i32(a, got);
  assert_int_equal(got[7], 7);
  read_i32(b, got);
  assert_int_equal(got[7], 17);
  twin_array_unref(a);
  twin_array_unref(b);
}

/* ---- failures inside the operation ---- */

/* Fails host allocation number 1, 2, ... of an overlapping copy (which makes a temporary)
 * until it succeeds: each failure is clean, leaves the data as it was and leaks nothing. */
static void test_copy_survives_allocation_failures(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 10, 0);
  twin_array *lo = view_of(a, 1, (size_t[]){9}, (ptrdiff_t[]){1}, 0);
  twin_array *hi = view_of(a, 1, (size_t[]){9}, (ptrdiff_t[]){1}, 1);
  twin_stats live = fixture_stats(f);
  twin_status s = TWIN_ERR_OUT_OF_HOST_MEMORY;
  int fail_at;
  for (fail_at = 1; fail_at < 50 && s != TWIN_OK; fail_at++) {
    host_inject(fail_at);
    s = twin_copy(hi, lo);
    host_restore();
    if (s != TWIN_OK) {
      assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
      twin_stats now = fixture_stats(f);
      assert_int_equal(now.arrays, live.arrays);
      assert_int_equal(now.buffers, live.buffers);
      int32_t got[10];
      read_i32(a, got);
      for (int i = 0; i < 10; i++)
        assert_int_equal(got[i], i);
    }
  }
  assert_int_equal(s, TWIN_OK);
  assert_true(fail_at > 2);
  int32_t got[10];
  read_i32(a, got);
  assert_int_equal(got[9], 8);
  twin_array_unref(lo);
  twin_array_unref(hi);
  twin_array_unref(a);
}

/* A device without fp64: the program builds without the f64 kernels, other conversions work,
 * and f64 arrays are refused before anything runs. */
static void test_device_without_fp64(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  ctx->device.fp64 = false; /* as a device without cl_khr_fp64 reports (before any build) */
  float fv[4] = {1.5f, -2.5f, 1e20f, NAN};
  twin_array *a = from_bytes(ctx, TWIN_F32, 4, fv), *i, *d;
  assert_ok(twin_array_new(ctx, TWIN_I32, 1, (size_t[]){4}, &i));
  assert_ok(twin_copy(i, a));
  int32_t got[4];
  read_i32(i, got);
  assert_int_equal(got[0], 1);
  assert_int_equal(got[1], -2);
  assert_int_equal(got[2], INT32_MAX);
  assert_int_equal(got[3], 0);
  assert_ok(twin_array_new(ctx, TWIN_F64, 1, (size_t[]){4}, &d));
  assert_status(twin_copy(d, a), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "fp64"));
  assert_status(twin_copy(a, d), TWIN_ERR_UNSUPPORTED);
  double one = 1.0;
  assert_status(twin_fill(d, &one), TWIN_ERR_UNSUPPORTED);
  twin_array_unref(a);
  twin_array_unref(i);
  twin_array_unref(d);
  twin_context_unref(ctx);
}

/* ---- threads ---- */

#define THREADS 4
#define THREAD_ROUNDS 25

typedef struct thread_work {
  twin_context *ctx;
  int id;
  int failures;
} thread_work;

static void *copy_worker(void *arg) {
  thread_work *w = arg;
  for (int r = 0; r < THREAD_ROUNDS; r++) {
    size_t n = 300 + (size_t)(w->id * 37 + r);
    int32_t *data = malloc(n * sizeof *data);
    float *back = malloc(n / 2 * sizeof *back);
    for (size_t i = 0; i < n; i++)
      data[i] = (int32_t)(i * 3) - w->id;
    twin_array *a = NULL, *odd = NULL, *b = NULL;
    size_t half = n / 2;
    ptrdiff_t two = 2;
    twin_status s = twin_array_from_host(w->ctx, TWIN_I32, 1, &n, data, &a);
    if (s == TWIN_OK)
      s = twin_array_as_strided(a, 1, &half, &two, 1, &odd);
    if (s == TWIN_OK)
      s = twin_array_new(w->ctx, TWIN_F32, 1, &half, &b);
    if (s == TWIN_OK)
      s = twin_copy(b, odd);
    if (s == TWIN_OK)
      s = twin_array_read(b, back, half * sizeof *back);
    for (size_t i = 0; s == TWIN_OK && i < half; i++)
      if (back[i] != (float)data[2 * i + 1])
        s = TWIN_ERR_BAD_STATE;
    w->failures += s != TWIN_OK;
    twin_array_unref(odd);
    twin_array_unref(a);
    twin_array_unref(b);
    free(data);
    free(back);
  }
  return NULL;
}

static void test_copies_from_many_threads(void **state) {
  twin_fixture *f = fixture(state);
  pthread_t threads[THREADS];
  thread_work work[THREADS];
  for (int t = 0; t < THREADS; t++) {
    work[t] = (thread_work){f->ctx, t, 0};
    assert_int_equal(pthread_create(&threads[t], NULL, copy_worker, &work[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    assert_int_equal(work[t].failures, 0);
  }
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_copy_differential_against_host),
    TWIN_TEST(test_copy_contiguous_and_broadcast),
    TWIN_TEST(test_copy_zero_length_axes),
    TWIN_TEST(test_copy_scalars_and_length_one_axes),
    TWIN_TEST(test_copy_negative_strides),
    TWIN_TEST(test_copy_eight_dimensions),
    TWIN_TEST(test_copy_misaligned_offsets),
    TWIN_TEST(test_copy_transpose_blocks),
    TWIN_TEST(test_copy_overlapping_views),
    TWIN_TEST(test_copy_onto_itself),
    TWIN_TEST(test_copy_between_views_of_one_buffer),
    TWIN_TEST(test_fill_strided_view_leaves_the_gaps),
    TWIN_TEST(test_fill_every_dtype),
    TWIN_TEST(test_conversion_edge_values),
    TWIN_TEST(test_conversion_rounding_to_float),
    TWIN_TEST(test_contiguous_returns_itself_or_a_compact_copy),
    TWIN_TEST(test_array_copy_lets_the_big_base_go),
    TWIN_TEST(test_copy_moves_only_the_source),
    TWIN_TEST(test_copy_bad_inputs),
    TWIN_TEST(test_copy_refuses_busy_arrays),
    TWIN_TEST(test_copy_survives_allocation_failures),
    TWIN_TEST(test_device_without_fp64),
    TWIN_TEST(test_copies_from_many_threads),
};

TWIN_TEST_MAIN(tests)

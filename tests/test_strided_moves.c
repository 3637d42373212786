/* Two copies, exact moves (issue 14): a view's access moves only the view's elements that the
 * other side holds newer. The rows on a 4096 x 4096 f32 array, sibling columns, and a
 * differential test: random host and device accesses on random overlapping views of one
 * buffer, every element checked against a shadow copy (what one shared memory would hold) and
 * the bytes moved bounded by the accessed views' element bytes (plus what twin reports it
 * moved beyond them to simplify its dirty map). Every backend group runs it; only two-copy
 * groups move bytes. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define N 4096
#define KiB 1024u

static uint64_t moved_bytes(const twin_fixture *f) {
  twin_stats s = fixture_stats(f);
  return s.bytes_to_host + s.bytes_to_device;
}

/* A 4096 x 4096 f32 array whose data is newer on the device (written there). */
static twin_array *device_newer(twin_fixture *f) {
  size_t shape[] = {N, N};
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 2, shape, &a));
  fixture_device_touch(f, a, TWIN_WRITE);
  return a;
}

static twin_array *slice2(twin_array *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1) {
  twin_slice s[] = {{r0, r1, 1}, {c0, c1, 1}};
  twin_array *v;
  assert_ok(twin_array_slice(a, s, &v));
  return v;
}

static void host_touch(twin_array *a, twin_access access) {
  void *p;
  assert_ok(twin_host_begin(a, access, &p));
  assert_ok(twin_host_end(a));
}

/* Bytes a host read of v moves. */
static uint64_t host_read_moves(twin_fixture *f, twin_array *v) {
  uint64_t before = moved_bytes(f);
  host_touch(v, TWIN_READ);
  return moved_bytes(f) - before;
}

static uint64_t on_two_copies(const twin_fixture *f, uint64_t n) {
  return f->layout == FIXTURE_TWO_COPIES ? n : 0;
}

static void test_column_of_device_newer_array_moves_its_16_kib(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = device_newer(f), *col;
  assert_ok(twin_array_index(a, 1, 100, &col));
  assert_int_equal(host_read_moves(f, col), on_two_copies(f, 16 * KiB));
  twin_array_unref(col);
  twin_array_unref(a);
}

static void test_block_of_device_newer_array_moves_its_16_kib(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = device_newer(f), *block = slice2(a, 1000, 1064, 2000, 2064);
  assert_int_equal(host_read_moves(f, block), on_two_copies(f, 16 * KiB));
  twin_array_unref(block);
  twin_array_unref(a);
}

static void test_host_column_write_then_device_read_moves_the_column(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = device_newer(f), *col;
  assert_ok(twin_array_index(a, 1, 100, &col));
  twin_stats before = fixture_stats(f);
  host_touch(col, TWIN_WRITE); /* write-only: nothing to fetch first */
  fixture_device_touch(f, a, TWIN_READ);
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_host - before.bytes_to_host, 0);
  assert_int_equal(after.bytes_to_device - before.bytes_to_device, on_two_copies(f, 16 * KiB));
  twin_array_unref(col);
  twin_array_unref(a);
}

static void test_sibling_columns_move_their_own_then_the_rest_moves_once(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = device_newer(f), *c100, *c101;
  assert_ok(twin_array_index(a, 1, 100, &c100));
  assert_ok(twin_array_index(a, 1, 101, &c101));
  assert_int_equal(host_read_moves(f, c100), on_two_copies(f, 16 * KiB));
  assert_int_equal(host_read_moves(f, c101), on_two_copies(f, 16 * KiB));
  assert_int_equal(host_read_moves(f, c100), 0);
  assert_int_equal(host_read_moves(f, a), on_two_copies(f, (uint64_t)N * N * 4 - 32 * KiB));
  assert_int_equal(host_read_moves(f, a), 0);
  twin_array_unref(c101);
  twin_array_unref(c100);
  twin_array_unref(a);
}

/* ---- Views no rectangle fits: packed on the device ---- */

#define E 16 /* a 16^4 f32 array (256 KiB); its [::2, ::2, ::2, ::2] view holds 16 KiB */
#define E4 (E * E * E * E)

static twin_array *every_other_4d(twin_array *a) {
  twin_slice s[4];
  for (int i = 0; i < 4; i++)
    s[i] = (twin_slice){0, E, 2};
  twin_array *v;
  assert_ok(twin_array_slice(a, s, &v));
  return v;
}

/* The buffer index of element i (C order) of the [::2, ::2, ::2, ::2] view. */
static size_t every_other_at(size_t i) {
  size_t h = E / 2, at = 0, scale = 1;
  for (int d = 0; d < 4; d++, i /= h, scale *= E)
    at += (i % h) * 2 * scale;
  return at;
}

static void test_4d_view_of_device_newer_array_moves_its_element_bytes(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {E, E, E, E};
  static float values[E4];
  for (size_t i = 0; i < E4; i++)
    values[i] = (float)i;
  twin_array *src, *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 4, shape, values, &src));
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 4, shape, &a));
  assert_ok(twin_copy(a, src)); /* on the device: a is newer there */
  twin_array *v = every_other_4d(a);
  float *p;
  uint64_t before = moved_bytes(f);
  assert_ok(twin_host_begin(v, TWIN_READ, (void **)&p));
  assert_int_equal(moved_bytes(f) - before, on_two_copies(f, 16 * KiB));
  for (size_t i = 0; i < E4 / 16; i++) {
    size_t at = every_other_at(i);
    if (p[at - v->offset] != (float)at)
      fail_msg("element %zu holds %g, expected %zu", at, (double)p[at - v->offset], at);
  }
  assert_ok(twin_host_end(v));
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p)); /* the rest is still moved when read */
  assert_memory_equal(p, values, sizeof values);
  assert_ok(twin_host_end(a));
  twin_array_unref(v);
  twin_array_unref(a);
  twin_array_unref(src);
}

static void test_host_write_of_4d_view_then_device_read_moves_its_element_bytes(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {E, E, E, E};
  static float values[E4], got[E4 / 16];
  for (size_t i = 0; i < E4; i++)
    values[i] = (float)i;
  twin_array *a, *copy;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 4, shape, values, &a));
  fixture_device_touch(f, a, TWIN_READ); /* both sides agree */
  twin_array *v = every_other_4d(a);
  float *p;
  twin_stats before = fixture_stats(f);
  assert_ok(twin_host_begin(v, TWIN_WRITE, (void **)&p));
  for (size_t i = 0; i < E4 / 16; i++)
    p[every_other_at(i) - v->offset] = -(float)i;
  assert_ok(twin_host_end(v));
  assert_ok(twin_array_copy(v, &copy)); /* on the device */
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_host - before.bytes_to_host, 0);
  assert_int_equal(after.bytes_to_device - before.bytes_to_device, on_two_copies(f, 16 * KiB));
  assert_ok(twin_array_read(copy, got, sizeof got));
  for (size_t i = 0; i < E4 / 16; i++)
    if (got[i] != -(float)i)
      fail_msg("element %zu of the view reads %g on the device, expected %g", i, (double)got[i],
               -(double)i);
  twin_array_unref(copy);
  twin_array_unref(v);
  twin_array_unref(a);
}

/* Host-newer elements inside the view and device-newer ones around them: the read keeps the
 * host's (a packed gather of every element of the view would overwrite them). */
static void test_4d_view_read_keeps_the_host_newer_elements_it_holds(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {E, E, E, E};
  static float values[E4];
  for (size_t i = 0; i < E4; i++)
    values[i] = (float)i;
  twin_array *a, *first, *rest;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 4, shape, values, &a));
  fixture_device_touch(f, a, TWIN_READ); /* both sides agree */
  twin_slice row[] = {{0, 1, 1}, {0, 1, 1}, {0, 1, 1}, TWIN_ALL};
  twin_slice later[] = {{1, E, 1}, TWIN_ALL, TWIN_ALL, TWIN_ALL};
  assert_ok(twin_array_slice(a, row, &first));
  assert_ok(twin_array_slice(a, later, &rest));
  float *p, seven = 7;
  assert_ok(twin_host_begin(first, TWIN_WRITE, (void **)&p)); /* newer on the host */
  for (size_t i = 0; i < E; i++)
    p[i] = -1;
  assert_ok(twin_host_end(first));
  assert_ok(twin_fill(rest, &seven)); /* newer on the device */
  twin_array *v = every_other_4d(a);
  assert_ok(twin_host_begin(v, TWIN_READ, (void **)&p));
  for (size_t i = 0; i < E4 / 16; i++) {
    size_t at = every_other_at(i);
    float want = at < E ? -1 : at < E * E * E ? (float)at : 7;
    if (p[at] != want)
      fail_msg("element %zu holds %g, expected %g", at, (double)p[at], (double)want);
  }
  assert_ok(twin_host_end(v));
  twin_array_unref(v);
  twin_array_unref(rest);
  twin_array_unref(first);
  twin_array_unref(a);
}

/* ---- The differential test ---- */

#define ELEMS_MAX 5760 /* 6 x 10 x 12 (3-D) and 6 x 8 x 10 x 12 (4-D) elements */

typedef struct world {
  twin_fixture *f;
  twin_array *a, *b; /* the buffer under test, and a second one copies read from */
  int ndim;
  size_t dims[4], elems;
  int32_t shadow[ELEMS_MAX], other[ELEMS_MAX];
  int32_t next; /* the next value written */
  unsigned seed;
} world;

static int pick(world *w, int n) {
  return rand_r(&w->seed) % n;
}

/* A random slice (any step, either sign) of each axis, sometimes transposed: the same view of
 * a and of b (same shape, same elements). */
static void random_views(world *w, twin_array **va, twin_array **vb) {
  const size_t *dims = w->dims;
  int nd = w->ndim;
  twin_slice s[4];
  for (int i = 0; i < nd; i++) {
    ptrdiff_t n = (ptrdiff_t)dims[i], lo = pick(w, (int)n), hi = lo + 1 + pick(w, (int)(n - lo));
    bool stepped = nd == 4 ? pick(w, 4) != 0 : pick(w, 4) == 0; /* 4-D: mostly, so packed */
    ptrdiff_t step = 1 + (stepped ? pick(w, 3) : 0);
    s[i] = pick(w, 6) == 0 ? (twin_slice){hi - 1, lo == 0 ? TWIN_NONE : lo - 1, -step}
                           : (twin_slice){lo, hi, step};
  }
  if (pick(w, 5) == 0) { /* sometimes one whole plane or row: fewer axes */
    int axis = pick(w, nd);
    s[axis].start = pick(w, (int)dims[axis]);
    s[axis].stop = s[axis].start + 1;
    s[axis].step = 1;
  }
  twin_array *x[2] = {w->a, w->b}, *out[2];
  int perm[4] = {0, 1, 2, 3};
  bool transpose = pick(w, 4) == 0;
  if (transpose) {
    int i = pick(w, nd), j = (i + 1 + pick(w, nd - 1)) % nd, t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int k = 0; k < 2; k++) {
    twin_array *v;
    assert_ok(twin_array_slice(x[k], s, &v));
    if (transpose) {
      assert_ok(twin_array_transpose(v, perm, &out[k]));
      twin_array_unref(v);
    } else {
      out[k] = v;
    }
  }
  *va = out[0];
  *vb = out[1];
}

/* Calls fn(w, element index of v's i-th element in the buffer, i) for each element of v in
 * C order. */
static void each(const twin_array *v, void (*fn)(world *, size_t, size_t, void *), world *w,
                 void *user) {
  int nd = twin_array_ndim(v);
  const size_t *shape = twin_array_shape(v);
  const ptrdiff_t *st = twin_array_strides(v);
  size_t idx[4] = {0, 0, 0, 0}, size = twin_array_size(v);
  for (size_t i = 0; i < size; i++) {
    ptrdiff_t at = (ptrdiff_t)v->offset;
    for (int d = 0; d < nd; d++)
      at += (ptrdiff_t)idx[d] * st[d];
    fn(w, (size_t)at, i, user);
    for (int d = nd - 1; d >= 0 && ++idx[d] == shape[d]; d--)
      idx[d] = 0;
  }
}

static void check_host(world *w, size_t at, size_t i, void *user) {
  (void)i;
  const int32_t *p = user;
  if (p[at] != w->shadow[at])
    fail_msg("element %zu holds %d, a shared memory would hold %d", at, p[at], w->shadow[at]);
}

static void write_host(world *w, size_t at, size_t i, void *user) {
  (void)i;
  int32_t *p = user;
  p[at] = w->shadow[at] = w->next++;
}

static void set_value(world *w, size_t at, size_t i, void *user) {
  (void)i;
  w->shadow[at] = *(const int32_t *)user;
}

static void copy_from_other(world *w, size_t at, size_t i, void *user) {
  (void)i;
  (void)user;
  w->shadow[at] = w->other[at]; /* a and b views of the same slices: same element index */
}

static void check_packed(world *w, size_t at, size_t i, void *user) {
  const int32_t *got = user;
  if (got[i] != w->shadow[at])
    fail_msg("element %zu read through the device holds %d, expected %d", at, got[i],
             w->shadow[at]);
}

/* What a view no few rectangles fit may move beyond its elements: its extent, as a write of it
 * does first (and a read that does not pack); 0 for other views. */
static uint64_t extent_slack(const twin_array *v) {
  twin__region r;
  twin__array_region(v, &r);
  return r.exact ? 0 : r.hi - r.lo;
}

/* One random access on view v (and vb, the same view of b); returns the element bytes of the
 * views it accessed, with their extent_slack. */
static uint64_t random_access(world *w, twin_array *v, twin_array *vb) {
  int32_t *p, value;
  size_t elems = twin_array_size(v) * sizeof(int32_t);
  uint64_t bytes = elems + extent_slack(v);
  twin_array *copy;
  int32_t got[ELEMS_MAX];
  switch (pick(w, 6)) {
  case 0: /* host read */
    assert_ok(twin_host_begin(v, TWIN_READ, (void **)&p));
    each(v, check_host, w, p - v->offset);
    assert_ok(twin_host_end(v));
    return bytes;
  case 1: /* host write of every element */
  case 2:
    assert_ok(twin_host_begin(v, pick(w, 2) ? TWIN_WRITE : TWIN_READ_WRITE, (void **)&p));
    each(v, write_host, w, p - v->offset);
    assert_ok(twin_host_end(v));
    return bytes;
  case 3: /* device fill */
    value = w->next++;
    assert_ok(twin_fill(v, &value));
    each(v, set_value, w, &value);
    return bytes;
  case 4: /* device copy from the other buffer's same view */
    assert_ok(twin_copy(v, vb));
    each(v, copy_from_other, w, NULL);
    return 2 * bytes;
  default: /* device read: copied on the device, the copy read back */
    assert_ok(twin_array_copy(v, &copy));
    assert_ok(twin_array_read(copy, got, elems));
    twin_array_unref(copy);
    each(v, check_packed, w, got);
    return 2 * bytes;
  }
}

/* Every element, after every step: read on the host, or copied on the device and that copy
 * read (either side at random, so that both kinds of newer data stay in the map). */
static void check_all(world *w, int step) {
  static int32_t got[ELEMS_MAX];
  const int32_t *p;
  twin_array *copy = NULL;
  if (pick(w, 2)) {
    assert_ok(twin_host_begin(w->a, TWIN_READ, (void **)&p));
  } else {
    assert_ok(twin_array_copy(w->a, &copy));
    assert_ok(twin_array_read(copy, got, w->elems * sizeof got[0]));
    p = got;
  }
  for (size_t i = 0; i < w->elems; i++)
    if (p[i] != w->shadow[i])
      fail_msg("step %d: element %zu holds %d, a shared memory would hold %d", step, i, p[i],
               w->shadow[i]);
  if (copy)
    twin_array_unref(copy);
  else
    assert_ok(twin_host_end(w->a));
}

/* The differential test on an array of ndim axes (3 or 4) of the given shape. */
static void differential(twin_fixture *f, int ndim, const size_t *shape) {
  static world w; /* 46 KiB of shadows: off the stack */
  memset(&w, 0, sizeof w);
  w.f = f;
  w.seed = 14;
  w.ndim = ndim;
  w.elems = 1;
  for (int i = 0; i < ndim; i++)
    w.elems *= w.dims[i] = shape[i];
  assert_true(w.elems <= ELEMS_MAX);
  for (size_t i = 0; i < w.elems; i++) {
    w.shadow[i] = (int32_t)i;
    w.other[i] = -(int32_t)i;
  }
  w.next = (int32_t)w.elems;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, ndim, shape, w.shadow, &w.a));
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, ndim, shape, w.other, &w.b));
  uint64_t accessed = 0, moved_total = 0;
  for (int step = 0; step < 1500; step++) {
    twin_array *v, *vb;
    random_views(&w, &v, &vb);
    uint64_t before = moved_bytes(f);
    size_t extra = twin__coherence_extra_bytes();
    uint64_t bytes = random_access(&w, v, vb);
    uint64_t moved = moved_bytes(f) - before;
    extra = twin__coherence_extra_bytes() - extra;
    if (moved > bytes + extra)
      fail_msg("step %d moved %llu bytes for views of %llu element bytes (%zu beyond them)", step,
               (unsigned long long)moved, (unsigned long long)bytes, extra);
    accessed += bytes;
    moved_total += moved;
    twin_array_unref(vb);
    twin_array_unref(v);
    if (ndim == 3 || pick(&w, 4) == 0) /* 4-D: newer data of several steps in the map */
      check_all(&w, step);
  }
  print_message("%s: %llu bytes moved for accesses of %llu element bytes\n", f->spec,
                (unsigned long long)moved_total, (unsigned long long)accessed);
  twin_array_unref(w.b);
  twin_array_unref(w.a);
}

static void test_random_accesses_on_random_views_match_a_shared_memory(void **state) {
  const size_t shape[] = {6, 10, 12};
  differential(fixture(state), 3, shape);
}

/* 4-D views (views with a step in four axes fit no few rectangles): read packed on the
 * device. */
static void test_random_accesses_on_random_4d_views_match_a_shared_memory(void **state) {
  const size_t shape[] = {6, 8, 10, 12};
  differential(fixture(state), 4, shape);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_column_of_device_newer_array_moves_its_16_kib),
    TWIN_TEST(test_block_of_device_newer_array_moves_its_16_kib),
    TWIN_TEST(test_host_column_write_then_device_read_moves_the_column),
    TWIN_TEST(test_sibling_columns_move_their_own_then_the_rest_moves_once),
    TWIN_TEST(test_4d_view_of_device_newer_array_moves_its_element_bytes),
    TWIN_TEST(test_host_write_of_4d_view_then_device_read_moves_its_element_bytes),
    TWIN_TEST(test_4d_view_read_keeps_the_host_newer_elements_it_holds),
    TWIN_TEST(test_random_accesses_on_random_views_match_a_shared_memory),
    TWIN_TEST(test_random_accesses_on_random_4d_views_match_a_shared_memory),
};

TWIN_TEST_MAIN(tests)

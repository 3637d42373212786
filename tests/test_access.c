/* The access protocol: host and device begin/end, what moves between the sides and how often,
 * the open rules (BUSY, BAD_STATE, waiting for other threads, wait-for cycles), accesses that
 * die with their array object, what messages name, argument errors, the host backend's lack
 * of a device, fp64, and the packed twin_array_read / twin_array_write helpers. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "host_faults.h"

/* A view of all of a, a second array object on the same buffer. */
static twin_array *alias(twin_array *a) {
  twin_array *v;
  assert_ok(twin_array_as_strided(a, twin_array_ndim(a), twin_array_shape(a), twin_array_strides(a),
                                  0, &v));
  return v;
}

/* Asserts that this thread's last message contains (or lacks) needle. */
static void expect_message(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static void expect_no_message(const char *needle) {
  if (strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nhas \"%s\"\n", twin_last_error(), needle);
  assert_null(strstr(twin_last_error(), needle));
}

/* "test_access.c:LINE " as messages name a site of this file (the space ends the number). */
static const char *site_of(int line, char *buf, size_t cap) {
  snprintf(buf, cap, "test_access.c:%d ", line);
  return buf;
}

#define EXPECT_SITE(line)                                                                          \
  do {                                                                                             \
    char site_[64];                                                                                \
    expect_message(site_of(line, site_, sizeof site_));                                            \
  } while (0)

#define EXPECT_NO_SITE(line)                                                                       \
  do {                                                                                             \
    char site_[64];                                                                                \
    expect_no_message(site_of(line, site_, sizeof site_));                                         \
  } while (0)

/* Transfer counters moved since `base`. */
static void expect_moved(const twin_fixture *f, const twin_stats *base, uint64_t to_device,
                         uint64_t n_to_device, uint64_t to_host, uint64_t n_to_host) {
  if (f->layout != FIXTURE_TWO_COPIES) /* one allocation: nothing ever moves */
    to_device = n_to_device = to_host = n_to_host = 0;
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device - base->bytes_to_device, to_device);
  assert_int_equal(st.transfers_to_device - base->transfers_to_device, n_to_device);
  assert_int_equal(st.bytes_to_host - base->bytes_to_host, to_host);
  assert_int_equal(st.transfers_to_host - base->transfers_to_host, n_to_host);
}

static void device_get(twin_context *ctx, void *mem, size_t off, void *dst, size_t n) {
  assert_true(fixture_device_get(ctx, mem, off, dst, n));
}

static void device_put(twin_context *ctx, void *mem, size_t off, const void *src, size_t n) {
  assert_true(fixture_device_put(ctx, mem, off, src, n));
}

/* Overwrites a (i32) on the device with seed*1000 + i. */
static void device_fill_i32(twin_fixture *f, twin_array *a, twin_access access, int seed) {
  int32_t data[256];
  size_t n = twin_array_size(a);
  for (size_t i = 0; i < n; i++)
    data[i] = seed * 1000 + (int32_t)i;
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(a, access, &mem, &off));
  device_put(f->ctx, mem, off, data, n * sizeof *data);
  assert_ok(fixture_device_end(a));
}

/* Asserts the device side of a (i32) holds seed*1000 + i, read straight from the cl_mem. */
static void expect_device_i32(twin_fixture *f, twin_array *a, int seed) {
  int32_t got[256];
  size_t n = twin_array_size(a);
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  device_get(f->ctx, mem, off, got, n * sizeof *got);
  assert_ok(fixture_device_end(a));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(got[i], seed * 1000 + (int32_t)i);
}

/* ---- host access ---- */

static void test_host_begin_points_at_the_first_element(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 6, 1000);
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_int_equal(p[0], 1000);
  assert_int_equal(p[5], 1005);
  assert_ok(twin_host_end(a));
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p));
  assert_int_equal(p[2], 1002);
  p[2] = -7;
  assert_ok(twin_host_end(a));
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p));
  for (int i = 0; i < 6; i++)
    p[i] = 2000 + i;
  assert_ok(twin_host_end(a));
  fixture_expect_i32(a, 2000);
  /* A view's pointer is its own first element, inside the same memory. */
  const size_t vshape[] = {2};
  const ptrdiff_t vstrides[] = {2};
  twin_array *v;
  assert_ok(twin_array_as_strided(a, 1, vshape, vstrides, 3, &v));
  int32_t *base, *vp;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&base));
  assert_ok(twin_host_begin(v, TWIN_READ, (void **)&vp));
  assert_ptr_equal(vp, base + 3);
  assert_int_equal(vp[2], 2005);
  assert_ok(twin_host_end(v));
  assert_ok(twin_host_end(a));
  twin_array_unref(v);
  twin_array_unref(a);
}

/* ---- host <-> device coherence ---- */

static void test_host_write_is_seen_on_device(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  const size_t n = 100;
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &a));
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p));
  for (int i = 0; i < 100; i++)
    p[i] = 3000 + i;
  assert_ok(twin_host_end(a));
  expect_device_i32(f, a, 3);
  /* Through a view with an offset, the device offset is in bytes. */
  const size_t vshape[] = {10};
  const ptrdiff_t vstrides[] = {1};
  twin_array *v;
  assert_ok(twin_array_as_strided(a, 1, vshape, vstrides, 50, &v));
  void *mem;
  size_t off;
  int32_t got[10];
  assert_ok(fixture_device_begin(v, TWIN_READ, &mem, &off));
  assert_int_equal(off, 200);
  device_get(f->ctx, mem, off, got, sizeof got);
  assert_ok(fixture_device_end(v));
  assert_int_equal(got[0], 3050);
  assert_int_equal(got[9], 3059);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_device_write_is_seen_on_host(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 100, 1000);
  device_fill_i32(f, a, TWIN_WRITE, 4);
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  for (int i = 0; i < 100; i++)
    assert_int_equal(p[i], 4000 + i);
  assert_ok(twin_host_end(a));
  twin_array_unref(a);
}

/* ---- transfer counts ---- */

static void test_host_write_then_device_read_moves_once(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_stats base = fixture_stats(f);
  twin_array *a = fixture_i32(f->ctx, 200, 1000); /* a host write */
  expect_moved(f, &base, 0, 0, 0, 0);
  expect_device_i32(f, a, 1);
  expect_moved(f, &base, 800, 1, 0, 0);
  expect_device_i32(f, a, 1); /* the device copy is current: nothing moves */
  expect_moved(f, &base, 800, 1, 0, 0);
  fixture_expect_i32(a, 1000); /* the host copy never went stale */
  expect_moved(f, &base, 800, 1, 0, 0);
  twin_array_unref(a);
}

static void test_device_write_then_host_read_moves_once(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 200, 1000);
  expect_device_i32(f, a, 1);
  twin_stats base = fixture_stats(f);
  device_fill_i32(f, a, TWIN_READ_WRITE, 5);
  expect_moved(f, &base, 0, 0, 0, 0);
  fixture_expect_i32(a, 5000);
  expect_moved(f, &base, 0, 0, 800, 1);
  fixture_expect_i32(a, 5000);
  expect_moved(f, &base, 0, 0, 800, 1);
  twin_array_unref(a);
}

static void test_write_only_access_of_whole_array_moves_nothing(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 64, 1000);
  twin_stats base = fixture_stats(f);
  device_fill_i32(f, a, TWIN_WRITE, 6); /* host is newer, but it is all overwritten */
  expect_moved(f, &base, 0, 0, 0, 0);
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p)); /* device is newer, likewise */
  for (int i = 0; i < 64; i++)
    p[i] = 7000 + i;
  assert_ok(twin_host_end(a));
  expect_moved(f, &base, 0, 0, 0, 0);
  expect_device_i32(f, a, 7);
  expect_moved(f, &base, 256, 1, 0, 0);
  twin_array_unref(a);
}

static void test_write_only_part_of_a_buffer_keeps_the_rest(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 10, 1000);
  device_fill_i32(f, a, TWIN_WRITE, 2); /* the device holds 2000..2009 */
  const size_t vshape[] = {5};
  const ptrdiff_t vstrides[] = {2};
  twin_array *even;
  assert_ok(twin_array_as_strided(a, 1, vshape, vstrides, 0, &even));
  int32_t *p;
  assert_ok(twin_host_begin(even, TWIN_WRITE, (void **)&p));
  for (int i = 0; i < 5; i++)
    p[2 * i] = -i;
  assert_ok(twin_host_end(even));
  int32_t got[10];
  assert_ok(twin_array_read(a, got, sizeof got));
  for (int i = 0; i < 10; i++)
    assert_int_equal(got[i], i % 2 ? 2000 + i : -i / 2);
  twin_array_unref(even);
  twin_array_unref(a);
}

/* ---- protocol errors ---- */

static void test_host_end_without_begin_is_bad_state(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  assert_non_null(strstr(twin_last_error(), "twin_host_end"));
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  assert_ok(twin_host_end(a));
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE); /* ended twice */
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

static void test_device_end_without_begin_is_bad_state(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  assert_status(fixture_device_end(a), TWIN_ERR_BAD_STATE);
  assert_non_null(strstr(twin_last_error(), "twin_device_end"));
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ, &p)); /* a host access is not a device access */
  assert_status(fixture_device_end(a), TWIN_ERR_BAD_STATE);
  assert_ok(twin_host_end(a));
  if (f->has_device) {
    void *mem;
    size_t off;
    assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
    assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
    assert_ok(fixture_device_end(a));
  }
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

static void test_begin_while_a_write_is_open_is_busy(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  int32_t *p, *q = NULL;
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p));
  assert_status(twin_host_begin(a, TWIN_READ, (void **)&q), TWIN_ERR_BUSY);
  assert_non_null(strstr(twin_last_error(), "write"));
  assert_status(twin_host_begin(a, TWIN_WRITE, (void **)&q), TWIN_ERR_BUSY);
  assert_status(twin_host_begin(a, TWIN_READ_WRITE, (void **)&q), TWIN_ERR_BUSY);
  assert_null(q);
  if (f->has_device) {
    void *mem;
    size_t off;
    assert_status(fixture_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_BUSY);
  }
  for (int i = 0; i < 4; i++)
    p[i] = 8000 + i;
  assert_ok(twin_host_end(a));
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE); /* the refused begins opened nothing */
  fixture_expect_i32(a, 8000);
  twin_array_unref(a);
}

static void test_overlapping_reads_each_need_their_own_end(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  int32_t *p, *q;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&q));
  assert_ptr_equal(p, q);
  assert_int_equal(q[3], 1003);
  assert_ok(twin_host_end(a));
  /* One read is still open, so a write is refused. */
  assert_status(twin_host_begin(a, TWIN_WRITE, (void **)&q), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(a));
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&q));
  q[0] = 9;
  assert_ok(twin_host_end(a));
  int32_t got[4];
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_int_equal(got[0], 9);
  assert_int_equal(got[1], 1001);
  twin_array_unref(a);
}

static void test_device_begin_is_busy_while_a_view_writes_on_host(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  void *mem;
  size_t off;
  void *p;
  assert_ok(twin_host_begin(v, TWIN_WRITE, &p));
  assert_status(fixture_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_BUSY);
  assert_non_null(strstr(twin_last_error(), "host write"));
  assert_status(fixture_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(v));
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  assert_ok(fixture_device_end(a));
  assert_status(fixture_device_end(a), TWIN_ERR_BAD_STATE); /* the refused begins opened nothing */
  expect_device_i32(f, a, 1);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_host_begin_is_busy_while_a_view_writes_on_device(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  void *mem;
  size_t off;
  void *p;
  assert_ok(fixture_device_begin(v, TWIN_READ_WRITE, &mem, &off));
  assert_status(twin_host_begin(a, TWIN_READ, &p), TWIN_ERR_BUSY);
  assert_non_null(strstr(twin_last_error(), "device write"));
  assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_BUSY);
  assert_ok(fixture_device_end(v));
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_write_is_busy_while_the_other_side_reads(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  void *mem;
  size_t off;
  void *p;
  assert_ok(twin_host_begin(v, TWIN_READ, &p));
  assert_status(fixture_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_BUSY);
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off)); /* reads on both sides may overlap */
  assert_ok(fixture_device_end(a));
  assert_ok(twin_host_end(v));
  fixture_expect_i32(a, 1000);
  twin_array_unref(v);
  twin_array_unref(a);
}

/* ---- an access dies with its array object ---- */

/* The last reference to an array object with a host write open: the access ends there, its
 * write counts, and the buffer is free for every later use on both sides. */
static void test_dropping_an_array_with_a_host_write_open_ends_the_access(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  int32_t *p;
  assert_ok(twin_host_begin(v, TWIN_WRITE, (void **)&p));
  for (int i = 0; i < 8; i++)
    p[i] = 5000 + i;
  twin_array_unref(v); /* the access was never ended */
  fixture_expect_i32(a, 5000);
  if (f->has_device)
    expect_device_i32(f, a, 5); /* not BUSY: nothing is left open */
  int32_t seven = 7;
  assert_ok(twin_fill(a, &seven));
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p));
  assert_ok(twin_host_end(a));
  twin_array_unref(a);
}

/* The same for a device write: what the device wrote counts, and the host can read it. */
static void test_dropping_an_array_with_a_device_write_open_ends_the_access(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  int32_t data[8];
  for (int i = 0; i < 8; i++)
    data[i] = 6000 + i;
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(v, TWIN_WRITE, &mem, &off));
  device_put(f->ctx, mem, off, data, sizeof data);
  twin_array_unref(v);
  fixture_expect_i32(a, 6000); /* the host side was not BUSY, and the write is there */
  assert_ok(fixture_device_begin(a, TWIN_READ_WRITE, &mem, &off));
  assert_ok(fixture_device_end(a));
  twin_array_unref(a);
}

/* The last reference goes with a host access open (on a zero-copy buffer, its mapping): the
 * buffer's memory is freed all the same (the runtime may free a zero-copy block a moment
 * later, so this waits up to 5 s for it). */
static void test_dropping_the_last_reference_with_an_access_open_frees_the_memory(void **state) {
  twin_fixture *f = fixture(state);
  host_inject(0);
  const size_t n = 1u << 20; /* 4 MiB of f32 */
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, &n, &a));
  float *p;
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p));
  assert_int_equal(host_large_live(), n * sizeof(float));
  p[0] = 1.0f;
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).buffers, 0);
  assert_int_equal(fixture_stats(f).host_bytes, 0);
  for (int i = 0; i < 500 && host_large_live() != 0; i++) {
    twin_context_finish(f->ctx);
    usleep(10 * 1000);
  }
  assert_int_equal(host_large_live(), 0);
  host_restore();
}

/* ---- what BUSY names ---- */

/* With view A's write open and view B's begun and ended since, a conflict names A's line. */
static void test_busy_names_the_access_that_is_open_not_the_latest(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *va = alias(a), *vb = alias(a);
  void *p, *q;
  int line_a = __LINE__ + 1;
  assert_ok(twin_host_begin(va, TWIN_WRITE, &p));
  int line_b = __LINE__ + 1;
  assert_ok(twin_host_begin(vb, TWIN_WRITE, &q));
  assert_ok(twin_host_end(vb));
  int32_t seven = 7;
  char want[256]; /* the call, the caller's file:line, the argument */
  snprintf(want, sizeof want, "twin_fill (%s:%d): dst: ", __FILE__, __LINE__ + 1);
  assert_status(twin_fill(va, &seven), TWIN_ERR_BUSY); /* the same array object */
  expect_message(want);
  EXPECT_SITE(line_a);
  EXPECT_NO_SITE(line_b);
  if (f->has_device) { /* another object: the device write conflicts with the host write */
    snprintf(want, sizeof want, "twin_fill (%s:%d): dst: ", __FILE__, __LINE__ + 1);
    assert_status(twin_fill(a, &seven), TWIN_ERR_BUSY);
    expect_message(want);
    expect_message("host write");
    EXPECT_SITE(line_a);
    EXPECT_NO_SITE(line_b);
  }
  assert_ok(twin_host_end(va));
  fixture_expect_i32(a, 1000);
  twin_array_unref(vb);
  twin_array_unref(va);
  twin_array_unref(a);
}

/* Every open access that blocks is named with its own line: two reads of one array object
 * block its write, and device reads of two views block a host write of the buffer. */
static void test_busy_names_every_access_that_blocks(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 8, 1000);
  void *p;
  int line1 = __LINE__ + 1;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  int line2 = __LINE__ + 1;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  char want[256];
  snprintf(want, sizeof want, "twin_host_begin (%s:%d): ", __FILE__, __LINE__ + 1);
  assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_BUSY);
  expect_message(want);
  EXPECT_SITE(line1);
  EXPECT_SITE(line2);
  assert_ok(twin_host_end(a));
  assert_ok(twin_host_end(a));
  if (f->has_device) {
    twin_array *va = alias(a), *vb = alias(a);
    void *mem;
    size_t off;
    int line3 = __LINE__ + 1;
    assert_ok(fixture_device_begin(va, TWIN_READ, &mem, &off));
    int line4 = __LINE__ + 1;
    assert_ok(fixture_device_begin(vb, TWIN_READ, &mem, &off));
    assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_BUSY);
    expect_message("device read");
    EXPECT_SITE(line3);
    EXPECT_SITE(line4);
    assert_ok(fixture_device_end(vb));
    assert_ok(fixture_device_end(va));
    twin_array_unref(vb);
    twin_array_unref(va);
  }
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

/* A host kernel calls twin_host_begin on an array its launch has open: BUSY names the launch,
 * the argument and the line of the twin_kernel_launch call. */
typedef struct nested {
  twin_array *a;
  twin_status status;
  char message[1024];
} nested;

static twin_status begin_inside(const twin_host_launch *l, void *user) {
  (void)l;
  nested *n = user;
  void *p;
  n->status = twin_host_begin(n->a, TWIN_WRITE, &p);
  snprintf(n->message, sizeof n->message, "%s", twin_last_error());
  if (n->status == TWIN_OK)
    twin_host_end(n->a);
  return TWIN_OK;
}

static void test_an_operations_access_is_named_with_the_callers_line(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  nested n = {a, TWIN_OK, ""};
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "nested", begin_inside, &n, &k));
  twin_arg args[] = {twin_arg_array(a, TWIN_READ)};
  int line = __LINE__ + 1;
  assert_ok(twin_kernel_launch(k, 1, (size_t[]){4}, NULL, 1, args));
  assert_int_equal(n.status, TWIN_ERR_BUSY);
  char site[64];
  site_of(line, site, sizeof site);
  if (!strstr(n.message, site) || !strstr(n.message, "twin_kernel_launch: argument 0"))
    print_error("message \"%s\" lacks \"%s\" or the launch\n", n.message, site);
  assert_non_null(strstr(n.message, site));
  assert_non_null(strstr(n.message, "twin_kernel_launch: argument 0"));
  assert_null(strstr(n.message, "twin operation"));
  twin_kernel_unref(k);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

/* twin_array_read and twin_array_write name themselves, not the twin_host_begin they use. */
static void test_read_and_write_helpers_name_themselves(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  int32_t got[4];
  void *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, &p));
  assert_status(twin_array_read(a, got, sizeof got), TWIN_ERR_BUSY);
  expect_message("twin_array_read: ");
  expect_no_message("twin_host_begin:");
  assert_status(twin_array_write(a, got, sizeof got), TWIN_ERR_BUSY);
  expect_message("twin_array_write: ");
  expect_no_message("twin_host_begin:");
  assert_ok(twin_host_end(a));
  /* An allocation that fails inside the access: a new array has no host memory yet. */
  twin_array *b;
  const size_t n = 4;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &b));
  host_fail_blocks();
  assert_status(twin_array_write(b, got, sizeof got), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message("twin_array_write: ");
  expect_no_message("twin_host_begin:");
  assert_status(twin_array_read(b, got, sizeof got), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message("twin_array_read: ");
  expect_no_message("twin_host_begin:");
  host_restore();
  twin_array_unref(b);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

/* Runs op with host allocation 1, 2, ... failing until it succeeds; every failure's message
 * must begin with the public call `fn` and name no internal one. */
static void sweep_messages(const char *fn, twin_status (*op)(twin_array **arrays),
                           twin_array **arrays) {
  twin_status s = TWIN_ERR_OUT_OF_HOST_MEMORY;
  int failures = 0;
  for (int fail_at = 1; fail_at < 60 && s != TWIN_OK; fail_at++) {
    host_inject(fail_at);
    s = op(arrays);
    host_restore();
    if (s == TWIN_OK)
      break;
    failures++;
    /* "NAME: fn: ", or "NAME: fn (FILE:LINE): " with the caller's line (this file's). */
    char head[128], sited[256];
    snprintf(head, sizeof head, "%s: %s: ", twin_status_name(s), fn);
    snprintf(sited, sizeof sited, "%s: %s (%s:", twin_status_name(s), fn, __FILE__);
    bool named = strncmp(twin_last_error(), head, strlen(head)) == 0 ||
                 strncmp(twin_last_error(), sited, strlen(sited)) == 0;
    if (!named)
      print_error("failure %d: \"%s\" does not begin with \"%s\" or \"%s\"\n", fail_at,
                  twin_last_error(), head, sited);
    assert_true(named);
    expect_no_message("twin_device_begin");
    expect_no_message("twin_host_begin");
    expect_no_message("twin_array_new");
    expect_no_message("twin operation");
  }
  assert_int_equal(s, TWIN_OK);
  assert_true(failures > 0);
}

/* arrays: {a, lo, hi, c}: lo and hi overlap in a's buffer; c is a fresh array. */
static twin_status overlapping_copy(twin_array **x) {
  return twin_copy(x[2], x[1]);
}

static twin_status fill_fresh(twin_array **x) {
  int32_t v = 3;
  return twin_fill(x[3], &v);
}

static twin_status copy_out(twin_array **x) {
  twin_array *c = NULL;
  twin_status s = twin_array_copy(x[1], &c);
  twin_array_unref(c);
  return s;
}

static twin_status contiguous_of_strided(twin_array **x) {
  twin_array *c = NULL;
  twin_status s = twin_array_contiguous(x[4], &c);
  twin_array_unref(c);
  return s;
}

/* Every failure inside twin_copy, twin_fill, twin_array_copy and twin_array_contiguous (an
 * allocation, on the fake device a device allocation too) names that call, not the calls it is
 * made of. (test_opencl_access.c fails each OpenCL call in turn likewise.) */
static void test_operations_name_themselves_in_every_failure(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *x[5];
  x[0] = fixture_i32(f->ctx, 10, 0);
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){9}, (ptrdiff_t[]){1}, 0, &x[1]));
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){9}, (ptrdiff_t[]){1}, 1, &x[2]));
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){5}, (ptrdiff_t[]){2}, 0, &x[4]));
  const size_t n = 10;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &x[3]));
  sweep_messages("twin_copy", overlapping_copy, x);
  sweep_messages("twin_fill", fill_fresh, x);
  sweep_messages("twin_array_copy", copy_out, x);
  sweep_messages("twin_array_contiguous", contiguous_of_strided, x);
  twin_array_unref(x[3]);
  int32_t got[10];
  assert_ok(twin_array_read(x[0], got, sizeof got));
  assert_int_equal(got[9], 8); /* the overlapping copy happened once, as a whole */
  for (int i = 4; i >= 0; i--)
    if (i != 3)
      twin_array_unref(x[i]);
}

/* ---- reads coexist; other threads wait; cycles are BUSY ---- */

static void test_host_and_device_reads_of_one_array_coexist(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 8, 1000);
  int32_t *p, got[8];
  void *mem;
  size_t off;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  device_get(f->ctx, mem, off, got, sizeof got);
  assert_int_equal(got[7], 1007);
  assert_int_equal(p[7], 1007);
  /* A write on the same object still conflicts with either read. */
  assert_status(fixture_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(a));
  assert_status(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p), TWIN_ERR_BUSY);
  assert_ok(fixture_device_end(a));
  /* And the other way round: a device read first. */
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_int_equal(p[0], 1000);
  assert_ok(twin_host_end(a));
  assert_ok(fixture_device_end(a));
  assert_status(fixture_device_end(a), TWIN_ERR_BAD_STATE);
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  twin_array_unref(a);
}

/* Polls until n threads wait for an access (at most 10 s). */
static void await_waiters(size_t n) {
  for (int i = 0; i < 5000 && twin__access_waiting() < n; i++)
    usleep(1000);
  assert_int_equal(twin__access_waiting(), n);
}

/* A thread that opens a host write on `a`, waits until `waiters` threads wait for it, then
 * writes value + i into a's 8 i32 elements and ends the access. */
typedef struct holder {
  twin_array *a;
  int32_t value;
  size_t waiters;
  twin_status begun, ended;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool open;
} holder;

static void *hold_then_write(void *arg) {
  holder *h = arg;
  int32_t *p;
  h->begun = twin_host_begin(h->a, TWIN_WRITE, (void **)&p);
  pthread_mutex_lock(&h->lock);
  h->open = true;
  pthread_cond_signal(&h->cond);
  pthread_mutex_unlock(&h->lock);
  if (h->begun != TWIN_OK)
    return NULL;
  for (int i = 0; i < 5000 && twin__access_waiting() < h->waiters; i++)
    usleep(1000);
  usleep(20 * 1000); /* the waiter has gone to sleep; it must stay asleep until the end */
  for (int i = 0; i < 8; i++)
    p[i] = h->value + i;
  h->ended = twin_host_end(h->a);
  return NULL;
}

/* Starts a holder thread on a and returns once its access is open. */
static void start_holder(holder *h, pthread_t *th, twin_array *a, int32_t value) {
  *h = (holder){.a = a, .value = value, .waiters = 1};
  pthread_mutex_init(&h->lock, NULL);
  pthread_cond_init(&h->cond, NULL);
  assert_int_equal(pthread_create(th, NULL, hold_then_write, h), 0);
  pthread_mutex_lock(&h->lock);
  while (!h->open)
    pthread_cond_wait(&h->cond, &h->lock);
  pthread_mutex_unlock(&h->lock);
  assert_ok(h->begun);
}

static void join_holder(holder *h, pthread_t th) {
  pthread_join(th, NULL);
  assert_ok(h->ended);
  pthread_cond_destroy(&h->cond);
  pthread_mutex_destroy(&h->lock);
}

/* A conflict with an access another thread holds waits for its end (no BUSY, no retry), and
 * then sees what that thread wrote. */
static void test_a_conflict_with_another_threads_access_waits_for_its_end(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 8, 1000);
  holder h;
  pthread_t th;
  int32_t *p;
  start_holder(&h, &th, a, 2000); /* the same array object: conflicts on every backend */
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_int_equal(p[0], 2000);
  assert_int_equal(p[7], 2007);
  assert_ok(twin_host_end(a));
  join_holder(&h, th);
  if (f->has_device) { /* another object of the buffer, on the device */
    twin_array *v = alias(a);
    start_holder(&h, &th, v, 3000);
    expect_device_i32(f, a, 3);
    join_holder(&h, th);
    start_holder(&h, &th, v, 4000); /* a built-in operation waits too */
    twin_array *copy;
    assert_ok(twin_array_copy(a, &copy));
    join_holder(&h, th);
    fixture_expect_i32(copy, 4000);
    twin_array_unref(copy);
    twin_array_unref(v);
  }
  twin_array_unref(a);
}

/* Holds a host write on p, then asks for a host write on q, which the main thread holds. */
typedef struct partner {
  twin_array *p, *q;
  int line;
  twin_status held, waited, ended_q, ended_p;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool holding;
} partner;

static void *hold_p_then_want_q(void *arg) {
  partner *w = arg;
  void *ptr;
  w->line = __LINE__ + 1;
  w->held = twin_host_begin(w->p, TWIN_WRITE, &ptr);
  pthread_mutex_lock(&w->lock);
  w->holding = true;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  if (w->held != TWIN_OK)
    return NULL;
  w->waited = twin_host_begin(w->q, TWIN_WRITE, &ptr);
  if (w->waited == TWIN_OK)
    w->ended_q = twin_host_end(w->q);
  w->ended_p = twin_host_end(w->p);
  return NULL;
}

/* Two threads each holding an access and asking for the other's would wait forever: the one
 * that closes the cycle gets BUSY at once, naming both accesses; the other then proceeds. */
static void test_a_wait_for_cycle_is_busy_and_names_both_accesses(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *p = fixture_i32(f->ctx, 8, 1000), *q = fixture_i32(f->ctx, 8, 2000);
  void *ptr;
  int line_q = __LINE__ + 1;
  assert_ok(twin_host_begin(q, TWIN_WRITE, &ptr));
  partner w = {.p = p, .q = q};
  pthread_mutex_init(&w.lock, NULL);
  pthread_cond_init(&w.cond, NULL);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hold_p_then_want_q, &w), 0);
  pthread_mutex_lock(&w.lock);
  while (!w.holding)
    pthread_cond_wait(&w.cond, &w.lock);
  pthread_mutex_unlock(&w.lock);
  assert_ok(w.held);
  await_waiters(1); /* the partner waits for q */
  assert_status(twin_host_begin(p, TWIN_READ, &ptr), TWIN_ERR_BUSY);
  expect_message("deadlock");
  EXPECT_SITE(w.line);
  EXPECT_SITE(line_q);
  assert_ok(twin_host_end(q)); /* the partner gets q now */
  pthread_join(th, NULL);
  assert_ok(w.waited);
  assert_ok(w.ended_q);
  assert_ok(w.ended_p);
  assert_int_equal(twin__access_waiting(), 0);
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.lock);
  fixture_expect_i32(p, 1000);
  twin_array_unref(p);
  twin_array_unref(q);
}

/* Copies p into q (holding p's read while it waits for q, which the main thread holds). */
static void *copy_p_to_q(void *arg) {
  partner *w = arg;
  w->line = __LINE__ + 1;
  w->waited = twin_copy(w->q, w->p);
  return NULL;
}

/* The same cycle through a built-in operation: the message names the operation's argument and
 * the line of the twin_copy call. */
static void test_a_cycle_through_an_operation_names_its_call_and_line(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *p = fixture_i32(f->ctx, 8, 1000), *q = fixture_i32(f->ctx, 8, 2000);
  void *ptr;
  assert_ok(twin_host_begin(q, TWIN_WRITE, &ptr));
  partner w = {.p = p, .q = q};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, copy_p_to_q, &w), 0);
  await_waiters(1); /* the copy holds p's read and waits for q */
  assert_status(twin_host_begin(p, TWIN_WRITE, &ptr), TWIN_ERR_BUSY);
  expect_message("deadlock");
  char want[128];
  snprintf(want, sizeof want, "test_access.c:%d by twin_copy: src in another thread", w.line);
  expect_message(want);
  assert_ok(twin_host_end(q));
  pthread_join(th, NULL);
  assert_ok(w.waited);
  fixture_expect_i32(q, 1000);
  twin_array_unref(p);
  twin_array_unref(q);
}

/* ---- eight threads on one buffer ---- */

enum { SHARERS = 8, COLS = 64, ROUNDS = 40 };

typedef struct sharer {
  twin_fixture *f;
  twin_array *base;
  int t;
  int failures;
  char first[512];
} sharer;

static void note(sharer *w, bool ok, const char *what, int round) {
  if (ok)
    return;
  if (w->failures++ == 0)
    snprintf(w->first, sizeof w->first, "thread %d round %d: %s (%s)", w->t, round, what,
             twin_last_error());
}

/* Checks that every element of row (COLS i32) is `value`, read through the host. */
static bool row_is(twin_array *row, int32_t value) {
  int32_t got[COLS];
  if (twin_array_read(row, got, sizeof got) != TWIN_OK)
    return false;
  for (int c = 0; c < COLS; c++)
    if (got[c] != value)
      return false;
  return true;
}

/* Checks row's device copy (COLS i32), while a host read of another view of it is open. */
static bool device_row_is(twin_context *ctx, twin_array *row, int32_t value) {
  int32_t got[COLS];
  void *mem;
  size_t off;
  if (fixture_device_begin(row, TWIN_READ, &mem, &off) != TWIN_OK)
    return false;
  bool e = fixture_device_get(ctx, mem, off, got, sizeof got);
  bool ok = fixture_device_end(row) == TWIN_OK && e;
  for (int c = 0; ok && c < COLS; c++)
    ok = got[c] == value;
  return ok;
}

static bool device_write_row(twin_context *ctx, twin_array *row, int32_t value) {
  int32_t data[COLS];
  for (int c = 0; c < COLS; c++)
    data[c] = value;
  void *mem;
  size_t off;
  if (fixture_device_begin(row, TWIN_WRITE, &mem, &off) != TWIN_OK)
    return false;
  bool e = fixture_device_put(ctx, mem, off, data, sizeof data);
  return fixture_device_end(row) == TWIN_OK && e;
}

/* One round of thread t on its own row views of the shared buffer: a host write, a fill (on
 * the device where there is one), a host read with a device read of the same row open at
 * once, a copy of the whole buffer out (a device read of every row), a device write. Other
 * threads' accesses on the other side of the buffer conflict with each step: it waits. */
static void share_round(sharer *w, twin_array *row, twin_array *row2, twin_array *whole,
                        twin_array *out, twin_array *out_row, int round) {
  twin_context *ctx = w->f->ctx;
  int32_t v = w->t * 100000 + round * 10, *p;
  twin_status s = twin_host_begin(row, TWIN_WRITE, (void **)&p);
  note(w, s == TWIN_OK, "host write", round);
  if (s == TWIN_OK) {
    for (int c = 0; c < COLS; c++)
      p[c] = v;
    note(w, twin_host_end(row) == TWIN_OK, "host end", round);
  }
  int32_t v1 = v + 1;
  note(w, twin_fill(row, &v1) == TWIN_OK, "fill", round);
  s = twin_host_begin(row2, TWIN_READ, (void **)&p);
  note(w, s == TWIN_OK, "host read", round);
  if (s == TWIN_OK) {
    note(w, p[0] == v1 && p[COLS - 1] == v1, "host read data", round);
    if (w->f->has_device)
      note(w, device_row_is(ctx, row, v1), "device read beside a host read", round);
    note(w, twin_host_end(row2) == TWIN_OK, "host read end", round);
  }
  note(w, twin_copy(out, w->f->has_device ? whole : row) == TWIN_OK, "copy out", round);
  note(w, row_is(out_row, v1), "copied data", round);
  if (w->f->has_device) {
    note(w, device_write_row(ctx, row, v + 2), "device write", round);
    note(w, row_is(row, v + 2), "host read after the device write", round);
  }
  (void)ctx;
}

static void *share(void *arg) {
  sharer *w = arg;
  twin_array *row, *row2, *whole = alias(w->base), *out, *out_row = NULL;
  note(w, twin_array_index(w->base, 0, w->t, &row) == TWIN_OK, "row", -1);
  note(w, twin_array_index(w->base, 0, w->t, &row2) == TWIN_OK, "row2", -1);
  /* The host backend copies on the host, where a read of other threads' rows would race with
   * their writes: there each thread copies its own row only. */
  if (w->f->has_device) {
    note(w, twin_array_new(w->f->ctx, TWIN_I32, 2, (size_t[]){SHARERS, COLS}, &out) == TWIN_OK,
         "out", -1);
    note(w, twin_array_index(out, 0, w->t, &out_row) == TWIN_OK, "out row", -1);
  } else {
    note(w, twin_array_new(w->f->ctx, TWIN_I32, 1, (size_t[]){COLS}, &out) == TWIN_OK, "out", -1);
    out_row = twin_array_ref(out);
  }
  for (int round = 0; round < ROUNDS && w->failures == 0; round++)
    share_round(w, row, row2, whole, out, out_row, round);
  twin_array_unref(out_row);
  twin_array_unref(out);
  twin_array_unref(whole);
  twin_array_unref(row2);
  twin_array_unref(row);
  return NULL;
}

static void test_eight_threads_share_one_buffer_without_retrying(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *base;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, (size_t[]){SHARERS, COLS}, &base));
  pthread_t th[SHARERS];
  sharer w[SHARERS];
  for (int t = 0; t < SHARERS; t++) {
    w[t] = (sharer){.f = f, .base = base, .t = t};
    assert_int_equal(pthread_create(&th[t], NULL, share, &w[t]), 0);
  }
  int failures = 0;
  for (int t = 0; t < SHARERS; t++) {
    pthread_join(th[t], NULL);
    if (w[t].failures)
      print_error("%s\n", w[t].first);
    failures += w[t].failures;
  }
  assert_int_equal(failures, 0);
  assert_int_equal(twin__access_waiting(), 0);
  int32_t got[SHARERS * COLS];
  assert_ok(twin_array_read(base, got, sizeof got));
  for (int t = 0; t < SHARERS; t++) {
    int32_t last = t * 100000 + (ROUNDS - 1) * 10 + (f->has_device ? 2 : 1);
    assert_int_equal(got[t * COLS], last);
    assert_int_equal(got[t * COLS + COLS - 1], last);
  }
  twin_array_unref(base);
}

/* ---- argument errors ---- */

static void test_invalid_access_value_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  const twin_access bad[] = {(twin_access)0, (twin_access)4};
  for (size_t i = 0; i < 2; i++) {
    void *p = NULL;
    assert_status(twin_host_begin(a, bad[i], &p), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "access"));
    assert_null(p);
    void *mem = NULL;
    size_t off = 77;
    assert_status(fixture_device_begin(a, bad[i], &mem, &off), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "access"));
    assert_null(mem);
    assert_int_equal(off, 77);
  }
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

static void test_null_array_or_pointer_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  void *p;
  assert_status(twin_host_begin(NULL, TWIN_READ, &p), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "array"));
  assert_status(twin_host_begin(a, TWIN_READ, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "pointer"));
  assert_status(twin_host_end(NULL), TWIN_ERR_INVALID_ARGUMENT);
  void *mem;
  size_t off;
  assert_status(fixture_device_begin(NULL, TWIN_READ, &mem, &off), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "array"));
  assert_status(fixture_device_begin(a, TWIN_READ, NULL, &off), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(fixture_device_begin(a, TWIN_READ, &mem, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "byte_offset"));
  assert_status(fixture_device_end(NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

/* ---- backends and devices ---- */

static void test_host_backend_has_no_device_access(void **state) {
  twin_fixture *f = fixture(state);
  if (f->has_device)
    skip();
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  void *mem = NULL;
  size_t off = 77;
  assert_status(fixture_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "host backend"));
  assert_null(mem);
  assert_int_equal(off, 77);
  fixture_expect_i32(a, 1000);
  assert_int_equal(fixture_stats(f).device_bytes, 0);
  twin_array_unref(a);
}

static void test_f64_on_a_device_without_fp64_is_unsupported(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  ctx->device.fp64 = false; /* as a device without cl_khr_fp64 would report */
  const size_t n = 3;
  const double d[3] = {1.5, -2.5, 1e300};
  const float s[3] = {1.5f, -2.5f, 3e30f};
  twin_array *a, *b;
  assert_ok(twin_array_from_host(ctx, TWIN_F64, 1, &n, d, &a));
  assert_ok(twin_array_from_host(ctx, TWIN_F32, 1, &n, s, &b));
  void *mem = NULL;
  size_t off = 77;
  assert_status(fixture_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "fp64"));
  assert_null(mem);
  assert_int_equal(off, 77);
  assert_ok(fixture_device_begin(b, TWIN_READ, &mem, &off)); /* f32 is fine */
  assert_ok(fixture_device_end(b));
  double got[3];
  assert_ok(twin_array_read(a, got, sizeof got)); /* the host side still works */
  assert_memory_equal(got, d, sizeof got);
  twin_stats st;
  assert_ok(twin_context_stats(ctx, &st));
  /* Only the f32 array reached the device (zero-copy memory counts as host memory). */
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 12 : 0);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);
}

/* ---- twin_array_read / twin_array_write ---- */

static void test_read_write_size_mismatch_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  int32_t buf[5] = {-1, -1, -1, -1, -1};
  const int32_t untouched[5] = {-1, -1, -1, -1, -1};
  assert_status(twin_array_read(a, buf, 15), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "15 bytes"));
  assert_status(twin_array_read(a, buf, 20), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_read(a, NULL, 16), TWIN_ERR_INVALID_ARGUMENT);
  assert_memory_equal(buf, untouched, sizeof buf);
  assert_status(twin_array_write(a, buf, 12), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_write(a, buf, 20), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_write(a, NULL, 16), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_read(NULL, buf, 16), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_write(NULL, buf, 16), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

static void test_read_write_on_a_strided_view_are_packed(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = fixture_i32(f->ctx, 12, 0); /* 0..11 */
  if (f->has_device)
    device_fill_i32(f, a, TWIN_WRITE, 0); /* the device holds the newest copy */
  const size_t shape1[] = {6};
  const ptrdiff_t every_other[] = {2};
  twin_array *even;
  assert_ok(twin_array_as_strided(a, 1, shape1, every_other, 0, &even));
  int32_t got[6];
  assert_ok(twin_array_read(even, got, sizeof got));
  const int32_t evens[6] = {0, 2, 4, 6, 8, 10};
  assert_memory_equal(got, evens, sizeof got);
  /* A 2-D view, rows reversed: [[9, 10, 11], [6, 7, 8], ..., [0, 1, 2]]. */
  const size_t shape2[] = {4, 3};
  const ptrdiff_t reversed[] = {-3, 1};
  twin_array *rev;
  assert_ok(twin_array_as_strided(a, 2, shape2, reversed, 9, &rev));
  int32_t got2[12];
  assert_ok(twin_array_read(rev, got2, sizeof got2));
  const int32_t rows[12] = {9, 10, 11, 6, 7, 8, 3, 4, 5, 0, 1, 2};
  assert_memory_equal(got2, rows, sizeof got2);
  const int32_t neg[6] = {-1, -2, -3, -4, -5, -6};
  assert_ok(twin_array_write(even, neg, sizeof neg));
  int32_t all[12];
  assert_ok(twin_array_read(a, all, sizeof all));
  const int32_t mixed[12] = {-1, 1, -2, 3, -3, 5, -4, 7, -5, 9, -6, 11};
  assert_memory_equal(all, mixed, sizeof all);
  twin_array_unref(rev);
  twin_array_unref(even);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_host_begin_points_at_the_first_element),
    TWIN_TEST(test_host_write_is_seen_on_device),
    TWIN_TEST(test_device_write_is_seen_on_host),
    TWIN_TEST(test_host_write_then_device_read_moves_once),
    TWIN_TEST(test_device_write_then_host_read_moves_once),
    TWIN_TEST(test_write_only_access_of_whole_array_moves_nothing),
    TWIN_TEST(test_write_only_part_of_a_buffer_keeps_the_rest),
    TWIN_TEST(test_host_end_without_begin_is_bad_state),
    TWIN_TEST(test_device_end_without_begin_is_bad_state),
    TWIN_TEST(test_begin_while_a_write_is_open_is_busy),
    TWIN_TEST(test_overlapping_reads_each_need_their_own_end),
    TWIN_TEST(test_device_begin_is_busy_while_a_view_writes_on_host),
    TWIN_TEST(test_host_begin_is_busy_while_a_view_writes_on_device),
    TWIN_TEST(test_write_is_busy_while_the_other_side_reads),
    TWIN_TEST(test_dropping_an_array_with_a_host_write_open_ends_the_access),
    TWIN_TEST(test_dropping_an_array_with_a_device_write_open_ends_the_access),
    TWIN_TEST(test_dropping_the_last_reference_with_an_access_open_frees_the_memory),
    TWIN_TEST(test_busy_names_the_access_that_is_open_not_the_latest),
    TWIN_TEST(test_busy_names_every_access_that_blocks),
    TWIN_TEST(test_an_operations_access_is_named_with_the_callers_line),
    TWIN_TEST(test_read_and_write_helpers_name_themselves),
    TWIN_TEST(test_operations_name_themselves_in_every_failure),
    TWIN_TEST(test_host_and_device_reads_of_one_array_coexist),
    TWIN_TEST(test_a_conflict_with_another_threads_access_waits_for_its_end),
    TWIN_TEST(test_a_wait_for_cycle_is_busy_and_names_both_accesses),
    TWIN_TEST(test_a_cycle_through_an_operation_names_its_call_and_line),
    TWIN_TEST(test_eight_threads_share_one_buffer_without_retrying),
    TWIN_TEST(test_invalid_access_value_is_invalid),
    TWIN_TEST(test_null_array_or_pointer_is_invalid),
    TWIN_TEST(test_host_backend_has_no_device_access),
    TWIN_TEST(test_f64_on_a_device_without_fp64_is_unsupported),
    TWIN_TEST(test_read_write_size_mismatch_is_invalid),
    TWIN_TEST(test_read_write_on_a_strided_view_are_packed),
};

TWIN_TEST_MAIN(tests)

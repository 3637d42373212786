/* The access protocol: host and device begin/end, what moves between the sides and how often,
 * the open rules (BUSY, BAD_STATE), argument errors, the host backend's lack of a device,
 * fp64, and the packed twin_array_read / twin_array_write helpers. */
#include <string.h>

#include "fixture.h"

#ifdef TWIN_HAVE_OPENCL
#include "core/twin_opencl.h"
#endif

#ifdef TWIN_HAVE_OPENCL
/* A view of all of a, a second array object on the same buffer. */
static twin_array *alias(twin_array *a) {
  twin_array *v;
  assert_ok(twin_array_as_strided(a, twin_array_ndim(a), twin_array_shape(a), twin_array_strides(a),
                                  0, &v));
  return v;
}

/* Transfer counters moved since `base`. */
static void expect_moved(const twin_fixture *f, const twin_stats *base, uint64_t to_device,
                         uint64_t n_to_device, uint64_t to_host, uint64_t n_to_host) {
  if (f->zero_copy) /* one shared allocation: nothing ever moves */
    to_device = n_to_device = to_host = n_to_host = 0;
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device - base->bytes_to_device, to_device);
  assert_int_equal(st.transfers_to_device - base->transfers_to_device, n_to_device);
  assert_int_equal(st.bytes_to_host - base->bytes_to_host, to_host);
  assert_int_equal(st.transfers_to_host - base->transfers_to_host, n_to_host);
}

static void cl_read(twin_context *ctx, cl_mem mem, size_t off, void *dst, size_t n) {
  assert_int_equal(
      clEnqueueReadBuffer(twin_context_cl_queue(ctx), mem, CL_TRUE, off, n, dst, 0, NULL, NULL),
      CL_SUCCESS);
}

static void cl_write(twin_context *ctx, cl_mem mem, size_t off, const void *src, size_t n) {
  assert_int_equal(
      clEnqueueWriteBuffer(twin_context_cl_queue(ctx), mem, CL_TRUE, off, n, src, 0, NULL, NULL),
      CL_SUCCESS);
}

/* Overwrites a (i32) on the device with seed*1000 + i. */
static void device_fill_i32(twin_fixture *f, twin_array *a, twin_access access, int seed) {
  int32_t data[256];
  size_t n = twin_array_size(a);
  for (size_t i = 0; i < n; i++)
    data[i] = seed * 1000 + (int32_t)i;
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, access, &mem, &off));
  cl_write(f->ctx, mem, off, data, n * sizeof *data);
  assert_ok(twin_device_end(a));
}

/* Asserts the device side of a (i32) holds seed*1000 + i, read straight from the cl_mem. */
static void expect_device_i32(twin_fixture *f, twin_array *a, int seed) {
  int32_t got[256];
  size_t n = twin_array_size(a);
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
  cl_read(f->ctx, mem, off, got, n * sizeof *got);
  assert_ok(twin_device_end(a));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(got[i], seed * 1000 + (int32_t)i);
}
#endif

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
#ifdef TWIN_HAVE_OPENCL
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
  cl_mem mem;
  size_t off;
  int32_t got[10];
  assert_ok(twin_device_begin(v, TWIN_READ, &mem, &off));
  assert_int_equal(off, 200);
  cl_read(f->ctx, mem, off, got, sizeof got);
  assert_ok(twin_device_end(v));
  assert_int_equal(got[0], 3050);
  assert_int_equal(got[9], 3059);
  twin_array_unref(v);
  twin_array_unref(a);
#endif
}

static void test_device_write_is_seen_on_host(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 100, 1000);
  device_fill_i32(f, a, TWIN_WRITE, 4);
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  for (int i = 0; i < 100; i++)
    assert_int_equal(p[i], 4000 + i);
  assert_ok(twin_host_end(a));
  twin_array_unref(a);
#endif
}

/* ---- transfer counts ---- */

static void test_host_write_then_device_read_moves_once(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

static void test_device_write_then_host_read_moves_once(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

static void test_write_only_access_of_whole_array_moves_nothing(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

static void test_write_only_part_of_a_buffer_keeps_the_rest(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
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
#endif
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
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE);
  assert_non_null(strstr(twin_last_error(), "twin_device_end"));
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ, &p)); /* a host access is not a device access */
  assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE);
  assert_ok(twin_host_end(a));
  if (f->has_device) {
    cl_mem mem;
    size_t off;
    assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
    assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
    assert_ok(twin_device_end(a));
  }
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
#else
  (void)f;
  skip();
#endif
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
#ifdef TWIN_HAVE_OPENCL
  if (f->has_device) {
    cl_mem mem;
    size_t off;
    assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_BUSY);
  }
#endif
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
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  cl_mem mem;
  size_t off;
  void *p;
  assert_ok(twin_host_begin(v, TWIN_WRITE, &p));
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_BUSY);
  assert_non_null(strstr(twin_last_error(), "host write"));
  assert_status(twin_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(v));
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
  assert_ok(twin_device_end(a));
  assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE); /* the refused begins opened nothing */
  expect_device_i32(f, a, 1);
  twin_array_unref(v);
  twin_array_unref(a);
#endif
}

static void test_host_begin_is_busy_while_a_view_writes_on_device(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  cl_mem mem;
  size_t off;
  void *p;
  assert_ok(twin_device_begin(v, TWIN_READ_WRITE, &mem, &off));
  assert_status(twin_host_begin(a, TWIN_READ, &p), TWIN_ERR_BUSY);
  assert_non_null(strstr(twin_last_error(), "device write"));
  assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_BUSY);
  assert_ok(twin_device_end(v));
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(v);
  twin_array_unref(a);
#endif
}

static void test_write_is_busy_while_the_other_side_reads(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 8, 1000), *v = alias(a);
  cl_mem mem;
  size_t off;
  void *p;
  assert_ok(twin_host_begin(v, TWIN_READ, &p));
  assert_status(twin_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_BUSY);
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off)); /* reads on both sides may overlap */
  assert_ok(twin_device_end(a));
  assert_ok(twin_host_end(v));
  fixture_expect_i32(a, 1000);
  twin_array_unref(v);
  twin_array_unref(a);
#endif
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
#ifdef TWIN_HAVE_OPENCL
    cl_mem mem = NULL;
    size_t off = 77;
    assert_status(twin_device_begin(a, bad[i], &mem, &off), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "access"));
    assert_null(mem);
    assert_int_equal(off, 77);
#endif
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
#ifdef TWIN_HAVE_OPENCL
  cl_mem mem;
  size_t off;
  assert_status(twin_device_begin(NULL, TWIN_READ, &mem, &off), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "array"));
  assert_status(twin_device_begin(a, TWIN_READ, NULL, &off), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_device_begin(a, TWIN_READ, &mem, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "byte_offset"));
  assert_status(twin_device_end(NULL), TWIN_ERR_INVALID_ARGUMENT);
#endif
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 1000);
  twin_array_unref(a);
}

/* ---- backends and devices ---- */

static void test_host_backend_has_no_device_access(void **state) {
  twin_fixture *f = fixture(state);
  if (f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_array *a = fixture_i32(f->ctx, 4, 1000);
  cl_mem mem = NULL;
  size_t off = 77;
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "host backend"));
  assert_null(mem);
  assert_int_equal(off, 77);
  assert_null(twin_context_cl_queue(f->ctx));
  assert_null(twin_context_cl_context(f->ctx));
  assert_null(twin_context_cl_device(f->ctx));
  assert_null(twin_context_cl_queue(NULL));
  fixture_expect_i32(a, 1000);
  assert_int_equal(fixture_stats(f).device_bytes, 0);
  twin_array_unref(a);
#else
  skip();
#endif
}

static void test_device_backend_exposes_its_opencl_objects(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  cl_command_queue q = twin_context_cl_queue(f->ctx);
  assert_non_null(q);
  cl_context c = NULL;
  cl_device_id d = NULL;
  assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof c, &c, NULL), CL_SUCCESS);
  assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof d, &d, NULL), CL_SUCCESS);
  assert_ptr_equal(c, twin_context_cl_context(f->ctx));
  assert_ptr_equal(d, twin_context_cl_device(f->ctx));
#endif
}

static void test_f64_on_a_device_without_fp64_is_unsupported(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  ctx->device.fp64 = false; /* as a device without cl_khr_fp64 would report */
  const size_t n = 3;
  const double d[3] = {1.5, -2.5, 1e300};
  const float s[3] = {1.5f, -2.5f, 3e30f};
  twin_array *a, *b;
  assert_ok(twin_array_from_host(ctx, TWIN_F64, 1, &n, d, &a));
  assert_ok(twin_array_from_host(ctx, TWIN_F32, 1, &n, s, &b));
  cl_mem mem = NULL;
  size_t off = 77;
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "fp64"));
  assert_null(mem);
  assert_int_equal(off, 77);
  assert_ok(twin_device_begin(b, TWIN_READ, &mem, &off)); /* f32 is fine */
  assert_ok(twin_device_end(b));
  double got[3];
  assert_ok(twin_array_read(a, got, sizeof got)); /* the host side still works */
  assert_memory_equal(got, d, sizeof got);
  twin_stats st;
  assert_ok(twin_context_stats(ctx, &st));
  /* Only the f32 array reached the device (zero-copy memory counts as host memory). */
  assert_int_equal(st.device_bytes, f->zero_copy ? 0 : 12);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);
#endif
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
#ifdef TWIN_HAVE_OPENCL
  if (f->has_device)
    device_fill_i32(f, a, TWIN_WRITE, 0); /* the device holds the newest copy */
#endif
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
    TWIN_TEST(test_invalid_access_value_is_invalid),
    TWIN_TEST(test_null_array_or_pointer_is_invalid),
    TWIN_TEST(test_host_backend_has_no_device_access),
    TWIN_TEST(test_device_backend_exposes_its_opencl_objects),
    TWIN_TEST(test_f64_on_a_device_without_fp64_is_unsupported),
    TWIN_TEST(test_read_write_size_mismatch_is_invalid),
    TWIN_TEST(test_read_write_on_a_strided_view_are_packed),
};

TWIN_TEST_MAIN(tests)

/* Arrays and buffers: constructors and getters for every dtype, round trips through both
 * sides, 0-d and empty arrays, argument errors, overflow, refcounts and memory lifetime,
 * strided views, and concurrent ref/unref. */
#include <dlpack/dlpack.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static const twin_dtype all_dtypes[TWIN_DTYPE_COUNT] = {TWIN_I8,  TWIN_U8,  TWIN_I16, TWIN_U16,
                                                        TWIN_I32, TWIN_U32, TWIN_I64, TWIN_U64,
                                                        TWIN_F32, TWIN_F64};

/* Fills n elements of dt at p with distinctive values: negative ones, the top of each unsigned
 * range, fractional floats; `seed` gives a different pattern. */
static void pattern(twin_dtype dt, void *p, size_t n, int seed) {
  for (size_t i = 0; i < n; i++) {
    long long k = (long long)i + 1 + seed * 1000LL;
    switch (dt) {
    case TWIN_I8:
      ((int8_t *)p)[i] = (int8_t)(-1 - k % 127);
      break;
    case TWIN_U8:
      ((uint8_t *)p)[i] = (uint8_t)(255 - k % 200);
      break;
    case TWIN_I16:
      ((int16_t *)p)[i] = (int16_t)(-30000 + k % 20000);
      break;
    case TWIN_U16:
      ((uint16_t *)p)[i] = (uint16_t)(65535 - k % 30000);
      break;
    case TWIN_I32:
      ((int32_t *)p)[i] = (int32_t)(-2000000000 + k * 12345);
      break;
    case TWIN_U32:
      ((uint32_t *)p)[i] = UINT32_MAX - (uint32_t)k * 7u;
      break;
    case TWIN_I64:
      ((int64_t *)p)[i] = INT64_MIN + k * 1000003;
      break;
    case TWIN_U64:
      ((uint64_t *)p)[i] = UINT64_MAX - (uint64_t)k * 999983u;
      break;
    case TWIN_F32:
      ((float *)p)[i] = (float)k * -1.25f + 0.5f;
      break;
    case TWIN_F64:
      ((double *)p)[i] = ((double)k * 0.1 - 7.0) * 1e200;
      break;
    }
  }
}

/* Asserts what is alive in f->ctx beyond `base`, a snapshot from the start of the case (so an
 * earlier failed case's leftovers do not count). `dev` is the device bytes expected on a device
 * backend; the host backend never has any. */
static void expect_live(const twin_fixture *f, const twin_stats *base, size_t arrays,
                        size_t buffers, size_t host, size_t dev) {
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays - base->arrays, arrays);
  assert_int_equal(st.buffers - base->buffers, buffers);
  assert_int_equal(st.host_bytes - base->host_bytes, host);
  /* Zero-copy memory counts once, as host memory. */
  assert_int_equal(st.device_bytes - base->device_bytes, f->layout == FIXTURE_TWO_COPIES ? dev : 0);
}

/* Makes a's host side allocated and current. */
static void touch_host(twin_array *a) {
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  assert_ok(twin_host_end(a));
}

static void device_get(twin_context *ctx, void *mem, size_t off, void *dst, size_t n) {
  if (n)
    assert_true(fixture_device_get(ctx, mem, off, dst, n));
}

static void device_put(twin_context *ctx, void *mem, size_t off, const void *src, size_t n) {
  if (n)
    assert_true(fixture_device_put(ctx, mem, off, src, n));
}

/* Makes a's device side allocated and current; nothing on the host backend. */
static void touch_device(twin_array *a) {
  if (twin_context_device(twin_array_context(a))->type == TWIN_DEVICE_HOST)
    return;
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  assert_ok(fixture_device_end(a));
}

/* ---- dtypes and getters ---- */

static void test_dtype_size_and_name_for_every_dtype(void **state) {
  (void)state;
  static const size_t sizes[] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
  static const char *names[] = {"i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64"};
  for (int i = 0; i < TWIN_DTYPE_COUNT; i++) {
    assert_int_equal(twin_dtype_size(all_dtypes[i]), sizes[i]);
    assert_string_equal(twin_dtype_name(all_dtypes[i]), names[i]);
  }
  const twin_dtype bad[] = {(twin_dtype)TWIN_DTYPE_COUNT, (twin_dtype)42, (twin_dtype)-1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(twin_dtype_size(bad[i]), 0);
    assert_null(twin_dtype_name(bad[i]));
  }
}

static void check_getters(twin_fixture *f, twin_array *a, twin_dtype dt) {
  static const size_t shape[] = {2, 3, 4};
  static const ptrdiff_t strides[] = {12, 4, 1};
  assert_int_equal(twin_array_dtype(a), dt);
  assert_int_equal(twin_array_ndim(a), 3);
  assert_memory_equal(twin_array_shape(a), shape, sizeof shape);
  assert_memory_equal(twin_array_strides(a), strides, sizeof strides);
  assert_int_equal(twin_array_size(a), 24);
  assert_int_equal(twin_array_nbytes(a), 24 * twin_dtype_size(dt));
  assert_ptr_equal(twin_array_context(a), f->ctx);
  assert_true(twin_array_is_contiguous(a));
}

static void test_constructors_and_getters_for_every_dtype(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {2, 3, 4};
  uint64_t data[24];
  twin_stats base = fixture_stats(f);
  for (int i = 0; i < TWIN_DTYPE_COUNT; i++) {
    twin_dtype dt = all_dtypes[i];
    pattern(dt, data, 24, 0);
    twin_array *a[3];
    assert_ok(twin_array_new(f->ctx, dt, 3, shape, &a[0]));
    assert_ok(twin_array_zeros(f->ctx, dt, 3, shape, &a[1]));
    assert_ok(twin_array_from_host(f->ctx, dt, 3, shape, data, &a[2]));
    /* from_host wrote the host side only; the others allocated nothing yet. */
    expect_live(f, &base, 3, 3, 24 * twin_dtype_size(dt), 0);
    for (int k = 0; k < 3; k++) {
      check_getters(f, a[k], dt);
      twin_array_unref(a[k]);
    }
  }
}

/* ---- round trips ---- */

static void test_from_host_round_trip_every_dtype(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {5, 7};
  const size_t n = 35;
  uint64_t src[35], expect[35], got[35];
  for (int i = 0; i < TWIN_DTYPE_COUNT; i++) {
    twin_dtype dt = all_dtypes[i];
    size_t nbytes = n * twin_dtype_size(dt);
    pattern(dt, src, n, 0);
    memcpy(expect, src, nbytes);
    twin_array *a;
    assert_ok(twin_array_from_host(f->ctx, dt, 2, shape, src, &a));
    memset(src, 0x5a, sizeof src); /* the caller may reuse data at once */
    memset(got, 0, sizeof got);
    assert_ok(twin_array_read(a, got, nbytes));
    assert_memory_equal(got, expect, nbytes);
    if (f->has_device) {
      void *mem;
      size_t off;
      assert_ok(fixture_device_begin(a, TWIN_READ_WRITE, &mem, &off));
      memset(got, 0, sizeof got);
      device_get(f->ctx, mem, off, got, nbytes); /* the host data went to the device */
      assert_memory_equal(got, expect, nbytes);
      pattern(dt, expect, n, 1);
      device_put(f->ctx, mem, off, expect, nbytes);
      assert_ok(fixture_device_end(a));
      memset(got, 0, sizeof got);
      assert_ok(twin_array_read(a, got, nbytes)); /* and the device's data came back */
      assert_memory_equal(got, expect, nbytes);
    }
    twin_array_unref(a);
  }
}

static void test_zeros_read_back_zero_on_both_sides(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {3, 33};
  twin_stats before = fixture_stats(f);
  for (int i = 0; i < TWIN_DTYPE_COUNT; i++) {
    twin_array *a;
    assert_ok(twin_array_zeros(f->ctx, all_dtypes[i], 2, shape, &a));
    size_t nbytes = twin_array_nbytes(a);
    unsigned char got[99 * 8], zero[99 * 8] = {0};
    memset(got, 0xff, sizeof got);
    assert_ok(twin_array_read(a, got, nbytes));
    assert_memory_equal(got, zero, nbytes);
    if (f->has_device) {
      void *mem;
      size_t off;
      assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
      memset(got, 0xff, sizeof got);
      device_get(f->ctx, mem, off, got, nbytes);
      assert_ok(fixture_device_end(a));
      assert_memory_equal(got, zero, nbytes);
    }
    twin_array_unref(a);
  }
  /* Each side was zeroed where it was made: nothing moved. */
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_device, before.bytes_to_device);
  assert_int_equal(after.bytes_to_host, before.bytes_to_host);
}

static void test_zeros_made_on_device_first_need_no_transfer(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  const size_t shape[] = {1000};
  twin_stats before = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U64, 1, shape, &a));
  uint64_t got[1000], zero[1000] = {0};
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(a, TWIN_READ, &mem, &off));
  memset(got, 0xff, sizeof got);
  device_get(f->ctx, mem, off, got, sizeof got);
  assert_memory_equal(got, zero, sizeof got);
  assert_ok(fixture_device_end(a));
  memset(got, 0xff, sizeof got);
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_memory_equal(got, zero, sizeof got);
  expect_live(f, &before, 1, 1, 8000, 8000);
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_device, before.bytes_to_device);
  assert_int_equal(after.bytes_to_host, before.bytes_to_host);
  assert_int_equal(after.transfers_to_device, before.transfers_to_device);
  assert_int_equal(after.transfers_to_host, before.transfers_to_host);
  twin_array_unref(a);
}

/* ---- 0-d, empty and 8-d arrays ---- */

static void test_zero_dim_array_holds_one_element(void **state) {
  twin_fixture *f = fixture(state);
  double v = -2.5e100, got = 0;
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F64, 0, NULL, &v, &a));
  assert_int_equal(twin_array_ndim(a), 0);
  assert_int_equal(twin_array_size(a), 1);
  assert_int_equal(twin_array_nbytes(a), 8);
  assert_true(twin_array_is_contiguous(a));
  double *p;
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p));
  assert_true(*p == v);
  *p = 7.25;
  assert_ok(twin_host_end(a));
  if (f->has_device) {
    void *mem;
    size_t off;
    assert_ok(fixture_device_begin(a, TWIN_READ_WRITE, &mem, &off));
    device_get(f->ctx, mem, off, &got, sizeof got);
    assert_true(got == 7.25);
    double dev = -1.0 / 3.0;
    device_put(f->ctx, mem, off, &dev, sizeof dev);
    assert_ok(fixture_device_end(a));
    assert_ok(twin_array_read(a, &got, sizeof got));
    assert_true(got == -1.0 / 3.0);
    twin_array_unref(a);
    return;
  }
  assert_ok(twin_array_read(a, &got, sizeof got));
  assert_true(got == 7.25);
  twin_array_unref(a);
}

static void test_zero_length_axis_is_empty_and_usable(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {3, 0, 2};
  twin_stats base = fixture_stats(f);
  twin_array *a, *z;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 3, shape, NULL, &a));
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 3, shape, &z));
  assert_int_equal(twin_array_size(a), 0);
  assert_int_equal(twin_array_nbytes(a), 0);
  assert_memory_equal(twin_array_shape(a), shape, sizeof shape);
  assert_true(twin_array_is_contiguous(a));
  assert_ok(twin_array_read(a, NULL, 0));
  assert_ok(twin_array_write(z, NULL, 0));
  void *p = NULL;
  assert_ok(twin_host_begin(z, TWIN_READ, &p));
  assert_non_null(p);
  assert_ok(twin_host_end(z));
  touch_device(a);
  touch_device(z);
  /* An empty buffer counts no bytes on either side it is used on. */
  expect_live(f, &base, 2, 2, 0, 0);
  twin_array_unref(a);
  twin_array_unref(z);
}

static void test_eight_dims_round_trip(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[8] = {2, 1, 3, 1, 2, 1, 2, 3};
  const ptrdiff_t strides[8] = {36, 36, 12, 12, 6, 6, 3, 1};
  int16_t src[72], got[72];
  pattern(TWIN_I16, src, 72, 3);
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I16, 8, shape, src, &a));
  assert_int_equal(twin_array_ndim(a), 8);
  assert_int_equal(twin_array_size(a), 72);
  assert_memory_equal(twin_array_shape(a), shape, sizeof shape);
  assert_memory_equal(twin_array_strides(a), strides, sizeof strides);
  touch_device(a);
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_memory_equal(got, src, sizeof src);
  twin_array_unref(a);
}

/* ---- argument errors ---- */

/* A value no constructor may store into *out. */
#define SENTINEL ((twin_array *)(uintptr_t)0x5e1f)

static void test_ndim_outside_zero_to_eight_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  int8_t data[1] = {0};
  const int bad[] = {9, -1};
  twin_stats base = fixture_stats(f);
  for (size_t i = 0; i < 2; i++) {
    twin_array *a = SENTINEL;
    assert_status(twin_array_new(f->ctx, TWIN_I8, bad[i], shape, &a), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "ndim"));
    assert_status(twin_array_zeros(f->ctx, TWIN_I8, bad[i], shape, &a), TWIN_ERR_INVALID_ARGUMENT);
    assert_status(twin_array_from_host(f->ctx, TWIN_I8, bad[i], shape, data, &a),
                  TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "ndim"));
    assert_ptr_equal(a, SENTINEL);
  }
  expect_live(f, &base, 0, 0, 0, 0);
}

static void test_null_ctx_is_invalid(void **state) {
  (void)state;
  const size_t shape[] = {4};
  float data[4] = {0};
  twin_array *a = SENTINEL;
  assert_status(twin_array_new(NULL, TWIN_F32, 1, shape, &a), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "ctx"));
  assert_status(twin_array_zeros(NULL, TWIN_F32, 1, shape, &a), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "ctx"));
  assert_status(twin_array_from_host(NULL, TWIN_F32, 1, shape, data, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "ctx"));
  assert_ptr_equal(a, SENTINEL);
}

static void test_null_out_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {4};
  assert_status(twin_array_new(f->ctx, TWIN_F32, 1, shape, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "out"));
  assert_status(twin_array_zeros(f->ctx, TWIN_F32, 1, shape, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "out"));
  float data[4] = {0};
  assert_status(twin_array_from_host(f->ctx, TWIN_F32, 1, shape, data, NULL),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "out"));
}

static void test_null_shape_with_axes_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  float data[4] = {0};
  twin_array *a = SENTINEL;
  assert_status(twin_array_new(f->ctx, TWIN_F32, 1, NULL, &a), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "shape"));
  assert_status(twin_array_zeros(f->ctx, TWIN_F32, 2, NULL, &a), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "shape"));
  assert_status(twin_array_from_host(f->ctx, TWIN_F32, 1, NULL, data, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "shape"));
  assert_ptr_equal(a, SENTINEL);
}

static void test_bad_dtype_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {4};
  uint64_t data[4] = {0};
  const twin_dtype bad[] = {(twin_dtype)42, (twin_dtype)-1, (twin_dtype)TWIN_DTYPE_COUNT};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    twin_array *a = SENTINEL;
    assert_status(twin_array_new(f->ctx, bad[i], 1, shape, &a), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "dtype"));
    assert_status(twin_array_zeros(f->ctx, bad[i], 1, shape, &a), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "dtype"));
    assert_status(twin_array_from_host(f->ctx, bad[i], 1, shape, data, &a),
                  TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "dtype"));
    assert_ptr_equal(a, SENTINEL);
  }
}

static void test_from_host_null_data_with_elements_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {2, 3};
  twin_array *a = SENTINEL;
  assert_status(twin_array_from_host(f->ctx, TWIN_U16, 2, shape, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "data"));
  assert_ptr_equal(a, SENTINEL);
  assert_status(twin_array_from_host(f->ctx, TWIN_U16, 0, NULL, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(a, SENTINEL);
}

static void test_element_count_overflow(void **state) {
  twin_fixture *f = fixture(state);
  const size_t two[] = {SIZE_MAX / 2 + 1, 2};
  const size_t eight[8] = {256, 256, 256, 256, 256, 256, 256, 256}; /* 2^64 */
  twin_array *a = SENTINEL;
  assert_status(twin_array_new(f->ctx, TWIN_U8, 2, two, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "shape[1]"));
  assert_status(twin_array_zeros(f->ctx, TWIN_U8, 8, eight, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "shape[7]"));
  assert_status(twin_array_from_host(f->ctx, TWIN_U8, 2, two, "x", &a), TWIN_ERR_OVERFLOW);
  assert_ptr_equal(a, SENTINEL);
}

static void test_byte_size_overflow(void **state) {
  twin_fixture *f = fixture(state);
  const size_t wraps[] = {SIZE_MAX / 8 + 1};      /* 2^61 f64: the byte size wraps size_t */
  const size_t too_big[] = {PTRDIFF_MAX / 4 + 1}; /* fits size_t, exceeds PTRDIFF_MAX */
  twin_array *a = SENTINEL;
  assert_status(twin_array_new(f->ctx, TWIN_F64, 1, wraps, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "byte size"));
  assert_status(twin_array_zeros(f->ctx, TWIN_F32, 1, too_big, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "byte size"));
  assert_status(twin_array_from_host(f->ctx, TWIN_F64, 1, wraps, "x", &a), TWIN_ERR_OVERFLOW);
  assert_ptr_equal(a, SENTINEL);
}

/* A shape is valid for every operation or refused when the array is made: its axis lengths,
 * zero-length ones counted as 1, times the element size must fit in ptrdiff_t, so that C-order
 * strides in any axis order (a transpose, a reshape, a packed read) can be computed. */
static void test_empty_shape_whose_strides_overflow_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  const size_t issue[] = {0, 1ull << 62, 8}, longest[] = {0, SIZE_MAX};
  twin_array *a = SENTINEL;
  assert_status(twin_array_new(f->ctx, TWIN_I32, 3, issue, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_new"));
  assert_non_null(strstr(twin_last_error(), "shape[1]"));
  assert_status(twin_array_zeros(f->ctx, TWIN_I32, 3, issue, &a), TWIN_ERR_OVERFLOW);
  assert_status(twin_array_from_host(f->ctx, TWIN_I32, 3, issue, NULL, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_from_host"));
  assert_status(twin_array_new(f->ctx, TWIN_U8, 2, longest, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "shape[1]"));
  /* Lent memory: explicit strides over no element, and strides whose extent overflows. */
  int32_t block[4];
  const ptrdiff_t ones[] = {1, 1, 1}, huge[] = {1, PTRDIFF_MAX};
  const size_t wide[] = {0, 3};
  assert_status(twin_array_wrap_host(f->ctx, block, TWIN_I32, 3, issue, ones, NULL, NULL, &a),
                TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_wrap_host"));
  assert_status(twin_array_wrap_host(f->ctx, block, TWIN_I32, 2, wide, huge, NULL, NULL, &a),
                TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "axis 1"));
  int64_t dl_shape[] = {0, 1ll << 62, 8};
  DLManagedTensor t = {.dl_tensor = {.data = block,
                                     .device = {kDLCPU, 0},
                                     .ndim = 3,
                                     .dtype = {kDLInt, 32, 1},
                                     .shape = dl_shape}};
  assert_status(twin_array_from_dlpack(f->ctx, &t, &a), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_from_dlpack"));
  assert_ptr_equal(a, SENTINEL);
  expect_live(f, &base, 0, 0, 0, 0);
  /* Just inside the limit: made, and every view of it works (see test_view.c). */
  const size_t edge[] = {0, 1ull << 60, 1};
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 3, edge, &a));
  twin_array *t_view;
  assert_ok(twin_array_transpose(a, NULL, &t_view));
  twin_array_unref(t_view);
  twin_array_unref(a);
}

/* Every path works on an array with no elements, and it counts no bytes anywhere. */
static twin_status count_calls(const twin_host_launch *launch, void *user) {
  (void)launch;
  ++*(int *)user;
  return TWIN_OK;
}

static void run_zero_work_kernels(const twin_fixture *f, twin_context *ctx, twin_array *a) {
  size_t global[] = {0};
  twin_arg args[] = {twin_arg_array(a, TWIN_WRITE)};
  int calls = 0;
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(ctx, "count_calls", count_calls, &calls, &k));
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 1, args));
  assert_int_equal(calls, 0); /* a range with a zero in it launches nothing */
  twin_kernel_unref(k);
  if (!f->opencl)
    return;
  twin_program *p;
  assert_ok(twin_program_new(ctx,
                             "__kernel void set7(TWIN_ARRAY(__global int, x)) {\n"
                             "  TWIN_AT(x, get_global_id(0)) = 7;\n}\n",
                             NULL, &p));
  assert_ok(twin_kernel_new(p, "set7", &k));
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 1, args));
  assert_ok(twin_context_finish(ctx));
  twin_kernel_unref(k);
  twin_program_unref(p);
}

static void test_empty_array_works_on_every_path_and_counts_no_bytes(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  const size_t shape[] = {4, 0};
  twin_array *a, *b, *v, *w, *c;
  assert_ok(twin_array_zeros(ctx, TWIN_F32, 2, shape, &a));
  assert_ok(twin_array_new(ctx, TWIN_I32, 2, shape, &b));
  touch_host(a);
  touch_device(a);
  touch_device(b);
  touch_host(b);
  float one = 1;
  assert_ok(twin_fill(a, &one));
  assert_ok(twin_copy(b, a)); /* with a conversion */
  twin_slice rows = {1, 3, 1};
  assert_ok(twin_array_slice(b, (twin_slice[]){rows, {TWIN_NONE, TWIN_NONE, 1}}, &v));
  assert_ok(twin_array_slice(a, (twin_slice[]){rows, {5, TWIN_NONE, -1}}, &w));
  assert_ok(twin_copy(v, w));
  assert_status(twin_copy(v, a), TWIN_ERR_SHAPE_MISMATCH); /* 4 rows do not fit 2 */
  assert_ok(twin_array_copy(v, &c));
  assert_int_equal(twin_array_size(c), 0);
  assert_ok(twin_array_read(c, NULL, 0));
  run_zero_work_kernels(f, ctx, b);
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack(a, TWIN_READ, &t));
  assert_int_equal(t->dl_tensor.shape[1], 0);
  t->deleter(t);
  if (f->has_device) {
    assert_ok(fixture_to_dlpack_device(v, TWIN_READ_WRITE, &t));
    t->deleter(t);
  }
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.buffers, 3);
  assert_int_equal(st.host_bytes + st.device_bytes, 0);
  assert_int_equal(st.peak_host_bytes + st.peak_device_bytes, 0);
  assert_int_equal(st.bytes_to_device + st.bytes_to_host, 0);
  twin_array_unref(c);
  twin_array_unref(w);
  twin_array_unref(v);
  twin_array_unref(b);
  twin_array_unref(a);
  twin_context_unref(ctx);
}

/* Opens a context of the group's kind with host and device budgets. */
static void open_with_budgets(const twin_fixture *f, size_t host, size_t device,
                              twin_context **out) {
  char spec[64];
  twin_context_options options = fixture_options(f->spec, spec, sizeof spec);
  options.host_memory_limit = host;
  options.device_memory_limit = device;
  assert_ok(twin_context_new_with(&options, out));
}

static void test_empty_array_fits_a_full_budget(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  open_with_budgets(f, 64, 64, &ctx);
  const size_t n = 64, none = 0;
  twin_array *full, *empty;
  assert_ok(twin_array_new(ctx, TWIN_U8, 1, &n, &full));
  touch_host(full);
  touch_device(full);
  assert_ok(twin_array_new(ctx, TWIN_U8, 1, &none, &empty));
  assert_ok(twin_array_set_owner(empty, "empty"));
  touch_host(empty); /* the budget is used up: an empty array still fits */
  touch_device(empty);
  assert_ok(twin_array_prefetch(empty, TWIN_HOST));
  twin_stats st = fixture_ctx_stats(ctx), owned;
  assert_int_equal(st.host_bytes, 64);
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 64 : 0);
  assert_ok(twin_context_owner_stats(ctx, "empty", &owned));
  assert_int_equal(owned.buffers, 1);
  assert_int_equal(owned.host_bytes + owned.device_bytes, 0);
  twin_array_unref(full);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes + st.device_bytes, 0);
  twin_array_unref(empty);
  twin_context_unref(ctx);
}

/* ---- refcounts and memory lifetime ---- */

static void test_ref_returns_argument_and_unref_null_is_noop(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 0, NULL, &a));
  assert_ptr_equal(twin_array_ref(a), a);
  assert_null(twin_array_ref(NULL));
  twin_array_unref(NULL);
  twin_array_unref(a);
  expect_live(f, &base, 1, 1, 0, 0); /* one reference is left */
  twin_array_unref(a);
  expect_live(f, &base, 0, 0, 0, 0);
}

static void test_memory_is_allocated_lazily_per_side(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {10, 100};
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 2, shape, &a));
  expect_live(f, &base, 1, 1, 0, 0);
  touch_device(a);
  /* Zero-copy: the device's first use allocates the one block both sides share. */
  expect_live(f, &base, 1, 1, f->layout == FIXTURE_SHARED ? 4000 : 0, 4000);
  touch_host(a);
  expect_live(f, &base, 1, 1, 4000, 4000);
  twin_array_unref(a);
}

static void test_last_unref_frees_both_sides_at_once(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {333};
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I16, 1, shape, &a));
  touch_host(a);
  touch_device(a);
  expect_live(f, &base, 1, 1, 666, 666);
  twin_array *b = twin_array_ref(a);
  twin_array_unref(a); /* b still holds it */
  expect_live(f, &base, 1, 1, 666, 666);
  int16_t got[333], zero[333] = {0};
  assert_ok(twin_array_read(b, got, sizeof got));
  assert_memory_equal(got, zero, sizeof got);
  twin_array_unref(b);
  expect_live(f, &base, 0, 0, 0, 0);
}

static void test_peaks_keep_the_highest_usage(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  const size_t s1000[] = {250}, s3000[] = {3000}, s500[] = {500};
  twin_array *a, *b, *c;
  assert_ok(twin_array_zeros(ctx, TWIN_F32, 1, s1000, &a));
  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, s3000, &b));
  touch_host(a);
  touch_host(b);
  touch_device(b);
  twin_array_unref(a);
  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, s500, &c));
  touch_host(c);
  touch_device(c);
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, 3500);
  assert_int_equal(st.peak_host_bytes, 4000);
  bool two_copies = f->layout == FIXTURE_TWO_COPIES;
  assert_int_equal(st.device_bytes, two_copies ? 3500 : 0);
  assert_int_equal(st.peak_device_bytes, two_copies ? 3500 : 0);
  twin_array_unref(b);
  twin_array_unref(c);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, 0);
  assert_int_equal(st.peak_host_bytes, 4000);
  assert_int_equal(st.peak_device_bytes, two_copies ? 3500 : 0);
  twin_context_unref(ctx);
}

/* ---- strided views ---- */

static void test_view_shares_memory_with_its_base(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {10}, vshape[] = {5};
  const ptrdiff_t vstrides[] = {2};
  int32_t src[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  twin_array *a, *v;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, shape, src, &a));
  twin_stats before = fixture_stats(f);
  assert_ok(twin_array_as_strided(a, 1, vshape, vstrides, 1, &v));
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.arrays, before.arrays + 1);
  assert_int_equal(after.buffers, before.buffers);
  assert_int_equal(after.host_bytes, before.host_bytes);
  assert_false(twin_array_is_contiguous(v));
  int32_t *p;
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p));
  for (int i = 0; i < 10; i++)
    p[i] = -100 * i;
  assert_ok(twin_host_end(a));
  int32_t got[5];
  assert_ok(twin_array_read(v, got, sizeof got));
  const int32_t expect[5] = {-100, -300, -500, -700, -900};
  assert_memory_equal(got, expect, sizeof got);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_view_keeps_buffer_alive_after_base_unref(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {2, 4}, vshape[] = {4};
  const ptrdiff_t vstrides[] = {1};
  int64_t src[8] = {-1, -2, -3, -4, 5, 6, 7, 8};
  twin_stats base = fixture_stats(f);
  twin_array *a, *v;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I64, 2, shape, src, &a));
  touch_device(a);
  assert_ok(twin_array_as_strided(a, 1, vshape, vstrides, 4, &v));
  twin_array_unref(a);
  expect_live(f, &base, 1, 1, 64, 64);
  int64_t got[4];
  assert_ok(twin_array_read(v, got, sizeof got));
  assert_memory_equal(got, src + 4, sizeof got);
  twin_array_unref(v); /* the last view frees both memories */
  expect_live(f, &base, 0, 0, 0, 0);
}

static void test_view_outside_the_buffer_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {10};
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, shape, &a));
  static const struct {
    size_t shape;
    ptrdiff_t stride, offset;
  } bad[] = {
      {6, 2, 0},  /* reaches element 10 */
      {2, 9, 1},  /* reaches element 10 */
      {3, -2, 3}, /* reaches element -1 */
      {1, 1, 10}, /* starts past the end */
      {1, 1, -1}, /* starts before the start */
      {0, 1, 11}, /* empty, but offset past the end */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    twin_array *v = SENTINEL;
    assert_status(twin_array_as_strided(a, 1, &bad[i].shape, &bad[i].stride, bad[i].offset, &v),
                  TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "outside"));
    assert_ptr_equal(v, SENTINEL);
  }
  const size_t huge_shape[] = {3};
  const ptrdiff_t huge_stride[] = {PTRDIFF_MAX};
  twin_array *v = SENTINEL;
  assert_status(twin_array_as_strided(a, 1, huge_shape, huge_stride, 0, &v), TWIN_ERR_OVERFLOW);
  assert_ptr_equal(v, SENTINEL);
  expect_live(f, &base, 1, 1, 0, 0);
  /* The edges themselves are inside. */
  const size_t last_shape[] = {2};
  const ptrdiff_t back[] = {-9};
  assert_ok(twin_array_as_strided(a, 1, last_shape, back, 9, &v));
  twin_array_unref(v);
  twin_array_unref(a);
}

/* ---- threads ---- */

#define REF_THREADS 8
#define REF_ROUNDS 20000

static void *ref_unref_loop(void *arg) {
  twin_array *a = arg;
  for (int i = 0; i < REF_ROUNDS; i++) {
    twin_array *r = twin_array_ref(a);
    twin_array_ref(r);
    twin_array_unref(r);
    twin_array_unref(r);
  }
  twin_array_unref(a); /* the reference main handed over */
  return NULL;
}

static void test_concurrent_ref_unref_keeps_exact_count(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {64};
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U32, 1, shape, &a));
  touch_host(a);
  pthread_t threads[REF_THREADS];
  for (int i = 0; i < REF_THREADS; i++)
    twin_array_ref(a);
  for (int i = 0; i < REF_THREADS; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, ref_unref_loop, a), 0);
  for (int i = 0; i < REF_THREADS; i++)
    assert_int_equal(pthread_join(threads[i], NULL), 0);
  /* Every thread dropped what it took: exactly main's reference is left. */
  assert_int_equal(atomic_load(&a->refs), 1);
  expect_live(f, &base, 1, 1, 256, 0);
  /* And the other way: main drops first, the last thread to finish frees. */
  for (int i = 0; i < REF_THREADS; i++)
    twin_array_ref(a);
  for (int i = 0; i < REF_THREADS; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, ref_unref_loop, a), 0);
  twin_array_unref(a);
  for (int i = 0; i < REF_THREADS; i++)
    assert_int_equal(pthread_join(threads[i], NULL), 0);
  expect_live(f, &base, 0, 0, 0, 0);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_dtype_size_and_name_for_every_dtype),
    TWIN_TEST(test_constructors_and_getters_for_every_dtype),
    TWIN_TEST(test_from_host_round_trip_every_dtype),
    TWIN_TEST(test_zeros_read_back_zero_on_both_sides),
    TWIN_TEST(test_zeros_made_on_device_first_need_no_transfer),
    TWIN_TEST(test_zero_dim_array_holds_one_element),
    TWIN_TEST(test_zero_length_axis_is_empty_and_usable),
    TWIN_TEST(test_eight_dims_round_trip),
    TWIN_TEST(test_ndim_outside_zero_to_eight_is_invalid),
    TWIN_TEST(test_null_ctx_is_invalid),
    TWIN_TEST(test_null_out_is_invalid),
    TWIN_TEST(test_null_shape_with_axes_is_invalid),
    TWIN_TEST(test_bad_dtype_is_invalid),
    TWIN_TEST(test_from_host_null_data_with_elements_is_invalid),
    TWIN_TEST(test_element_count_overflow),
    TWIN_TEST(test_byte_size_overflow),
    TWIN_TEST(test_empty_shape_whose_strides_overflow_is_refused),
    TWIN_TEST(test_empty_array_works_on_every_path_and_counts_no_bytes),
    TWIN_TEST(test_empty_array_fits_a_full_budget),
    TWIN_TEST(test_ref_returns_argument_and_unref_null_is_noop),
    TWIN_TEST(test_memory_is_allocated_lazily_per_side),
    TWIN_TEST(test_last_unref_frees_both_sides_at_once),
    TWIN_TEST(test_peaks_keep_the_highest_usage),
    TWIN_TEST(test_view_shares_memory_with_its_base),
    TWIN_TEST(test_view_keeps_buffer_alive_after_base_unref),
    TWIN_TEST(test_view_outside_the_buffer_is_refused),
    TWIN_TEST(test_concurrent_ref_unref_keeps_exact_count),
};

TWIN_TEST_MAIN(tests)

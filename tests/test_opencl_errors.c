/* Failure paths through OpenCL: each OpenCL call a buffer's allocation, transfers, zeroing,
 * mapping and a context's creation make is failed through the twin__cl dispatch table (never
 * process-wide: PoCL needs its malloc). Every injected failure must give a clean status and a
 * message naming the call and its code, leave nothing alive and leave existing arrays intact.
 * Registered only in builds with OpenCL; runs on the OpenCL groups (test_errors.c holds the host
 * allocation failures, on every backend). */
#include <stdio.h>
#include <string.h>

#include "backends/opencl/clapi.h"
#include "cl_faults.h"
#include "core/twin_opencl.h"
#include "fixture.h"
#include "host_faults.h"

/* Asserts that the live objects and memory of f->ctx are those of `base`. */
static void expect_same_live(const twin_fixture *f, const twin_stats *base) {
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays, base->arrays);
  assert_int_equal(st.buffers, base->buffers);
  assert_int_equal(st.host_bytes, base->host_bytes);
  assert_int_equal(st.device_bytes, base->device_bytes);
}

/* Sets this thread's last error to a known message that no failure below produces. */
static void mark_last_error(void) {
  assert_status(twin_array_new(NULL, TWIN_I8, 0, NULL, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_null(strstr(twin_last_error(), "MEMORY"));
}

static int cl_release_context_calls;

static cl_int CL_API_CALL counting_release_context(cl_context c) {
  cl_release_context_calls++;
  return twin__cl_real.clReleaseContext(c);
}

static void cl_read_i32(twin_fixture *f, cl_mem mem, size_t off, int32_t *dst, size_t n) {
  assert_int_equal(clEnqueueReadBuffer(twin_context_cl_queue(f->ctx), mem, CL_TRUE, off,
                                       n * sizeof *dst, dst, 0, NULL, NULL),
                   CL_SUCCESS);
}

/* Asserts the device side of a (i32) holds seed*1000 + i, read straight from its cl_mem. */
static void expect_device_i32(twin_fixture *f, twin_array *a, int seed) {
  int32_t got[256];
  size_t n = twin_array_size(a);
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
  cl_read_i32(f, mem, off, got, n);
  assert_ok(twin_device_end(a));
  for (size_t i = 0; i < n; i++)
    assert_int_equal(got[i], seed * 1000 + (int32_t)i);
}

/* Overwrites a (i32) on the device with seed*1000 + i through the real OpenCL entry points. */
static void device_fill_i32(twin_fixture *f, twin_array *a, int seed) {
  int32_t data[256];
  size_t n = twin_array_size(a);
  for (size_t i = 0; i < n; i++)
    data[i] = seed * 1000 + (int32_t)i;
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_WRITE, &mem, &off));
  assert_int_equal(clEnqueueWriteBuffer(twin_context_cl_queue(f->ctx), mem, CL_TRUE, off,
                                        n * sizeof *data, data, 0, NULL, NULL),
                   CL_SUCCESS);
  assert_ok(twin_device_end(a));
}

static void test_clCreateBuffer_failure_is_out_of_device_memory(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* two-copy mechanics; zero-copy has its own cases */
  twin_array *a = fixture_i32(f->ctx, 100, 1000);
  twin_stats base = fixture_stats(f);
  twin__cl.clCreateBuffer = fault_create_buffer;
  cl_inject(1, CL_MEM_OBJECT_ALLOCATION_FAILURE);
  cl_mem mem = (cl_mem)&base;
  size_t off = 77;
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clCreateBuffer"));
  assert_non_null(strstr(twin_last_error(), "CL_MEM_OBJECT_ALLOCATION_FAILURE"));
  assert_ptr_equal(mem, (cl_mem)&base);
  assert_int_equal(off, 77);
  twin__cl = twin__cl_real;
  expect_same_live(f, &base);
  assert_int_equal(fixture_stats(f).bytes_to_device, base.bytes_to_device);
  assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE); /* nothing was left open */
  expect_device_i32(f, a, 1);                            /* the retry works */
  assert_int_equal(fixture_stats(f).device_bytes, base.device_bytes + 400);
  twin_array_unref(a);
}

static void test_failed_upload_keeps_data_and_retries(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* two-copy mechanics; zero-copy has its own cases */
  twin_array *a = fixture_i32(f->ctx, 100, 1000);
  twin_stats base = fixture_stats(f);
  cl_mem mem;
  size_t off;
  /* The first upload, into device memory made for it. */
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clEnqueueWriteBuffer"));
  assert_non_null(strstr(twin_last_error(), "CL_OUT_OF_RESOURCES"));
  twin__cl = twin__cl_real;
  expect_same_live(f, &base); /* the device memory made for it went again */
  fixture_expect_i32(a, 1000);
  expect_device_i32(f, a, 1);
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_device - base.bytes_to_device, 400);
  assert_int_equal(after.transfers_to_device - base.transfers_to_device, 1);
  /* An update of a device copy that exists but is stale. */
  const int32_t fresh[100] = {[0] = -5, [99] = -6};
  assert_ok(twin_array_write(a, fresh, sizeof fresh));
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  twin__cl = twin__cl_real;
  assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE);
  int32_t got[100];
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_memory_equal(got, fresh, sizeof got);
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off)); /* moved again, this time whole */
  cl_read_i32(f, mem, off, got, 100);
  assert_ok(twin_device_end(a));
  assert_memory_equal(got, fresh, sizeof got);
  assert_int_equal(fixture_stats(f).bytes_to_device - after.bytes_to_device, 400);
  twin_array_unref(a);
}

static void test_failed_download_keeps_host_data(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* two-copy mechanics; zero-copy has its own cases */
  twin_array *a = fixture_i32(f->ctx, 100, 1000);
  device_fill_i32(f, a, 2); /* the device now holds the newest copy */
  twin_stats base = fixture_stats(f);
  int32_t got[100];
  memset(got, 0x5a, sizeof got);
  int32_t untouched[100];
  memcpy(untouched, got, sizeof got);
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  assert_status(twin_array_read(a, got, sizeof got), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clEnqueueReadBuffer"));
  assert_memory_equal(got, untouched, sizeof got);
  void *p = NULL;
  cl_inject(1, CL_INVALID_COMMAND_QUEUE);
  assert_status(twin_host_begin(a, TWIN_READ, &p), TWIN_ERR_OPENCL);
  assert_non_null(strstr(twin_last_error(), "CL_INVALID_COMMAND_QUEUE"));
  assert_null(p);
  twin__cl = twin__cl_real;
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host, base.bytes_to_host);
  fixture_expect_i32(a, 2000); /* the failed reads did not mark the old host copy current */
  assert_int_equal(fixture_stats(f).bytes_to_host - base.bytes_to_host, 400);
  /* A host mirror made for a failed download is freed again. */
  const size_t n = 64;
  twin_array *b;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &b));
  device_fill_i32(f, b, 3);
  base = fixture_stats(f);
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  assert_status(twin_array_read(b, got, 256), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  twin__cl = twin__cl_real;
  expect_same_live(f, &base);
  fixture_expect_i32(b, 3000);
  twin_array_unref(b);
  twin_array_unref(a);
}

static void test_failed_fill_of_zeros_retries(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* two-copy mechanics; zero-copy has its own cases */
  const size_t n = 40;
  twin_array *z;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, &n, &z));
  twin_stats base = fixture_stats(f);
  twin__cl.clEnqueueFillBuffer = fault_fill_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  cl_mem mem;
  size_t off;
  assert_status(twin_device_begin(z, TWIN_READ, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clEnqueueFillBuffer"));
  twin__cl = twin__cl_real;
  expect_same_live(f, &base);
  assert_ok(twin_device_begin(z, TWIN_READ, &mem, &off)); /* the retry zeroes it */
  int32_t got[40], zero[40] = {0};
  memset(got, 0x5a, sizeof got);
  cl_read_i32(f, mem, off, got, 40);
  assert_ok(twin_device_end(z));
  assert_memory_equal(got, zero, sizeof got);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.device_bytes - base.device_bytes, 160);
  assert_int_equal(st.bytes_to_device, base.bytes_to_device);
  twin_array_unref(z);
}

static void test_context_new_fails_cleanly_when_clCreateContext_fails(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx = (twin_context *)&ctx;
  host_inject(0);
  twin__cl.clCreateContext = fault_create_context;
  cl_inject(1, CL_DEVICE_NOT_AVAILABLE);
  assert_status(fixture_open(f->spec, &ctx), TWIN_ERR_OPENCL);
  twin__cl = twin__cl_real;
  host_restore();
  assert_non_null(strstr(twin_last_error(), "clCreateContext"));
  assert_non_null(strstr(twin_last_error(), "CL_DEVICE_NOT_AVAILABLE"));
  assert_ptr_equal(ctx, (twin_context *)&ctx);
  assert_true(atomic_load(&host_calls) > 0);
  assert_int_equal(atomic_load(&host_live), 0);
}

static void test_context_new_fails_cleanly_when_clCreateCommandQueue_fails(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx = (twin_context *)&ctx;
  host_inject(0);
  twin__cl.clCreateCommandQueue = fault_create_queue;
  twin__cl.clReleaseContext = counting_release_context;
  cl_release_context_calls = 0;
  cl_inject(1, CL_OUT_OF_HOST_MEMORY);
  assert_status(fixture_open(f->spec, &ctx), TWIN_ERR_OUT_OF_HOST_MEMORY);
  twin__cl = twin__cl_real;
  host_restore();
  assert_non_null(strstr(twin_last_error(), "clCreateCommandQueue"));
  assert_ptr_equal(ctx, (twin_context *)&ctx);
  assert_int_equal(cl_release_context_calls, 1); /* the cl_context made first is released */
  assert_int_equal(atomic_load(&host_live), 0);
  assert_ok(fixture_open(f->spec, &ctx)); /* and a retry works */
  twin_context_unref(ctx);
}

typedef struct cl_work {
  twin_array *a, *z;
  int a_seed; /* what a holds by now */
} cl_work;

/* Uploads an array, makes zeros on the device, overwrites the first array on the device and
 * downloads it; stops at the first failure. Uses clCreateBuffer (twice), clEnqueueWriteBuffer,
 * clEnqueueFillBuffer and clEnqueueReadBuffer. */
static twin_status cl_workload(twin_fixture *f, cl_work *w) {
  int32_t src[64], dev[64], got[64];
  for (int i = 0; i < 64; i++) {
    src[i] = 1000 + i;
    dev[i] = 2000 + i;
  }
  const size_t shape[] = {64}, zshape[] = {32};
  cl_mem mem;
  size_t off;
  twin_status s = twin_array_from_host(f->ctx, TWIN_I32, 1, shape, src, &w->a);
  if (s != TWIN_OK)
    return s;
  w->a_seed = 1;
  if ((s = twin_device_begin(w->a, TWIN_READ, &mem, &off)) != TWIN_OK)
    return s;
  assert_ok(twin_device_end(w->a));
  if ((s = twin_array_zeros(f->ctx, TWIN_F32, 1, zshape, &w->z)) != TWIN_OK)
    return s;
  if ((s = twin_device_begin(w->z, TWIN_READ, &mem, &off)) != TWIN_OK)
    return s;
  assert_ok(twin_device_end(w->z));
  if ((s = twin_device_begin(w->a, TWIN_READ_WRITE, &mem, &off)) != TWIN_OK)
    return s;
  assert_int_equal(clEnqueueWriteBuffer(twin_context_cl_queue(f->ctx), mem, CL_TRUE, off,
                                        sizeof dev, dev, 0, NULL, NULL),
                   CL_SUCCESS);
  assert_ok(twin_device_end(w->a));
  w->a_seed = 2;
  if ((s = twin_array_read(w->a, got, sizeof got)) != TWIN_OK)
    return s;
  assert_memory_equal(got, dev, sizeof got);
  return TWIN_OK;
}

static void check_and_drop_cl_work(twin_fixture *f, cl_work *w) {
  if (w->a) {
    fixture_expect_i32(w->a, w->a_seed * 1000);
    expect_device_i32(f, w->a, w->a_seed);
  }
  if (w->z) {
    int32_t zero[32] = {0}, got[32];
    cl_mem mem;
    size_t off;
    assert_ok(twin_device_begin(w->z, TWIN_READ, &mem, &off));
    cl_read_i32(f, mem, off, got, 32);
    assert_ok(twin_device_end(w->z));
    assert_memory_equal(got, zero, sizeof got);
    assert_ok(twin_array_read(w->z, got, sizeof got));
    assert_memory_equal(got, zero, sizeof got);
  }
  twin_array_unref(w->a);
  twin_array_unref(w->z);
}

static void test_opencl_failure_sweep_over_allocations_and_transfers(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *keep = fixture_i32(f->ctx, 50, 7000);
  expect_device_i32(f, keep, 7); /* both sides allocated */
  /* The device holds keep's newest data, so no failed device allocation can be rescued by
   * trimming keep's device copy: every injected failure surfaces (recovery has its own tests). */
  device_fill_i32(f, keep, 7);
  twin_stats base = fixture_stats(f);
  /* Zero-copy buffers wrap host memory and map it; two-copy buffers allocate and transfer. */
  enum { NAMES = 7 };
  static const char *names[NAMES] = {"clCreateBuffer",
                                     "clEnqueueWriteBuffer",
                                     "clEnqueueFillBuffer",
                                     "clEnqueueReadBuffer",
                                     "clSetMemObjectDestructorCallback",
                                     "clEnqueueMapBuffer",
                                     "clEnqueueUnmapMemObject"};
  static const bool used_two_copies[NAMES] = {true, true, true, true, false, false, false};
  static const bool used_zero_copy[NAMES] = {true, false, false, false, true, true, true};
  /* On a device that shares host memory, a separate device copy is host memory twin allocates
   * and wraps (so the allocation is real when made), with a destructor callback each. */
  static const bool used_two_copies_unified[NAMES] = {true, true, true, true, true, false, false};
  bool unified = twin_context_device(f->ctx)->host_unified_memory;
  const bool *used = f->layout == FIXTURE_SHARED ? used_zero_copy
                     : unified                   ? used_two_copies_unified
                                                 : used_two_copies;
  bool failed[NAMES] = {false};
  int failures = 0, recovered = 0;
  for (int n = 1;; n++) {
    assert_true(n < 50);
    cl_work w = {0};
    mark_last_error();
    twin__cl.clCreateBuffer = fault_create_buffer;
    twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
    twin__cl.clEnqueueReadBuffer = fault_read_buffer;
    twin__cl.clEnqueueWriteBufferRect = fault_write_buffer_rect;
    twin__cl.clEnqueueReadBufferRect = fault_read_buffer_rect;
    twin__cl.clEnqueueFillBuffer = fault_fill_buffer;
    twin__cl.clSetMemObjectDestructorCallback = fault_destructor;
    twin__cl.clEnqueueMapBuffer = fault_map;
    twin__cl.clEnqueueUnmapMemObject = fault_unmap;
    cl_inject(n, CL_OUT_OF_RESOURCES);
    twin_status s = cl_workload(f, &w);
    twin__cl = twin__cl_real;
    if (s == TWIN_OK) {
      check_and_drop_cl_work(f, &w);
      if (cl_calls < n)
        break;     /* no call was the Nth: every call has been failed once */
      recovered++; /* a redundant copy was trimmed and the allocation retried */
      for (int k = 0; k < NAMES; k++)
        failed[k] |= strcmp(cl_failed, names[k]) == 0;
      device_fill_i32(f, keep, 7);
      continue;
    }
    failures++;
    assert_int_equal(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    assert_non_null(cl_failed);
    assert_non_null(strstr(twin_last_error(), cl_failed));
    assert_non_null(strstr(twin_last_error(), "CL_OUT_OF_RESOURCES"));
    for (int k = 0; k < NAMES; k++)
      failed[k] |= strcmp(cl_failed, names[k]) == 0;
    check_and_drop_cl_work(f, &w);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7000);
    expect_device_i32(f, keep, 7);
    device_fill_i32(f, keep, 7); /* the device holds the newest data again */
  }
  /* Two copies: 2 allocations (each with a destructor callback on a unified device), upload,
   * fill, download. Zero-copy: 2 wraps (create and destructor each), and a map and an unmap
   * for each of the 2 host accesses. */
  assert_int_equal(failures + recovered, f->layout == FIXTURE_SHARED ? 8 : unified ? 7 : 5);
  for (int k = 0; k < NAMES; k++)
    assert_int_equal(failed[k], used[k]);
  expect_same_live(f, &base);
  twin_array_unref(keep);
}

static void test_zero_copy_wrap_failure_frees_the_host_block(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_SHARED)
    skip();
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {100};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &a));
  void *p;
  for (int which = 0; which < 2; which++) {
    if (which == 0)
      twin__cl.clCreateBuffer = fault_create_buffer;
    else
      twin__cl.clSetMemObjectDestructorCallback = fault_destructor;
    cl_inject(1, CL_MEM_OBJECT_ALLOCATION_FAILURE);
    assert_status(twin_host_begin(a, TWIN_READ, &p), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    twin__cl = twin__cl_real;
    /* The host block went with the failed wrap: nothing is held, and no access is open. */
    twin_stats st = fixture_stats(f);
    assert_int_equal(st.host_bytes, base.host_bytes);
    assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  }
  {
    int32_t got[100], zero[100] = {0};
    assert_ok(twin_array_read(a, got, sizeof got));
    assert_memory_equal(got, zero, sizeof got);
  }
  twin_array_unref(a);
  expect_same_live(f, &base);
}

static void test_zero_copy_map_failure_leaves_no_access_open(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_SHARED)
    skip();
  twin_array *a = fixture_i32(f->ctx, 10, 3000);
  void *p;
  twin__cl.clEnqueueMapBuffer = fault_map;
  cl_inject(1, CL_MAP_FAILURE);
  assert_status(twin_host_begin(a, TWIN_READ_WRITE, &p), TWIN_ERR_OPENCL);
  assert_non_null(strstr(twin_last_error(), "CL_MAP_FAILURE"));
  twin__cl = twin__cl_real;
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  /* A failed unmap still closes the access: the pointer is given up either way. */
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  twin__cl.clEnqueueUnmapMemObject = fault_unmap;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  assert_status(twin_host_end(a), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  twin__cl = twin__cl_real;
  assert_status(twin_host_end(a), TWIN_ERR_BAD_STATE);
  fixture_expect_i32(a, 3000);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_clCreateBuffer_failure_is_out_of_device_memory),
    TWIN_TEST(test_failed_upload_keeps_data_and_retries),
    TWIN_TEST(test_failed_download_keeps_host_data),
    TWIN_TEST(test_failed_fill_of_zeros_retries),
    TWIN_TEST(test_context_new_fails_cleanly_when_clCreateContext_fails),
    TWIN_TEST(test_context_new_fails_cleanly_when_clCreateCommandQueue_fails),
    TWIN_TEST(test_opencl_failure_sweep_over_allocations_and_transfers),
    TWIN_TEST(test_zero_copy_wrap_failure_frees_the_host_block),
    TWIN_TEST(test_zero_copy_map_failure_leaves_no_access_open),
};

TWIN_TEST_MAIN_OPENCL(tests)

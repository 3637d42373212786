/* Memory under OpenCL failures: every OpenCL call of the scripted memory workload
 * (memory_workload.h) fails in turn, with a clean status naming the call, nothing left alive,
 * existing arrays intact, and the redundant copies trim finds recovering what they can.
 * Registered only in builds with OpenCL; runs on the OpenCL groups (test_budgets.c fails the
 * workload's host allocations, on every backend). */
#include <string.h>

#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#include "cl_faults.h"
#include "fixture.h"
#include "memory_workload.h"

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* The walk's first pinned buffer: its pin and where. */
typedef struct walk_pin {
  twin_pin pin;
  const char *file;
  int line;
} walk_pin;

static bool first_pin(const twin_buffer_info *b, void *user) {
  walk_pin *w = user;
  if (b->pin == TWIN_PIN_NONE)
    return true;
  *w = (walk_pin){b->pin, b->pin_file, b->pin_line};
  return false;
}

static void cl_wrap(int fail_at) {
  cl_inject(fail_at, CL_OUT_OF_RESOURCES);
  twin__cl.clCreateBuffer = fault_create_buffer;
  twin__cl.clSetMemObjectDestructorCallback = fault_destructor;
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  twin__cl.clEnqueueWriteBufferRect = fault_write_buffer_rect;
  twin__cl.clEnqueueReadBufferRect = fault_read_buffer_rect;
  twin__cl.clEnqueueFillBuffer = fault_fill_buffer;
  twin__cl.clEnqueueCopyBuffer = fault_copy_buffer;
  twin__cl.clEnqueueMapBuffer = fault_map;
  twin__cl.clEnqueueUnmapMemObject = fault_unmap;
  twin__cl.clEnqueueMigrateMemObjects = fault_migrate;
  twin__cl.clSetKernelArg = fault_set_arg;
  twin__cl.clEnqueueNDRangeKernel = fault_launch;
}

static void test_opencl_failure_sweep_over_a_memory_workload(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base;
  twin_array *keep = sweep_setup(f, &base);
  work w = {0};
  cl_wrap(0);
  assert_ok(workload(f, &w));
  twin__cl = twin__cl_real;
  int calls = cl_calls; /* wrapped OpenCL calls of one clean run */
  check_and_drop_work(&w);
  cl_seen[0] = '\0';
  int failures = 0, recovered = 0, n;
  for (n = 1; n < 200; n++) {
    memset(&w, 0, sizeof w);
    cl_wrap(n);
    twin_status s = workload(f, &w);
    twin__cl = twin__cl_real;
    if (s == TWIN_OK) {
      check_and_drop_work(&w);
      if (cl_calls < n)
        break;
      recovered++;
      continue;
    }
    failures++;
    if (s != TWIN_ERR_OUT_OF_DEVICE_MEMORY)
      print_error("n = %d (%s): %s\n", n, cl_failed, twin_last_error());
    assert_int_equal(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    assert_non_null(cl_failed);
    expect_message_has(cl_failed);
    check_and_drop_work(&w);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7);
  }
  assert_int_equal(failures + recovered, calls);
  assert_int_equal(n, calls + 1);
  /* With two copies, the copy's device memory in the second prefetch finds the base's device
   * copy to trim, after either of its two calls fails. */
  assert_int_equal(recovered, f->layout == FIXTURE_TWO_COPIES ? 2 : 0);
  /* Zero-copy wraps host blocks and maps them for host access; two copies (on a device that
   * shares host memory, wrapped blocks too) move data with reads and writes, the strided
   * view's elements with a rectangular write. Both run the copy kernel. */
  const char *expected = f->layout == FIXTURE_SHARED
                             ? "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueMapBuffer clEnqueueUnmapMemObject clSetKernelArg "
                               "clEnqueueNDRangeKernel "
                             : "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueWriteBufferRect clSetKernelArg clEnqueueNDRangeKernel "
                               "clEnqueueReadBuffer ";
  if (strcmp(cl_seen, expected) != 0)
    print_error("failed calls: %s\n", cl_seen);
  assert_string_equal(cl_seen, expected);
  expect_same_live(f, &base);
  twin_array_unref(keep);
  quiesce(f);
}

/* ---- spilling and OpenCL ---- */

enum { SPILL_N = 1024, SPILL_NB = SPILL_N * sizeof(int32_t) };

static twin_context *open_spilling(const twin_fixture *f, size_t device_limit) {
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  o.device_memory_limit = device_limit;
  twin_context *ctx;
  assert_ok(twin_context_new_with(&o, &ctx));
  return ctx;
}

static void device_write_ramp(twin_array *a, int first) {
  int32_t data[SPILL_N];
  for (int i = 0; i < SPILL_N; i++)
    data[i] = first + i;
  fixture_device_write(a, TWIN_WRITE, data);
}

/* A cl_mem the application lent twin is never spilled (twin never frees lent memory); the
 * error and the walk say so, with the line that wrapped it. */
static void test_spill_never_frees_a_lent_cl_mem(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* new arrays are one copy on a zero-copy context: no device budget to press */
  twin_context *ctx = open_spilling(f, SPILL_NB);
  cl_int err;
  cl_mem mem =
      clCreateBuffer(twin_context_cl_context(ctx), CL_MEM_READ_WRITE, SPILL_NB, NULL, &err);
  assert_int_equal(err, CL_SUCCESS);
  twin_array *w, *b;
  int lw = __LINE__ + 1;
  assert_ok(twin_array_wrap_cl_mem(ctx, mem, 0, TWIN_I32, 1, (size_t[]){SPILL_N}, NULL, &w));
  assert_ok(twin_array_new(ctx, TWIN_I32, 1, (size_t[]){SPILL_N}, &b));
  cl_mem got;
  size_t off;
  assert_status(twin_device_begin(b, TWIN_WRITE, &got, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  char holder[600];
  snprintf(holder, sizeof holder,
           "largest holders: 4096 bytes made at %s:%d (its device memory is the application's "
           "(lent); twin never frees it);",
           __FILE__, lw);
  expect_message_has(holder);
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 0);
  walk_pin found = {0};
  assert_ok(twin_context_walk(ctx, first_pin, &found));
  assert_int_equal(found.pin, TWIN_PIN_LENT);
  assert_string_equal(found.file, __FILE__);
  assert_int_equal(found.line, lw);
  twin_array_unref(b);
  twin_array_unref(w);
  clReleaseMemObject(mem);
  twin_context_unref(ctx);
}

/* A write-back that fails leaves the buffer as it was: its device copy keeps the data, the host
 * copy made for it goes again, and the error says why the copy stayed. */
static void test_failed_spill_write_back_keeps_the_device_copy(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip();
  twin_context *ctx = open_spilling(f, SPILL_NB);
  twin_array *a, *b;
  int la = __LINE__ + 1;
  assert_ok(twin_array_new(ctx, TWIN_I32, 1, (size_t[]){SPILL_N}, &a));
  assert_ok(twin_array_new(ctx, TWIN_I32, 1, (size_t[]){SPILL_N}, &b));
  device_write_ramp(a, 40);
  twin_stats base = fixture_ctx_stats(ctx);
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  cl_inject(1, CL_OUT_OF_RESOURCES);
  cl_mem got;
  size_t off;
  twin_status s = twin_device_begin(b, TWIN_WRITE, &got, &off);
  twin__cl = twin__cl_real;
  assert_status(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  char holder[600];
  snprintf(holder, sizeof holder,
           "largest holders: 4096 bytes made at %s:%d (its write-back failed "
           "(TWIN_ERR_OUT_OF_DEVICE_MEMORY));",
           __FILE__, la);
  expect_message_has(holder);
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, base.host_bytes);
  assert_int_equal(st.device_bytes, base.device_bytes);
  assert_int_equal(st.spill_count, 0);
  assert_int_equal(st.spilled_bytes, 0);
  /* Nothing lost; the next try spills it. */
  assert_ok(twin_device_begin(b, TWIN_WRITE, &got, &off));
  assert_ok(twin_device_end(b));
  assert_int_equal(fixture_ctx_stats(ctx).spilled_bytes, SPILL_NB);
  fixture_expect_i32(a, 40);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_opencl_failure_sweep_over_a_memory_workload),
    TWIN_TEST(test_spill_never_frees_a_lent_cl_mem),
    TWIN_TEST(test_failed_spill_write_back_keeps_the_device_copy),
};

TWIN_TEST_MAIN_OPENCL(tests)

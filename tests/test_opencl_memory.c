/* Memory under OpenCL failures: every OpenCL call of the scripted memory workload
 * (memory_workload.h) fails in turn, with a clean status naming the call, nothing left alive,
 * existing arrays intact, and the redundant copies trim finds recovering what they can.
 * Registered only in builds with OpenCL; runs on the OpenCL groups (test_budgets.c fails the
 * workload's host allocations, on every backend). */
#include <string.h>

#include "backends/opencl/clapi.h"
#include "cl_faults.h"
#include "fixture.h"
#include "memory_workload.h"

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static void cl_wrap(int fail_at) {
  cl_inject(fail_at, CL_OUT_OF_RESOURCES);
  twin__cl.clCreateBuffer = fault_create_buffer;
  twin__cl.clSetMemObjectDestructorCallback = fault_destructor;
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
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
   * shares host memory, wrapped blocks too) move data with reads and writes. Both run the
   * copy kernel. */
  const char *expected = f->layout == FIXTURE_SHARED
                             ? "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueMapBuffer clEnqueueUnmapMemObject clSetKernelArg "
                               "clEnqueueNDRangeKernel "
                             : "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueWriteBuffer clSetKernelArg clEnqueueNDRangeKernel "
                               "clEnqueueReadBuffer ";
  if (strcmp(cl_seen, expected) != 0)
    print_error("failed calls: %s\n", cl_seen);
  assert_string_equal(cl_seen, expected);
  expect_same_live(f, &base);
  twin_array_unref(keep);
  quiesce(f);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_opencl_failure_sweep_over_a_memory_workload),
};

TWIN_TEST_MAIN_OPENCL(tests)

/* The OpenCL kernel program behind the built-in operations: it builds, a build failure reports
 * its log and leaves the arrays alone, and a failed enqueue is clean. Registered only in builds
 * with OpenCL; runs on the OpenCL groups (test_copy.c holds the operations themselves, on every
 * backend). */
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/opencl/clapi.h"
#include "fixture.h"

static twin_array *i32_range(twin_context *ctx, size_t n, int32_t first) {
  int32_t *data = malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = first + (int32_t)i;
  twin_array *a;
  assert_ok(twin_array_from_host(ctx, TWIN_I32, 1, &n, data, &a));
  free(data);
  return a;
}

static twin_array *view_of(twin_array *base, int ndim, const size_t *shape,
                           const ptrdiff_t *strides, ptrdiff_t offset) {
  twin_array *v;
  assert_ok(twin_array_as_strided(base, ndim, shape, strides, offset, &v));
  return v;
}

static void read_i32(twin_array *a, int32_t *out) {
  assert_ok(twin_array_read(a, out, twin_array_nbytes(a)));
}

static void test_program_builds(void **state) {
  twin_fixture *f = fixture(state);
  twin_status s = f->ctx->ops->prepare_ops(f->ctx);
  if (s != TWIN_OK)
    print_error("the built-in kernels failed to build:\n%s\n", twin_last_error());
  assert_int_equal(s, TWIN_OK);
}

static cl_program CL_API_CALL broken_program(cl_context c, cl_uint count, const char **lines,
                                             const size_t *lengths, cl_int *err) {
  static const char *broken[] = {"kernel void broken(global int *p) {\n",
                                 "  p[0] = twin_no_such_name;\n", "}\n"};
  return twin__cl_real.clCreateProgramWithSource(c, 3, broken, NULL, err);
}

static void test_build_failure_reports_the_log(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx; /* a fresh context: the fixture's has its program already */
  assert_ok(fixture_open(f->spec, &ctx));
  twin_array *a = i32_range(ctx, 8, 1);
  twin__cl.clCreateProgramWithSource = broken_program;
  int32_t seven = 7, got[8];
  assert_status(twin_fill(a, &seven), TWIN_ERR_BUILD);
  assert_non_null(strstr(twin_last_error(), "clBuildProgram"));
  assert_non_null(strstr(twin_last_error(), "build log"));
  assert_non_null(strstr(twin_last_error(), "twin_no_such_name"));
  read_i32(a, got); /* untouched, and no access was left open */
  for (int i = 0; i < 8; i++)
    assert_int_equal(got[i], i + 1);
  twin__cl = twin__cl_real; /* the next operation builds the real program */
  assert_ok(twin_fill(a, &seven));
  read_i32(a, got);
  assert_int_equal(got[7], 7);
  twin_array_unref(a);
  twin_context_unref(ctx);
}

static cl_int CL_API_CALL fail_enqueue_kernel(cl_command_queue q, cl_kernel k, cl_uint dims,
                                              const size_t *offset, const size_t *global,
                                              const size_t *local, cl_uint nwait,
                                              const cl_event *wait, cl_event *ev) {
  return CL_OUT_OF_RESOURCES;
}

static cl_int CL_API_CALL fail_copy_buffer(cl_command_queue q, cl_mem s, cl_mem d, size_t so,
                                           size_t doff, size_t n, cl_uint nwait,
                                           const cl_event *wait, cl_event *ev) {
  return CL_OUT_OF_HOST_MEMORY;
}

/* A failed enqueue is reported, closes the accesses it opened and leaks nothing. */
static void test_enqueue_failure_is_clean(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = i32_range(f->ctx, 64, 0), *b = i32_range(f->ctx, 64, 0), *c;
  twin_array *odd = view_of(a, 1, (size_t[]){32}, (ptrdiff_t[]){2}, 1);
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, (size_t[]){32}, &c));
  twin__cl.clEnqueueNDRangeKernel = fail_enqueue_kernel;
  assert_status(twin_copy(c, odd), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clEnqueueNDRangeKernel"));
  int32_t v = 5;
  assert_status(twin_fill(c, &v), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  twin__cl.clEnqueueCopyBuffer = fail_copy_buffer;
  assert_status(twin_copy(b, a), TWIN_ERR_OUT_OF_HOST_MEMORY);
  assert_non_null(strstr(twin_last_error(), "clEnqueueCopyBuffer"));
  twin__cl = twin__cl_real;
  assert_ok(twin_copy(c, odd)); /* no access was left open */
  int32_t got[32];
  read_i32(c, got);
  for (int i = 0; i < 32; i++)
    assert_int_equal(got[i], 2 * i + 1);
  twin_array_unref(odd);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_program_builds),
    TWIN_TEST(test_build_failure_reports_the_log),
    TWIN_TEST(test_enqueue_failure_is_clean),
};

TWIN_TEST_MAIN_OPENCL(tests)

/* The access protocol where it meets OpenCL: the context's OpenCL objects, their absence on
 * devices that are not OpenCL's, and built-in operations that name themselves when an OpenCL
 * call inside them fails. Registered only in builds with OpenCL; runs on the OpenCL groups
 * (test_access.c holds the protocol itself, on every backend). */
#include <dlpack/dlpack.h>
#include <string.h>

#include "cl_faults.h"
#include "core/twin_opencl.h"
#include "fixture.h"

static void expect_message(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static void test_device_backend_exposes_its_opencl_objects(void **state) {
  twin_fixture *f = fixture(state);
  cl_command_queue q = twin_context_cl_queue(f->ctx);
  assert_non_null(q);
  cl_context c = NULL;
  cl_device_id d = NULL;
  assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof c, &c, NULL), CL_SUCCESS);
  assert_int_equal(clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof d, &d, NULL), CL_SUCCESS);
  assert_ptr_equal(c, twin_context_cl_context(f->ctx));
  assert_ptr_equal(d, twin_context_cl_device(f->ctx));
}

/* The host backend has no OpenCL objects; the fake test device has device memory but no cl_mem
 * to lend: twin_device_begin and the kDLOpenCL export refuse it, naming the device, and leave
 * nothing open, while the device side works through twin's own calls. */
static void test_opencl_objects_are_absent_without_an_opencl_device(void **state) {
  (void)state;
  static const char *const specs[] = {"host", "fake", "fake+copy"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    twin_context *ctx;
    assert_ok(fixture_open(specs[i], &ctx));
    assert_null(twin_context_cl_queue(ctx));
    assert_null(twin_context_cl_context(ctx));
    assert_null(twin_context_cl_device(ctx));
    twin_array *a = fixture_i32(ctx, 4, 1000);
    cl_mem mem = NULL;
    size_t off = 77;
    DLManagedTensor *t = NULL;
    assert_status(twin_device_begin(a, TWIN_READ, &mem, &off), TWIN_ERR_UNSUPPORTED);
    expect_message(i == 0 ? "the host backend has no device memory"
                          : "device \"fake device (host memory; for tests)\" is not an OpenCL "
                            "device and has no cl_mem");
    assert_status(twin_array_to_dlpack_opencl(a, TWIN_READ, &t), TWIN_ERR_UNSUPPORTED);
    expect_message("twin_array_to_dlpack_opencl");
    assert_null(mem);
    assert_int_equal(off, 77);
    assert_null(t);
    assert_status(twin_device_end(a), TWIN_ERR_BAD_STATE); /* nothing was opened */
    assert_ok(twin_array_prefetch(a, TWIN_DEVICE));
    fixture_expect_i32(a, 1000);
    twin_array_unref(a);
    twin_context_unref(ctx);
  }
  assert_null(twin_context_cl_queue(NULL));
}

/* ---- operations name themselves when an OpenCL call fails ---- */

static void inject(int fail_at) {
  cl_inject(fail_at, CL_OUT_OF_RESOURCES);
  twin__cl.clCreateBuffer = fault_create_buffer;
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  twin__cl.clEnqueueCopyBuffer = fault_copy_buffer;
  twin__cl.clSetKernelArg = fault_set_arg;
  twin__cl.clEnqueueNDRangeKernel = fault_launch;
}

/* Runs op with OpenCL call 1, 2, ... failing until it succeeds; every failure's message must
 * begin with the public call `fn` and name no internal one. */
static void sweep_messages(const char *fn, twin_status (*op)(twin_array **arrays),
                           twin_array **arrays) {
  twin_status s = TWIN_ERR_OUT_OF_DEVICE_MEMORY;
  int failures = 0;
  for (int fail_at = 1; fail_at < 60 && s != TWIN_OK; fail_at++) {
    inject(fail_at);
    s = op(arrays);
    twin__cl = twin__cl_real;
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
    assert_null(strstr(twin_last_error(), "twin_device_begin"));
    assert_null(strstr(twin_last_error(), "twin_host_begin"));
    assert_null(strstr(twin_last_error(), "twin_array_new"));
    assert_null(strstr(twin_last_error(), "twin operation"));
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

/* Every OpenCL failure inside twin_copy, twin_fill, twin_array_copy and twin_array_contiguous
 * (an allocation, a transfer, a kernel launch) names that call, not the calls it is made of. */
static void test_operations_name_themselves_in_every_opencl_failure(void **state) {
  twin_fixture *f = fixture(state);
  /* Spilling off: with it, a refused allocation spills x[0]'s device copy and succeeds on its
   * retry, so the failures whose messages this sweeps would not happen (test_spill.c has the
   * spills). */
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  o.spill = TWIN_SPILL_OFF;
  twin_context *ctx;
  assert_ok(twin_context_new_with(&o, &ctx));
  twin_array *x[5];
  x[0] = fixture_i32(ctx, 10, 0);
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){9}, (ptrdiff_t[]){1}, 0, &x[1]));
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){9}, (ptrdiff_t[]){1}, 1, &x[2]));
  assert_ok(twin_array_as_strided(x[0], 1, (size_t[]){5}, (ptrdiff_t[]){2}, 0, &x[4]));
  const size_t n = 10;
  assert_ok(twin_array_new(ctx, TWIN_I32, 1, &n, &x[3]));
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
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_device_backend_exposes_its_opencl_objects),
    TWIN_TEST(test_opencl_objects_are_absent_without_an_opencl_device),
    TWIN_TEST(test_operations_name_themselves_in_every_opencl_failure),
};

TWIN_TEST_MAIN_OPENCL(tests)

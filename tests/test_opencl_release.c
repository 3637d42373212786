/* The release paths through OpenCL objects: the last unref returns only after the device is done
 * with the application's own commands on a cl_mem, with a consumer's work on a kDLOpenCL export,
 * and after a lent cl_mem and the OpenCL context of a dropped twin context are released; a
 * borrowed cl_mem retained past its array's life is reported and does not hang the release.
 * Registered only in builds with OpenCL; runs on the OpenCL groups (test_release.c holds the
 * paths every backend has; release_probe.h what is watched). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <dlpack/dlpack.h>

#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#include "fixture.h"
#include "release_probe.h"

static void CL_CALLBACK on_destroyed(cl_mem mem, void *flag) {
  (void)mem;
  atomic_fetch_add((atomic_int *)flag, 1);
}

/* Watches a cl_mem: its destructor sets the probe's next flag. */
static void watch_mem(probe *p, cl_mem mem) {
  assert_int_equal(clSetMemObjectDestructorCallback(mem, on_destroyed, probe_watch(p)), CL_SUCCESS);
}

static void quiet_leak(twin_context *ctx, void *user) {
  (void)ctx, (void)user;
}

/* A kDLOpenCL export outlives its array, with the consumer's own work on the memory still
 * queued on the context's queue; the deleter drops the last reference. */
static void test_dlpack_opencl_export_outlives_the_array(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx);
  hold(f, &p, a);
  float two = 2.0f;
  assert_ok(twin_fill(a, &two));
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack_opencl(a, TWIN_READ_WRITE, &t));
  cl_mem mem = t->dl_tensor.data;
  assert_int_equal(clEnqueueFillBuffer(twin_context_cl_queue(f->ctx), mem, &two, sizeof two,
                                       t->dl_tensor.byte_offset, BIG, 0, NULL, NULL),
                   CL_SUCCESS);
  twin_array_unref(a);
  expect_held(&p, BIG);
  t->deleter(t);
  expect_released(&p);
}

/* The application's commands on a cl_mem between twin_device_begin and twin_device_end. */
static void test_commands_enqueued_through_interop_are_waited_for(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx);
  hold(f, NULL, a);
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_WRITE, &mem, &off));
  watch_mem(&p, mem);
  float five = 5.0f;
  assert_int_equal(clEnqueueFillBuffer(twin_context_cl_queue(f->ctx), mem, &five, sizeof five, off,
                                       BIG, 0, NULL, NULL),
                   CL_SUCCESS);
  assert_ok(twin_device_end(a));
  twin_array_unref(a);
  expect_released(&p);
}

/* A cl_mem the application made and lent: twin's reference is gone when the unref returns,
 * and with it the memory when twin's was the last. */
static void test_wrapped_cl_mem_is_released_by_the_last_unref(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  cl_context cl = twin_context_cl_context(f->ctx);
  for (int keep = 0; keep < 2; keep++) {
    cl_int err;
    cl_mem mem = clCreateBuffer(cl, CL_MEM_READ_WRITE, BIG, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    watch_mem(&p, mem);
    size_t n = BIG_F32;
    twin_array *a;
    assert_ok(twin_array_wrap_cl_mem(f->ctx, mem, 0, TWIN_F32, 1, &n, NULL, &a));
    float four = 4.0f;
    assert_ok(twin_fill(a, &four));
    if (!keep)
      assert_int_equal(clReleaseMemObject(mem), CL_SUCCESS); /* twin's is the last reference */
    twin_array_unref(a);
    if (keep) {
      cl_uint refs = 0;
      assert_int_equal(clGetMemObjectInfo(mem, CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                       CL_SUCCESS);
      assert_int_equal(refs, 1);
      assert_int_equal(atomic_load(p.destroyed[p.watched - 1]), 0);
      assert_int_equal(clReleaseMemObject(mem), CL_SUCCESS);
    }
    assert_int_equal(atomic_load(p.destroyed[p.watched - 1]), 1);
  }
  expect_released(&p);
}

/* The last array of a context the application has already dropped: the context's OpenCL
 * objects are gone when the unref returns, the cl_context's only reference left the test's. */
static void test_last_array_of_a_dropped_context_takes_its_opencl_context(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  probe p;
  begin_probe(ctx, &p);
  assert_ok(twin_context_set_leak_handler(ctx, quiet_leak, NULL));
  twin_array *a = big_vector(ctx);
  hold(f, &p, a);
  cl_context cl = twin_context_cl_context(ctx);
  assert_non_null(cl);
  assert_int_equal(clRetainContext(cl), CL_SUCCESS);
  /* A user program cached in the context, and its kernel still running at the drops. */
  static const char spin[] = "__kernel void spin(TWIN_ARRAY(__global float, x), int n) {\n"
                             "  float a = TWIN_AT(x, get_global_id(0));\n"
                             "  for (int i = 0; i < n; i++)\n"
                             "    a = a * 0.999f + 1.0f;\n"
                             "  TWIN_AT(x, get_global_id(0)) = a;\n"
                             "}\n";
  twin_program *prog;
  twin_kernel *k;
  assert_ok(twin_program_new(ctx, spin, NULL, &prog));
  assert_ok(twin_kernel_new(prog, "spin", &k));
  twin_program_unref(prog);
  size_t one = 1;
  twin_arg args[] = {twin_arg_array(a, TWIN_READ_WRITE), twin_arg_i32(1 << 22)};
  assert_ok(twin_kernel_launch(k, 1, &one, NULL, 2, args));
  twin_kernel_unref(k);
  twin_context_unref(ctx);
  p.ctx = NULL;
  twin_array_unref(a);
  expect_released(&p);
  cl_uint refs = 0;
  assert_int_equal(clGetContextInfo(cl, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                   CL_SUCCESS);
  assert_int_equal(refs, 1); /* the test's own */
  assert_int_equal(clReleaseContext(cl), CL_SUCCESS);
}

/* A cl_mem borrowed from twin_device_begin and retained past its array's life: the last unref
 * does not hang, releases twin's reference, and says so once per context, naming the line
 * that made the array. */
static void test_retained_borrowed_cl_mem_warns_once_and_does_not_hang(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  probe p;
  begin_probe(ctx, &p);
  /* The wait for a reference that never goes, shortened for the test. */
  double limit = twin__cl_poll_limit_ms;
  twin__cl_poll_limit_ms = 20;
  cl_mem mems[2];
  int line = 0;
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stderr);
  int saved = dup(2);
  assert_true(dup2(fileno(tmp), 2) >= 0);
  double longest = 0;
  for (int i = 0; i < 2; i++) {
    size_t n = 1 << 20;
    twin_array *a;
    line = __LINE__ + 1;
    assert_ok(twin_array_zeros(ctx, TWIN_F32, 1, &n, &a));
    size_t off;
    assert_ok(twin_device_begin(a, TWIN_READ, &mems[i], &off));
    assert_int_equal(clRetainMemObject(mems[i]), CL_SUCCESS);
    watch_mem(&p, mems[i]);
    assert_ok(twin_device_end(a));
    double t0 = now_ms();
    twin_array_unref(a);
    double took = now_ms() - t0;
    longest = took > longest ? took : longest;
  }
  twin__cl_poll_limit_ms = limit;
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char text[2048] = "";
  rewind(tmp);
  size_t got = fread(text, 1, sizeof text - 1, tmp);
  text[got] = '\0';
  fclose(tmp);
  assert_true(longest < 2000);
  char site[600];
  snprintf(site, sizeof site, "%s:%d", __FILE__, line);
  const char *warning = strstr(text, site);
  if (!warning)
    print_error("stderr was: %s\n", text);
  assert_non_null(warning);
  assert_null(strstr(warning + 1, site)); /* once */
  for (int i = 0; i < 2; i++) {
    cl_uint refs = 0;
    assert_int_equal(clGetMemObjectInfo(mems[i], CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                     CL_SUCCESS);
    assert_int_equal(refs, 1); /* the test's own */
    assert_int_equal(clReleaseMemObject(mems[i]), CL_SUCCESS);
  }
  expect_released(&p);
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_dlpack_opencl_export_outlives_the_array),
    TWIN_TEST(test_commands_enqueued_through_interop_are_waited_for),
    TWIN_TEST(test_wrapped_cl_mem_is_released_by_the_last_unref),
    TWIN_TEST(test_last_array_of_a_dropped_context_takes_its_opencl_context),
    TWIN_TEST(test_retained_borrowed_cl_mem_warns_once_and_does_not_hang),
};

TWIN_TEST_MAIN_OPENCL(tests)

/* OpenCL C kernels: building (success, failure with its log, the per-context cache), launching
 * on views (offset, negative strides, transposed) against results computed here on the host,
 * argument checking against the kernel's parameters, busy and cross-context refusals, the
 * coherence bookkeeping around a launch, OpenCL failures, and the device's launch limits.
 * Registered only in builds with OpenCL; runs on the OpenCL groups (test_kernel.c holds host
 * kernels, on every backend). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#include "fixture.h"
#include "kernel_views.h"

/* One program for most cases, so each backend group compiles it once. */
static const char source[] =
    "__kernel void saxpy(TWIN_ARRAY(__global const float, x), TWIN_ARRAY(__global float, y),\n"
    "                    float a) {\n"
    "  long i = get_global_id(0);\n"
    "  TWIN_AT(y, i) = a * TWIN_AT(x, i) + TWIN_AT(y, i);\n"
    "}\n"
    "__kernel void scale2d(TWIN_VIEW(__global const float, src), TWIN_VIEW(__global float, dst),\n"
    "                      float f) {\n"
    "  long i = get_global_id(0), j = get_global_id(1);\n"
    "  TWIN_AT2(dst, i, j) = f * TWIN_AT2(src, i, j);\n"
    "}\n"
    "__kernel void copy_i32(TWIN_ARRAY(__global const int, src), TWIN_ARRAY(__global int, dst)) {\n"
    "  long i = get_global_id(0);\n"
    "  TWIN_AT(dst, i) = TWIN_AT(src, i) + 1;\n"
    "}\n"
    "__kernel void row_sums(TWIN_VIEW(__global const float, m), TWIN_ARRAY(__global float, out),\n"
    "                       __local float *scratch) {\n"
    "  long row = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);\n"
    "  float sum = 0;\n"
    "  for (long j = lid; j < TWIN_DIM(m, 1); j += n)\n"
    "    sum += TWIN_AT2(m, row, j);\n"
    "  scratch[lid] = sum;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  for (long s = n / 2; s > 0; s /= 2) {\n"
    "    if (lid < s)\n"
    "      scratch[lid] += scratch[lid + s];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "  if (lid == 0)\n"
    "    TWIN_AT(out, row) = scratch[0];\n"
    "}\n"
    "__kernel void scalars(TWIN_ARRAY(__global long, out), char a, uchar b, short c, ushort d,\n"
    "                      int e, uint f, long g, ulong h, float k) {\n"
    "  __global long *o = TWIN_PTR(out);\n"
    "  o[0] = a; o[1] = b; o[2] = c; o[3] = d; o[4] = e; o[5] = f; o[6] = g; o[7] = (long)h;\n"
    "  o[8] = (long)(k * 4);\n"
    "}\n";

static twin_program *program_of(twin_fixture *f) {
  twin_program *p;
  assert_ok(twin_program_new(f->ctx, source, NULL, &p));
  return p;
}

static twin_kernel *kernel_of(twin_fixture *f, const char *name) {
  twin_program *p = program_of(f);
  twin_kernel *k;
  assert_ok(twin_kernel_new(p, name, &k));
  twin_program_unref(p); /* the kernel holds the program */
  return k;
}

static void assert_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* ---- Building ---- */

static atomic_int builds;

static cl_int CL_API_CALL counting_build(cl_program p, cl_uint n, const cl_device_id *devs,
                                         const char *options,
                                         void(CL_CALLBACK *notify)(cl_program, void *),
                                         void *user) {
  atomic_fetch_add(&builds, 1);
  return twin__cl_real.clBuildProgram(p, n, devs, options, notify, user);
}

static void count_builds(void) {
  atomic_store(&builds, 0);
  twin__cl.clBuildProgram = counting_build;
}

static void test_same_source_and_options_is_a_cache_lookup(void **state) {
  twin_fixture *f = fixture(state);
  /* A source no other case builds, so the first build here is not a lookup. */
  static const char src[] = "__kernel void cached(__global int *x) { x[0] = 1; }\n";
  count_builds();
  twin_program *a, *b, *c, *d;
  assert_ok(twin_program_new(f->ctx, src, NULL, &a));
  assert_int_equal(atomic_load(&builds), 1);
  assert_ok(twin_program_new(f->ctx, src, NULL, &b));
  assert_ptr_equal(a, b);
  assert_ptr_equal(twin_program_cl_program(a), twin_program_cl_program(b));
  assert_int_equal(atomic_load(&builds), 1);
  assert_ok(twin_program_new(f->ctx, src, "-DVARIANT=1", &c)); /* other options: a build */
  assert_ptr_not_equal(a, c);
  assert_int_equal(atomic_load(&builds), 2);
  twin_program_unref(a);
  twin_program_unref(b);
  twin_program_unref(c);
  /* Still cached after the last reference went. */
  assert_ok(twin_program_new(f->ctx, src, NULL, &d));
  assert_int_equal(atomic_load(&builds), 2);
  twin_program_unref(d);
}

static cl_program watched;
static atomic_int watched_releases;

static cl_int CL_API_CALL counting_release(cl_program p) {
  if (p == watched)
    atomic_fetch_add(&watched_releases, 1);
  return twin__cl_real.clReleaseProgram(p);
}

/* The cache holds a program of its own until the context closes: neither the application's
 * last reference nor its last kernel's frees it, building it again finds it, and the context's
 * close frees it exactly once. */
static void test_program_lives_until_its_context_closes(void **state) {
  twin_fixture *f = fixture(state);
  static const char src[] = "__kernel void lives(__global int *x, long x_offset) { x[0] = 2; }\n";
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  twin_program *p, *again;
  assert_ok(twin_program_new(ctx, src, NULL, &p));
  watched = twin_program_cl_program(p);
  atomic_store(&watched_releases, 0);
  twin__cl.clReleaseProgram = counting_release;
  twin_kernel *k;
  assert_ok(twin_kernel_new(p, "lives", &k));
  twin_program_unref(p);
  twin_kernel_unref(k); /* the last reference but the cache's */
  assert_int_equal(atomic_load(&watched_releases), 0);
  assert_ok(twin_program_new(ctx, src, NULL, &again));
  assert_ptr_equal(again, p);
  assert_ptr_equal(twin_program_cl_program(again), watched);
  assert_ok(twin_kernel_new(again, "lives", &k));
  twin_program_unref(again);
  twin_kernel_unref(k);
  assert_int_equal(atomic_load(&watched_releases), 0);
  twin_context_unref(ctx);
  assert_int_equal(atomic_load(&watched_releases), 1);
  twin__cl = twin__cl_real;
}

/* Threads build, use and drop one source at once: it is built once, and every thread gets the
 * one cached program (a program's count never returns from 0, so none is freed meanwhile). */
typedef struct builder {
  twin_context *ctx;
  twin_program *first;
  twin_status status;
  bool same;
} builder;

static const char shared_src[] =
    "__kernel void shared(__global int *x, long x_offset) { x[x_offset] = 3; }\n";

static void *build_and_drop(void *arg) {
  builder *b = arg;
  b->same = true;
  for (int i = 0; i < 20 && b->status == TWIN_OK; i++) {
    twin_program *p;
    twin_kernel *k = NULL;
    b->status = twin_program_new(b->ctx, shared_src, NULL, &p);
    if (b->status != TWIN_OK)
      break;
    b->first = b->first ? b->first : p;
    b->same = b->same && p == b->first;
    b->status = twin_kernel_new(p, "shared", &k);
    twin_program_unref(p);
    twin_kernel_unref(k);
  }
  return NULL;
}

static void test_threads_build_one_source_once(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  count_builds();
  enum { THREADS = 4 };
  pthread_t threads[THREADS];
  builder b[THREADS];
  for (int t = 0; t < THREADS; t++) {
    b[t] = (builder){ctx, NULL, TWIN_OK, false};
    assert_int_equal(pthread_create(&threads[t], NULL, build_and_drop, &b[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    assert_ok(b[t].status);
    assert_true(b[t].same);
    assert_ptr_equal(b[t].first, b[0].first);
  }
  /* Threads that missed the cache together may each build; one program is kept. */
  assert_in_range(atomic_load(&builds), 1, THREADS);
  twin__cl = twin__cl_real;
  twin_context_unref(ctx);
}

static void test_build_failure_is_build_error_with_log(void **state) {
  twin_fixture *f = fixture(state);
  static const char broken[] = "__kernel void k(__global int *x) {\n  x[0] = undeclared_name;\n}\n";
  count_builds();
  twin_program *p = (twin_program *)0x1;
  assert_status(twin_program_new(f->ctx, broken, NULL, &p), TWIN_ERR_BUILD);
  assert_ptr_equal(p, (twin_program *)0x1); /* untouched */
  assert_message_has("clBuildProgram failed with CL_BUILD_PROGRAM_FAILURE");
  assert_message_has("build log:");
  assert_message_has("undeclared_name");
  assert_message_has("source:2:"); /* the source's own line, not the prepended header's */
  /* A failure is not cached: building again compiles again. */
  assert_status(twin_program_new(f->ctx, broken, NULL, &p), TWIN_ERR_BUILD);
  assert_int_equal(atomic_load(&builds), 2);
}

static void test_program_from_file_and_missing_file(void **state) {
  twin_fixture *f = fixture(state);
  char path[] = "/tmp/twin-test-kernel-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  static const char text[] = "__kernel void from_file(TWIN_ARRAY(__global int, x)) {\n"
                             "  TWIN_AT(x, get_global_id(0)) = 7;\n}\n";
  assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
  close(fd);
  twin_program *p;
  assert_ok(twin_program_new_from_file(f->ctx, path, NULL, &p));
  twin_kernel *k;
  assert_ok(twin_kernel_new(p, "from_file", &k));
  size_t shape[] = {5}, global[] = {5};
  twin_array *x;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &x));
  twin_arg args[] = {twin_arg_array(x, TWIN_WRITE)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 1, args));
  int32_t got[5];
  assert_ok(twin_array_read(x, got, sizeof got));
  for (int i = 0; i < 5; i++)
    assert_int_equal(got[i], 7);
  twin_array_unref(x);
  twin_kernel_unref(k);
  twin_program_unref(p);
  unlink(path);
  assert_status(twin_program_new_from_file(f->ctx, path, NULL, &p), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has(path);
  assert_message_has("No such file");
}

static void test_unknown_kernel_name_lists_the_kernels(void **state) {
  twin_fixture *f = fixture(state);
  twin_program *p = program_of(f);
  twin_kernel *k;
  assert_status(twin_kernel_new(p, "sxapy", &k), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("no kernel named \"sxapy\"");
  assert_message_has("saxpy");
  twin_program_unref(p);
}

/* ---- Launching ---- */

static void test_saxpy_matches_host(void **state) {
  twin_fixture *f = fixture(state);
  enum { N = 1000 };
  size_t shape[] = {N}, global[] = {N};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_kernel *k = kernel_of(f, "saxpy");
  assert_string_equal(twin_kernel_name(k), "saxpy");
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(3.0f)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  float got[N];
  assert_ok(twin_array_read(y, got, sizeof got)); /* waits for the kernel */
  for (int i = 0; i < N; i++)
    assert_true(got[i] == 3.0f * (float)i + (float)i);
  twin_kernel_unref(k);
  twin_array_unref(x);
  twin_array_unref(y);
}

static void test_views_with_offset_negative_strides_and_transpose(void **state) {
  twin_fixture *f = fixture(state);
  views v = make_views(f);
  assert_int_equal(twin_array_strides(v.src)[1], -8);
  twin_kernel *k = kernel_of(f, "scale2d");
  size_t global[] = {7, 5};
  twin_arg args[] = {twin_arg_view(v.src, TWIN_READ), twin_arg_view(v.dst, TWIN_WRITE),
                     twin_arg_f32(2.0f)};
  assert_ok(twin_kernel_launch(k, 2, global, NULL, 3, args));
  check_scaled(v.out, 2.0f);
  twin_kernel_unref(k);
  drop_views(&v);
}

static void test_one_array_read_and_written_opens_once(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {64}, global[] = {64};
  int32_t data[64], got[64];
  for (int i = 0; i < 64; i++)
    data[i] = i * 3;
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, shape, data, &a));
  twin_kernel *k = kernel_of(f, "copy_i32");
  twin_arg args[] = {twin_arg_array(a, TWIN_READ), twin_arg_array(a, TWIN_WRITE)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 2, args));
  assert_ok(twin_array_read(a, got, sizeof got));
  for (int i = 0; i < 64; i++)
    assert_int_equal(got[i], i * 3 + 1);
  twin_kernel_unref(k);
  twin_array_unref(a);
}

static void test_two_views_of_one_buffer_read_one_write_other(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {2, 32}, global[] = {32};
  int32_t data[64], got[64];
  for (int i = 0; i < 64; i++)
    data[i] = i;
  twin_array *a, *lo, *hi;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 2, shape, data, &a));
  assert_ok(twin_array_index(a, 0, 0, &lo));
  assert_ok(twin_array_index(a, 0, 1, &hi));
  twin_kernel *k = kernel_of(f, "copy_i32");
  twin_arg args[] = {twin_arg_array(lo, TWIN_READ), twin_arg_array(hi, TWIN_WRITE)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 2, args));
  assert_ok(twin_array_read(a, got, sizeof got));
  for (int i = 0; i < 32; i++) {
    assert_int_equal(got[i], i);
    assert_int_equal(got[32 + i], i + 1);
  }
  twin_kernel_unref(k);
  twin_array_unref(lo);
  twin_array_unref(hi);
  twin_array_unref(a);
}

static void test_row_sums_of_transposed_view_with_local_memory(void **state) {
  twin_fixture *f = fixture(state);
  enum { R = 40, C = 24, L = 16 }; /* the transposed view is C x R */
  size_t shape[] = {R, C}, oshape[] = {C};
  twin_array *m = f32_array(f, 2, shape, 0), *t, *out;
  assert_ok(twin_array_transpose(m, NULL, &t));
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 1, oshape, &out));
  twin_kernel *k = kernel_of(f, "row_sums");
  size_t global[] = {C * L}, local[] = {L};
  twin_arg args[] = {twin_arg_view(t, TWIN_READ), twin_arg_array(out, TWIN_WRITE),
                     twin_arg_local(L * sizeof(float))};
  assert_ok(twin_kernel_launch(k, 1, global, local, 3, args));
  float got[C];
  assert_ok(twin_array_read(out, got, sizeof got));
  for (int j = 0; j < C; j++) {
    float expect = 0; /* integers below 2^24: exact in any order */
    for (int i = 0; i < R; i++)
      expect += (float)(i * C + j);
    assert_true(got[j] == expect);
  }
  twin_kernel_unref(k);
  twin_array_unref(out);
  twin_array_unref(t);
  twin_array_unref(m);
}

static void test_scalars_of_every_type_arrive(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {9}, global[] = {1};
  twin_array *out;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I64, 1, shape, &out));
  twin_kernel *k = kernel_of(f, "scalars");
  twin_arg args[] = {twin_arg_array(out, TWIN_WRITE),
                     twin_arg_i8(-5),
                     twin_arg_u8(250),
                     twin_arg_i16(-30000),
                     twin_arg_u16(60000),
                     twin_arg_i32(-2000000000),
                     twin_arg_u32(4000000000u),
                     twin_arg_i64(-5000000000ll),
                     twin_arg_u64(1ull << 62),
                     twin_arg_f32(2.5f)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 10, args));
  int64_t got[9];
  assert_ok(twin_array_read(out, got, sizeof got));
  int64_t expect[9] = {
      -5, 250, -30000, 60000, -2000000000, 4000000000ll, -5000000000ll, (int64_t)(1ull << 62), 10};
  assert_memory_equal(got, expect, sizeof got);
  twin_kernel_unref(k);
  twin_array_unref(out);
}

static void test_launch_is_asynchronous_and_finish_waits(void **state) {
  twin_fixture *f = fixture(state);
  enum { N = 1 << 20 };
  size_t shape[] = {N}, global[] = {N};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 1);
  twin_kernel *k = kernel_of(f, "saxpy");
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(1.0f)};
  for (int r = 0; r < 4; r++)
    assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  assert_ok(twin_context_finish(f->ctx));
  float *p;
  assert_ok(twin_host_begin(y, TWIN_READ, (void **)&p));
  for (size_t i = 0; i < N; i += 4099)
    assert_true(p[i] == 1.0f + 5.0f * (float)i);
  assert_ok(twin_host_end(y));
  twin_kernel_unref(k);
  twin_array_unref(x);
  twin_array_unref(y);
}

/* A kernel writing the whole array makes the host copy stale: reading it back moves exactly
 * its bytes on two copies, nothing on zero-copy; reading x (only read) moves nothing. */
static void test_launch_marks_written_arrays_newer_on_device(void **state) {
  twin_fixture *f = fixture(state);
  enum { N = 4096 };
  size_t shape[] = {N}, global[] = {N};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_kernel *k = kernel_of(f, "saxpy");
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(1.0f)};
  twin_stats before = fixture_stats(f);
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  twin_stats mid = fixture_stats(f);
  uint64_t two = f->layout == FIXTURE_TWO_COPIES ? 1 : 0;
  assert_int_equal(mid.bytes_to_device - before.bytes_to_device, two * 2 * N * sizeof(float));
  float got[N];
  assert_ok(twin_array_read(x, got, sizeof got));
  assert_ok(twin_array_read(y, got, sizeof got));
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_host - mid.bytes_to_host, two * N * sizeof(float));
  assert_int_equal(after.transfers_to_host - mid.transfers_to_host, two);
  /* Launching again moves nothing to the device: both are current there. */
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  assert_int_equal(fixture_stats(f).bytes_to_device, after.bytes_to_device);
  twin_kernel_unref(k);
  twin_array_unref(x);
  twin_array_unref(y);
}

static void test_zero_global_launches_nothing(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4}, global[] = {0};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_kernel *k = kernel_of(f, "saxpy");
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(1.0f)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  float got[4];
  assert_ok(twin_array_read(y, got, sizeof got));
  assert_true(got[3] == 3.0f);
  twin_kernel_unref(k);
  twin_array_unref(x);
  twin_array_unref(y);
}

/* ---- Argument checking ---- */

typedef struct saxpy_case {
  twin_kernel *k;
  twin_array *x, *y, *i32, *strided;
} saxpy_case;

static saxpy_case saxpy_setup(twin_fixture *f) {
  saxpy_case c;
  size_t shape[] = {8}, wide[] = {8, 2};
  c.k = kernel_of(f, "saxpy");
  c.x = f32_array(f, 1, shape, 0);
  c.y = f32_array(f, 1, shape, 0);
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &c.i32));
  twin_array *w = f32_array(f, 2, wide, 0);
  assert_ok(twin_array_index(w, 1, 0, &c.strided));
  twin_array_unref(w);
  return c;
}

static void saxpy_teardown(saxpy_case *c) {
  twin_kernel_unref(c->k);
  twin_array_unref(c->x);
  twin_array_unref(c->y);
  twin_array_unref(c->i32);
  twin_array_unref(c->strided);
}

/* Launches saxpy with args and expects the status, leaving y's data as it was. */
static void expect_refused(twin_fixture *f, saxpy_case *c, int nargs, const twin_arg *args,
                           twin_status expected) {
  twin_stats before = fixture_stats(f);
  size_t global[] = {8};
  assert_status(twin_kernel_launch(c->k, 1, global, NULL, nargs, args), expected);
  twin_stats after = fixture_stats(f);
  assert_int_equal(after.bytes_to_device, before.bytes_to_device); /* nothing was opened */
}

static void test_argument_count_mismatch_names_both_counts(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  twin_arg two[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE)};
  expect_refused(f, &c, 2, two, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("twin_kernel_launch (");
  assert_message_has("kernel saxpy has 5 parameters, but the 2 arguments bind 4");
  twin_arg extra[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                      twin_arg_f32(1), twin_arg_f32(2)};
  expect_refused(f, &c, 4, extra, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("has 5 parameters, but the 4 arguments bind 6");
  saxpy_teardown(&c);
}

static void test_argument_kind_mismatch_names_argument_and_parameter(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  /* A scalar where the array goes: the scalar binds parameter 0, a pointer. */
  twin_arg scalar_first[] = {twin_arg_f32(1), twin_arg_f32(1), twin_arg_array(c.y, TWIN_READ_WRITE),
                             twin_arg_f32(1)};
  expect_refused(f, &c, 4, scalar_first, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0 (f32 scalar) does not fit parameter 0 'x' of kernel saxpy "
                     "(__global const float*): a scalar binds a value parameter");
  /* The wrong element type. */
  twin_arg wrong_type[] = {twin_arg_array(c.i32, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                           twin_arg_f32(1)};
  expect_refused(f, &c, 3, wrong_type, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0 (i32 array passed TWIN_READ) does not fit parameter 0 'x'");
  assert_message_has("the element types differ");
  /* Writing through a const pointer, and reading through a non-const one. */
  twin_arg write_const[] = {twin_arg_array(c.x, TWIN_READ_WRITE),
                            twin_arg_array(c.y, TWIN_READ_WRITE), twin_arg_f32(1)};
  expect_refused(f, &c, 3, write_const, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("cannot write through a pointer to const");
  twin_arg read_mutable[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ),
                             twin_arg_f32(1)};
  expect_refused(f, &c, 3, read_mutable, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 1 (f32 array passed TWIN_READ) does not fit parameter 2 'y' of "
                     "kernel saxpy (__global float*)");
  /* A scalar of the wrong type. */
  twin_arg wrong_scalar[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                             twin_arg_f64(1)};
  expect_refused(f, &c, 3, wrong_scalar, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 2 (f64 scalar) does not fit parameter 4 'a' of kernel saxpy "
                     "(float): the types differ");
  /* A view where the kernel takes an array: its shape would land on the scalar. */
  twin_arg view[] = {twin_arg_view(c.x, TWIN_READ), twin_arg_f32(1)};
  expect_refused(f, &c, 2, view, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("does not fit parameter 2 'y' of kernel saxpy (__global float*): the "
                     "array binds its shape, a long8, here");
  /* Local memory where a pointer to global memory goes. */
  twin_arg local[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_local(16), twin_arg_f32(1),
                      twin_arg_f32(1)};
  expect_refused(f, &c, 4, local, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 1 (16 bytes of local memory) does not fit parameter 2 'y'");
  saxpy_teardown(&c);
}

static void test_bad_arguments_are_refused_before_anything_opens(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  twin_arg strided[] = {twin_arg_array(c.strided, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                        twin_arg_f32(1)};
  expect_refused(f, &c, 3, strided, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0: the array is not C-contiguous; pass it with twin_arg_view");
  twin_arg null_array[] = {twin_arg_array(NULL, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                           twin_arg_f32(1)};
  expect_refused(f, &c, 3, null_array, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0: the array is NULL");
  twin_arg bad_access[] = {twin_arg_array(c.x, (twin_access)0),
                           twin_arg_array(c.y, TWIN_READ_WRITE), twin_arg_f32(1)};
  expect_refused(f, &c, 3, bad_access, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0: access is 0");
  twin_array *bcast;
  size_t bshape[] = {8, 8};
  assert_ok(twin_array_broadcast_to(c.y, 2, bshape, &bcast));
  twin_array *row;
  assert_ok(twin_array_index(bcast, 0, 0, &row));
  twin_arg read_only[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_view(row, TWIN_READ_WRITE),
                          twin_arg_f32(1)};
  expect_refused(f, &c, 3, read_only, TWIN_ERR_READ_ONLY);
  twin_array_unref(row);
  twin_array_unref(bcast);
  size_t global[] = {8}, local[] = {3};
  twin_arg ok[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                   twin_arg_f32(1)};
  assert_status(twin_kernel_launch(c.k, 1, global, local, 3, ok), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("global[0] = 8 is not a multiple of local[0] = 3");
  assert_status(twin_kernel_launch(c.k, 4, global, NULL, 3, ok), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("work_dim is 4");
  saxpy_teardown(&c);
}

static void test_array_with_open_host_write_is_busy(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  size_t global[] = {8};
  twin_arg args[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                     twin_arg_f32(1)};
  void *p;
  assert_ok(twin_host_begin(c.y, TWIN_WRITE, &p));
  char want[256]; /* the call, the caller's file:line, the argument */
  snprintf(want, sizeof want, "twin_kernel_launch (%s:%d): argument 1: ", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_BUSY);
  assert_message_has(want);
  assert_ok(twin_host_end(c.y));
  /* Another view of x's buffer with an open host write: x cannot be read on the device. */
  twin_array *alias;
  assert_ok(twin_array_reshape(c.x, 1, (size_t[]){8}, &alias));
  assert_ok(twin_host_begin(alias, TWIN_READ_WRITE, &p));
  snprintf(want, sizeof want, "twin_kernel_launch (%s:%d): argument 0: ", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_BUSY);
  assert_message_has(want);
  assert_message_has("a host write access to this buffer is still open, begun at");
  assert_message_has("test_opencl_kernel.c:");
  assert_ok(twin_host_end(alias));
  twin_array_unref(alias);
  assert_ok(twin_kernel_launch(c.k, 1, global, NULL, 3, args));
  float got[8];
  assert_ok(twin_array_read(c.y, got, sizeof got));
  assert_true(got[7] == 14.0f);
  saxpy_teardown(&c);
}
static cl_int CL_API_CALL failing_enqueue(cl_command_queue q, cl_kernel k, cl_uint dim,
                                          const size_t *off, const size_t *global,
                                          const size_t *local, cl_uint n, const cl_event *wait,
                                          cl_event *ev) {
  (void)q, (void)k, (void)dim, (void)off, (void)global, (void)local, (void)n, (void)wait, (void)ev;
  return CL_OUT_OF_RESOURCES;
}

/* A launch whose enqueue fails leaves the coherence state as it was: the host's newer data in
 * y is not lost to a write that never happened. */
static void test_failed_enqueue_changes_nothing(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  size_t global[] = {8};
  twin_arg args[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                     twin_arg_f32(1)};
  assert_ok(twin_kernel_launch(c.k, 1, global, NULL, 3, args)); /* y: 2i, newer on device */
  float *p;
  assert_ok(twin_host_begin(c.y, TWIN_READ_WRITE, (void **)&p));
  for (int i = 0; i < 8; i++)
    p[i] = 100.0f + (float)i; /* now newer on the host */
  assert_ok(twin_host_end(c.y));
  twin__cl.clEnqueueNDRangeKernel = failing_enqueue;
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_message_has("clEnqueueNDRangeKernel failed with CL_OUT_OF_RESOURCES");
  twin__cl = twin__cl_real;
  float got[8];
  assert_ok(twin_array_read(c.y, got, sizeof got));
  for (int i = 0; i < 8; i++)
    assert_true(got[i] == 100.0f + (float)i);
  saxpy_teardown(&c);
}

/* ---- Host kernels: the same launch on every backend ---- */

/* scale2d in C: dst[i][j] = f * src[i][j], over the launch's 2-D range. */
static twin_status scale2d_host(const twin_host_launch *l, void *user) {
  atomic_int *calls = user;
  atomic_fetch_add(calls, 1);
  const float *src = l->data[0];
  float *dst = l->data[1], factor = l->args[2].value.f32;
  const ptrdiff_t *ss = twin_array_strides(l->args[0].array);
  const ptrdiff_t *ds = twin_array_strides(l->args[1].array);
  for (size_t i = 0; i < l->global[0]; i++)
    for (size_t j = 0; j < l->global[1]; j++)
      dst[(ptrdiff_t)i * ds[0] + (ptrdiff_t)j * ds[1]] =
          factor * src[(ptrdiff_t)i * ss[0] + (ptrdiff_t)j * ss[1]];
  return TWIN_OK;
}

/* A host kernel made on an OpenCL device has no cl_kernel behind it. */
static void test_host_kernel_has_no_cl_kernel(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "scale2d", scale2d_host, NULL, &k));
  assert_null(twin_kernel_cl_kernel(k));
  twin_kernel_unref(k);
}

static void test_device_kernel_refuses_array_of_another_context(void **state) {
  twin_fixture *f = fixture(state);
  saxpy_case c = saxpy_setup(f);
  twin_context *other;
  assert_ok(fixture_open(f->spec, &other));
  size_t shape[] = {8}, global[] = {8};
  twin_array *foreign;
  assert_ok(twin_array_zeros(other, TWIN_F32, 1, shape, &foreign));
  twin_arg args[] = {twin_arg_array(foreign, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                     twin_arg_f32(1)};
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0: the array belongs to another context");
  twin_array_unref(foreign);
  twin_context_unref(other);
  saxpy_teardown(&c);
}

static void quiet_leak(twin_context *ctx, void *user) {
  (void)ctx;
  atomic_fetch_add((atomic_int *)user, 1);
}

/* Objects hold what they need: a kernel outlives its program's and its context's last
 * application references, and everything goes when the last holder does. */
static void test_kernel_keeps_program_and_context_alive(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  atomic_int reports = 0;
  assert_ok(twin_context_set_leak_handler(ctx, quiet_leak, &reports));
  twin_program *p;
  assert_ok(twin_program_new(ctx, source, NULL, &p));
  twin_kernel *k;
  assert_ok(twin_kernel_new(p, "copy_i32", &k));
  size_t shape[] = {16}, global[] = {16};
  twin_array *a, *b;
  assert_ok(twin_array_zeros(ctx, TWIN_I32, 1, shape, &a));
  assert_ok(twin_array_zeros(ctx, TWIN_I32, 1, shape, &b));
  twin_program_unref(p);
  twin_context_unref(ctx); /* arrays, kernel and the cached program keep it open */
  twin_arg args[] = {twin_arg_array(a, TWIN_READ), twin_arg_array(b, TWIN_WRITE)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 2, args));
  int32_t got[16];
  assert_ok(twin_array_read(b, got, sizeof got));
  assert_int_equal(got[15], 1);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_kernel_unref(k); /* the last holder: kernel, program and context go here */
  assert_int_equal(atomic_load(&reports), 1);
}

/* ---- Threads and failures ---- */

typedef struct worker {
  twin_kernel *k; /* shared by the threads */
  twin_array *x, *y;
  twin_status status;
} worker;

static void *launch_many(void *arg) {
  worker *w = arg;
  size_t global[] = {256};
  twin_arg args[] = {twin_arg_array(w->x, TWIN_READ), twin_arg_array(w->y, TWIN_READ_WRITE),
                     twin_arg_f32(1.0f)};
  w->status = TWIN_OK;
  for (int i = 0; i < 50 && w->status == TWIN_OK; i++)
    w->status = twin_kernel_launch(w->k, 1, global, NULL, 3, args);
  return NULL;
}

/* Two threads launch one kernel object on their own arrays: each launch's arguments are its
 * own (set and enqueued under the kernel's lock). */
static void test_threads_share_one_kernel(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k = kernel_of(f, "saxpy");
  size_t shape[] = {256};
  worker w[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    w[i] =
        (worker){k, f32_array(f, 1, shape, (float)(1000 * i)), f32_array(f, 1, shape, 0), TWIN_OK};
    assert_int_equal(pthread_create(&t[i], NULL, launch_many, &w[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_ok(w[i].status);
    float got[256];
    assert_ok(twin_array_read(w[i].y, got, sizeof got));
    for (int j = 0; j < 256; j++) /* y started at j and gained x = 1000 i + j 50 times */
      assert_true(got[j] == (float)j + 50.0f * (float)(1000 * i + j));
    twin_array_unref(w[i].x);
    twin_array_unref(w[i].y);
  }
  twin_kernel_unref(k);
}
/* Makes the Nth call of the OpenCL entry points a program, kernel and launch use fail. */
static int cl_calls, cl_fail_at;

static bool cl_should_fail(void) {
  return ++cl_calls == cl_fail_at;
}

static cl_program CL_API_CALL sweep_create_program(cl_context c, cl_uint n, const char **lines,
                                                   const size_t *lengths, cl_int *err) {
  if (cl_should_fail()) {
    *err = CL_OUT_OF_HOST_MEMORY;
    return NULL;
  }
  return twin__cl_real.clCreateProgramWithSource(c, n, lines, lengths, err);
}

static cl_int CL_API_CALL sweep_build(cl_program p, cl_uint n, const cl_device_id *devs,
                                      const char *options,
                                      void(CL_CALLBACK *notify)(cl_program, void *), void *user) {
  return cl_should_fail() ? CL_OUT_OF_HOST_MEMORY
                          : twin__cl_real.clBuildProgram(p, n, devs, options, notify, user);
}

static cl_kernel CL_API_CALL sweep_create_kernel(cl_program p, const char *name, cl_int *err) {
  if (cl_should_fail()) {
    *err = CL_OUT_OF_RESOURCES;
    return NULL;
  }
  return twin__cl_real.clCreateKernel(p, name, err);
}

static cl_int CL_API_CALL sweep_kernel_info(cl_kernel k, cl_kernel_info what, size_t size,
                                            void *value, size_t *size_ret) {
  return cl_should_fail() ? CL_OUT_OF_RESOURCES
                          : twin__cl_real.clGetKernelInfo(k, what, size, value, size_ret);
}

static cl_int CL_API_CALL sweep_arg_info(cl_kernel k, cl_uint i, cl_kernel_arg_info what,
                                         size_t size, void *value, size_t *size_ret) {
  return cl_should_fail() ? CL_OUT_OF_HOST_MEMORY
                          : twin__cl_real.clGetKernelArgInfo(k, i, what, size, value, size_ret);
}

static cl_int CL_API_CALL sweep_group_info(cl_kernel k, cl_device_id d,
                                           cl_kernel_work_group_info what, size_t size, void *value,
                                           size_t *size_ret) {
  return cl_should_fail()
             ? CL_OUT_OF_RESOURCES
             : twin__cl_real.clGetKernelWorkGroupInfo(k, d, what, size, value, size_ret);
}

static cl_int CL_API_CALL sweep_set_arg(cl_kernel k, cl_uint i, size_t size, const void *v) {
  return cl_should_fail() ? CL_OUT_OF_RESOURCES : twin__cl_real.clSetKernelArg(k, i, size, v);
}

static cl_int CL_API_CALL sweep_enqueue(cl_command_queue q, cl_kernel k, cl_uint dim,
                                        const size_t *off, const size_t *global,
                                        const size_t *local, cl_uint n, const cl_event *wait,
                                        cl_event *ev) {
  return cl_should_fail()
             ? CL_OUT_OF_RESOURCES
             : twin__cl_real.clEnqueueNDRangeKernel(q, k, dim, off, global, local, n, wait, ev);
}

static void install_cl_sweep(int fail_at) {
  cl_calls = 0;
  cl_fail_at = fail_at;
  twin__cl.clCreateProgramWithSource = sweep_create_program;
  twin__cl.clBuildProgram = sweep_build;
  twin__cl.clCreateKernel = sweep_create_kernel;
  twin__cl.clGetKernelInfo = sweep_kernel_info;
  twin__cl.clGetKernelArgInfo = sweep_arg_info;
  twin__cl.clGetKernelWorkGroupInfo = sweep_group_info;
  twin__cl.clSetKernelArg = sweep_set_arg;
  twin__cl.clEnqueueNDRangeKernel = sweep_enqueue;
}

/* Builds, makes the kernel and launches it once; *step says how far it got. */
static twin_status build_and_launch(twin_fixture *f, twin_array *x, twin_array *y, int *step) {
  static const char src[] = "__kernel void sweep(TWIN_ARRAY(__global const int, x),\n"
                            "                    TWIN_ARRAY(__global int, y), int a) {\n"
                            "  long i = get_global_id(0);\n"
                            "  TWIN_AT(y, i) = TWIN_AT(x, i) + a;\n}\n";
  twin_program *p = NULL;
  twin_kernel *k = NULL;
  size_t global[] = {16};
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_WRITE), twin_arg_i32(5)};
  *step = 0;
  twin_status s = twin_program_new(f->ctx, src, NULL, &p);
  if (s == TWIN_OK && ++*step)
    s = twin_kernel_new(p, "sweep", &k);
  if (s == TWIN_OK && ++*step)
    s = twin_kernel_launch(k, 1, global, NULL, 3, args);
  twin_kernel_unref(k);
  twin_program_unref(p);
  return s;
}

/* Every OpenCL call of building, kernel creation and launching fails in turn: each failure is
 * a clean status that changes nothing (y keeps its data), until the whole sequence succeeds. */
static void test_opencl_failure_sweep_over_build_and_launch(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {16};
  int32_t data[16], got[16];
  for (int i = 0; i < 16; i++)
    data[i] = i;
  twin_array *x, *y;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, shape, data, &x));
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, shape, data, &y));
  twin_status s = TWIN_ERR_OPENCL;
  int fail_at, step = 0;
  for (fail_at = 1; fail_at < 100 && s != TWIN_OK; fail_at++) {
    install_cl_sweep(fail_at);
    s = build_and_launch(f, x, y, &step);
    twin__cl = twin__cl_real;
    if (s == TWIN_OK)
      break;
    if (s != TWIN_ERR_BUILD && s != TWIN_ERR_OUT_OF_HOST_MEMORY &&
        s != TWIN_ERR_OUT_OF_DEVICE_MEMORY)
      fail_msg("fail_at %d (step %d): %s", fail_at, step, twin_last_error());
    assert_ok(twin_array_read(y, got, sizeof got));
    assert_memory_equal(got, data, sizeof got); /* a failed launch wrote nothing */
  }
  assert_ok(s);
  assert_true(fail_at > 5); /* the sweep went through several calls */
  assert_ok(twin_array_read(y, got, sizeof got));
  for (int i = 0; i < 16; i++)
    assert_int_equal(got[i], i + 5);
  twin_array_unref(x);
  twin_array_unref(y);
}

/* A device kernel with more arguments than a launch keeps on the stack: every value arrives,
 * and the arrays among them are opened and marked written as with few. */
static void test_device_kernel_with_many_arguments(void **state) {
  twin_fixture *f = fixture(state);
  enum { SCALARS = 20 };
  char src[2048];
  int n = snprintf(src, sizeof src,
                   "__kernel void many(TWIN_ARRAY(__global const long, in), "
                   "TWIN_VIEW(__global long, out)");
  for (int i = 0; i < SCALARS; i++)
    n += snprintf(src + n, sizeof src - (size_t)n, ", int a%d", i);
  n += snprintf(src + n, sizeof src - (size_t)n, ") {\n  long s = TWIN_AT(in, 0)");
  for (int i = 0; i < SCALARS; i++)
    n += snprintf(src + n, sizeof src - (size_t)n, " + a%d", i);
  snprintf(src + n, sizeof src - (size_t)n, ";\n  TWIN_AT(out, get_global_id(0)) = s;\n}\n");
  twin_program *p;
  twin_kernel *k;
  assert_ok(twin_program_new(f->ctx, src, NULL, &p));
  assert_ok(twin_kernel_new(p, "many", &k));
  twin_program_unref(p);
  size_t one[] = {1}, four[] = {4};
  int64_t base = 1000, got[4];
  twin_array *in, *out;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I64, 1, one, &base, &in));
  assert_ok(twin_array_zeros(f->ctx, TWIN_I64, 1, four, &out));
  twin_arg args[2 + SCALARS];
  args[0] = twin_arg_array(in, TWIN_READ);
  args[1] = twin_arg_view(out, TWIN_WRITE);
  for (int i = 0; i < SCALARS; i++)
    args[2 + i] = twin_arg_i32(i + 1);
  assert_ok(twin_kernel_launch(k, 1, four, NULL, 2 + SCALARS, args));
  assert_ok(twin_array_read(out, got, sizeof got));
  for (int i = 0; i < 4; i++)
    assert_int_equal(got[i], 1000 + SCALARS * (SCALARS + 1) / 2);
  twin_array_unref(in);
  twin_array_unref(out);
  twin_kernel_unref(k);
}

/* ---- Parameters whose types lie about the array ---- */

/* Kernels whose pointer or value parameters are not exactly a twin element type. Each writes
 * one element per work item in its own units, so a float4 kernel given 16 floats would write
 * 64. */
static const char typed_source[] =
    "typedef float myfloat;\n"
    "typedef struct { float a, b, c, d; } quad;\n"
    "__kernel void vec4(__global float4 *x, long x_offset) {\n"
    "  x[x_offset + get_global_id(0)] = (float4)(-1.0f);\n}\n"
    "__kernel void halfs(__global half *x, long x_offset) {\n"
    "  vstore_half(-1.0f, x_offset + get_global_id(0), x);\n}\n"
    "__kernel void tdef(__global myfloat *x, long x_offset) {\n"
    "  x[x_offset + get_global_id(0)] = -1.0f;\n}\n"
    "__kernel void quads(__global quad *x, long x_offset) {\n"
    "  x[x_offset + get_global_id(0)].d = -1.0f;\n}\n"
    "__kernel void bytes4(__global uchar4 *x, long x_offset) {\n"
    "  x[x_offset + get_global_id(0)] = (uchar4)(255);\n}\n"
    "__kernel void spelled(__global unsigned int *u, long u_offset,\n"
    "                      __global const signed char *c, long c_offset,\n"
    "                      __constant float *k, long k_offset,\n"
    "                      global volatile ulong * restrict w, long w_offset, unsigned int s) {\n"
    "  long i = get_global_id(0);\n"
    "  u[u_offset + i] = (uint)(c[c_offset + i] + (int)k[k_offset + i]) + s;\n"
    "  w[w_offset + i] = u[u_offset + i] * 2;\n}\n"
    "__kernel void vec_scalar(TWIN_ARRAY(__global float, out), float2 v) {\n"
    "  TWIN_AT(out, 0) = v.x;\n}\n"
    "__kernel void tdef_scalar(TWIN_ARRAY(__global float, out), myfloat v) {\n"
    "  TWIN_AT(out, 0) = v;\n}\n"
    "__kernel void struct_scalar(TWIN_ARRAY(__global float, out), quad v) {\n"
    "  TWIN_AT(out, 0) = v.a;\n}\n"
    "__kernel void uint_scalar(TWIN_ARRAY(__global uint, out), uint v) {\n"
    "  TWIN_AT(out, get_global_id(0)) = v;\n}\n"
    "__kernel void by4(TWIN_ARRAY(__global float, x)) {\n"
    "  size_t i = get_global_id(0);\n"
    "  vstore4(vload4(i, TWIN_PTR(x)) * 2.0f, i, TWIN_PTR(x));\n}\n";

static twin_kernel *typed_kernel(twin_fixture *f, const char *name) {
  twin_program *p;
  assert_ok(twin_program_new(f->ctx, typed_source, NULL, &p));
  twin_kernel *k;
  assert_ok(twin_kernel_new(p, name, &k));
  twin_program_unref(p);
  return k;
}

/* Release callback of the lent region below: counts its calls. */
static void count_release(void *user) {
  atomic_fetch_add((atomic_int *)user, 1);
}

/* A pointer to a vector, half, typedef or struct element binds no twin array: the kernel would
 * index in its own units and write past the array. Here the array is 16 floats the application
 * lent inside a larger block, and the floats after them must stay untouched. */
static void test_pointer_to_non_element_type_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  static const struct {
    const char *kernel, *type;
  } cases[] = {{"vec4", "float4*"},
               {"halfs", "half*"},
               {"tdef", "myfloat*"},
               {"quads", "quad*"},
               {"bytes4", "uchar4*"}};
  enum { N = 16, BLOCK = 4096 / sizeof(float) };
  float *block = test_malloc(BLOCK * sizeof *block + 4096);
  float *base = (float *)(((uintptr_t)block + 4095) & ~(uintptr_t)4095); /* page-aligned */
  for (int i = 0; i < (int)BLOCK; i++)
    base[i] = (float)i;
  atomic_int released = 0;
  size_t shape[] = {N}, bytes_shape[] = {4 * N}, global[] = {N};
  twin_array *lent, *bytes;
  assert_ok(twin_array_wrap_host(f->ctx, base, TWIN_F32, 1, shape, NULL, count_release, &released,
                                 &lent));
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, bytes_shape, &bytes));
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    twin_kernel *k = typed_kernel(f, cases[c].kernel);
    twin_array *arrays[] = {lent, bytes};
    for (int a = 0; a < 2; a++) {
      twin_arg args[] = {twin_arg_array(arrays[a], TWIN_WRITE)};
      assert_status(twin_kernel_launch(k, 1, global, NULL, 1, args), TWIN_ERR_INVALID_ARGUMENT);
      assert_message_has("argument 0 (");
      assert_message_has("parameter 0 'x'");
      assert_message_has(cases[c].type);
    }
    twin_kernel_unref(k);
  }
  assert_ok(twin_context_finish(f->ctx));
  twin_array_unref(lent);
  twin_array_unref(bytes);
  assert_int_equal(atomic_load(&released), 1);
  for (int i = 0; i < (int)BLOCK; i++) /* neither the array nor what follows was written */
    assert_true(base[i] == (float)i);
  test_free(block);
}

/* Vector access the documented way: a float pointer, vload4 and vstore4 from TWIN_PTR. */
static void test_vector_access_through_vload_on_an_element_pointer(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k = typed_kernel(f, "by4");
  size_t shape[] = {20}, global[] = {4};
  twin_array *a = f32_array(f, 1, shape, 0), *tail;
  twin_slice s[] = {{4, TWIN_NONE, 1}}; /* an offset of 4 floats, 16 elements */
  assert_ok(twin_array_slice(a, s, &tail));
  twin_arg args[] = {twin_arg_array(tail, TWIN_READ_WRITE)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 1, args));
  float got[20];
  assert_ok(twin_array_read(a, got, sizeof got));
  for (int i = 0; i < 20; i++)
    assert_true(got[i] == (i < 4 ? 1.0f : 2.0f) * (float)i);
  twin_kernel_unref(k);
  twin_array_unref(tail);
  twin_array_unref(a);
}

/* Every way OpenCL C spells a twin element type binds it: unsigned int, signed char, const,
 * __constant, global without underscores, volatile and restrict. */
static void test_pointer_element_spellings_bind_exactly(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k = typed_kernel(f, "spelled");
  size_t shape[] = {4}, global[] = {4};
  twin_array *u, *c, *kk, *w, *i32, *u8;
  int8_t cdata[] = {1, 2, 3, -4};
  float kdata[] = {10, 20, 30, 40};
  assert_ok(twin_array_zeros(f->ctx, TWIN_U32, 1, shape, &u));
  assert_ok(twin_array_from_host(f->ctx, TWIN_I8, 1, shape, cdata, &c));
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 1, shape, kdata, &kk));
  assert_ok(twin_array_zeros(f->ctx, TWIN_U64, 1, shape, &w));
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &i32));
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, shape, &u8));
  twin_arg args[] = {twin_arg_array(u, TWIN_READ_WRITE), twin_arg_array(c, TWIN_READ),
                     twin_arg_array(kk, TWIN_READ), twin_arg_array(w, TWIN_WRITE),
                     twin_arg_u32(100)};
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 5, args));
  uint64_t got[4];
  assert_ok(twin_array_read(w, got, sizeof got));
  for (int i = 0; i < 4; i++)
    assert_int_equal(got[i], 2 * (uint64_t)(cdata[i] + (int)kdata[i] + 100));
  /* Same size, other type: an i32 array for unsigned int, a u8 array for signed char. */
  args[0] = twin_arg_array(i32, TWIN_READ_WRITE);
  assert_status(twin_kernel_launch(k, 1, global, NULL, 5, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 0 (i32 array passed TWIN_READ_WRITE) does not fit parameter 0 'u'");
  args[0] = twin_arg_array(u, TWIN_READ_WRITE);
  args[1] = twin_arg_array(u8, TWIN_READ);
  assert_status(twin_kernel_launch(k, 1, global, NULL, 5, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 1 (u8 array passed TWIN_READ) does not fit parameter 2 'c'");
  args[1] = twin_arg_array(c, TWIN_READ);
  args[4] = twin_arg_i32(100); /* int is not unsigned int */
  assert_status(twin_kernel_launch(k, 1, global, NULL, 5, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 4 (i32 scalar) does not fit parameter 8 's'");
  twin_kernel_unref(k);
  twin_array *all[] = {u, c, kk, w, i32, u8};
  for (int i = 0; i < 6; i++)
    twin_array_unref(all[i]);
}

/* A scalar binds only a parameter of exactly its type: not a vector, a typedef or a struct,
 * whose size the kernel would read differently. */
static void test_scalar_binds_only_its_exact_type(void **state) {
  twin_fixture *f = fixture(state);
  static const struct {
    const char *kernel, *type;
  } cases[] = {
      {"vec_scalar", "(float2)"}, {"tdef_scalar", "(myfloat)"}, {"struct_scalar", "(quad)"}};
  size_t shape[] = {1}, global[] = {1};
  twin_array *out = f32_array(f, 1, shape, 7);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    twin_kernel *k = typed_kernel(f, cases[c].kernel);
    twin_arg args[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_f32(1)};
    assert_status(twin_kernel_launch(k, 1, global, NULL, 2, args), TWIN_ERR_INVALID_ARGUMENT);
    assert_message_has("argument 1 (f32 scalar) does not fit parameter 2 'v'");
    assert_message_has(cases[c].type);
    twin_arg wide[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_f64(1)};
    assert_status(twin_kernel_launch(k, 1, global, NULL, 2, wide), TWIN_ERR_INVALID_ARGUMENT);
    twin_kernel_unref(k);
  }
  float got;
  assert_ok(twin_array_read(out, &got, sizeof got));
  assert_true(got == 7.0f);
  twin_array_unref(out);
}
/* Type names another device may report for the parameters of uint_scalar (out, out_offset,
 * v): index i replaced by fake_types[i] when not NULL. */
static const char *fake_types[3];
static bool no_arg_info;

static cl_int CL_API_CALL fake_arg_info(cl_kernel k, cl_uint i, cl_kernel_arg_info what,
                                        size_t size, void *value, size_t *size_ret) {
  if (no_arg_info)
    return CL_KERNEL_ARG_INFO_NOT_AVAILABLE;
  if (what != CL_KERNEL_ARG_TYPE_NAME || i >= 3 || !fake_types[i])
    return twin__cl_real.clGetKernelArgInfo(k, i, what, size, value, size_ret);
  size_t n = strlen(fake_types[i]) + 1;
  if (size_ret)
    *size_ret = n;
  if (value && size < n)
    return CL_INVALID_VALUE;
  if (value)
    memcpy(value, fake_types[i], n);
  return CL_SUCCESS;
}

/* Makes uint_scalar with the type names given for its pointer and its scalar parameter. */
static twin_status uint_kernel_spelled(twin_fixture *f, const char *pointer, const char *scalar,
                                       twin_kernel **k) {
  twin_program *p;
  assert_ok(twin_program_new(f->ctx, typed_source, NULL, &p));
  fake_types[0] = pointer;
  fake_types[2] = scalar;
  twin__cl.clGetKernelArgInfo = fake_arg_info;
  twin_status s = twin_kernel_new(p, "uint_scalar", k);
  twin__cl = twin__cl_real;
  twin_program_unref(p);
  return s;
}

/* The type names devices report vary (whitespace removed or not, unsigned spelled out,
 * qualifiers and address spaces left in); each that means exactly uint binds a u32 array and a
 * u32 scalar, and each that does not is refused, naming the type. */
static void test_type_names_as_devices_spell_them(void **state) {
  twin_fixture *f = fixture(state);
  static const char *const fit[][2] = {{"uint*", "uint"},
                                       {"unsigned int*", "unsigned int"},
                                       {"unsignedint*", "unsignedint"},
                                       {"uint *", "unsigned"},
                                       {"__global uint*", "uint"},
                                       {"global const uint *", "const uint"},
                                       {"uint * restrict", "uint"},
                                       {"__global volatile unsigned int * const", "uint"}};
  static const char *const unfit[][2] = {
      {"uint4*", "uint"},  {"myuint*", "uint"}, {"uint**", "uint"},
      {"", "uint"},        {"int*", "uint"},    {"uint*", "uint2"},
      {"uint*", "myuint"}, {"uint*", "int"},    {"uint*", "uint*"}};
  size_t shape[] = {4}, global[] = {4};
  twin_array *out;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U32, 1, shape, &out));
  twin_arg args[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_u32(9)};
  for (size_t c = 0; c < sizeof fit / sizeof fit[0]; c++) {
    twin_kernel *k;
    assert_ok(uint_kernel_spelled(f, fit[c][0], fit[c][1], &k));
    if (twin_kernel_launch(k, 1, global, NULL, 2, args) != TWIN_OK)
      fail_msg("\"%s\", \"%s\" refused: %s", fit[c][0], fit[c][1], twin_last_error());
    twin_kernel_unref(k);
  }
  for (size_t c = 0; c < sizeof unfit / sizeof unfit[0]; c++) {
    twin_kernel *k;
    assert_ok(uint_kernel_spelled(f, unfit[c][0], unfit[c][1], &k));
    if (twin_kernel_launch(k, 1, global, NULL, 2, args) != TWIN_ERR_INVALID_ARGUMENT)
      fail_msg("\"%s\", \"%s\" accepted", unfit[c][0], unfit[c][1]);
    assert_message_has(strcmp(unfit[c][0], "uint*") ? "parameter 0 'out'" : "parameter 2 'v'");
    twin_kernel_unref(k);
  }
  uint32_t got[4];
  assert_ok(twin_array_read(out, got, sizeof got));
  assert_int_equal(got[3], 9);
  twin_array_unref(out);
}

/* A device that gives no argument information leaves nothing to check launches against:
 * twin refuses to make such a kernel rather than trust every launch. */
static void test_kernel_without_argument_information_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  twin_program *p = program_of(f);
  twin_kernel *k = (twin_kernel *)0x1;
  no_arg_info = true;
  twin__cl.clGetKernelArgInfo = fake_arg_info;
  twin_status s = twin_kernel_new(p, "saxpy", &k);
  twin__cl = twin__cl_real;
  no_arg_info = false;
  assert_status(s, TWIN_ERR_UNSUPPORTED);
  assert_ptr_equal(k, (twin_kernel *)0x1);
  assert_message_has("twin_kernel_new: kernel saxpy");
  assert_message_has("no argument information");
  assert_message_has(twin_context_device(f->ctx)->name);
  twin_program_unref(p);
}
static uint64_t device_u64(twin_context *ctx, cl_device_info what) {
  cl_ulong v = 0;
  assert_int_equal(
      twin__cl_real.clGetDeviceInfo(twin_context_cl_device(ctx), what, sizeof v, &v, NULL),
      CL_SUCCESS);
  return v;
}

static const char local_source[] =
    "__kernel void two_locals(TWIN_ARRAY(__global float, out), __local float *a,\n"
    "                         __local float *b) {\n"
    "  __local float own[LOCAL_FLOATS];\n"
    "  size_t l = get_local_id(0);\n"
    "  own[l] = 1.0f; a[l] = 2.0f; b[l] = 3.0f;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  TWIN_AT(out, get_global_id(0)) = own[l] + a[l] + b[l];\n}\n";

static size_t device_size(twin_context *ctx, cl_device_info what) {
  size_t v = 0;
  assert_int_equal(
      twin__cl_real.clGetDeviceInfo(twin_context_cl_device(ctx), what, sizeof v, &v, NULL),
      CL_SUCCESS);
  return v;
}

/* Local memory is checked against the device's CL_DEVICE_LOCAL_MEM_SIZE, counting every local
 * argument and the kernel's own __local variables (CL_KERNEL_LOCAL_MEM_SIZE): more aborted
 * PoCL, and exactly the limit works. */
static void test_local_memory_beyond_the_device_limit_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  uint64_t limit = device_u64(f->ctx, CL_DEVICE_LOCAL_MEM_SIZE);
  assert_true(limit >= 4096);
  assert_int_equal(twin_context_device(f->ctx)->local_mem_bytes, limit);
  /* One argument four times the device's local memory (row_sums: m, out, scratch). */
  size_t mshape[] = {4, 8}, oshape[] = {4}, global[] = {4}, local[] = {1};
  twin_array *m = f32_array(f, 2, mshape, 0), *out = f32_array(f, 1, oshape, 0);
  twin_kernel *k = kernel_of(f, "row_sums");
  twin_arg args[] = {twin_arg_view(m, TWIN_READ), twin_arg_array(out, TWIN_WRITE),
                     twin_arg_local((size_t)(4 * limit))};
  assert_status(twin_kernel_launch(k, 1, global, local, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 2");
  char text[128];
  snprintf(text, sizeof text, "CL_DEVICE_LOCAL_MEM_SIZE = %llu", (unsigned long long)limit);
  assert_message_has(text);
  args[2] = twin_arg_local(SIZE_MAX);
  assert_status(twin_kernel_launch(k, 1, global, local, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  twin_kernel_unref(k);
  /* A kernel using half the limit itself, and two arguments of a quarter each: a few bytes
   * more are refused, naming the sum and the kernel's own share; exactly the limit runs. */
  char options[64];
  snprintf(options, sizeof options, "-DLOCAL_FLOATS=%llu", (unsigned long long)(limit / 8));
  twin_program *p;
  assert_ok(twin_program_new(f->ctx, local_source, options, &p));
  assert_ok(twin_kernel_new(p, "two_locals", &k));
  twin_program_unref(p);
  size_t quarter = (size_t)(limit / 4);
  twin_arg over[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_local(quarter),
                     twin_arg_local(quarter + 64)};
  assert_status(twin_kernel_launch(k, 1, global, local, 3, over), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("CL_KERNEL_LOCAL_MEM_SIZE");
  assert_message_has(text);
  twin_arg both_huge[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_local(SIZE_MAX / 2 + 1),
                          twin_arg_local(SIZE_MAX / 2 + 1)}; /* the sum overflows */
  assert_status(twin_kernel_launch(k, 1, global, local, 3, both_huge), TWIN_ERR_INVALID_ARGUMENT);
  twin_arg exact[] = {twin_arg_array(out, TWIN_WRITE), twin_arg_local(quarter),
                      twin_arg_local(quarter)};
  assert_ok(twin_kernel_launch(k, 1, global, local, 3, exact));
  float got[4];
  assert_ok(twin_array_read(out, got, sizeof got));
  assert_true(got[3] == 6.0f);
  twin_kernel_unref(k);
  twin_array_unref(m);
  twin_array_unref(out);
}

/* Launches k (any kernel of one i32-or-f32 array argument, or saxpy's three) and expects a
 * refusal naming `needle`. */
static void expect_global_refused(twin_kernel *k, int work_dim, const size_t *global, int nargs,
                                  const twin_arg *args, const char *needle) {
  assert_status(twin_kernel_launch(k, work_dim, global, NULL, nargs, args),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has(needle);
}

/* The global size bound of test_kernel.c for an OpenCL C kernel, and for a 32-bit device, whose
 * size_t and long are narrower. */
static void test_global_sizes_beyond_the_bound_are_refused_for_opencl_kernels(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {8};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_arg three[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                      twin_arg_f32(1)};
  twin_kernel *dk = kernel_of(f, "saxpy");
  size_t huge[] = {SIZE_MAX}, wrap[] = {(size_t)1 << 32, (size_t)1 << 32, 4},
         signed_over[] = {(size_t)1 << 32, (size_t)1 << 31}, zero_and_max[] = {0, SIZE_MAX};
  expect_global_refused(dk, 1, huge, 3, three, "global[0] = 18446744073709551615");
  expect_global_refused(dk, 3, wrap, 3, three, "global work items");
  expect_global_refused(dk, 2, signed_over, 3, three, "9223372036854775807");
  expect_global_refused(dk, 2, zero_and_max, 3, three, "global[1]");
  unsigned bits = f->ctx->device.address_bits;
  cl_uint reported = 0;
  assert_int_equal(twin__cl_real.clGetDeviceInfo(twin_context_cl_device(f->ctx),
                                                 CL_DEVICE_ADDRESS_BITS, sizeof reported, &reported,
                                                 NULL),
                   CL_SUCCESS);
  assert_int_equal(bits, reported);
  f->ctx->device.address_bits = 32;
  size_t four_g[] = {(size_t)1 << 32}, two_g[] = {(size_t)1 << 31};
  expect_global_refused(dk, 1, four_g, 3, three, "CL_DEVICE_ADDRESS_BITS = 32");
  expect_global_refused(dk, 1, two_g, 3, three, "2147483647");
  f->ctx->device.address_bits = bits;
  twin_kernel_unref(dk);
  twin_array_unref(x);
  twin_array_unref(y);
}

static size_t fake_kernel_group;

static cl_int CL_API_CALL fake_group_info(cl_kernel k, cl_device_id d,
                                          cl_kernel_work_group_info what, size_t size, void *value,
                                          size_t *size_ret) {
  cl_int err = twin__cl_real.clGetKernelWorkGroupInfo(k, d, what, size, value, size_ret);
  if (err == CL_SUCCESS && what == CL_KERNEL_WORK_GROUP_SIZE && value)
    *(size_t *)value = fake_kernel_group;
  return err;
}

/* Local sizes within the device's CL_DEVICE_MAX_WORK_ITEM_SIZES per dimension, their product
 * within CL_DEVICE_MAX_WORK_GROUP_SIZE and the kernel's own CL_KERNEL_WORK_GROUP_SIZE. */
static void test_local_sizes_beyond_device_and_kernel_limits_are_refused(void **state) {
  twin_fixture *f = fixture(state);
  size_t items[3] = {0}, group = device_size(f->ctx, CL_DEVICE_MAX_WORK_GROUP_SIZE);
  assert_int_equal(twin__cl_real.clGetDeviceInfo(twin_context_cl_device(f->ctx),
                                                 CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items,
                                                 NULL),
                   CL_SUCCESS);
  const twin_device_info *dev = twin_context_device(f->ctx);
  assert_int_equal(dev->max_work_group_size, group);
  assert_memory_equal(dev->max_work_item_sizes, items, sizeof items);
  saxpy_case c = saxpy_setup(f);
  twin_arg args[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                     twin_arg_f32(1)};
  char text[128];
  size_t wide[] = {2 * items[0]};
  assert_status(twin_kernel_launch(c.k, 1, wide, wide, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  snprintf(text, sizeof text, "local[0] = %zu exceeds CL_DEVICE_MAX_WORK_ITEM_SIZES[0] = %zu",
           wide[0], items[0]);
  assert_message_has(text);
  size_t tall[] = {1, 2 * items[1]};
  assert_status(twin_kernel_launch(c.k, 2, tall, tall, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("CL_DEVICE_MAX_WORK_ITEM_SIZES[1]");
  /* Each dimension within its limit, their product over the work-group limit. */
  size_t side = 1;
  while (side * side <= group)
    side *= 2;
  assert_true(side <= items[0] && side <= items[1]);
  size_t square[] = {side, side};
  assert_status(twin_kernel_launch(c.k, 2, square, square, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  snprintf(text, sizeof text, "CL_DEVICE_MAX_WORK_GROUP_SIZE = %zu", group);
  assert_message_has(text);
  saxpy_teardown(&c);
  /* A kernel whose own limit is lower than the device's. */
  fake_kernel_group = 4;
  twin__cl.clGetKernelWorkGroupInfo = fake_group_info;
  c = saxpy_setup(f);
  twin__cl = twin__cl_real;
  args[0] = twin_arg_array(c.x, TWIN_READ);
  args[1] = twin_arg_array(c.y, TWIN_READ_WRITE);
  size_t global[] = {8}, local[] = {8}, fits[] = {4};
  assert_status(twin_kernel_launch(c.k, 1, global, local, 3, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("CL_KERNEL_WORK_GROUP_SIZE = 4");
  assert_message_has("kernel saxpy");
  assert_ok(twin_kernel_launch(c.k, 1, global, fits, 3, args));
  saxpy_teardown(&c);
}

/* A launch whose enqueue fails names the call site, the kernel and the OpenCL call. */
static void test_launch_messages_name_the_call_site_of_a_failed_enqueue(void **state) {
  twin_fixture *f = fixture(state);
  size_t global[] = {4};
  char site[256];
  saxpy_case c = saxpy_setup(f);
  twin_arg ok[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                   twin_arg_f32(1)};
  twin__cl.clEnqueueNDRangeKernel = failing_enqueue;
  snprintf(site, sizeof site, "twin_kernel_launch (%s:%d): kernel saxpy: clEnqueueNDRangeKernel",
           __FILE__, __LINE__ + 1);
  twin_status s = twin_kernel_launch(c.k, 1, global, NULL, 3, ok);
  twin__cl = twin__cl_real;
  assert_status(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_message_has(site);
  saxpy_teardown(&c);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_same_source_and_options_is_a_cache_lookup),
    TWIN_TEST(test_program_lives_until_its_context_closes),
    TWIN_TEST(test_threads_build_one_source_once),
    TWIN_TEST(test_build_failure_is_build_error_with_log),
    TWIN_TEST(test_program_from_file_and_missing_file),
    TWIN_TEST(test_unknown_kernel_name_lists_the_kernels),
    TWIN_TEST(test_saxpy_matches_host),
    TWIN_TEST(test_views_with_offset_negative_strides_and_transpose),
    TWIN_TEST(test_one_array_read_and_written_opens_once),
    TWIN_TEST(test_two_views_of_one_buffer_read_one_write_other),
    TWIN_TEST(test_row_sums_of_transposed_view_with_local_memory),
    TWIN_TEST(test_scalars_of_every_type_arrive),
    TWIN_TEST(test_launch_is_asynchronous_and_finish_waits),
    TWIN_TEST(test_launch_marks_written_arrays_newer_on_device),
    TWIN_TEST(test_zero_global_launches_nothing),
    TWIN_TEST(test_argument_count_mismatch_names_both_counts),
    TWIN_TEST(test_argument_kind_mismatch_names_argument_and_parameter),
    TWIN_TEST(test_bad_arguments_are_refused_before_anything_opens),
    TWIN_TEST(test_array_with_open_host_write_is_busy),
    TWIN_TEST(test_failed_enqueue_changes_nothing),
    TWIN_TEST(test_host_kernel_has_no_cl_kernel),
    TWIN_TEST(test_device_kernel_refuses_array_of_another_context),
    TWIN_TEST(test_kernel_keeps_program_and_context_alive),
    TWIN_TEST(test_threads_share_one_kernel),
    TWIN_TEST(test_device_kernel_with_many_arguments),
    TWIN_TEST(test_opencl_failure_sweep_over_build_and_launch),
    TWIN_TEST(test_pointer_to_non_element_type_is_refused),
    TWIN_TEST(test_pointer_element_spellings_bind_exactly),
    TWIN_TEST(test_vector_access_through_vload_on_an_element_pointer),
    TWIN_TEST(test_scalar_binds_only_its_exact_type),
    TWIN_TEST(test_type_names_as_devices_spell_them),
    TWIN_TEST(test_kernel_without_argument_information_is_refused),
    TWIN_TEST(test_local_memory_beyond_the_device_limit_is_refused),
    TWIN_TEST(test_global_sizes_beyond_the_bound_are_refused_for_opencl_kernels),
    TWIN_TEST(test_local_sizes_beyond_device_and_kernel_limits_are_refused),
    TWIN_TEST(test_launch_messages_name_the_call_site_of_a_failed_enqueue),
};

TWIN_TEST_MAIN_OPENCL(tests)

/* User kernels: building (success, failure with its log, the per-context cache), launching on
 * views (offset, negative strides, transposed) against results computed here on the host,
 * argument checking against the kernel's parameters, busy and cross-context refusals, the
 * coherence bookkeeping around a launch, and host kernels, which run on every backend.
 * OpenCL C cases skip on the host backend; host kernel cases run everywhere. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#endif

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

static twin_array *f32_array(twin_fixture *f, int ndim, const size_t *shape, float base) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *data = test_malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = base + (float)i;
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, ndim, shape, data, &a));
  test_free(data);
  return a;
}

static void assert_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

#define DEVICE_ONLY(f)                                                                             \
  do {                                                                                             \
    if (!(f)->has_device)                                                                          \
      skip();                                                                                      \
  } while (0)

/* ---- Building ---- */

#ifdef TWIN_HAVE_OPENCL
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
#endif

static void test_same_source_and_options_is_a_cache_lookup(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

static void test_build_failure_is_build_error_with_log(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

static void test_program_from_file_and_missing_file(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
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

static void test_host_backend_refuses_opencl_c(void **state) {
  twin_fixture *f = fixture(state);
  if (f->has_device)
    skip();
  twin_program *p;
  assert_status(twin_program_new(f->ctx, source, NULL, &p), TWIN_ERR_UNSUPPORTED);
  assert_message_has("twin_kernel_new_host");
}

static void test_unknown_kernel_name_lists_the_kernels(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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

/* src: a 6 x 8 grid viewed transposed, with its columns reversed and its first row and column
 * dropped, which gives an offset, a negative stride and non-C-order strides at once. dst: the
 * interior of a 9 x 7 grid. Every dst element outside the view stays untouched. */
typedef struct views {
  twin_array *grid, *src, *out, *dst;
} views;

static views make_views(twin_fixture *f) {
  views v;
  size_t gshape[] = {6, 8}, oshape[] = {9, 7};
  v.grid = f32_array(f, 2, gshape, 0);
  v.out = f32_array(f, 2, oshape, 1000);
  twin_array *t;
  assert_ok(twin_array_transpose(v.grid, NULL, &t));        /* 8 x 6, strides (1, 8) */
  twin_slice s[] = {{1, TWIN_NONE, 1}, {TWIN_NONE, 0, -1}}; /* 7 x 5, strides (1, -8) */
  assert_ok(twin_array_slice(t, s, &v.src));
  twin_array_unref(t);
  twin_slice inner[] = {{1, 8, 1}, {1, 6, 1}}; /* 7 x 5 */
  assert_ok(twin_array_slice(v.out, inner, &v.dst));
  return v;
}

static void drop_views(views *v) {
  twin_array_unref(v->src);
  twin_array_unref(v->dst);
  twin_array_unref(v->grid);
  twin_array_unref(v->out);
}

/* What scale2d(src, dst, f) leaves in the 9 x 7 grid. */
static void check_scaled(twin_array *out, float factor) {
  float got[9 * 7];
  assert_ok(twin_array_read(out, got, sizeof got));
  for (int i = 0; i < 9; i++)
    for (int j = 0; j < 7; j++) {
      float expect = 1000.0f + (float)(i * 7 + j);
      if (i >= 1 && i < 8 && j >= 1 && j < 6) {
        int si = i - 1, sj = j - 1;     /* element (si, sj) of src */
        int row = 5 - sj, col = si + 1; /* is grid[row][col] */
        expect = factor * (float)(row * 8 + col);
      }
      if (got[i * 7 + j] != expect)
        print_error("out[%d][%d] = %g, expected %g\n", i, j, got[i * 7 + j], expect);
      assert_true(got[i * 7 + j] == expect);
    }
}

static void test_views_with_offset_negative_strides_and_transpose(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
  enum { N = 4096 };
  size_t shape[] = {N}, global[] = {N};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_kernel *k = kernel_of(f, "saxpy");
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(1.0f)};
  twin_stats before = fixture_stats(f);
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 3, args));
  twin_stats mid = fixture_stats(f);
  uint64_t two = f->zero_copy ? 0 : 1;
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
  saxpy_case c = saxpy_setup(f);
  twin_arg two[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE)};
  expect_refused(f, &c, 2, two, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("twin_kernel_launch: kernel saxpy has 5 parameters, but the 2 arguments "
                     "bind 4");
  twin_arg extra[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                      twin_arg_f32(1), twin_arg_f32(2)};
  expect_refused(f, &c, 4, extra, TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("has 5 parameters, but the 4 arguments bind 6");
  saxpy_teardown(&c);
}

static void test_argument_kind_mismatch_names_argument_and_parameter(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
  saxpy_case c = saxpy_setup(f);
  size_t global[] = {8};
  twin_arg args[] = {twin_arg_array(c.x, TWIN_READ), twin_arg_array(c.y, TWIN_READ_WRITE),
                     twin_arg_f32(1)};
  void *p;
  assert_ok(twin_host_begin(c.y, TWIN_WRITE, &p));
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_BUSY);
  assert_message_has("twin_kernel_launch: argument 1: ");
  assert_ok(twin_host_end(c.y));
  /* Another view of x's buffer with an open host write: x cannot be read on the device. */
  twin_array *alias;
  assert_ok(twin_array_reshape(c.x, 1, (size_t[]){8}, &alias));
  assert_ok(twin_host_begin(alias, TWIN_READ_WRITE, &p));
  assert_status(twin_kernel_launch(c.k, 1, global, NULL, 3, args), TWIN_ERR_BUSY);
  assert_message_has("twin_kernel_launch: argument 0: a host write access to this buffer is "
                     "still open, begun at");
  assert_message_has("test_kernel.c:");
  assert_ok(twin_host_end(alias));
  twin_array_unref(alias);
  assert_ok(twin_kernel_launch(c.k, 1, global, NULL, 3, args));
  float got[8];
  assert_ok(twin_array_read(c.y, got, sizeof got));
  assert_true(got[7] == 14.0f);
  saxpy_teardown(&c);
}

#ifdef TWIN_HAVE_OPENCL
static cl_int CL_API_CALL failing_enqueue(cl_command_queue q, cl_kernel k, cl_uint dim,
                                          const size_t *off, const size_t *global,
                                          const size_t *local, cl_uint n, const cl_event *wait,
                                          cl_event *ev) {
  (void)q, (void)k, (void)dim, (void)off, (void)global, (void)local, (void)n, (void)wait, (void)ev;
  return CL_OUT_OF_RESOURCES;
}
#endif

/* A launch whose enqueue fails leaves the coherence state as it was: the host's newer data in
 * y is not lost to a write that never happened. */
static void test_failed_enqueue_changes_nothing(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
#ifdef TWIN_HAVE_OPENCL
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
#endif
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

static void test_host_kernel_runs_on_views_on_every_backend(void **state) {
  twin_fixture *f = fixture(state);
  views v = make_views(f);
  atomic_int calls = 0;
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "scale2d", scale2d_host, &calls, &k));
#ifdef TWIN_HAVE_OPENCL
  assert_null(twin_kernel_cl_kernel(k));
#endif
  size_t global[] = {7, 5};
  twin_arg args[] = {twin_arg_view(v.src, TWIN_READ), twin_arg_view(v.dst, TWIN_WRITE),
                     twin_arg_f32(3.0f)};
  assert_ok(twin_kernel_launch(k, 2, global, NULL, 3, args));
  assert_int_equal(atomic_load(&calls), 1);
  check_scaled(v.out, 3.0f);
  twin_kernel_unref(k);
  drop_views(&v);
}

static twin_status failing_host(const twin_host_launch *l, void *user) {
  (void)user;
  float *p = l->data[0];
  p[0] = 42.0f; /* written before failing: counts as written */
  assert_non_null(l->data[1]);
  assert_int_equal(l->args[1].local_bytes, 64);
  memset(l->data[1], 0xab, 64); /* the scratch block is real memory of that size */
  return TWIN_ERR_SHAPE_MISMATCH;
}

static void test_host_kernel_status_and_local_memory(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4}, global[] = {1};
  twin_array *a = f32_array(f, 1, shape, 0);
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "fails", failing_host, NULL, &k));
  twin_arg args[] = {twin_arg_array(a, TWIN_READ_WRITE), twin_arg_local(64)};
  assert_status(twin_kernel_launch(k, 1, global, NULL, 2, args), TWIN_ERR_SHAPE_MISMATCH);
  float got[4];
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_true(got[0] == 42.0f);
  twin_kernel_unref(k);
  twin_array_unref(a);
}

static twin_status never_called(const twin_host_launch *l, void *user) {
  (void)l, (void)user;
  fail_msg("the host kernel ran despite a refused argument");
  return TWIN_OK;
}

static void test_host_kernel_busy_and_cross_context_refusals(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4}, global[] = {4};
  twin_array *a = f32_array(f, 1, shape, 0), *foreign;
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "never", never_called, NULL, &k));
  void *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, &p));
  twin_arg args[] = {twin_arg_array(a, TWIN_READ)};
  assert_status(twin_kernel_launch(k, 1, global, NULL, 1, args), TWIN_ERR_BUSY);
  assert_message_has("twin_kernel_launch: argument 0: ");
  assert_ok(twin_host_end(a));
  twin_context *other;
  assert_ok(fixture_open(f->spec, &other));
  assert_ok(twin_array_zeros(other, TWIN_F32, 1, shape, &foreign));
  twin_arg cross[] = {twin_arg_array(a, TWIN_READ), twin_arg_array(foreign, TWIN_WRITE)};
  assert_status(twin_kernel_launch(k, 1, global, NULL, 2, cross), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("argument 1: the array belongs to another context");
  assert_message_has("than kernel never");
  twin_array_unref(foreign);
  twin_context_unref(other);
  twin_kernel_unref(k);
  twin_array_unref(a);
}

static void test_device_kernel_refuses_array_of_another_context(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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
  DEVICE_ONLY(f);
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

#ifdef TWIN_HAVE_OPENCL
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
#endif

/* Every OpenCL call of building, kernel creation and launching fails in turn: each failure is
 * a clean status that changes nothing (y keeps its data), until the whole sequence succeeds. */
static void test_opencl_failure_sweep_over_build_and_launch(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
#ifdef TWIN_HAVE_OPENCL
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
#endif
}

/* A host kernel with more arguments than a launch keeps on the stack. */
static twin_status sum_scalars(const twin_host_launch *l, void *user) {
  (void)user;
  int64_t *out = l->data[0];
  *out = 0;
  for (int i = 1; i < l->nargs; i++)
    *out += *(const int32_t *)l->data[i];
  return TWIN_OK;
}

static twin_status many_args(twin_fixture *f, twin_array *out, twin_kernel **k) {
  enum { NARGS = 40 };
  twin_arg args[NARGS];
  args[0] = twin_arg_array(out, TWIN_WRITE);
  for (int i = 1; i < NARGS; i++)
    args[i] = twin_arg_i32(i);
  size_t global[] = {1};
  twin_status s = *k ? TWIN_OK : twin_kernel_new_host(f->ctx, "sum", sum_scalars, NULL, k);
  return s == TWIN_OK ? twin_kernel_launch(*k, 1, global, NULL, NARGS, args) : s;
}

static void *(*real_malloc)(size_t);
static int malloc_calls, malloc_fail_at;

static void *failing_malloc(size_t n) {
  return ++malloc_calls == malloc_fail_at ? NULL : real_malloc(n);
}

static void test_many_arguments_and_allocation_failures(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {1};
  twin_array *out;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I64, 1, shape, &out));
  twin_kernel *k = NULL;
  twin_status s = TWIN_ERR_OUT_OF_HOST_MEMORY;
  int fail_at;
  for (fail_at = 1; fail_at < 50 && s != TWIN_OK; fail_at++) {
    real_malloc = atomic_load(&twin__host_alloc.malloc_fn);
    malloc_calls = 0;
    malloc_fail_at = fail_at;
    twin__host_alloc.malloc_fn = failing_malloc;
    s = many_args(f, out, &k);
    twin__host_alloc.malloc_fn = real_malloc;
    if (s != TWIN_OK)
      assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
  }
  assert_ok(s);
  assert_true(fail_at > 2);
  int64_t got;
  assert_ok(twin_array_read(out, &got, sizeof got));
  assert_int_equal(got, 39 * 40 / 2);
  twin_kernel_unref(k);
  twin_array_unref(out);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_same_source_and_options_is_a_cache_lookup),
    TWIN_TEST(test_build_failure_is_build_error_with_log),
    TWIN_TEST(test_program_from_file_and_missing_file),
    TWIN_TEST(test_host_backend_refuses_opencl_c),
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
    TWIN_TEST(test_host_kernel_runs_on_views_on_every_backend),
    TWIN_TEST(test_host_kernel_status_and_local_memory),
    TWIN_TEST(test_host_kernel_busy_and_cross_context_refusals),
    TWIN_TEST(test_device_kernel_refuses_array_of_another_context),
    TWIN_TEST(test_kernel_keeps_program_and_context_alive),
    TWIN_TEST(test_threads_share_one_kernel),
    TWIN_TEST(test_opencl_failure_sweep_over_build_and_launch),
    TWIN_TEST(test_many_arguments_and_allocation_failures),
};

TWIN_TEST_MAIN(tests)

/* Host kernels, which run on every backend: a C function over host pointers launched like an
 * OpenCL kernel, on views (offset, negative strides, transposed), with its status, local
 * memory, busy and cross-context refusals, many arguments, allocation failures, the global
 * size bound and the messages of refused launches; and OpenCL C refused where no OpenCL device
 * runs it. (test_opencl_kernel.c holds OpenCL C kernels.) */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"
#include "kernel_views.h"

static void assert_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static void test_backends_without_opencl_refuse_opencl_c(void **state) {
  twin_fixture *f = fixture(state);
  if (f->opencl)
    skip();
  static const char source[] = "__kernel void k(__global int *x) { x[0] = 1; }\n";
  twin_program *p = NULL;
  assert_status(twin_program_new(f->ctx, source, NULL, &p), TWIN_ERR_UNSUPPORTED);
  assert_message_has("twin_kernel_new_host");
  assert_null(p);
}

/* ---- Host kernels: the same launch on every backend ---- */

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
  char want[256];
  snprintf(want, sizeof want, "twin_kernel_launch (%s:%d): argument 0: ", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(k, 1, global, NULL, 1, args), TWIN_ERR_BUSY);
  assert_message_has(want);
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

static void test_many_arguments_and_allocation_failures(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {1};
  twin_array *out;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I64, 1, shape, &out));
  twin_kernel *k = NULL;
  twin_status s = TWIN_ERR_OUT_OF_HOST_MEMORY;
  int fail_at;
  for (fail_at = 1; fail_at < 50 && s != TWIN_OK; fail_at++) {
    host_inject(fail_at);
    s = many_args(f, out, &k);
    host_restore();
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

static twin_status count_calls(const twin_host_launch *l, void *user) {
  (void)l;
  atomic_fetch_add((atomic_int *)user, 1);
  return TWIN_OK;
}

/* Launches k (any kernel of one i32-or-f32 array argument, or saxpy's three) and expects a
 * refusal naming `needle`. */
static void expect_global_refused(twin_kernel *k, int work_dim, const size_t *global, int nargs,
                                  const twin_arg *args, const char *needle) {
  assert_status(twin_kernel_launch(k, work_dim, global, NULL, nargs, args),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has(needle);
}

/* Global sizes: each, and their product, at most the largest signed value of the device's
 * address width (PTRDIFF_MAX on a 64-bit device), which get_global_id and twin_kernel.h's long
 * index arithmetic can hold; SIZE_MAX (a negative size converted) used to launch for ever, and
 * a product that wrapped to 0 launched nothing, successfully. On every backend (and for OpenCL C
 * kernels in test_opencl_kernel.c). */
static void test_global_sizes_beyond_the_bound_are_refused(void **state) {
  twin_fixture *f = fixture(state);
  atomic_int calls = 0;
  twin_kernel *hk;
  assert_ok(twin_kernel_new_host(f->ctx, "counts", count_calls, &calls, &hk));
  size_t shape[] = {8};
  twin_array *x = f32_array(f, 1, shape, 0), *y = f32_array(f, 1, shape, 0);
  twin_arg one[] = {twin_arg_array(x, TWIN_READ)};
  size_t huge[] = {SIZE_MAX}, wrap[] = {(size_t)1 << 32, (size_t)1 << 32, 4},
         signed_over[] = {(size_t)1 << 32, (size_t)1 << 31}, zero_and_max[] = {0, SIZE_MAX};
  expect_global_refused(hk, 1, huge, 1, one, "global[0] = 18446744073709551615");
  expect_global_refused(hk, 3, wrap, 1, one, "global work items");
  expect_global_refused(hk, 2, signed_over, 1, one, "9223372036854775807");
  expect_global_refused(hk, 2, zero_and_max, 1, one, "global[1]");
  assert_int_equal(atomic_load(&calls), 0);
  if (!f->opencl) /* the host backend and the fake device have none of the device limits */
    assert_int_equal(twin_context_device(f->ctx)->address_bits, 0);
  twin_kernel_unref(hk);
  twin_array_unref(x);
  twin_array_unref(y);
}

/* ---- Messages ---- */

static twin_status quiet_failure(const twin_host_launch *l, void *user) {
  (void)l, (void)user;
  return TWIN_ERR_SHAPE_MISMATCH;
}

/* Fails the way a host function using twin fails: a call of its own fails and it passes the
 * status on. */
static twin_status failing_call(const twin_host_launch *l, void *user) {
  (void)user;
  twin_array *r;
  return twin_array_reshape(l->args[0].array, 1, (size_t[]){5}, &r);
}

/* A host kernel's failure is reported as the launch's, naming the kernel, its status and the
 * call site; a message its function set during the call is kept, an older unrelated one is
 * not shown as the cause. */
static void test_host_kernel_failure_names_the_launch(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4}, global[] = {1};
  twin_array *a = f32_array(f, 1, shape, 0), *unused;
  twin_kernel *quiet, *loud;
  assert_ok(twin_kernel_new_host(f->ctx, "quiet", quiet_failure, NULL, &quiet));
  assert_ok(twin_kernel_new_host(f->ctx, "loud", failing_call, NULL, &loud));
  twin_arg args[] = {twin_arg_array(a, TWIN_READ)};
  assert_status(twin_array_new(f->ctx, (twin_dtype)99, 1, shape, &unused),
                TWIN_ERR_INVALID_ARGUMENT); /* an older, unrelated message */
  char site[256];
  snprintf(site, sizeof site, "twin_kernel_launch (%s:%d)", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(quiet, 1, global, NULL, 1, args), TWIN_ERR_SHAPE_MISMATCH);
  assert_message_has(site);
  assert_message_has("host kernel quiet returned TWIN_ERR_SHAPE_MISMATCH");
  assert_null(strstr(twin_last_error(), "dtype"));
  assert_status(twin_array_new(f->ctx, (twin_dtype)99, 1, shape, &unused),
                TWIN_ERR_INVALID_ARGUMENT);
  snprintf(site, sizeof site, "twin_kernel_launch (%s:%d)", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(loud, 1, global, NULL, 1, args), TWIN_ERR_SHAPE_MISMATCH);
  assert_message_has(site);
  assert_message_has("host kernel loud returned TWIN_ERR_SHAPE_MISMATCH");
  assert_message_has("twin_array_reshape"); /* the function's own message, kept */
  assert_null(strstr(twin_last_error(), "dtype"));
  twin_kernel_unref(quiet);
  twin_kernel_unref(loud);
  twin_array_unref(a);
}

/* Messages of refused launches name the call site and the argument, on every backend. */
static void test_launch_messages_name_the_call_site(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "never", never_called, NULL, &k));
  size_t global[] = {4}, local[] = {3};
  twin_arg args[] = {twin_arg_array(NULL, TWIN_READ)};
  char site[256];
  snprintf(site, sizeof site, "twin_kernel_launch (%s:%d): argument 0: the array is NULL", __FILE__,
           __LINE__ + 1);
  assert_status(twin_kernel_launch(k, 1, global, NULL, 1, args), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has(site);
  snprintf(site, sizeof site, "twin_kernel_launch (%s:%d): global[0] = 4", __FILE__, __LINE__ + 1);
  assert_status(twin_kernel_launch(k, 1, global, local, 0, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has(site);
  twin_kernel_unref(k);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_backends_without_opencl_refuse_opencl_c),
    TWIN_TEST(test_host_kernel_runs_on_views_on_every_backend),
    TWIN_TEST(test_host_kernel_status_and_local_memory),
    TWIN_TEST(test_host_kernel_busy_and_cross_context_refusals),
    TWIN_TEST(test_many_arguments_and_allocation_failures),
    TWIN_TEST(test_global_sizes_beyond_the_bound_are_refused),
    TWIN_TEST(test_host_kernel_failure_names_the_launch),
    TWIN_TEST(test_launch_messages_name_the_call_site),
};

TWIN_TEST_MAIN(tests)

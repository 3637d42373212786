/* Memory the application lends twin, and DLPack both ways: wrapped host memory behaves as an
 * array, gives its memory back with the final contents, and is released exactly once at the
 * last unref; exported tensors hold a reference and an open access until their deleter runs;
 * imported tensors call the producer's deleter exactly once at the last unref; failures
 * release nothing. (test_opencl_interop.c holds the same for cl_mem objects and kDLOpenCL.) */
#include <dlpack/dlpack.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"

static atomic_int releases;
static void *released_user;

static void count_release(void *user) {
  released_user = user;
  atomic_fetch_add(&releases, 1);
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

/* Writes value into every element of a on the side twin computes on (the device when the
 * context has one), so the lent side is stale until twin brings the data back. */
static void fill_on_device(twin_array *a, float value) {
  assert_ok(twin_fill(a, &value));
}

/* ---- twin_array_wrap_host ---- */

static void test_wrapped_host_memory_released_once_at_last_unref(void **state) {
  twin_fixture *f = fixture(state);
  enum { N = 1000 };
  float *mem = malloc(N * sizeof *mem);
  for (int i = 0; i < N; i++)
    mem[i] = (float)i;
  atomic_store(&releases, 0);
  size_t shape[] = {N};
  twin_array *a, *tail;
  assert_ok(twin_array_wrap_host(f->ctx, mem, TWIN_F32, 1, shape, NULL, count_release, mem, &a));
  assert_int_equal(twin_array_is_zero_copy(a), f->layout != FIXTURE_TWO_COPIES);
  twin_slice s[] = {{900, TWIN_NONE, 1}};
  assert_ok(twin_array_slice(a, s, &tail));
  float got[100];
  assert_ok(twin_array_read(tail, got, sizeof got));
  assert_true(got[0] == 900.0f && got[99] == 999.0f);
  fill_on_device(tail, -1.0f);
  twin_array_unref(a);
  assert_int_equal(atomic_load(&releases), 0); /* the view still holds the buffer */
  twin_array_unref(tail);
  assert_int_equal(atomic_load(&releases), 1);
  assert_ptr_equal(released_user, mem);
  /* The memory came back holding the array's final contents. */
  assert_true(mem[899] == 899.0f);
  for (int i = 900; i < N; i++)
    assert_true(mem[i] == -1.0f);
  free(mem);
}

static void test_wrapped_host_memory_with_negative_strides(void **state) {
  twin_fixture *f = fixture(state);
  int32_t mem[3][4];
  for (int i = 0; i < 12; i++)
    mem[i / 4][i % 4] = i;
  atomic_store(&releases, 0);
  /* mem[::-1, ::-2] as element 0 at mem[2][3], strides (-4, -2): shape 3 x 2. */
  size_t shape[] = {3, 2};
  ptrdiff_t strides[] = {-4, -2};
  twin_array *a;
  assert_ok(twin_array_wrap_host(f->ctx, &mem[2][3], TWIN_I32, 2, shape, strides, count_release,
                                 NULL, &a));
  int32_t got[6];
  assert_ok(twin_array_read(a, got, sizeof got));
  int32_t expect[6] = {11, 9, 7, 5, 3, 1};
  assert_memory_equal(got, expect, sizeof got);
  int32_t ones[6] = {-1, -1, -1, -1, -1, -1};
  assert_ok(twin_array_write(a, ones, sizeof ones));
  int32_t nine = 9;
  assert_ok(twin_fill(a, &nine)); /* on the device where there is one */
  twin_array_unref(a);
  assert_int_equal(atomic_load(&releases), 1);
  for (int i = 0; i < 12; i++) /* the odd elements of the lent span were the array's */
    assert_int_equal(mem[i / 4][i % 4], i % 2 ? 9 : i);
}

static void test_wrapped_memory_is_counted_and_never_trimmed(void **state) {
  twin_fixture *f = fixture(state);
  enum { N = 4096 };
  float *mem = calloc(N, sizeof *mem);
  size_t shape[] = {N};
  twin_stats before = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_wrap_host(f->ctx, mem, TWIN_F32, 1, shape, NULL, NULL, NULL, &a));
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes - before.host_bytes, N * sizeof(float));
  assert_int_equal(st.buffers - before.buffers, 1);
  if (f->layout == FIXTURE_TWO_COPIES) {
    float got[N];
    assert_ok(twin_array_prefetch(a, TWIN_DEVICE)); /* both sides hold the data */
    assert_ok(twin_array_read(a, got, sizeof got));
    assert_status(twin_array_evict(a, TWIN_HOST), TWIN_ERR_UNSUPPORTED);
    assert_message_has("memory the application lent twin");
    size_t freed = 0;
    assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST, &freed));
    assert_int_equal(freed, 0);
    assert_ok(twin_array_evict(a, TWIN_DEVICE)); /* twin's own copy may go */
  }
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).host_bytes, before.host_bytes);
  free(mem);
}

static void test_wrap_host_failures_release_nothing(void **state) {
  twin_fixture *f = fixture(state);
  float mem[8];
  size_t shape[] = {8}, huge[] = {SIZE_MAX / 2, 4};
  twin_array *a = NULL;
  atomic_store(&releases, 0);
  assert_status(twin_array_wrap_host(f->ctx, (char *)mem + 1, TWIN_F32, 1, shape, NULL,
                                     count_release, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("is not aligned for f32 elements");
  assert_status(
      twin_array_wrap_host(f->ctx, NULL, TWIN_F32, 1, shape, NULL, count_release, NULL, &a),
      TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_wrap_host(f->ctx, mem, TWIN_F32, 2, huge, NULL, count_release, NULL, &a),
                TWIN_ERR_OVERFLOW);
  assert_status(
      twin_array_wrap_host(f->ctx, mem, (twin_dtype)42, 1, shape, NULL, count_release, NULL, &a),
      TWIN_ERR_INVALID_ARGUMENT);
  assert_null(a);
  assert_int_equal(atomic_load(&releases), 0);
}

/* ---- DLPack export ---- */

static void test_dlpack_cpu_export_holds_a_reference_until_deleted(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4, 6};
  float data[24];
  for (int i = 0; i < 24; i++)
    data[i] = (float)i;
  twin_array *a, *v;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 2, shape, data, &a));
  twin_slice s[] = {{1, 3, 1}, {TWIN_NONE, TWIN_NONE, -2}}; /* 2 x 3, strides (6, -2) */
  assert_ok(twin_array_slice(a, s, &v));
  twin_array_unref(a);
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack(v, TWIN_READ_WRITE, &t));
  twin_array_unref(v); /* the tensor keeps the buffer */
  assert_int_equal(fixture_stats(f).buffers, 1);
  DLTensor *dl = &t->dl_tensor;
  assert_int_equal(dl->device.device_type, kDLCPU);
  assert_int_equal(dl->ndim, 2);
  assert_int_equal(dl->dtype.code, kDLFloat);
  assert_int_equal(dl->dtype.bits, 32);
  assert_int_equal(dl->dtype.lanes, 1);
  assert_int_equal(dl->shape[0], 2);
  assert_int_equal(dl->shape[1], 3);
  assert_int_equal(dl->strides[0], 6);
  assert_int_equal(dl->strides[1], -2);
  assert_int_equal(dl->byte_offset, 0);
  float *p = dl->data;
  assert_true(p[0] == 11.0f && p[-2] == 9.0f && p[6] == 17.0f);
  p[-4] = 100.0f; /* the consumer writes element (0, 2) in place */
  t->deleter(t);
  assert_int_equal(fixture_stats(f).buffers, 0);
}

static void test_dlpack_export_blocks_writes_on_the_other_side(void **state) {
  twin_fixture *f = fixture(state);
  DEVICE_ONLY(f);
  size_t shape[] = {16};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, shape, &a));
  DLManagedTensor *t;
  int line = __LINE__ + 1;
  assert_ok(twin_array_to_dlpack(a, TWIN_READ_WRITE, &t));
  uint8_t seven = 7;
  assert_status(twin_fill(a, &seven), TWIN_ERR_BUSY); /* a device write while the host reads */
  char site[64]; /* the export's access is named with the line that exported */
  snprintf(site, sizeof site, "test_interop.c:%d by twin_array_to_dlpack", line);
  assert_message_has(site);
  assert_message_has("for a DLPack export");
  /* a itself stays free: another host access on it works meanwhile. */
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  assert_ok(twin_host_end(a));
  t->deleter(t);
  assert_ok(twin_fill(a, &seven));
  twin_array_unref(a);
}

/* ---- DLPack import ---- */

typedef struct producer {
  DLManagedTensor t;
  int64_t shape[2], strides[2];
  float data[12];
  int deleted;
} producer;

static void producer_delete(DLManagedTensor *t) {
  producer *p = t->manager_ctx;
  p->deleted++;
}

static void make_producer(producer *p, bool strided) {
  memset(p, 0, sizeof *p);
  for (int i = 0; i < 12; i++)
    p->data[i] = (float)i;
  p->shape[0] = 3;
  p->shape[1] = 4;
  p->strides[0] = 1; /* a transposed 4 x 3 block */
  p->strides[1] = 3;
  p->t.dl_tensor = (DLTensor){
      p->data, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, p->shape, strided ? p->strides : NULL, 0};
  p->t.manager_ctx = p;
  p->t.deleter = producer_delete;
}

static void test_dlpack_cpu_import_calls_deleter_once_at_last_unref(void **state) {
  twin_fixture *f = fixture(state);
  producer p;
  make_producer(&p, true);
  twin_array *a, *row;
  assert_ok(twin_array_from_dlpack(f->ctx, &p.t, &a));
  assert_int_equal(twin_array_strides(a)[1], 3);
  assert_ok(twin_array_index(a, 0, 2, &row)); /* elements 2, 5, 8, 11 */
  float got[4];
  assert_ok(twin_array_read(row, got, sizeof got));
  assert_true(got[0] == 2.0f && got[3] == 11.0f);
  fill_on_device(row, 50.0f);
  twin_array_unref(a);
  assert_int_equal(p.deleted, 0);
  twin_array_unref(row);
  assert_int_equal(p.deleted, 1);
  assert_true(p.data[2] == 50.0f && p.data[11] == 50.0f && p.data[1] == 1.0f);
}

static void test_dlpack_import_refusals_leave_the_tensor_alone(void **state) {
  twin_fixture *f = fixture(state);
  producer p;
  make_producer(&p, false);
  twin_array *a = NULL;
  p.t.dl_tensor.dtype.lanes = 4;
  assert_status(twin_array_from_dlpack(f->ctx, &p.t, &a), TWIN_ERR_UNSUPPORTED);
  assert_message_has("lanes 4");
  p.t.dl_tensor.dtype = (DLDataType){kDLBfloat, 16, 1};
  assert_status(twin_array_from_dlpack(f->ctx, &p.t, &a), TWIN_ERR_UNSUPPORTED);
  p.t.dl_tensor.dtype = (DLDataType){kDLFloat, 32, 1};
  p.t.dl_tensor.device.device_type = kDLCUDA;
  assert_status(twin_array_from_dlpack(f->ctx, &p.t, &a), TWIN_ERR_UNSUPPORTED);
  assert_message_has("device type 2");
  p.t.dl_tensor.device.device_type = kDLCPU;
  p.shape[0] = -3;
  assert_status(twin_array_from_dlpack(f->ctx, &p.t, &a), TWIN_ERR_INVALID_ARGUMENT);
  assert_null(a);
  assert_int_equal(p.deleted, 0);
}

static void test_dlpack_round_trip_through_twin(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {5};
  int16_t data[5] = {1, 2, 3, 4, 5}, got[5];
  twin_array *a, *b;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I16, 1, shape, data, &a));
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack(a, TWIN_READ, &t));
  assert_ok(twin_array_from_dlpack(f->ctx, t, &b)); /* b owns t now */
  assert_int_equal(twin_array_dtype(b), TWIN_I16);
  assert_ok(twin_array_read(b, got, sizeof got));
  assert_memory_equal(got, data, sizeof got);
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).buffers, 2);
  twin_array_unref(b); /* calls t's deleter, which drops a's buffer */
  assert_int_equal(fixture_stats(f).buffers, 0);
}

/* ---- Failures ---- */

typedef struct lent {
  bool wrapped, imported;
} lent;

/* Lends memory, exports it, imports a tensor, reads both, and drops everything. */
static twin_status lend_export_import(twin_fixture *f, float *mem, producer *p, lent *done) {
  size_t shape[] = {12};
  twin_array *a = NULL, *b = NULL;
  DLManagedTensor *t = NULL;
  float got[12];
  twin_status s =
      twin_array_wrap_host(f->ctx, mem, TWIN_F32, 1, shape, NULL, count_release, NULL, &a);
  done->wrapped = s == TWIN_OK;
  if (s == TWIN_OK)
    s = twin_array_to_dlpack(a, TWIN_READ, &t);
  if (s == TWIN_OK)
    s = twin_array_from_dlpack(f->ctx, &p->t, &b);
  done->imported = s == TWIN_OK;
  if (s == TWIN_OK)
    s = twin_array_read(b, got, sizeof got);
  if (t)
    t->deleter(t);
  twin_array_unref(a);
  twin_array_unref(b);
  return s;
}

/* Each host allocation of lending, exporting and importing fails in turn: a clean status,
 * every release and deleter called exactly once for what succeeded, none for what failed. */
static void test_allocation_failure_sweep_over_lending(void **state) {
  twin_fixture *f = fixture(state);
  float mem[12] = {0};
  twin_status s = TWIN_ERR_OUT_OF_HOST_MEMORY;
  twin_stats base = fixture_stats(f);
  int fail_at;
  for (fail_at = 1; fail_at < 60 && s != TWIN_OK; fail_at++) {
    producer p;
    make_producer(&p, false);
    lent done;
    atomic_store(&releases, 0);
    host_inject(fail_at);
    s = lend_export_import(f, mem, &p, &done);
    host_restore();
    if (s != TWIN_OK)
      assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    assert_int_equal(atomic_load(&releases), done.wrapped);
    assert_int_equal(p.deleted, done.imported);
    twin_stats now = fixture_stats(f);
    assert_int_equal(now.arrays, base.arrays);
    assert_int_equal(now.buffers, base.buffers);
    assert_int_equal(now.host_bytes, base.host_bytes);
  }
  assert_ok(s);
  assert_true(fail_at > 4);
}

static void test_empty_lent_memory(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {0, 5};
  twin_array *a;
  atomic_store(&releases, 0);
  assert_ok(twin_array_wrap_host(f->ctx, NULL, TWIN_F64, 2, shape, NULL, count_release, NULL, &a));
  assert_int_equal(twin_array_size(a), 0);
  void *p;
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, &p));
  assert_ok(twin_host_end(a));
  double zero = 0;
  assert_ok(twin_fill(a, &zero));
  twin_array_unref(a);
  assert_int_equal(atomic_load(&releases), 1);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_wrapped_host_memory_released_once_at_last_unref),
    TWIN_TEST(test_wrapped_host_memory_with_negative_strides),
    TWIN_TEST(test_wrapped_memory_is_counted_and_never_trimmed),
    TWIN_TEST(test_wrap_host_failures_release_nothing),
    TWIN_TEST(test_dlpack_cpu_export_holds_a_reference_until_deleted),
    TWIN_TEST(test_dlpack_export_blocks_writes_on_the_other_side),
    TWIN_TEST(test_dlpack_cpu_import_calls_deleter_once_at_last_unref),
    TWIN_TEST(test_dlpack_import_refusals_leave_the_tensor_alone),
    TWIN_TEST(test_dlpack_round_trip_through_twin),
    TWIN_TEST(test_allocation_failure_sweep_over_lending),
    TWIN_TEST(test_empty_lent_memory),
};

TWIN_TEST_MAIN(tests)

/* Failure paths: host allocation failures injected through twin__host_alloc (never process-wide:
 * OpenCL runtimes need their malloc), the device's largest allocation, status names, and the
 * per-thread last-error message. Every injected failure must give a clean status and message,
 * leave nothing alive and leave existing arrays intact. (test_opencl_errors.c fails OpenCL calls
 * through the twin__cl dispatch table likewise.) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"

/* ---- helpers ---- */

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

typedef struct host_work {
  twin_array *a, *odd, *z;
  int32_t odd_values[8];
} host_work;

/* Builds an array from host data, a view of it, a zeros array written on the host, and reads
 * the view back packed; stops at the first failure. */
static twin_status host_workload(twin_fixture *f, host_work *w) {
  int32_t src[16];
  for (int i = 0; i < 16; i++)
    src[i] = -i;
  const size_t shape[] = {16}, vshape[] = {8}, zshape[] = {32};
  const ptrdiff_t vstrides[] = {2};
  twin_status s = twin_array_from_host(f->ctx, TWIN_I32, 1, shape, src, &w->a);
  if (s == TWIN_OK)
    s = twin_array_as_strided(w->a, 1, vshape, vstrides, 1, &w->odd);
  if (s == TWIN_OK)
    s = twin_array_zeros(f->ctx, TWIN_F32, 1, zshape, &w->z);
  void *p;
  if (s == TWIN_OK)
    s = twin_host_begin(w->z, TWIN_READ_WRITE, &p);
  if (s == TWIN_OK) {
    ((float *)p)[31] = 2.5f;
    s = twin_host_end(w->z);
  }
  if (s == TWIN_OK)
    s = twin_array_read(w->odd, w->odd_values, sizeof w->odd_values);
  return s;
}

/* Checks what a (partial) workload made is intact, then drops it. */
static void check_and_drop_host_work(host_work *w, bool complete) {
  if (w->a) {
    int32_t got[16];
    assert_ok(twin_array_read(w->a, got, sizeof got));
    for (int i = 0; i < 16; i++)
      assert_int_equal(got[i], -i);
  }
  if (complete) {
    for (int i = 0; i < 8; i++)
      assert_int_equal(w->odd_values[i], -(2 * i + 1));
    float z[32];
    assert_ok(twin_array_read(w->z, z, sizeof z));
    for (int i = 0; i < 31; i++)
      assert_true(z[i] == 0.0f);
    assert_true(z[31] == 2.5f);
  }
  twin_array_unref(w->odd);
  twin_array_unref(w->z);
  twin_array_unref(w->a);
}

static void test_host_alloc_failure_sweep(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *keep = fixture_i32(f->ctx, 50, 7000);
  fixture_device_touch(f, keep, TWIN_READ); /* both sides allocated */
  /* The host holds keep's newest data, so no failed host allocation can be rescued by
   * trimming keep's host copy: every injected failure surfaces (recovery has its own tests). */
  void *p;
  assert_ok(twin_host_begin(keep, TWIN_READ_WRITE, &p));
  assert_ok(twin_host_end(keep));
  twin_stats base = fixture_stats(f);
  int failures = 0, recovered = 0;
  for (int n = 1;; n++) {
    assert_true(n < 100);
    host_work w = {0};
    mark_last_error();
    host_inject(n);
    twin_status s = host_workload(f, &w);
    host_restore();
    if (s == TWIN_OK) {
      check_and_drop_host_work(&w, true);
      if (atomic_load(&host_calls) < n)
        break;     /* no call was the Nth: every allocation has been failed once */
      recovered++; /* a redundant copy was trimmed and the allocation retried */
      continue;
    }
    failures++;
    assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    assert_int_equal(atomic_load(&host_calls), n); /* the first failure stopped the workload */
    assert_non_null(strstr(twin_last_error(), "TWIN_ERR_OUT_OF_HOST_MEMORY"));
    check_and_drop_host_work(&w, false);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7000);
  }
  /* Buffer and array objects for two arrays, a view object and two host mirrors. */
  assert_true(failures + recovered >= 7);
  expect_same_live(f, &base);
  fixture_expect_i32(keep, 7000);
  twin_array_unref(keep);
}

static void test_failed_allocation_leaves_no_host_memory_behind(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {1000};
  twin_array *a = (twin_array *)&base;
  /* The third allocation of from_host is the host mirror. */
  host_inject(3);
  double data[1000] = {0};
  assert_status(twin_array_from_host(f->ctx, TWIN_F64, 1, shape, data, &a),
                TWIN_ERR_OUT_OF_HOST_MEMORY);
  host_restore();
  assert_int_equal(atomic_load(&host_live), 0); /* the buffer and array objects were freed again */
  assert_ptr_equal(a, (twin_array *)&base);
  assert_non_null(strstr(twin_last_error(), "8000"));
  expect_same_live(f, &base);
}

static void test_device_alloc_beyond_the_device_limit_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  uint64_t limit = twin_context_device(f->ctx)->max_alloc_bytes;
  if (limit >= PTRDIFF_MAX)
    skip();
  const size_t shape[] = {(size_t)limit + 1};
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, shape, &a)); /* lazy: nothing allocated yet */
  void *mem = NULL;
  size_t off;
  assert_status(fixture_device_begin(a, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  assert_non_null(strstr(twin_last_error(), "CL_DEVICE_MAX_MEM_ALLOC_SIZE"));
  assert_null(mem);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.device_bytes, base.device_bytes);
  assert_int_equal(st.host_bytes, base.host_bytes);
  twin_array_unref(a);
}

/* ---- status names and the last error ---- */

static void test_status_name_and_message_follow_the_table(void **state) {
  (void)state;
  int count = 0;
#define CHECK_STATUS(name, msg)                                                                    \
  assert_string_equal(twin_status_name(name), #name);                                              \
  assert_string_equal(twin_status_message(name), msg);                                             \
  assert_int_equal(name, count++);
  TWIN_STATUS_TABLE(CHECK_STATUS)
#undef CHECK_STATUS
  assert_int_equal(count, 14);
  assert_string_equal(twin_status_name((twin_status)count), "TWIN_STATUS_UNKNOWN");
  assert_string_equal(twin_status_name((twin_status)-1), "TWIN_STATUS_UNKNOWN");
}

static void test_last_error_starts_with_the_status_name(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {2};
  twin_array *a;
  assert_status(twin_array_new(f->ctx, (twin_dtype)42, 1, shape, &a), TWIN_ERR_INVALID_ARGUMENT);
  const char *msg = twin_last_error();
  assert_int_equal(strncmp(msg, "TWIN_ERR_INVALID_ARGUMENT: ", 27), 0);
  assert_non_null(strstr(msg, "twin_array_new"));
  assert_non_null(strstr(msg, "42"));
  assert_ok(twin_array_new(f->ctx, TWIN_I8, 1, shape, &a));
  assert_ptr_equal(twin_last_error(), msg); /* success leaves the message alone */
  assert_non_null(strstr(msg, "42"));
  twin_array_unref(a);
}

typedef struct thread_result {
  char before[256], after[256];
  twin_status status;
} thread_result;

static void *fail_on_another_thread(void *arg) {
  thread_result *r = arg;
  snprintf(r->before, sizeof r->before, "%s", twin_last_error());
  const size_t shape[] = {1};
  twin_array *a;
  r->status = twin_array_new(NULL, TWIN_U8, 1, shape, &a);
  snprintf(r->after, sizeof r->after, "%s", twin_last_error());
  return NULL;
}

static void test_last_error_is_per_thread(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a;
  assert_status(twin_array_new(f->ctx, TWIN_I8, 9, NULL, &a), TWIN_ERR_INVALID_ARGUMENT);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", twin_last_error());
  assert_non_null(strstr(mine, "ndim"));
  thread_result r;
  memset(&r, 0, sizeof r);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fail_on_another_thread, &r), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_string_equal(r.before, ""); /* a new thread starts with no message */
  assert_int_equal(r.status, TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(r.after, "ctx is NULL"));
  assert_string_equal(twin_last_error(), mine);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_host_alloc_failure_sweep),
    TWIN_TEST(test_failed_allocation_leaves_no_host_memory_behind),
    TWIN_TEST(test_device_alloc_beyond_the_device_limit_is_refused),
    TWIN_TEST(test_status_name_and_message_follow_the_table),
    TWIN_TEST(test_last_error_starts_with_the_status_name),
    TWIN_TEST(test_last_error_is_per_thread),
};

TWIN_TEST_MAIN(tests)

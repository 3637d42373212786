/* Lifetime checks (TWIN_DEBUG): a released array object is poisoned, not freed, and every
 * public call given it reports the call and the array's creation site; a last unref with an
 * access still open is reported with where the access began. The report ends in
 * abort(); here twin__debug_fatal is replaced by a longjmp back into the case, and stderr goes
 * to a temporary file, so each report can be read in-process. (debug_misuse.c, run by
 * check_misuse.py, checks the real abort in a process of its own.) */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

/* ---- catching reports ---- */

static jmp_buf back;
static int fatal_calls;
static FILE *captured;
static int saved_stderr = -1;
static char report[4096];

static void fatal_hook(void) {
  fatal_calls++;
  longjmp(back, 1);
}

static void debug_on(void) {
  atomic_store(&twin__debug, true);
  twin__debug_fatal = fatal_hook;
}

/* Leaves debugging on: objects poisoned so far stay in the ring until exit. */
static void debug_restore(void) {
  twin__debug_fatal = abort;
}

static void capture_begin(void) {
  fflush(stderr);
  captured = tmpfile();
  assert_non_null(captured);
  saved_stderr = dup(2);
  assert_true(saved_stderr >= 0);
  assert_true(dup2(fileno(captured), 2) >= 0);
}

/* Restores stderr and reads what was written to it into `report`. */
static void capture_end(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  rewind(captured);
  size_t n = fread(report, 1, sizeof report - 1, captured);
  report[n] = '\0';
  fclose(captured);
}

/* Runs `call`, which must be reported exactly once (and not return). */
#define EXPECT_REPORT(call)                                                                        \
  do {                                                                                             \
    fatal_calls = 0;                                                                               \
    capture_begin();                                                                               \
    if (setjmp(back) == 0) {                                                                       \
      call;                                                                                        \
    }                                                                                              \
    capture_end();                                                                                 \
    if (fatal_calls != 1)                                                                          \
      print_error("%s was not reported; stderr: %s\n", #call, report);                             \
    assert_int_equal(fatal_calls, 1);                                                              \
  } while (0)

/* Asserts the report names `fn` and "made at FILE:LINE". */
static void expect_report_names(const char *fn, int line) {
  char want[512];
  snprintf(want, sizeof want, "twin: TWIN_DEBUG: %s(0x", fn);
  if (!strstr(report, want))
    print_error("report: %s\nexpected: %s\n", report, want);
  assert_non_null(strstr(report, want));
  snprintf(want, sizeof want, "made at %s:%d as ", __FILE__, line);
  if (!strstr(report, want))
    print_error("report: %s\nexpected: %s\n", report, want);
  assert_non_null(strstr(report, want));
  assert_non_null(strstr(report, "already released"));
}

/* ---- cases ---- */

static void test_released_array_is_poisoned_and_its_memory_freed(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {256};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F64, 1, shape, &a));
  assert_int_equal(a->magic, TWIN__ARRAY_ALIVE);
  void *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, &p));
  assert_ok(twin_host_end(a));
  assert_int_equal(fixture_stats(f).host_bytes, base.host_bytes + 2048);
  twin_array_unref(a);
  /* The object is kept, marked dead; its buffer and both memories are gone as usual. */
  assert_int_equal(a->magic, TWIN__ARRAY_POISONED);
  assert_null(a->buf);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays, base.arrays);
  assert_int_equal(st.buffers, base.buffers);
  assert_int_equal(st.host_bytes, base.host_bytes);
  assert_int_equal(st.device_bytes, base.device_bytes);
  debug_restore();
}

static void test_double_unref_is_reported_with_the_creation_site(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  const size_t shape[] = {3, 5};
  twin_array *a, *keep;
  int line = __LINE__ + 1;
  assert_ok(twin_array_new(f->ctx, TWIN_U16, 2, shape, &a));
  assert_ok(twin_array_zeros(f->ctx, TWIN_U16, 2, shape, &keep));
  assert_ok(twin_array_set_owner(a, "reader"));
  twin_array_unref(a);
  twin_stats before = fixture_stats(f);
  EXPECT_REPORT(twin_array_unref(a));
  expect_report_names("twin_array_unref", line);
  assert_non_null(strstr(report, "u16[3x5]"));
  assert_non_null(strstr(report, "owner \"reader\""));
  /* Nothing was touched: the live array and the counters are as they were. */
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays, before.arrays);
  assert_int_equal(st.buffers, before.buffers);
  assert_int_equal(keep->magic, TWIN__ARRAY_ALIVE);
  twin_array_unref(keep);
  debug_restore();
}

/* One public call given a dead array. */
typedef struct misuse {
  const char *fn;
  void (*call)(twin_array *dead, twin_array *live);
} misuse;

#define MISUSE(name, body)                                                                         \
  static void call_##name(twin_array *dead, twin_array *live) {                                    \
    (void)live;                                                                                    \
    body;                                                                                          \
  }
static twin_array *out_;
static void *ptr_;
static int32_t buf_[16];
static twin_residency res_;
MISUSE(ref, twin_array_ref(dead))
MISUSE(dtype, twin_array_dtype(dead))
MISUSE(ndim, twin_array_ndim(dead))
MISUSE(shape, twin_array_shape(dead))
MISUSE(strides, twin_array_strides(dead))
MISUSE(size, twin_array_size(dead))
MISUSE(nbytes, twin_array_nbytes(dead))
MISUSE(context, twin_array_context(dead))
MISUSE(is_zero_copy, twin_array_is_zero_copy(dead))
MISUSE(is_contiguous, twin_array_is_contiguous(dead))
MISUSE(set_owner, twin_array_set_owner(dead, "x"))
MISUSE(owner, twin_array_owner(dead))
MISUSE(slice, twin_array_slice(dead, (twin_slice[]){{0, 2, 1}}, &out_))
MISUSE(index, twin_array_index(dead, 0, 1, &out_))
MISUSE(transpose, twin_array_transpose(dead, NULL, &out_))
MISUSE(reshape, twin_array_reshape(dead, 2, (size_t[]){4, 4}, &out_))
MISUSE(broadcast_to, twin_array_broadcast_to(dead, 2, (size_t[]){2, 16}, &out_))
MISUSE(squeeze, twin_array_squeeze(dead, &out_))
MISUSE(expand_dims, twin_array_expand_dims(dead, 0, &out_))
MISUSE(as_strided, twin_array_as_strided(dead, 1, (size_t[]){4}, (ptrdiff_t[]){2}, 0, &out_))
MISUSE(host_begin, twin_host_begin(dead, TWIN_READ, &ptr_))
MISUSE(host_end, twin_host_end(dead))
MISUSE(read, twin_array_read(dead, buf_, sizeof buf_))
MISUSE(write, twin_array_write(dead, buf_, sizeof buf_))
MISUSE(copy_dst, twin_copy(dead, live))
MISUSE(copy_src, twin_copy(live, dead))
MISUSE(fill, twin_fill(dead, buf_))
MISUSE(array_copy, twin_array_copy(dead, &out_))
MISUSE(contiguous, twin_array_contiguous(dead, &out_))
MISUSE(residency, twin_array_residency(dead, &res_, &res_))
MISUSE(evict, twin_array_evict(dead, TWIN_HOST))
MISUSE(prefetch, twin_array_prefetch(dead, TWIN_HOST))
static void *mem_;
static size_t off_;
MISUSE(device_begin, fixture_device_begin(dead, TWIN_READ, &mem_, &off_))
MISUSE(device_end, fixture_device_end(dead))

static const misuse misuses[] = {
    {"twin_array_ref", call_ref},
    {"twin_array_dtype", call_dtype},
    {"twin_array_ndim", call_ndim},
    {"twin_array_shape", call_shape},
    {"twin_array_strides", call_strides},
    {"twin_array_size", call_size},
    {"twin_array_nbytes", call_nbytes},
    {"twin_array_context", call_context},
    {"twin_array_is_zero_copy", call_is_zero_copy},
    {"twin_array_is_contiguous", call_is_contiguous},
    {"twin_array_set_owner", call_set_owner},
    {"twin_array_owner", call_owner},
    {"twin_array_slice", call_slice},
    {"twin_array_index", call_index},
    {"twin_array_transpose", call_transpose},
    {"twin_array_reshape", call_reshape},
    {"twin_array_broadcast_to", call_broadcast_to},
    {"twin_array_squeeze", call_squeeze},
    {"twin_array_expand_dims", call_expand_dims},
    {"twin_array_as_strided", call_as_strided},
    {"twin_host_begin", call_host_begin},
    {"twin_host_end", call_host_end},
    {"twin_array_read", call_read},
    {"twin_array_write", call_write},
    {"twin_copy", call_copy_dst},
    {"twin_copy", call_copy_src},
    {"twin_fill", call_fill},
    {"twin_array_copy", call_array_copy},
    {"twin_array_contiguous", call_contiguous},
    {"twin_array_residency", call_residency},
    {"twin_array_evict", call_evict},
    {"twin_array_prefetch", call_prefetch},
    {"twin_device_begin", call_device_begin},
    {"twin_device_end", call_device_end},
};

static void test_every_call_taking_an_array_reports_a_released_one(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  const size_t shape[] = {16};
  twin_array *live;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &live));
  twin_stats base = fixture_stats(f);
  for (size_t i = 0; i < sizeof misuses / sizeof misuses[0]; i++) {
    twin_array *dead;
    int line = __LINE__ + 1;
    assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &dead));
    twin_array_unref(dead);
    out_ = NULL;
    EXPECT_REPORT(misuses[i].call(dead, live));
    expect_report_names(misuses[i].fn, line);
    assert_null(out_); /* no view or copy was made */
    twin_stats st = fixture_stats(f);
    assert_int_equal(st.arrays, base.arrays);
    assert_int_equal(st.buffers, base.buffers);
  }
  /* The live array took no harm: it is still all zeros and usable. */
  int32_t got[16], zero[16] = {0};
  assert_ok(twin_array_read(live, got, sizeof got));
  assert_memory_equal(got, zero, sizeof got);
  twin_array_unref(live);
  debug_restore();
}

static void test_a_live_array_passes_every_check(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  const size_t shape[] = {4, 4};
  twin_array *a, *t, *c;
  int32_t data[16];
  for (int i = 0; i < 16; i++)
    data[i] = i;
  fatal_calls = 0;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 2, shape, data, &a));
  assert_ok(twin_array_transpose(a, NULL, &t));
  assert_ok(twin_array_copy(t, &c));
  assert_ok(twin_array_set_owner(c, "ok"));
  twin_array_unref(twin_array_ref(c));
  int32_t got[16];
  assert_ok(twin_array_read(c, got, sizeof got));
  for (int i = 0; i < 16; i++)
    assert_int_equal(got[i], data[(i % 4) * 4 + i / 4]);
  twin_array_unref(t);
  twin_array_unref(c);
  twin_array_unref(a);
  assert_int_equal(fatal_calls, 0);
  debug_restore();
}

static void test_use_after_the_context_is_gone_is_reported(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  twin_array *a;
  const size_t shape[] = {8};
  int line = __LINE__ + 1;
  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, shape, &a));
  capture_begin(); /* the leak report */
  twin_context_unref(ctx);
  capture_end();
  assert_non_null(strstr(report, "still alive"));
  twin_array_unref(a); /* the last reference: the context closes here */
  EXPECT_REPORT(twin_array_unref(a));
  expect_report_names("twin_array_unref", line);
  debug_restore();
}

static void test_the_ring_is_bounded_and_frees_the_oldest(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  const size_t shape[] = {1};
  twin_array *first;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, shape, &first));
  twin_array_unref(first);
  assert_true(twin__debug_holds(first));
  /* The ring keeps the last 4096 released objects: `first` is freed at the 4096th after it.
   * (Only its address is compared from then on; nothing allocated since can share it.) */
  twin_array *a = NULL;
  for (int i = 0; i < 4096; i++) {
    if (i == 4095)
      assert_true(twin__debug_holds(first));
    assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, shape, &a));
    twin_array_unref(a);
  }
  assert_true(twin__debug_holds(a));
  assert_false(twin__debug_holds(first));
  assert_int_equal(twin__debug_poisoned(), 4096);
  debug_restore();
}

/* The last reference to an array goes with accesses still open: twin ends them (the buffer
 * stays usable on both sides, and what the write access wrote counts) and reports the misuse
 * with the line where each access began. */
static void test_last_unref_with_an_access_open_is_reported_with_its_site(void **state) {
  twin_fixture *f = fixture(state);
  debug_on();
  const size_t shape[] = {4};
  twin_array *a, *v;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &a));
  int made = __LINE__ + 1;
  assert_ok(twin_array_reshape(a, 1, shape, &v));
  assert_ptr_not_equal(v, a);
  int32_t *p;
  int begun = __LINE__ + 1;
  assert_ok(twin_host_begin(v, TWIN_READ_WRITE, (void **)&p));
  p[3] = 9;
  int begun2 = __LINE__ + 1;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p)); /* another object: not reported */
  EXPECT_REPORT(twin_array_unref(v));
  char want[512];
  snprintf(want, sizeof want, "begun at %s:%d by twin_host_begin", __FILE__, begun);
  if (!strstr(report, want) || !strstr(report, "twin: TWIN_DEBUG: twin_array_unref(0x"))
    print_error("report: %s\nexpected: %s\n", report, want);
  assert_non_null(strstr(report, want));
  assert_non_null(strstr(report, "twin: TWIN_DEBUG: twin_array_unref(0x"));
  assert_non_null(strstr(report, "a host write access"));
  snprintf(want, sizeof want, "made at %s:%d as i32[4]", __FILE__, made);
  assert_non_null(strstr(report, want));
  snprintf(want, sizeof want, ":%d ", begun2);
  assert_null(strstr(report, want));
  assert_ok(twin_host_end(a));
  int32_t got[4];
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_int_equal(got[3], 9);
  fixture_device_touch(f, a, TWIN_READ_WRITE); /* not BUSY */
  if (f->has_device) {                         /* a device access, likewise */
    void *mem;
    size_t off;
    assert_ok(twin_array_reshape(a, 1, shape, &v));
    begun = __LINE__ + 1;
    assert_ok(fixture_device_begin(v, TWIN_WRITE, &mem, &off));
    EXPECT_REPORT(twin_array_unref(v));
    snprintf(want, sizeof want, "a device write access, begun at %s:%d by twin_device_begin",
             __FILE__, begun);
    assert_non_null(strstr(report, want));
    assert_ok(twin_array_read(a, got, sizeof got));
  }
  assert_int_equal(fixture_stats(f).arrays, 1);
  twin_array_unref(a);
  assert_int_equal(fatal_calls, 1);
  debug_restore();
}

static void test_context_option_turns_checks_on(void **state) {
  twin_fixture *f = fixture(state);
  atomic_store(&twin__debug, false);
  twin_context_options options = {.device = "host", .debug = false};
  twin_context *ctx;
  assert_ok(twin_context_new_with(&options, &ctx));
  twin_context_unref(ctx);
  assert_false(atomic_load(&twin__debug)); /* TWIN_DEBUG is not set in this test's run */
  options.debug = true;
  options.device = twin_context_device(f->ctx)->spec; /* "host", "fake", "opencl:P.D" */
  assert_ok(twin_context_new_with(&options, &ctx));
  assert_true(atomic_load(&twin__debug));
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_context_option_turns_checks_on),
    TWIN_TEST(test_released_array_is_poisoned_and_its_memory_freed),
    TWIN_TEST(test_double_unref_is_reported_with_the_creation_site),
    TWIN_TEST(test_every_call_taking_an_array_reports_a_released_one),
    TWIN_TEST(test_a_live_array_passes_every_check),
    TWIN_TEST(test_use_after_the_context_is_gone_is_reported),
    TWIN_TEST(test_the_ring_is_bounded_and_frees_the_oldest),
    TWIN_TEST(test_last_unref_with_an_access_open_is_reported_with_its_site),
};

TWIN_TEST_MAIN(tests)

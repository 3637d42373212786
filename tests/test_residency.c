/* Which side holds an array's data, and freeing or filling a side on purpose: twin_context_trim
 * (exactly the redundant copies, host copies first, never one in use), twin_array_residency,
 * twin_array_evict and twin_array_prefetch, on one copy (the host backend, zero-copy) and on two
 * copies. Every case runs on every backend group. */
#include <string.h>

#include "fixture.h"

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* ---- trim ---- */

typedef struct trim_set {
  twin_array *a, *b, *c, *d;
} trim_set;

/* a (4000 bytes) and b (3000) valid on both sides; c (2000) on the host only; d (1000) newer on
 * the device. */
static void make_trim_set(twin_fixture *f, trim_set *t) {
  t->a = fixture_i32(f->ctx, 1000, 1);
  t->b = fixture_i32(f->ctx, 750, 2);
  t->c = fixture_i32(f->ctx, 500, 3);
  t->d = fixture_i32(f->ctx, 250, 4);
  fixture_device_touch(f, t->a, TWIN_READ);
  fixture_device_touch(f, t->b, TWIN_READ);
  fixture_device_touch(f, t->d, TWIN_READ_WRITE);
}

static void check_and_drop_trim_set(trim_set *t) {
  fixture_expect_i32(t->a, 1);
  fixture_expect_i32(t->b, 2);
  fixture_expect_i32(t->c, 3);
  fixture_expect_i32(t->d, 4);
  twin_array_unref(t->a);
  twin_array_unref(t->b);
  twin_array_unref(t->c);
  twin_array_unref(t->d);
}

static void test_trim_device_frees_exactly_the_redundant_device_copies(void **state) {
  twin_fixture *f = fixture(state);
  trim_set t;
  make_trim_set(f, &t);
  twin_stats before = fixture_stats(f);
  size_t freed = 12345;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_DEVICE, &freed));
  twin_stats st = fixture_stats(f);
  assert_int_equal(freed, f->layout == FIXTURE_TWO_COPIES ? 4000 + 3000
                                                          : 0); /* d's device copy is the newest */
  assert_int_equal(st.device_bytes, before.device_bytes - freed);
  assert_int_equal(st.host_bytes, before.host_bytes);
  assert_int_equal(st.peak_device_bytes, before.peak_device_bytes);
  twin_residency h, d;
  assert_ok(twin_array_residency(t.a, &h, &d));
  assert_int_equal(d, f->layout == FIXTURE_TWO_COPIES ? TWIN_RESIDENT_NONE
                      : f->layout == FIXTURE_SHARED   ? TWIN_RESIDENT_SHARED
                                                      : TWIN_RESIDENT_NONE);
  /* A later device access brings the data back, and says so. */
  fixture_device_touch(f, t.a, TWIN_READ);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device - before.bytes_to_device,
                   f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.transfers_to_device - before.transfers_to_device,
                   f->layout == FIXTURE_TWO_COPIES ? 1 : 0);
  assert_int_equal(st.device_bytes,
                   before.device_bytes - (f->layout == FIXTURE_TWO_COPIES ? 3000 : 0));
  check_and_drop_trim_set(&t);
}

static void test_trim_both_frees_host_copies_first(void **state) {
  twin_fixture *f = fixture(state);
  trim_set t;
  make_trim_set(f, &t);
  twin_stats before = fixture_stats(f);
  size_t freed = 12345;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST | TWIN_TRIM_DEVICE, &freed));
  /* Host copies go first (d's too: it is stale); then no device copy is redundant any more. */
  assert_int_equal(freed, f->layout == FIXTURE_TWO_COPIES ? 4000 + 3000 + 1000 : 0);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes, before.host_bytes - freed);
  assert_int_equal(st.device_bytes, before.device_bytes);
  /* Reading on the host moves each trimmed array back, and nothing else. */
  fixture_expect_i32(t.a, 1);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host - before.bytes_to_host,
                   f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.transfers_to_host - before.transfers_to_host,
                   f->layout == FIXTURE_TWO_COPIES ? 1 : 0);
  assert_int_equal(st.host_bytes, before.host_bytes - (f->layout == FIXTURE_TWO_COPIES ? 4000 : 0));
  check_and_drop_trim_set(&t);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host - before.bytes_to_host,
                   f->layout == FIXTURE_TWO_COPIES ? 8000 : 0);
}

static void test_trim_skips_copies_in_use(void **state) {
  twin_fixture *f = fixture(state);
  trim_set t;
  make_trim_set(f, &t);
  void *p;
  assert_ok(twin_host_begin(t.b, TWIN_READ, &p)); /* b's host copy is in use */
  size_t freed;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST, &freed));
  assert_int_equal(freed, f->layout == FIXTURE_TWO_COPIES ? 4000 + 1000 : 0);
  assert_ok(twin_host_end(t.b));
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST, NULL));
  twin_residency h, d;
  assert_ok(twin_array_residency(t.b, &h, &d));
  assert_int_equal(h, f->layout == FIXTURE_TWO_COPIES ? TWIN_RESIDENT_NONE
                      : f->layout == FIXTURE_SHARED   ? TWIN_RESIDENT_SHARED
                                                      : TWIN_RESIDENT_VALID);
  assert_status(twin_context_trim(f->ctx, 0, NULL), TWIN_ERR_INVALID_ARGUMENT);
  /* 4 is TWIN_TRIM_UNREACHABLE; 8 is no flag. */
  assert_status(twin_context_trim(f->ctx, 8, NULL), TWIN_ERR_INVALID_ARGUMENT);
  expect_message_has("what is 0x8");
  assert_status(twin_context_trim(NULL, TWIN_TRIM_HOST, NULL), TWIN_ERR_INVALID_ARGUMENT);
  check_and_drop_trim_set(&t);
}

/* ---- residency, evict, prefetch ---- */

static void expect_residency(twin_array *a, twin_residency host, twin_residency device) {
  twin_residency h = 99, d = 99;
  assert_ok(twin_array_residency(a, &h, &d));
  assert_int_equal(h, host);
  assert_int_equal(d, device);
}

static void test_evict_and_prefetch_on_the_host_backend_and_zero_copy(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout == FIXTURE_TWO_COPIES)
    skip(); /* the next case */
  /* One copy (the host backend, zero-copy): nothing ever moves, so prefetch of either side
   * only allocates that copy and evict of either side frees nothing; both succeed, so portable
   * code need not ask which backend it runs on. */
  const size_t n = 100;
  twin_array *a, *b;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &a));
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 1, &n, &b));
  expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE);
  twin_stats before = fixture_stats(f);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_int_equal(fixture_stats(f).host_bytes, before.host_bytes + 400);
  twin_residency both = f->layout == FIXTURE_SHARED ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_VALID;
  twin_residency device = f->layout == FIXTURE_SHARED ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_NONE;
  expect_residency(a, both, device);
  assert_ok(twin_array_prefetch(b, TWIN_DEVICE)); /* the one copy, where the device works */
  assert_int_equal(fixture_stats(f).host_bytes, before.host_bytes + 800);
  expect_residency(b, both, device);
  int32_t data[100], got[100];
  for (int i = 0; i < 100; i++)
    data[i] = i * 7;
  assert_ok(twin_array_write(a, data, sizeof data));
  assert_ok(twin_array_evict(a, TWIN_HOST));
  assert_ok(twin_array_evict(a, TWIN_DEVICE));
  expect_residency(a, both, device);
  assert_ok(twin_array_prefetch(a, TWIN_DEVICE));
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_memory_equal(got, data, sizeof got);
  assert_status(twin_array_evict(a, (twin_side)3), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_prefetch(a, (twin_side)0), TWIN_ERR_INVALID_ARGUMENT);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes, before.host_bytes + 800);
  assert_int_equal(st.device_bytes, before.device_bytes);
  assert_int_equal(st.bytes_to_device + st.bytes_to_host,
                   before.bytes_to_device + before.bytes_to_host);
  twin_array_unref(b);
  twin_array_unref(a);
}

static void test_evict_and_prefetch_with_two_copies(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip();
  const size_t shape[] = {2, 50};
  int32_t data[100];
  for (int i = 0; i < 100; i++)
    data[i] = i;
  twin_array *a, *r0, *r1;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 2, shape, data, &a));
  assert_ok(twin_array_index(a, 0, 0, &r0));
  assert_ok(twin_array_index(a, 0, 1, &r1));
  twin_stats base = fixture_stats(f);
  expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
  assert_ok(twin_array_evict(a, TWIN_DEVICE)); /* nothing there to free */
  assert_status(twin_array_evict(a, TWIN_HOST), TWIN_ERR_BAD_STATE);
  expect_message_has("twin_array_prefetch");

  assert_ok(twin_array_prefetch(a, TWIN_DEVICE));
  expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_VALID);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device - base.bytes_to_device, 400);
  assert_int_equal(st.device_bytes - base.device_bytes, 400);
  fixture_device_touch(f, a, TWIN_READ); /* prefetched: moves nothing */
  assert_int_equal(fixture_stats(f).bytes_to_device - base.bytes_to_device, 400);

  assert_ok(twin_array_evict(r0, TWIN_HOST)); /* the whole buffer's host copy goes */
  expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_VALID);
  assert_int_equal(fixture_stats(f).host_bytes, base.host_bytes - 400);
  int32_t got[50];
  assert_ok(twin_array_read(r1, got, sizeof got));
  for (int i = 0; i < 50; i++)
    assert_int_equal(got[i], 50 + i);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host - base.bytes_to_host, 200); /* r1's row alone */
  assert_int_equal(st.transfers_to_host - base.transfers_to_host, 1);
  expect_residency(r1, TWIN_RESIDENT_VALID, TWIN_RESIDENT_VALID);
  expect_residency(r0, TWIN_RESIDENT_STALE, TWIN_RESIDENT_VALID);
  assert_status(twin_array_evict(a, TWIN_DEVICE), TWIN_ERR_BAD_STATE);
  assert_ok(twin_array_prefetch(r0, TWIN_HOST));
  expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_VALID);

  /* A device write to one row: that row's host side is stale, the other row's is not. */
  fixture_device_touch(f, r1, TWIN_WRITE);
  expect_residency(r0, TWIN_RESIDENT_VALID, TWIN_RESIDENT_VALID);
  expect_residency(r1, TWIN_RESIDENT_STALE, TWIN_RESIDENT_VALID);
  assert_status(twin_array_evict(r0, TWIN_DEVICE), TWIN_ERR_BAD_STATE);
  /* Busy while an access on that side is open. */
  void *p;
  assert_ok(twin_host_begin(r0, TWIN_READ, &p));
  assert_status(twin_array_evict(a, TWIN_HOST), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(r0));
  void *mem;
  size_t off;
  assert_ok(fixture_device_begin(r1, TWIN_READ_WRITE, &mem, &off));
  assert_status(twin_array_evict(a, TWIN_DEVICE), TWIN_ERR_BUSY);
  assert_status(twin_array_prefetch(a, TWIN_HOST), TWIN_ERR_BUSY);
  expect_message_has("device write access");
  assert_ok(fixture_device_end(r1));
  assert_ok(twin_array_evict(a, TWIN_HOST)); /* stale or not, the device holds it all */
  expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_VALID);
  assert_ok(twin_array_read(a, data, sizeof data));
  for (int i = 0; i < 100; i++)
    assert_int_equal(data[i], i);
  twin_array_unref(r0);
  twin_array_unref(r1);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_trim_device_frees_exactly_the_redundant_device_copies),
    TWIN_TEST(test_trim_both_frees_host_copies_first),
    TWIN_TEST(test_trim_skips_copies_in_use),
    TWIN_TEST(test_evict_and_prefetch_on_the_host_backend_and_zero_copy),
    TWIN_TEST(test_evict_and_prefetch_with_two_copies),
};

TWIN_TEST_MAIN(tests)

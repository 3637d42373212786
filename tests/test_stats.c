/* The statistics: every figure of twin_context_stats against known allocation patterns (zero-copy
 * memory counted once, as host memory), a reset, the bytes held alive only by small views (the
 * NumPy trap) and the figures per owner label. Every case runs on every backend group, with the
 * exact numbers each layout must give. */
#include <stdio.h>
#include <string.h>

#include "fixture.h"

static void host_touch(twin_array *a, twin_access access) {
  void *p;
  assert_ok(twin_host_begin(a, access, &p));
  assert_ok(twin_host_end(a));
}

static void test_stats_follow_allocations_exactly(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  twin_stats st = fixture_ctx_stats(ctx), zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&st, &zero, sizeof st);

  const size_t na = 1000, nb = 10000, n0 = 0;
  twin_array *a, *b, *e, *v;
  assert_ok(twin_array_new(ctx, TWIN_F32, 1, &na, &a));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.buffers, 1);
  assert_int_equal(st.arrays, 1);
  assert_int_equal(st.zero_copy_buffers, f->layout != FIXTURE_TWO_COPIES ? 1 : 0);
  assert_int_equal(st.host_bytes, 0); /* lazy: nothing allocated before the first access */
  assert_int_equal(st.device_bytes, 0);

  float data[1000];
  for (int i = 0; i < 1000; i++)
    data[i] = (float)i;
  assert_ok(twin_array_write(a, data, sizeof data));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, 4000);
  assert_int_equal(st.device_bytes, 0);
  assert_int_equal(st.peak_host_bytes, 4000);

  fixture_device_touch(f, a, TWIN_READ);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, 4000); /* zero-copy: one allocation, counted once */
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.peak_device_bytes, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.bytes_to_device, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.transfers_to_device, f->layout == FIXTURE_TWO_COPIES ? 1 : 0);
  assert_int_equal(st.bytes_to_host + st.transfers_to_host, 0);

  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, &nb, &b));
  assert_ok(twin_array_prefetch(b, TWIN_HOST));
  assert_ok(twin_array_new(ctx, TWIN_U8, 1, &n0, &e)); /* empty: it counts no bytes */
  assert_ok(twin_array_prefetch(e, TWIN_HOST));
  assert_ok(twin_array_slice(a, (twin_slice[]){{10, 20, 1}}, &v));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.buffers, 3);
  assert_int_equal(st.arrays, 4);
  assert_int_equal(st.zero_copy_buffers, f->layout != FIXTURE_TWO_COPIES ? 3 : 0);
  assert_int_equal(st.host_bytes, 14000);
  assert_int_equal(st.peak_host_bytes, 14000);

  twin_array_unref(b);
  twin_array_unref(e);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, 4000);
  assert_int_equal(st.peak_host_bytes, 14000); /* peaks stay */
  assert_int_equal(st.buffers, 1);
  assert_int_equal(st.arrays, 2);

  /* The device reads a back after a host write of 10 elements: its extent moves, once. */
  float *p;
  assert_ok(twin_host_begin(v, TWIN_READ_WRITE, (void **)&p));
  p[0] = -1.0f;
  assert_ok(twin_host_end(v));
  fixture_device_touch(f, a, TWIN_READ);
  fixture_device_touch(f, a, TWIN_WRITE);
  assert_ok(twin_host_begin(v, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(v));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.bytes_to_device, f->layout == FIXTURE_TWO_COPIES ? 4040 : 0);
  assert_int_equal(st.transfers_to_device, f->layout == FIXTURE_TWO_COPIES ? 2 : 0);
  assert_int_equal(st.bytes_to_host, f->layout == FIXTURE_TWO_COPIES ? 40 : 0);
  assert_int_equal(st.transfers_to_host, f->layout == FIXTURE_TWO_COPIES ? 1 : 0);

  /* A reset starts a new period: peaks from what is live now, movement counts from zero. */
  assert_ok(twin_context_stats_reset(ctx));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.peak_host_bytes, 4000);
  assert_int_equal(st.peak_device_bytes, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  assert_int_equal(st.bytes_to_device + st.bytes_to_host, 0);
  assert_int_equal(st.transfers_to_device + st.transfers_to_host, 0);
  assert_int_equal(st.host_bytes, 4000);
  assert_int_equal(st.arrays, 2);
  assert_status(twin_context_stats_reset(NULL), TWIN_ERR_INVALID_ARGUMENT);

  twin_array_unref(v);
  twin_array_unref(a);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes + st.device_bytes + st.buffers + st.arrays, 0);
  assert_int_equal(st.zero_copy_buffers, 0);
  assert_int_equal(st.peak_host_bytes, 4000);
  assert_int_equal(st.peak_device_bytes, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  twin_context_unref(ctx);
}

static void test_held_by_views_is_the_numpy_trap(void **state) {
  twin_fixture *f = fixture(state);
  const size_t shape[] = {64, 64}; /* 16384 bytes of f32 */
  twin_array *huge, *col, *rows, *kept;
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 2, shape, &huge));
  host_touch(huge, TWIN_WRITE);
  assert_ok(twin_array_index(huge, 1, 10, &col));            /* huge[:, 10], 256 bytes */
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 0); /* the base covers it all */
  twin_array_unref(huge);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.held_by_views_bytes, 16384);
  assert_int_equal(st.host_bytes, 16384);
  assert_int_equal(st.buffers, 1);
  assert_int_equal(st.arrays, 1);
  /* Under a quarter is held: 14 rows (3584 bytes) and the column make 3840 of 16384... */
  twin_array *one;
  assert_ok(twin_array_as_strided(col, 2, (size_t[]){14, 64}, (ptrdiff_t[]){64, 1}, -10, &rows));
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 16384);
  /* ...a 15th row makes exactly a quarter (4096), which is no longer held. */
  assert_ok(twin_array_as_strided(col, 1, (size_t[]){64}, (ptrdiff_t[]){1}, 14 * 64 - 10, &one));
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 0);
  twin_array_unref(one);
  twin_array_unref(rows);
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 16384);
  /* The way out: a copy of the column's size, then the view goes and the buffer with it. */
  assert_ok(twin_array_copy(col, &kept));
  twin_array_unref(col);
  st = fixture_stats(f);
  assert_int_equal(st.held_by_views_bytes, 0);
  assert_int_equal(st.buffers, 1);
  /* With two copies the copy was made on the device, and only its device copy exists. */
  assert_int_equal(st.host_bytes, f->layout == FIXTURE_TWO_COPIES ? 0 : 256);
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 256 : 0);
  twin_array_unref(kept);
}

static void test_held_by_views_is_exact_for_odd_sizes(void **state) {
  twin_fixture *f = fixture(state);
  const size_t n = 10;
  twin_array *a, *two, *three;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, &n, &a));
  assert_ok(twin_array_slice(a, (twin_slice[]){{0, 2, 1}}, &two));   /* 2/10 < 1/4 */
  assert_ok(twin_array_slice(a, (twin_slice[]){{5, 8, 1}}, &three)); /* 3/10 > 1/4 */
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 0); /* 5 of 10 covered */
  twin_array_unref(three);
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 10);
  assert_ok(twin_array_set_owner(two, "odd"));
  twin_stats own;
  assert_ok(twin_context_owner_stats(f->ctx, "odd", &own));
  assert_int_equal(own.held_by_views_bytes, 10); /* the same answer per owner */
  twin_array_unref(two);
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 0);
}

static void test_owner_stats_count_views_and_shared_buffers(void **state) {
  twin_fixture *f = fixture(state);
  const size_t na = 256, nb = 512; /* 1024 and 2048 bytes of f32 */
  twin_array *a, *b, *va, *vb, *untagged;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, &na, &a));
  assert_ok(twin_array_slice(a, (twin_slice[]){{0, 8, 1}}, &untagged)); /* made before the tag */
  assert_ok(twin_array_set_owner(a, "alpha"));
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, &nb, &b));
  assert_ok(twin_array_set_owner(b, "beta"));
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_ok(twin_array_prefetch(b, TWIN_HOST));
  assert_ok(twin_array_slice(a, (twin_slice[]){{0, 128, 1}}, &va));
  assert_string_equal(twin_array_owner(va), "alpha"); /* inherited */
  assert_string_equal(twin_array_owner(untagged), "");
  assert_ok(twin_array_slice(b, (twin_slice[]){{0, 64, 1}}, &vb));
  assert_string_equal(twin_array_owner(vb), "beta");
  assert_ok(twin_array_set_owner(vb, "alpha")); /* b's buffer now has two owners */
  fixture_device_touch(f, a, TWIN_READ);

  twin_stats al, be, none;
  assert_ok(twin_context_owner_stats(f->ctx, "alpha", &al));
  assert_ok(twin_context_owner_stats(f->ctx, "beta", &be));
  assert_ok(twin_context_owner_stats(f->ctx, "gamma", &none));
  assert_int_equal(al.buffers, 2);
  assert_int_equal(al.arrays, 3); /* a, va, vb */
  assert_int_equal(al.host_bytes, 1024 + 2048);
  assert_int_equal(al.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 1024 : 0);
  assert_int_equal(al.zero_copy_buffers, f->layout != FIXTURE_TWO_COPIES ? 2 : 0);
  assert_int_equal(al.held_by_views_bytes, 0);
  assert_int_equal(al.bytes_to_device + al.transfers_to_device, 0); /* not kept per owner */
  assert_int_equal(be.buffers, 1);
  assert_int_equal(be.arrays, 1);
  assert_int_equal(be.host_bytes, 2048);
  assert_int_equal(be.device_bytes, 0);
  twin_stats zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&none, &zero, sizeof none);

  /* Dropping beta's base leaves b's buffer to alpha's small view: held by views, for alpha. */
  twin_array_unref(b);
  assert_ok(twin_context_owner_stats(f->ctx, "alpha", &al));
  assert_ok(twin_context_owner_stats(f->ctx, "beta", &be));
  assert_int_equal(al.buffers, 2);
  assert_int_equal(al.arrays, 3);
  assert_int_equal(al.held_by_views_bytes, 2048);
  assert_int_equal(be.buffers, 0);
  assert_int_equal(be.host_bytes, 0);
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 2048);

  char longer[40];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  assert_status(twin_array_set_owner(va, longer), TWIN_ERR_INVALID_ARGUMENT);
  assert_string_equal(twin_array_owner(va), "alpha");
  assert_status(twin_context_owner_stats(f->ctx, NULL, &al), TWIN_ERR_INVALID_ARGUMENT);
  assert_ok(twin_array_set_owner(va, NULL)); /* clears */
  assert_string_equal(twin_array_owner(va), "");
  twin_array_unref(untagged);
  twin_array_unref(va);
  twin_array_unref(vb);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_stats_follow_allocations_exactly),
    TWIN_TEST(test_held_by_views_is_the_numpy_trap),
    TWIN_TEST(test_held_by_views_is_exact_for_odd_sizes),
    TWIN_TEST(test_owner_stats_count_views_and_shared_buffers),
};

TWIN_TEST_MAIN(tests)

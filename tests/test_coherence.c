/* Coherence: exact transfer counts for scripted access patterns, zero-copy buffers that never
 * move a byte, the dirty map under fragmentation and random use, and threads sharing a buffer.
 * Every case runs on every backend group: the host backend, and each device (the fake device,
 * OpenCL) zero-copy and with two copies. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define ROWS 4096
#define COLS 4096
#define ROW_BYTES (COLS * sizeof(float))

/* Bytes the scripted pattern should move on this backend: real counts only on two copies. */
static uint64_t expect_moved(const twin_fixture *f, uint64_t two_copies) {
  return f->layout == FIXTURE_TWO_COPIES ? two_copies : 0;
}

static twin_stats moved_since(const twin_fixture *f, const twin_stats *before) {
  twin_stats now = fixture_stats(f), d = now;
  d.bytes_to_device -= before->bytes_to_device;
  d.bytes_to_host -= before->bytes_to_host;
  d.transfers_to_device -= before->transfers_to_device;
  d.transfers_to_host -= before->transfers_to_host;
  return d;
}

static twin_array *row_of(twin_array *a, ptrdiff_t r) {
  twin_array *row;
  assert_ok(twin_array_index(a, 0, r, &row));
  return row;
}

static twin_array *big(twin_fixture *f) {
  size_t shape[] = {ROWS, COLS};
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 2, shape, &a));
  return a;
}

static void host_fill(twin_array *a, float value) {
  float *p;
  assert_ok(twin_host_begin(a, TWIN_READ_WRITE, (void **)&p));
  for (size_t i = 0; i < twin_array_size(a); i++)
    p[i * (size_t)twin_array_strides(a)[twin_array_ndim(a) - 1]] = value;
  assert_ok(twin_host_end(a));
}

static void test_one_host_row_then_whole_array_on_device_moves_one_row(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = big(f), *row = row_of(a, 1234);
  twin_stats before = fixture_stats(f);
  host_fill(row, 1.5f);
  fixture_device_touch(f, a, TWIN_READ);
  twin_stats d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_device, expect_moved(f, ROW_BYTES));
  assert_int_equal(d.transfers_to_device, expect_moved(f, 1));
  assert_int_equal(d.bytes_to_host, 0);
  twin_array_unref(row);
  twin_array_unref(a);
}

static void test_column_read_after_device_write_moves_its_elements(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = big(f), *col;
  fixture_device_touch(f, a, TWIN_WRITE);
  assert_ok(twin_array_index(a, 1, 7, &col));
  twin_stats before = fixture_stats(f);
  float *p;
  assert_ok(twin_host_begin(col, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(col));
  twin_stats d = moved_since(f, &before);
  /* The column's 16 KiB in one rectangular transfer, not its 64 MiB extent (issue 14). */
  assert_int_equal(d.bytes_to_host, expect_moved(f, ROWS * sizeof(float)));
  assert_int_equal(d.transfers_to_host, expect_moved(f, 1));
  /* Repeating the read with no write in between moves nothing. */
  before = fixture_stats(f);
  assert_ok(twin_host_begin(col, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(col));
  d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_host + d.bytes_to_device, 0);
  twin_array_unref(col);
  twin_array_unref(a);
}

static void test_sibling_rows_written_on_device_each_read_moves_its_own_row(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = big(f), *r1 = row_of(a, 10), *r2 = row_of(a, 20);
  host_fill(a, 0.0f);
  fixture_device_touch(f, a, TWIN_READ); /* both sides current */
  fixture_device_touch(f, r1, TWIN_WRITE);
  fixture_device_touch(f, r2, TWIN_WRITE);
  twin_stats before = fixture_stats(f);
  float *p;
  assert_ok(twin_host_begin(r1, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(r1));
  twin_stats d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_host, expect_moved(f, ROW_BYTES));
  /* Bringing r1 up to date changed nothing r2 still needs. */
  assert_ok(twin_host_begin(r2, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(r2));
  d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_host, expect_moved(f, 2 * ROW_BYTES));
  assert_int_equal(d.transfers_to_host, expect_moved(f, 2));
  twin_array_unref(r2);
  twin_array_unref(r1);
  twin_array_unref(a);
}

static void test_never_written_side_costs_nothing_on_the_other(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = big(f);
  twin_stats before = fixture_stats(f);
  fixture_device_touch(f, a, TWIN_READ);
  float *p;
  assert_ok(twin_host_begin(a, TWIN_READ, (void **)&p));
  assert_ok(twin_host_end(a));
  fixture_device_touch(f, a, TWIN_READ_WRITE);
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p)); /* write-only: nothing to fetch */
  assert_ok(twin_host_end(a));
  twin_stats d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_host, 0);
  assert_int_equal(d.bytes_to_device, 0);
  twin_array_unref(a);
}

static void test_zero_copy_buffer_is_one_allocation(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {1000};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 1, shape, &a));
  assert_int_equal(twin_array_is_zero_copy(a), f->layout != FIXTURE_TWO_COPIES);
  host_fill(a, 0.0f);
  fixture_device_touch(f, a, TWIN_READ_WRITE);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.zero_copy_buffers, f->layout != FIXTURE_TWO_COPIES ? 1 : 0);
  assert_int_equal(st.host_bytes, 4000);
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 4000 : 0);
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).zero_copy_buffers, 0);
}

/* Writes `value` into every element of a contiguous i32 array on the device. */
static void device_write(twin_array *a, int32_t value) {
  size_t n = twin_array_size(a);
  int32_t *data = test_malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = value;
  fixture_device_write(a, TWIN_WRITE, data);
  test_free(data);
}

/* Random row blocks written on either side and read back on either side, against a shadow
 * copy: the dirty map must never lose or resurrect data, however fragmented it gets. */
static void test_random_row_blocks_stay_coherent(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  enum { R = 200, C = 16, STEPS = 400 };
  size_t shape[] = {R, C};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, shape, &a));
  static int32_t shadow[R * C], got[R * C];
  memset(shadow, 0, sizeof shadow);
  unsigned seed = 12345;
  for (int step = 0; step < STEPS; step++) {
    ptrdiff_t r0 = rand_r(&seed) % R, r1 = r0 + 1 + rand_r(&seed) % 8;
    if (r1 > R)
      r1 = R;
    twin_slice sl[] = {{r0, r1, 1}, TWIN_ALL};
    twin_array *v;
    assert_ok(twin_array_slice(a, sl, &v));
    int32_t value = step + 1;
    int op = rand_r(&seed) % 4;
    if (op == 0) {
      device_write(v, value);
    } else if (op == 1) {
      int32_t *p;
      assert_ok(twin_host_begin(v, TWIN_WRITE, (void **)&p));
      for (size_t i = 0; i < twin_array_size(v); i++)
        p[i] = value;
      assert_ok(twin_host_end(v));
    }
    if (op <= 1)
      for (ptrdiff_t i = r0 * C; i < r1 * C; i++)
        shadow[i] = value;
    if (op == 2) {
      fixture_device_read(v, got);
      assert_memory_equal(got, &shadow[r0 * C], (size_t)(r1 - r0) * C * sizeof *got);
    } else if (op == 3) {
      assert_ok(twin_array_read(v, got, twin_array_nbytes(v)));
      assert_memory_equal(got, &shadow[r0 * C], (size_t)(r1 - r0) * C * sizeof *got);
    }
    twin_array_unref(v);
  }
  assert_ok(twin_array_read(a, got, sizeof got));
  assert_memory_equal(got, shadow, sizeof got);
  fixture_device_read(a, got);
  assert_memory_equal(got, shadow, sizeof got);
  twin_array_unref(a);
}

/* Many small host writes fragment the dirty map past its capacity: every written byte still
 * moves exactly once, however the map makes room. */
static void test_fragmented_writes_move_each_written_byte_once(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  enum { R = 300, C = 8 };
  size_t shape[] = {R, C};
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 2, shape, &a));
  fixture_device_touch(f, a, TWIN_READ);
  twin_stats before = fixture_stats(f);
  for (ptrdiff_t r = 0; r < R; r += 3) {
    twin_array *row = row_of(a, r);
    int32_t *p;
    assert_ok(twin_host_begin(row, TWIN_WRITE, (void **)&p));
    for (int c = 0; c < C; c++)
      p[c] = (int32_t)(r * C + c);
    assert_ok(twin_host_end(row));
    twin_array_unref(row);
  }
  int32_t got[R * C];
  fixture_device_read(a, got);
  for (int r = 0; r < R; r += 3)
    for (int c = 0; c < C; c++)
      assert_int_equal(got[r * C + c], r * C + c);
  twin_stats d = moved_since(f, &before);
  assert_int_equal(d.bytes_to_device, expect_moved(f, (R / 3) * C * sizeof(int32_t)));
  twin_array_unref(a);
}

static void test_device_access_while_host_write_open_is_busy_and_names_the_site(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  size_t shape[] = {4, 4};
  twin_array *a, *r0, *r1;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 2, shape, &a));
  r0 = row_of(a, 0);
  r1 = row_of(a, 1);
  void *p;
  int line = __LINE__ + 1;
  assert_ok(twin_host_begin(r0, TWIN_WRITE, &p));
  void *mem;
  size_t off;
  assert_status(fixture_device_begin(r1, TWIN_READ, &mem, &off), TWIN_ERR_BUSY);
  char site[64];
  snprintf(site, sizeof site, "test_coherence.c:%d", line);
  assert_non_null(strstr(twin_last_error(), site));
  assert_ok(twin_host_end(r0));
  assert_ok(fixture_device_begin(r1, TWIN_READ, &mem, &off));
  assert_ok(fixture_device_end(r1));
  twin_array_unref(r1);
  twin_array_unref(r0);
  twin_array_unref(a);
}

typedef struct worker {
  twin_fixture *f;
  twin_array *row;
  int32_t id;
  int failures;
} worker;

/* Writes its own row on the host, checks it on the device, writes it on the device, checks it
 * on the host; other threads do the same on sibling rows of the same buffer. */
static void *work(void *arg) {
  worker *w = arg;
  twin_context *ctx = w->f->ctx;
  /* A sibling's open access on the other side makes an access busy: retry, as an application
   * sharing a buffer between threads would. */
#define RETRY(call)                                                                                \
  while ((s = (call)) == TWIN_ERR_BUSY)                                                            \
  sched_yield()
  for (int it = 0; it < 50; it++) {
    int32_t v = w->id * 1000 + it, back = -1, *p;
    void *mem;
    size_t off;
    twin_status s;
    RETRY(twin_host_begin(w->row, TWIN_WRITE, (void **)&p));
    if (s == TWIN_OK) {
      for (int c = 0; c < 64; c++)
        p[c] = v;
      s = twin_host_end(w->row);
    }
    if (s == TWIN_OK)
      RETRY(fixture_device_begin(w->row, TWIN_READ_WRITE, &mem, &off));
    if (s == TWIN_OK) {
      int32_t neg = -v;
      w->failures += !fixture_device_get(ctx, mem, off + 63 * sizeof v, &back, sizeof v);
      w->failures += !fixture_device_put(ctx, mem, off, &neg, sizeof neg);
      s = fixture_device_end(w->row);
    }
    if (s == TWIN_OK)
      RETRY(twin_host_begin(w->row, TWIN_READ, (void **)&p));
    if (s == TWIN_OK) {
      w->failures += back != v || p[0] != -v || p[1] != v;
      s = twin_host_end(w->row);
    }
    w->failures += s != TWIN_OK;
  }
#undef RETRY
  return NULL;
}

static void test_threads_share_one_buffer_through_row_views(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  enum { T = 4 };
  size_t shape[] = {T, 64};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, shape, &a));
  pthread_t th[T];
  worker w[T];
  for (int t = 0; t < T; t++) {
    w[t] = (worker){f, row_of(a, t), t + 1, 0};
    assert_int_equal(pthread_create(&th[t], NULL, work, &w[t]), 0);
  }
  for (int t = 0; t < T; t++) {
    pthread_join(th[t], NULL);
    assert_int_equal(w[t].failures, 0);
    twin_array_unref(w[t].row);
  }
  twin_array_unref(a);
}

static void test_coherence_env_selects_copy(void **state) {
  twin_fixture *f = fixture(state);
  const char *old = getenv("TWIN_COHERENCE");
  setenv("TWIN_COHERENCE", "copy", 1);
  twin_context *ctx;
  assert_ok(twin_context_new(twin_context_device(f->ctx)->spec, &ctx));
  /* Two copies on a device; the host backend has its one copy whatever is asked. */
  assert_int_equal(twin_context_is_zero_copy(ctx), !f->has_device);
  twin_context_unref(ctx);
  setenv("TWIN_COHERENCE", "sideways", 1);
  ctx = NULL;
  assert_status(twin_context_new(twin_context_device(f->ctx)->spec, &ctx),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "sideways"));
  assert_null(ctx);
  if (old)
    setenv("TWIN_COHERENCE", old, 1);
  else
    unsetenv("TWIN_COHERENCE");
  twin_context_options bad = {.device = "host", .coherence = (twin_coherence)7};
  assert_status(twin_context_new_with(&bad, &ctx), TWIN_ERR_INVALID_ARGUMENT);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_one_host_row_then_whole_array_on_device_moves_one_row),
    TWIN_TEST(test_column_read_after_device_write_moves_its_elements),
    TWIN_TEST(test_sibling_rows_written_on_device_each_read_moves_its_own_row),
    TWIN_TEST(test_never_written_side_costs_nothing_on_the_other),
    TWIN_TEST(test_zero_copy_buffer_is_one_allocation),
    TWIN_TEST(test_random_row_blocks_stay_coherent),
    TWIN_TEST(test_fragmented_writes_move_each_written_byte_once),
    TWIN_TEST(test_device_access_while_host_write_open_is_busy_and_names_the_site),
    TWIN_TEST(test_threads_share_one_buffer_through_row_views),
    TWIN_TEST(test_coherence_env_selects_copy),
};

TWIN_TEST_MAIN(tests)

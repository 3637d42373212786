/* Unreachable bytes are garbage: after `col = huge[:, 100]; drop huge`, TWIN_TRIM_UNREACHABLE
 * gives the host pages no live view reaches back to the OS (the resident size drops, `freed`
 * and the statistics say so) while every view keeps its data; a second trim frees nothing; lent
 * memory is never touched; a view that reaches released pages again (twin_array_as_strided)
 * counts them again; two threads may trim at once; the pressure order releases them to fit an
 * allocation; on two copies, newer data no view reaches keeps no copy alive (trim and evict),
 * the dirty map forgets it, and moves skip released pages; the walk and the report give each
 * buffer's reachable share. Every case runs on every backend group and skips where it does not
 * apply. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "release_probe.h"

/* The matrix: f32 rows of 32 KiB (8 pages of 4 KiB), 8192 of them (256 MiB; 512 rows,
 * 16 MiB, under a sanitizer). */
#define COLS 8192
#define ROW_BYTES (COLS * sizeof(float))
#define ROWS (BIG / ROW_BYTES)
#define PAGE 4096

/* A small matrix of the same rows for the cases that need no resident-size figure. */
#define SMALL_ROWS 64
#define SMALL_BYTES (SMALL_ROWS * ROW_BYTES)

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static bool report_figures(void) {
  return getenv("TWIN_UNREACHABLE_REPORT") != NULL;
}

/* The line of this file that made the last matrix. */
static int made_at;

/* A rows x COLS f32 matrix whose element i holds the bits of i (distinct everywhere), written on
 * the host, so all of it is resident. */
static twin_array *matrix(twin_context *ctx, size_t rows) {
  twin_array *a;
  made_at = __LINE__ + 1;
  assert_ok(twin_array_new(ctx, TWIN_F32, 2, (size_t[]){rows, COLS}, &a));
  uint32_t *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, (void **)&p));
  for (size_t i = 0; i < rows * COLS; i++)
    p[i] = (uint32_t)i;
  assert_ok(twin_host_end(a));
  return a;
}

/* a[:, c] or a[r], a view. */
static twin_array *column(twin_array *a, ptrdiff_t c) {
  twin_array *v;
  assert_ok(twin_array_index(a, 1, c, &v));
  return v;
}
static twin_array *row(twin_array *a, ptrdiff_t r) {
  twin_array *v;
  assert_ok(twin_array_index(a, 0, r, &v));
  return v;
}

/* Every element of view v of a matrix still holds the bits of its index in the matrix:
 * element k is matrix element first + k * step. */
static void expect_elements(twin_array *v, size_t first, size_t step) {
  const uint32_t *p;
  size_t n = twin_array_size(v);
  ptrdiff_t s = twin_array_strides(v)[0];
  assert_ok(twin_host_begin(v, TWIN_READ, (void **)&p));
  size_t bad = 0;
  for (size_t k = 0; k < n; k++)
    bad += p[(ptrdiff_t)k * s] != (uint32_t)(first + k * step);
  assert_ok(twin_host_end(v));
  assert_int_equal(bad, 0);
}

static size_t trim(twin_context *ctx) {
  size_t freed = 12345;
  assert_ok(twin_context_trim(ctx, TWIN_TRIM_UNREACHABLE, &freed));
  return freed;
}

/* The walk's record of the buffer made at `line` of this file. */
static twin_buffer_info walk_find(twin_context *ctx, int line) {
  return fixture_walk_find(ctx, "test_unreachable.c", line);
}

static void report_text(twin_context *ctx, char *text, size_t cap) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  twin_context_report(ctx, tmp);
  fflush(tmp);
  rewind(tmp);
  text[fread(text, 1, cap - 1, tmp)] = '\0';
  fclose(tmp);
}

/* ---- the two cases: one column, one row ---- */

/* Trims with only `kept` alive and checks what came back: freed exactly `expect` bytes, the
 * statistics and (without a sanitizer) the resident size dropped by as much, and a second trim
 * frees nothing. Returns the trim's milliseconds. */
static double expect_trim_returns(twin_context *ctx, size_t expect, const char *what) {
  twin_stats before = fixture_ctx_stats(ctx);
  long rss = resident_mib();
  double t0 = now_ms();
  size_t freed = trim(ctx);
  double ms = now_ms() - t0;
  long dropped = rss - resident_mib();
  twin_stats after = fixture_ctx_stats(ctx);
  if (report_figures())
    printf("unreachable: %s: freed %zu of %zu bytes (%.4f), resident %ld of %zu MiB dropped, "
           "trim %.1f ms\n",
           what, freed, (size_t)BIG, (double)freed / (double)BIG, dropped, (size_t)BIG_MIB, ms);
  assert_int_equal(freed, expect);
  assert_int_equal(before.host_bytes - after.host_bytes, freed);
#ifndef UNDER_SANITIZER
  assert_true(dropped >= (long)(expect >> 20) - 2); /* 2 MiB for the process's own noise */
#else
  (void)dropped;
#endif
  assert_int_equal(trim(ctx), 0);
  assert_int_equal(fixture_ctx_stats(ctx).host_bytes, after.host_bytes);
  return ms;
}

static void test_keeping_one_column_returns_seven_eighths(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *huge = matrix(f->ctx, ROWS);
  int line = made_at;
  twin_array *col = column(huge, 100);
  twin_array_unref(huge); /* col = huge[:, 100]; del huge */
  /* The column touches one page of each row's eight. */
  size_t expect = BIG / 8 * 7;
  expect_trim_returns(f->ctx, expect, "one column");
  expect_elements(col, 100, COLS);

  twin_buffer_info info = walk_find(f->ctx, line);
  assert_true(info.reachable == 0.125);
  assert_int_equal(info.released_bytes, expect);
  static char text[8192];
  report_text(f->ctx, text, sizeof text);
  char released[128];
  snprintf(released, sizeof released, "released: %.1f MiB of host pages no view reaches",
           (double)expect / (1 << 20));
  assert_non_null(strstr(text, "reachable 12%"));
  assert_non_null(strstr(text, released));
  twin_array_unref(col);
}

static void test_keeping_one_row_returns_nearly_all(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *huge = matrix(f->ctx, ROWS);
  int line = made_at;
  twin_array *r = row(huge, 5);
  twin_array_unref(huge);
  expect_trim_returns(f->ctx, BIG - ROW_BYTES, "one row");
  expect_elements(r, 5 * COLS, 1);
  assert_true(walk_find(f->ctx, line).reachable == (double)ROW_BYTES / (double)BIG);
  twin_array_unref(r);
}

static void test_every_view_keeps_its_data(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = matrix(f->ctx, SMALL_ROWS);
  twin_array *c = column(a, 4000), *r = row(a, 9), *t, *block, *rev;
  assert_ok(twin_array_transpose(a, NULL, &t));
  assert_ok(twin_array_slice(a, (twin_slice[]){{20, 22, 1}, {TWIN_NONE, TWIN_NONE, 1}}, &block));
  assert_ok(twin_array_slice(r, (twin_slice[]){{TWIN_NONE, TWIN_NONE, -2}}, &rev));
  twin_array *tc = row(t, 7000); /* a[:, 7000] through the transpose */
  twin_array_unref(t);
  twin_array_unref(a);
  /* Reached: one page per row for each column (columns 4000 and 7000 lie in pages 3 and 6),
   * and rows 9, 20 and 21 whole. */
  size_t reached = 3 * ROW_BYTES + (SMALL_ROWS - 3) * 2 * PAGE;
  assert_int_equal(trim(f->ctx), SMALL_BYTES - reached);
  expect_elements(c, 4000, COLS);
  expect_elements(tc, 7000, COLS);
  expect_elements(r, 9 * COLS, 1);
  expect_elements(rev, 9 * COLS + COLS - 1, (size_t)-2);
  twin_array *b21 = row(block, 1);
  expect_elements(b21, 21 * COLS, 1);
  twin_array *views[] = {c, tc, r, rev, block, b21};
  for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
    twin_array_unref(views[i]);
}

/* ---- what is never released, and bad input ---- */

static atomic_int lent_released;
static void on_lent_release(void *user) {
  (void)user;
  atomic_fetch_add(&lent_released, 1);
}

static void test_lent_memory_is_never_released(void **state) {
  twin_fixture *f = fixture(state);
  uint32_t *mem = aligned_alloc(PAGE, SMALL_BYTES);
  assert_non_null(mem);
  for (size_t i = 0; i < SMALL_BYTES / 4; i++)
    mem[i] = (uint32_t)i;
  atomic_store(&lent_released, 0);
  twin_array *a;
  size_t shape[] = {SMALL_ROWS, COLS};
  int line = __LINE__ + 1; /* one line: compilers number a call across lines differently */
  assert_ok(twin_array_wrap_host(f->ctx, mem, TWIN_F32, 2, shape, NULL, on_lent_release, 0, &a));
  twin_array *r = row(a, 3);
  twin_array_unref(a);
  assert_int_equal(trim(f->ctx), 0);
  twin_buffer_info info = walk_find(f->ctx, line);
  assert_int_equal(info.released_bytes, 0);
  assert_true(info.reachable == 1.0 / SMALL_ROWS); /* the share is told all the same */
  twin_array_unref(r);
  assert_int_equal(atomic_load(&lent_released), 1);
  size_t bad = 0;
  for (size_t i = 0; i < SMALL_BYTES / 4; i++)
    bad += mem[i] != (uint32_t)i;
  assert_int_equal(bad, 0);
  free(mem);
}

static void test_small_buffers_and_bad_input(void **state) {
  twin_fixture *f = fixture(state);
  /* Under a page: no whole page to give back, and any view reaches all of it. */
  int32_t data[1000];
  for (int i = 0; i < 1000; i++)
    data[i] = i;
  twin_array *a, *v;
  int line = __LINE__ + 1;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, (size_t[]){1000}, data, &a));
  assert_ok(twin_array_slice(a, (twin_slice[]){{10, 20, 1}}, &v));
  twin_array_unref(a);
  assert_int_equal(trim(f->ctx), 0);
  assert_true(walk_find(f->ctx, line).reachable == 1.0);
  fixture_expect_i32(v, 10);
  twin_array_unref(v);

  size_t freed = 7;
  assert_status(twin_context_trim(NULL, TWIN_TRIM_UNREACHABLE, &freed), TWIN_ERR_INVALID_ARGUMENT);
  expect_message_has("twin_context_trim: ctx is NULL");
  assert_status(twin_context_trim(f->ctx, TWIN_TRIM_UNREACHABLE | 16u, &freed),
                TWIN_ERR_INVALID_ARGUMENT);
  expect_message_has("what is 0x14");
  assert_int_equal(freed, 7); /* untouched on failure */
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_UNREACHABLE, NULL));
}

/* ---- reached again ---- */

static void test_as_strided_reaching_released_pages_counts_them_again(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = matrix(f->ctx, SMALL_ROWS);
  int line = made_at;
  twin_array *c = column(a, 100);
  twin_array_unref(a);
  size_t freed = trim(f->ctx), held = fixture_stats(f).host_bytes;
  assert_int_equal(freed, SMALL_BYTES / 8 * 7);
  /* The whole matrix again, from the column: the pages count as host memory again. */
  twin_array *all;
  assert_ok(twin_array_as_strided(c, 2, (size_t[]){SMALL_ROWS, COLS}, (ptrdiff_t[]){COLS, 1}, -100,
                                  &all));
  assert_int_equal(fixture_stats(f).host_bytes, held + freed);
  assert_int_equal(walk_find(f->ctx, line).released_bytes, 0);
  /* Its content there is undefined; written, it holds. */
  uint32_t *p;
  assert_ok(twin_host_begin(all, TWIN_WRITE, (void **)&p));
  for (size_t i = 0; i < SMALL_BYTES / 4; i++)
    p[i] = (uint32_t)i;
  assert_ok(twin_host_end(all));
  twin_array *r = row(all, 40);
  expect_elements(r, 40 * COLS, 1);
  expect_elements(c, 100, COLS);
  assert_int_equal(trim(f->ctx), 0); /* all of it is reached */
  twin_array_unref(r);
  twin_array_unref(all);
  assert_int_equal(trim(f->ctx), freed);
  assert_int_equal(fixture_stats(f).host_bytes, held);
  expect_elements(c, 100, COLS);
  twin_array_unref(c);
}

/* ---- threads ---- */

#define SETS 6

typedef struct trimmer {
  twin_context *ctx;
  pthread_barrier_t *go;
  size_t freed;
} trimmer;

static void *trim_thread(void *arg) {
  trimmer *t = arg;
  pthread_barrier_wait(t->go);
  assert_ok(twin_context_trim(t->ctx, TWIN_TRIM_UNREACHABLE, &t->freed));
  return NULL;
}

static void test_two_threads_trimming_at_once_free_each_page_once(void **state) {
  twin_fixture *f = fixture(state);
  for (int round = 0; round < 3; round++) {
    twin_array *rows[SETS];
    for (int i = 0; i < SETS; i++) {
      twin_array *a = matrix(f->ctx, SMALL_ROWS);
      rows[i] = row(a, i);
      twin_array_unref(a);
    }
    size_t held = fixture_stats(f).host_bytes;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    trimmer t[2] = {{f->ctx, &go, 0}, {f->ctx, &go, 0}};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trim_thread, &t[1]), 0);
    trim_thread(&t[0]);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&go);
    size_t expect = SETS * (SMALL_BYTES - ROW_BYTES);
    assert_int_equal(t[0].freed + t[1].freed, expect);
    assert_int_equal(held - fixture_stats(f).host_bytes, expect);
    for (int i = 0; i < SETS; i++) {
      expect_elements(rows[i], (size_t)i * COLS, 1);
      twin_array_unref(rows[i]);
    }
  }
}

typedef struct reacher {
  twin_array *col;
  atomic_bool *stop;
} reacher;

/* Makes and drops the whole matrix from its column, over and over. */
static void *reach_thread(void *arg) {
  reacher *r = arg;
  while (!atomic_load(r->stop)) {
    twin_array *all;
    assert_ok(twin_array_as_strided(r->col, 2, (size_t[]){SMALL_ROWS, COLS}, (ptrdiff_t[]){COLS, 1},
                                    -100, &all));
    twin_array_unref(all);
  }
  return NULL;
}

static void test_views_made_while_another_thread_trims_keep_the_count(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = matrix(f->ctx, SMALL_ROWS);
  twin_array *c = column(a, 100);
  twin_array_unref(a);
  size_t held = fixture_stats(f).host_bytes;
  atomic_bool stop = false;
  reacher r = {c, &stop};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, reach_thread, &r), 0);
  for (int i = 0; i < 200; i++)
    trim(f->ctx);
  atomic_store(&stop, true);
  pthread_join(th, NULL);
  /* Whatever interleaving: with the column alone left, one more trim leaves exactly its pages. */
  trim(f->ctx);
  assert_int_equal(held - fixture_stats(f).host_bytes, SMALL_BYTES / 8 * 7);
  expect_elements(c, 100, COLS);
  twin_array_unref(c);
}

/* ---- under pressure ---- */

static void test_the_pressure_order_releases_unreachable_pages(void **state) {
  twin_fixture *f = fixture(state);
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  o.host_memory_limit = SMALL_BYTES + 64 * 1024;
  twin_context *ctx;
  assert_ok(twin_context_new_with(&o, &ctx));
  twin_array *a = matrix(ctx, SMALL_ROWS);
  twin_array *c = column(a, 7), *b;
  twin_array_unref(a);
  /* 1 MiB more than the budget has: only the column's pages may stay. */
  assert_ok(twin_array_new(ctx, TWIN_U8, 1, (size_t[]){1 << 20}, &b));
  void *p;
  assert_ok(twin_host_begin(b, TWIN_WRITE, &p));
  memset(p, 1, 1 << 20);
  assert_ok(twin_host_end(b));
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.pressure_events, 1);
  assert_int_equal(st.pressure_failures, 0);
  assert_int_equal(st.pressure_released_bytes, SMALL_BYTES / 8 * 7);
  assert_int_equal(st.host_bytes, SMALL_BYTES / 8 + (1 << 20));
  expect_elements(c, 7, COLS);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);
}

/* ---- two copies: newer data no view reaches ---- */

/* A 64 x 1024 u32 matrix (rows of a page) written on the device, and its row 3 brought to the
 * host: the device is newer everywhere else, where no view will reach once the matrix goes. */
static twin_array *device_newer_but_row(const twin_fixture *f, int *line) {
  static uint32_t data[64 * 1024];
  for (size_t i = 0; i < 64 * 1024; i++)
    data[i] = (uint32_t)i;
  twin_array *a, *r;
  *line = __LINE__ + 1;
  assert_ok(twin_array_new(f->ctx, TWIN_U32, 2, (size_t[]){64, 1024}, &a));
  fixture_device_write(a, TWIN_WRITE, data);
  assert_ok(twin_array_index(a, 0, 3, &r));
  const uint32_t *p;
  assert_ok(twin_host_begin(r, TWIN_READ, (void **)&p));
  assert_int_equal(p[0], 3 * 1024);
  assert_ok(twin_host_end(r));
  twin_array_unref(a);
  return r;
}

static void expect_row3(twin_array *r) {
  uint32_t got[1024];
  assert_ok(twin_array_read(r, got, sizeof got));
  for (uint32_t i = 0; i < 1024; i++)
    assert_int_equal(got[i], 3 * 1024 + i);
}

static void test_unreachable_newer_data_keeps_no_device_copy(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* one copy: nothing is redundant */
  int line;
  twin_array *r = device_newer_but_row(f, &line);
  size_t device = fixture_stats(f).device_bytes, freed = 0;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_DEVICE, &freed));
  assert_int_equal(freed, 64 * 4096);
  assert_int_equal(device - fixture_stats(f).device_bytes, 64 * 4096);
  twin_residency h, d;
  assert_ok(twin_array_residency(r, &h, &d));
  assert_int_equal(h, TWIN_RESIDENT_VALID);
  assert_int_equal(d, TWIN_RESIDENT_NONE);
  expect_row3(r);
  twin_array_unref(r);
  /* twin_array_evict asks the same. */
  r = device_newer_but_row(f, &line);
  assert_ok(twin_array_evict(r, TWIN_DEVICE));
  expect_row3(r);
  twin_array_unref(r);
}

static void test_the_dirty_map_forgets_what_no_view_reaches(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* one copy: no dirty map */
  int line;
  twin_array *r = device_newer_but_row(f, &line);
  assert_int_equal(walk_find(f->ctx, line).host, TWIN_RESIDENT_STALE);
  assert_int_equal(trim(f->ctx), 63 * 4096); /* every host page but row 3's */
  twin_buffer_info info = walk_find(f->ctx, line);
  assert_int_equal(info.host, TWIN_RESIDENT_VALID); /* no side is newer anywhere */
  assert_int_equal(info.device, TWIN_RESIDENT_VALID);
  assert_true(info.reachable == 1.0 / 64);
  expect_row3(r);
  twin_array_unref(r);
}

static void test_moves_skip_released_pages(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* one copy: nothing moves */
  twin_array *a = matrix(f->ctx, SMALL_ROWS);
  twin_array *c = column(a, 5);
  twin_array_unref(a);
  assert_int_equal(trim(f->ctx), SMALL_BYTES / 8 * 7);
  size_t held = fixture_stats(f).host_bytes;
  assert_ok(twin_context_stats_reset(f->ctx));
  /* Written on the device: a write-only fill moves nothing first (exact moves, issue 14); the
   * read brings back the column's own bytes, run by run around the released pages, and makes
   * none of those resident again. */
  float v = 2.5f;
  assert_ok(twin_fill(c, &v));
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device, 0);
  assert_int_equal(st.bytes_to_host, 0);
  float got[SMALL_ROWS];
  assert_ok(twin_array_read(c, got, sizeof got));
  for (int i = 0; i < SMALL_ROWS; i++)
    assert_true(got[i] == 2.5f);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host, SMALL_ROWS * sizeof(float));
  assert_int_equal(st.host_bytes, held); /* no released page came back */
  twin_array_unref(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      TWIN_TEST(test_keeping_one_column_returns_seven_eighths),
      TWIN_TEST(test_keeping_one_row_returns_nearly_all),
      TWIN_TEST(test_every_view_keeps_its_data),
      TWIN_TEST(test_lent_memory_is_never_released),
      TWIN_TEST(test_small_buffers_and_bad_input),
      TWIN_TEST(test_as_strided_reaching_released_pages_counts_them_again),
      TWIN_TEST(test_two_threads_trimming_at_once_free_each_page_once),
      TWIN_TEST(test_views_made_while_another_thread_trims_keep_the_count),
      TWIN_TEST(test_the_pressure_order_releases_unreachable_pages),
      TWIN_TEST(test_unreachable_newer_data_keeps_no_device_copy),
      TWIN_TEST(test_the_dirty_map_forgets_what_no_view_reaches),
      TWIN_TEST(test_moves_skip_released_pages),
  };
  return twin_test_run(__FILE__, tests, sizeof tests / sizeof tests[0], false);
}

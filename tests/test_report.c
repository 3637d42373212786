/* What holds memory, and where: twin_context_walk and the printed report, parsed field by
 * field, over buffers of known sizes, states and views; and the leak report when the application
 * drops its last context reference while arrays live: once, to a handler or stderr, freeing
 * nothing they still use. Every case runs on every backend group. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "host_faults.h"

static void host_touch(twin_array *a, twin_access access) {
  void *p;
  assert_ok(twin_host_begin(a, access, &p));
  assert_ok(twin_host_end(a));
}

/* "FILE:LINE" of this file. */
static const char *here(int line) {
  static char site[512];
  snprintf(site, sizeof site, "%s:%d", __FILE__, line);
  return site;
}

/* ---- the walk and the printed report ---- */

typedef struct rec {
  twin_buffer_info info;
  twin_view_info view[4];
} rec;

typedef struct walk {
  rec r[8];
  size_t n, stop_after;
} walk;

static bool collect(const twin_buffer_info *b, void *user) {
  walk *w = user;
  assert_true(w->n < 8);
  rec *r = &w->r[w->n++];
  r->info = *b;
  r->info.view = NULL; /* valid only during the callback: copied below */
  for (size_t i = 0; i < b->views && i < 4; i++)
    r->view[i] = b->view[i];
  return w->stop_after == 0 || w->n < w->stop_after;
}

/* The view of r made at `line`. */
static const twin_view_info *view_at(const rec *r, int line) {
  for (size_t i = 0; i < r->info.views && i < 4; i++)
    if (r->view[i].line == line)
      return &r->view[i];
  print_error("no view made at line %d\n", line);
  fail();
  return NULL;
}

typedef struct layout {
  twin_array *a, *va, *b, *vb, *c;
  int la, lva, lb, lvb, lc, lvc;
} layout;

/* Three buffers of known sizes, states and views:
 * a: f32 64x64 (16384 bytes), written on the host, read and then written (one column) on the
 *    device; its views: a itself and the column, owner "walker";
 * c: i32 300 (1200 bytes) from host data; only a 30-element view is left (10% coverage);
 * b: u8 1000, zeros, never touched; views: b and b[0:100]. */
static void make_layout(twin_fixture *f, layout *l) {
  const size_t sa[] = {64, 64}, sb = 1000;
  twin_array *c;
  l->la = __LINE__ + 1;
  assert_ok(twin_array_new(f->ctx, TWIN_F32, 2, sa, &l->a));
  assert_ok(twin_array_set_owner(l->a, "walker"));
  host_touch(l->a, TWIN_WRITE);
  l->lva = __LINE__ + 1;
  assert_ok(twin_array_index(l->a, 1, 3, &l->va));
  fixture_device_touch(f, l->a, TWIN_READ);
  fixture_device_touch(f, l->va, TWIN_WRITE);
  l->lb = __LINE__ + 1;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, &sb, &l->b));
  l->lvb = __LINE__ + 1;
  assert_ok(twin_array_slice(l->b, (twin_slice[]){{0, 100, 1}}, &l->vb));
  const size_t sc = 300;
  int32_t data[300] = {0};
  l->lc = __LINE__ + 1;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 1, &sc, data, &c));
  l->lvc = __LINE__ + 1;
  assert_ok(twin_array_slice(c, (twin_slice[]){{0, 30, 1}}, &l->c));
  twin_array_unref(c);
}

static void drop_layout(layout *l) {
  twin_array_unref(l->a);
  twin_array_unref(l->va);
  twin_array_unref(l->b);
  twin_array_unref(l->vb);
  twin_array_unref(l->c);
}

/* The residency the layout's buffer a must show on each side. */
static twin_residency a_host(const twin_fixture *f) {
  return f->layout == FIXTURE_SHARED       ? TWIN_RESIDENT_SHARED
         : f->layout == FIXTURE_TWO_COPIES ? TWIN_RESIDENT_STALE
                                           : TWIN_RESIDENT_VALID;
}

static twin_residency a_device(const twin_fixture *f) {
  return f->layout == FIXTURE_SHARED       ? TWIN_RESIDENT_SHARED
         : f->layout == FIXTURE_TWO_COPIES ? TWIN_RESIDENT_VALID
                                           : TWIN_RESIDENT_NONE;
}

static twin_residency c_host(const twin_fixture *f) {
  return f->layout == FIXTURE_SHARED ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_VALID;
}

static twin_residency c_device(const twin_fixture *f) {
  return f->layout == FIXTURE_SHARED ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_NONE;
}

static void test_walk_describes_every_buffer_largest_first(void **state) {
  twin_fixture *f = fixture(state);
  layout l;
  make_layout(f, &l);
  assert_ok(twin_context_finish(f->ctx)); /* no command in flight (TWIN_PIN_IN_FLIGHT) */
  walk w = {.n = 0};
  assert_ok(twin_context_walk(f->ctx, collect, &w));
  assert_int_equal(w.n, 3);
  const rec *a = &w.r[0], *c = &w.r[1], *b = &w.r[2];
  assert_int_equal(a->info.nbytes, 16384);
  assert_int_equal(c->info.nbytes, 1200);
  assert_int_equal(b->info.nbytes, 1000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w.r[i].info.zero_copy, f->layout != FIXTURE_TWO_COPIES);
    assert_string_equal(w.r[i].info.file, __FILE__);
  }

  assert_int_equal(a->info.line, l.la);
  assert_int_equal(a->info.host, a_host(f));
  assert_int_equal(a->info.device, a_device(f));
  assert_int_equal(a->info.views, 2);
  assert_true(a->info.coverage == 1.0);
  /* Spilling's view: a has a device copy exactly on the two-copy path, nothing pins it, and
   * every byte counts as reachable until unreachable bytes are tracked (issue 11 item 2). */
  assert_int_equal(a->info.spill, f->layout == FIXTURE_TWO_COPIES ? TWIN_SPILL_STATE_PRESENT
                                                                  : TWIN_SPILL_STATE_NONE);
  assert_int_equal(a->info.pin, TWIN_PIN_NONE);
  assert_null(a->info.pin_file);
  assert_null(a->info.pin_call);
  assert_true(a->info.reachable == 1.0);
  const twin_view_info *va = view_at(a, l.lva);
  assert_string_equal(va->file, __FILE__);
  assert_string_equal(va->owner, "walker");
  assert_int_equal(va->dtype, TWIN_F32);
  assert_int_equal(va->ndim, 1);
  assert_int_equal(va->shape[0], 64);
  assert_int_equal(va->nbytes, 256);
  assert_int_equal(view_at(a, l.la)->ndim, 2);
  assert_int_equal(view_at(a, l.la)->nbytes, 16384);

  assert_int_equal(c->info.line, l.lc);
  assert_int_equal(c->info.host, c_host(f));
  assert_int_equal(c->info.device, c_device(f));
  assert_int_equal(c->info.views, 1);
  assert_true(fabs(c->info.coverage - 0.1) < 1e-12);
  assert_int_equal(view_at(c, l.lvc)->nbytes, 120);
  assert_string_equal(view_at(c, l.lvc)->owner, "");

  assert_int_equal(b->info.line, l.lb);
  assert_int_equal(b->info.host, TWIN_RESIDENT_NONE); /* never touched: nothing allocated */
  assert_int_equal(b->info.device, TWIN_RESIDENT_NONE);
  assert_int_equal(b->info.views, 2);
  assert_true(b->info.coverage == 1.0); /* 1100 bytes of views over 1000, capped */
  assert_int_equal(view_at(b, l.lvb)->shape[0], 100);

  /* The held-by-views figure is c's buffer alone. */
  assert_int_equal(fixture_stats(f).held_by_views_bytes, 1200);
  /* A callback that returns false stops the walk. */
  walk first = {.stop_after = 1};
  assert_ok(twin_context_walk(f->ctx, collect, &first));
  assert_int_equal(first.n, 1);
  assert_int_equal(first.r[0].info.nbytes, 16384);
  assert_status(twin_context_walk(f->ctx, NULL, NULL), TWIN_ERR_INVALID_ARGUMENT);
  drop_layout(&l);
  walk none = {.n = 0};
  assert_ok(twin_context_walk(f->ctx, collect, &none));
  assert_int_equal(none.n, 0);
}

static const char *residency_text(twin_residency r) {
  static const char *names[] = {"none", "valid", "stale", "shared"};
  return names[r];
}

/* Reads a whole temporary file. */
static void slurp(FILE *tmp, char *out, size_t cap) {
  fflush(tmp);
  rewind(tmp);
  size_t n = fread(out, 1, cap - 1, tmp);
  out[n] = '\0';
}

/* Checks one buffer line of the report: "SIZE UNIT host S device S reachable R% N view(s)
 * covering P% made at FILE:LINE" (reachable is 100% until unreachable bytes are tracked). */
static void expect_buffer_line(char *line, const char *size, twin_residency host,
                               twin_residency device, const char *views, const char *covering,
                               int made) {
  char *tok[16], *save = NULL;
  int n = 0;
  for (char *t = strtok_r(line, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
    tok[n++] = t;
  assert_int_equal(n, 15);
  char got_size[32];
  snprintf(got_size, sizeof got_size, "%s %s", tok[0], tok[1]);
  assert_string_equal(got_size, size);
  assert_string_equal(tok[2], "host");
  assert_string_equal(tok[3], residency_text(host));
  assert_string_equal(tok[4], "device");
  assert_string_equal(tok[5], residency_text(device));
  assert_string_equal(tok[6], "reachable");
  assert_string_equal(tok[7], "100%");
  assert_string_equal(tok[8], views);
  assert_string_equal(tok[10], "covering");
  assert_string_equal(tok[11], covering);
  assert_string_equal(tok[14], here(made));
}

static void test_report_prints_one_line_per_buffer_and_per_view(void **state) {
  twin_fixture *f = fixture(state);
  layout l;
  make_layout(f, &l);
  assert_ok(twin_context_finish(f->ctx)); /* no command in flight (TWIN_PIN_IN_FLIGHT) */
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  twin_context_report(f->ctx, tmp);
  static char text[8192];
  slurp(tmp, text, sizeof text);
  fclose(tmp);

  char *lines[32], *save = NULL;
  int n = 0;
  for (char *t = strtok_r(text, "\n", &save); t && n < 32; t = strtok_r(NULL, "\n", &save))
    lines[n++] = t;
  /* A summary, then each buffer followed by its views: 1 + (1 + 2) + (1 + 1) + (1 + 2). */
  assert_int_equal(n, 9);
  char summary[256];
  snprintf(summary, sizeof summary, "twin: context %s: 3 buffers, 5 arrays; ",
           twin_context_device(f->ctx)->spec);
  assert_int_equal(strncmp(lines[0], summary, strlen(summary)), 0);
  assert_non_null(strstr(lines[0], "; 1.2 KiB held alive by views"));
  /* Views are listed newest first. */
  assert_non_null(strstr(lines[2], "view f32[64] at "));
  assert_non_null(strstr(lines[2], here(l.lva)));
  assert_non_null(strstr(lines[2], "owner \"walker\""));
  assert_non_null(strstr(lines[3], "view f32[64x64] at "));
  assert_non_null(strstr(lines[3], here(l.la)));
  assert_non_null(strstr(lines[5], "view i32[30] at "));
  assert_non_null(strstr(lines[5], here(l.lvc)));
  assert_null(strstr(lines[5], "owner"));
  assert_non_null(strstr(lines[7], "view u8[100] at "));
  assert_non_null(strstr(lines[7], here(l.lvb)));
  assert_non_null(strstr(lines[8], "view u8[1000] at "));
  assert_non_null(strstr(lines[8], here(l.lb)));
  for (int i = 2; i < 9; i += (i == 3 || i == 5) ? 2 : 1)
    assert_int_equal(strncmp(lines[i], "              view ", 19), 0);
  expect_buffer_line(lines[1], "16.0 KiB", a_host(f), a_device(f), "2", "100.0%", l.la);
  expect_buffer_line(lines[4], "1.2 KiB", c_host(f), c_device(f), "1", "10.0%", l.lc);
  expect_buffer_line(lines[6], "1000 B", TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE, "2", "100.0%",
                     l.lb);
  drop_layout(&l);
}

/* ---- the leak report ---- */

static int leak_calls;
static twin_context *leak_ctx;
static size_t leak_buffers_seen;

static bool count_buffers(const twin_buffer_info *b, void *user) {
  (void)b;
  (*(size_t *)user)++;
  return true;
}

static void on_leak(twin_context *ctx, void *user) {
  leak_calls++;
  leak_ctx = ctx;
  assert_ptr_equal(user, &leak_calls);
  leak_buffers_seen = 0;
  assert_ok(twin_context_walk(ctx, count_buffers, &leak_buffers_seen));
}

static void test_leak_handler_runs_once_and_memory_stays_until_the_arrays_go(void **state) {
  twin_fixture *f = fixture(state);
  /* That the last array's unref frees everything is seen through the allocator hooks, and on a
   * device through the array's device memory, destroyed (test_opencl_release.c: the OpenCL
   * context too). */
  static atomic_int gone[8];
  static int runs;
  assert_true(runs < 8);
  atomic_int *destroyed = &gone[runs++];
  host_inject(0);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  assert_ok(twin_context_set_leak_handler(ctx, on_leak, &leak_calls));
  twin_array *a = fixture_i32(ctx, 100, 5);
  if (f->has_device)
    fixture_watch_device(a, TWIN_READ, destroyed);
  twin_stats before = fixture_ctx_stats(ctx);
  leak_calls = 0;
  leak_ctx = NULL;
  twin_context_unref(ctx);
  assert_int_equal(leak_calls, 1);
  assert_ptr_equal(leak_ctx, ctx);
  assert_int_equal(leak_buffers_seen, 1);
  /* Nothing was freed: the array works, and the context lives on through it. */
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.host_bytes, before.host_bytes);
  assert_int_equal(st.device_bytes, before.device_bytes);
  assert_int_equal(st.buffers, 1);
  assert_int_equal(st.host_bytes, 400);
  assert_int_equal(st.device_bytes, f->layout == FIXTURE_TWO_COPIES ? 400 : 0);
  fixture_expect_i32(a, 5);
  int32_t data[100];
  for (int i = 0; i < 100; i++)
    data[i] = 9 + i;
  assert_ok(twin_array_write(a, data, sizeof data));
  fixture_expect_i32(a, 9);
  /* Once: taking and dropping a reference again reports nothing more. */
  twin_context_unref(twin_context_ref(ctx));
  assert_int_equal(leak_calls, 1);
  twin_array_unref(a); /* the last reference: context, buffers and memory all go */
  assert_int_equal(leak_calls, 1);
  if (f->has_device)
    assert_int_equal(atomic_load(destroyed), 1); /* the device memory is destroyed */
  host_restore();
  assert_int_equal(atomic_load(&host_live), 0);
}

static void test_no_leak_report_when_nothing_is_alive(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  assert_ok(twin_context_set_leak_handler(ctx, on_leak, &leak_calls));
  twin_array *a = fixture_i32(ctx, 10, 0);
  twin_array_unref(a);
  leak_calls = 0;
  twin_context_unref(ctx);
  assert_int_equal(leak_calls, 0);
}

static void test_leak_report_goes_to_stderr_without_a_handler(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  const size_t shape[] = {32, 32};
  twin_array *a, *col;
  int line = __LINE__ + 1;
  assert_ok(twin_array_zeros(ctx, TWIN_F64, 2, shape, &a));
  int col_line = __LINE__ + 1;
  assert_ok(twin_array_index(a, 1, 0, &col));
  twin_array_unref(a);
  host_touch(col, TWIN_READ);
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stderr);
  int saved = dup(2);
  assert_true(saved >= 0);
  assert_true(dup2(fileno(tmp), 2) >= 0);
  twin_context_unref(ctx);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  static char text[4096];
  slurp(tmp, text, sizeof text);
  fclose(tmp);
  assert_non_null(strstr(text, "dropped its last reference to context"));
  assert_non_null(strstr(text, ": 1 buffers, 1 arrays; host 8.0 KiB"));
  char want[600];
  snprintf(want, sizeof want, "made at %s\n", here(line));
  assert_non_null(strstr(text, want));
  snprintf(want, sizeof want, "view f64[32] at %s\n", here(col_line));
  assert_non_null(strstr(text, want));
  twin_array_unref(col);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_walk_describes_every_buffer_largest_first),
    TWIN_TEST(test_report_prints_one_line_per_buffer_and_per_view),
    TWIN_TEST(test_leak_handler_runs_once_and_memory_stays_until_the_arrays_go),
    TWIN_TEST(test_no_leak_report_when_nothing_is_alive),
    TWIN_TEST(test_leak_report_goes_to_stderr_without_a_handler),
};

TWIN_TEST_MAIN(tests)

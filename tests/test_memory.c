/* Memory you can see and control: every statistic against known allocation patterns, the walk
 * and the printed report parsed field by field, the leak report, per-owner figures, trim,
 * evict and prefetch, budgets from options and the environment, the device's largest
 * allocation, and failure sweeps over a scripted workload. Every case runs on the host
 * backend, on OpenCL zero-copy (one allocation per buffer, counted as host memory) and on
 * OpenCL with two copies, with the exact numbers each of them must give. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_faults.h"
#include "fixture.h"
#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#endif

/* ---- helpers ---- */

static bool two_copies(const twin_fixture *f) {
  return f->has_device && !f->zero_copy;
}

/* Options that open the group's kind of context (spec as in fixture_open). */
static twin_context_options options_for(const twin_fixture *f, char *device, size_t cap) {
  snprintf(device, cap, "%s", f->spec);
  twin_context_options o = {.device = device};
  char *plus = strstr(device, "+copy");
  if (plus) {
    *plus = '\0';
    o.coherence = TWIN_COHERENCE_COPY;
  }
  return o;
}

static void host_touch(twin_array *a, twin_access access) {
  void *p;
  assert_ok(twin_host_begin(a, access, &p));
  assert_ok(twin_host_end(a));
}

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* "FILE:LINE" of this file. */
static const char *here(int line) {
  static char site[512];
  snprintf(site, sizeof site, "%s:%d", __FILE__, line);
  return site;
}

/* ---- host allocator counting and injection ---- */

/* The runtime's own thread frees a zero-copy block once the commands using its cl_mem are
 * done, through the same hooks: the counters are atomic, and the hooks change only after
 * quiesce(), so no such free is pending then. */
static twin__allocator real_alloc;
static atomic_int alloc_calls;
static int alloc_fail_at;
static atomic_long alloc_live;

static void quiesce(const twin_fixture *f) {
  assert_ok(twin_context_finish(f->ctx));
}

static void *counting_malloc(size_t n) {
  if (atomic_fetch_add(&alloc_calls, 1) + 1 == alloc_fail_at)
    return NULL;
  void *p = real_alloc.malloc_fn(n);
  if (p)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void *counting_aligned(size_t alignment, size_t n) {
  if (atomic_fetch_add(&alloc_calls, 1) + 1 == alloc_fail_at)
    return NULL;
  void *p = real_alloc.aligned_fn(alignment, n);
  if (p)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void counting_free(void *p) {
  atomic_fetch_sub(&alloc_live, 1);
  real_alloc.free_fn(p);
}

static void install_alloc(int fail_at) {
  twin__allocator_copy(&real_alloc, &twin__host_alloc);
  atomic_store(&alloc_calls, 0);
  alloc_fail_at = fail_at;
  atomic_store(&alloc_live, 0);
  twin__host_alloc.malloc_fn = counting_malloc;
  twin__host_alloc.aligned_fn = counting_aligned;
  twin__host_alloc.free_fn = counting_free;
}

static void restore_alloc(void) {
  twin__allocator_set(&real_alloc);
}

/* ---- statistics ---- */

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
  assert_int_equal(st.zero_copy_buffers, f->one_copy ? 1 : 0);
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
  assert_int_equal(st.device_bytes, two_copies(f) ? 4000 : 0);
  assert_int_equal(st.peak_device_bytes, two_copies(f) ? 4000 : 0);
  assert_int_equal(st.bytes_to_device, two_copies(f) ? 4000 : 0);
  assert_int_equal(st.transfers_to_device, two_copies(f) ? 1 : 0);
  assert_int_equal(st.bytes_to_host + st.transfers_to_host, 0);

  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, &nb, &b));
  assert_ok(twin_array_prefetch(b, TWIN_HOST));
  assert_ok(twin_array_new(ctx, TWIN_U8, 1, &n0, &e)); /* empty: it counts no bytes */
  assert_ok(twin_array_prefetch(e, TWIN_HOST));
  assert_ok(twin_array_slice(a, (twin_slice[]){{10, 20, 1}}, &v));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.buffers, 3);
  assert_int_equal(st.arrays, 4);
  assert_int_equal(st.zero_copy_buffers, f->one_copy ? 3 : 0);
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
  assert_int_equal(st.bytes_to_device, two_copies(f) ? 4040 : 0);
  assert_int_equal(st.transfers_to_device, two_copies(f) ? 2 : 0);
  assert_int_equal(st.bytes_to_host, two_copies(f) ? 40 : 0);
  assert_int_equal(st.transfers_to_host, two_copies(f) ? 1 : 0);

  /* A reset starts a new period: peaks from what is live now, movement counts from zero. */
  assert_ok(twin_context_stats_reset(ctx));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.peak_host_bytes, 4000);
  assert_int_equal(st.peak_device_bytes, two_copies(f) ? 4000 : 0);
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
  assert_int_equal(st.peak_device_bytes, two_copies(f) ? 4000 : 0);
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
  assert_int_equal(st.host_bytes, two_copies(f) ? 0 : 256);
  assert_int_equal(st.device_bytes, two_copies(f) ? 256 : 0);
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
  assert_int_equal(al.device_bytes, two_copies(f) ? 1024 : 0);
  assert_int_equal(al.zero_copy_buffers, f->one_copy ? 2 : 0);
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
  return f->zero_copy    ? TWIN_RESIDENT_SHARED
         : two_copies(f) ? TWIN_RESIDENT_STALE
                         : TWIN_RESIDENT_VALID;
}

static twin_residency a_device(const twin_fixture *f) {
  return f->zero_copy    ? TWIN_RESIDENT_SHARED
         : two_copies(f) ? TWIN_RESIDENT_VALID
                         : TWIN_RESIDENT_NONE;
}

static twin_residency c_host(const twin_fixture *f) {
  return f->zero_copy ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_VALID;
}

static twin_residency c_device(const twin_fixture *f) {
  return f->zero_copy ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_NONE;
}

static void test_walk_describes_every_buffer_largest_first(void **state) {
  twin_fixture *f = fixture(state);
  layout l;
  make_layout(f, &l);
  walk w = {.n = 0};
  assert_ok(twin_context_walk(f->ctx, collect, &w));
  assert_int_equal(w.n, 3);
  const rec *a = &w.r[0], *c = &w.r[1], *b = &w.r[2];
  assert_int_equal(a->info.nbytes, 16384);
  assert_int_equal(c->info.nbytes, 1200);
  assert_int_equal(b->info.nbytes, 1000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w.r[i].info.zero_copy, f->one_copy);
    assert_string_equal(w.r[i].info.file, __FILE__);
  }

  assert_int_equal(a->info.line, l.la);
  assert_int_equal(a->info.host, a_host(f));
  assert_int_equal(a->info.device, a_device(f));
  assert_int_equal(a->info.views, 2);
  assert_true(a->info.coverage == 1.0);
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

/* Checks one buffer line of the report: "SIZE UNIT host S device S N view(s) covering P% made
 * at FILE:LINE". */
static void expect_buffer_line(char *line, const char *size, twin_residency host,
                               twin_residency device, const char *views, const char *covering,
                               int made) {
  char *tok[16], *save = NULL;
  int n = 0;
  for (char *t = strtok_r(line, " ", &save); t && n < 16; t = strtok_r(NULL, " ", &save))
    tok[n++] = t;
  assert_int_equal(n, 13);
  char got_size[32];
  snprintf(got_size, sizeof got_size, "%s %s", tok[0], tok[1]);
  assert_string_equal(got_size, size);
  assert_string_equal(tok[2], "host");
  assert_string_equal(tok[3], residency_text(host));
  assert_string_equal(tok[4], "device");
  assert_string_equal(tok[5], residency_text(device));
  assert_string_equal(tok[6], views);
  assert_string_equal(tok[8], "covering");
  assert_string_equal(tok[9], covering);
  assert_string_equal(tok[12], here(made));
}

static void test_report_prints_one_line_per_buffer_and_per_view(void **state) {
  twin_fixture *f = fixture(state);
  layout l;
  make_layout(f, &l);
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

#ifdef TWIN_HAVE_OPENCL
/* Set by the destructor of the array's cl_mem; one flag per run, so that a cl_mem destroyed
 * late cannot touch a later run's. */
static atomic_int mem_gone[8];
static int mem_runs;

static void CL_CALLBACK on_mem_gone(cl_mem mem, void *flag) {
  (void)mem;
  atomic_fetch_add((atomic_int *)flag, 1);
}
#endif

static void test_leak_handler_runs_once_and_memory_stays_until_the_arrays_go(void **state) {
  twin_fixture *f = fixture(state);
  /* That the last array's unref frees everything is seen through the allocator hooks on the
   * host backend, and on a device through the array's cl_mem, destroyed (its destructor run),
   * and the OpenCL context, whose only reference left is the test's. */
  if (!f->has_device)
    install_alloc(0);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  assert_ok(twin_context_set_leak_handler(ctx, on_leak, &leak_calls));
  twin_array *a = fixture_i32(ctx, 100, 5);
#ifdef TWIN_HAVE_OPENCL
  cl_context cl_ctx = twin_context_cl_context(ctx);
  assert_true(mem_runs < 8);
  atomic_int *gone = &mem_gone[mem_runs++];
  if (f->has_device) {
    size_t off;
    cl_mem mem;
    assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
    assert_int_equal(clSetMemObjectDestructorCallback(mem, on_mem_gone, gone), CL_SUCCESS);
    assert_int_equal(clRetainContext(cl_ctx), CL_SUCCESS);
    assert_ok(twin_device_end(a));
  }
#endif
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
  assert_int_equal(st.device_bytes, two_copies(f) ? 400 : 0);
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
  if (!f->has_device) {
    restore_alloc();
    assert_int_equal(atomic_load(&alloc_live), 0);
  }
#ifdef TWIN_HAVE_OPENCL
  if (f->has_device) {
    assert_int_equal(atomic_load(gone), 1); /* the cl_mem is destroyed */
    cl_uint refs = 0;
    assert_int_equal(clGetContextInfo(cl_ctx, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                     CL_SUCCESS);
    assert_int_equal(refs, 1); /* and its context: ours alone */
    assert_int_equal(clReleaseContext(cl_ctx), CL_SUCCESS);
  }
#endif
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
  assert_int_equal(freed, two_copies(f) ? 4000 + 3000 : 0); /* d's device copy is the newest */
  assert_int_equal(st.device_bytes, before.device_bytes - freed);
  assert_int_equal(st.host_bytes, before.host_bytes);
  assert_int_equal(st.peak_device_bytes, before.peak_device_bytes);
  twin_residency h, d;
  assert_ok(twin_array_residency(t.a, &h, &d));
  assert_int_equal(d, two_copies(f)  ? TWIN_RESIDENT_NONE
                      : f->zero_copy ? TWIN_RESIDENT_SHARED
                                     : TWIN_RESIDENT_NONE);
  /* A later device access brings the data back, and says so. */
  fixture_device_touch(f, t.a, TWIN_READ);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_device - before.bytes_to_device, two_copies(f) ? 4000 : 0);
  assert_int_equal(st.transfers_to_device - before.transfers_to_device, two_copies(f) ? 1 : 0);
  assert_int_equal(st.device_bytes, before.device_bytes - (two_copies(f) ? 3000 : 0));
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
  assert_int_equal(freed, two_copies(f) ? 4000 + 3000 + 1000 : 0);
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes, before.host_bytes - freed);
  assert_int_equal(st.device_bytes, before.device_bytes);
  /* Reading on the host moves each trimmed array back, and nothing else. */
  fixture_expect_i32(t.a, 1);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host - before.bytes_to_host, two_copies(f) ? 4000 : 0);
  assert_int_equal(st.transfers_to_host - before.transfers_to_host, two_copies(f) ? 1 : 0);
  assert_int_equal(st.host_bytes, before.host_bytes - (two_copies(f) ? 4000 : 0));
  check_and_drop_trim_set(&t);
  st = fixture_stats(f);
  assert_int_equal(st.bytes_to_host - before.bytes_to_host, two_copies(f) ? 8000 : 0);
}

static void test_trim_skips_copies_in_use(void **state) {
  twin_fixture *f = fixture(state);
  trim_set t;
  make_trim_set(f, &t);
  void *p;
  assert_ok(twin_host_begin(t.b, TWIN_READ, &p)); /* b's host copy is in use */
  size_t freed;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST, &freed));
  assert_int_equal(freed, two_copies(f) ? 4000 + 1000 : 0);
  assert_ok(twin_host_end(t.b));
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST, NULL));
  twin_residency h, d;
  assert_ok(twin_array_residency(t.b, &h, &d));
  assert_int_equal(h, two_copies(f)  ? TWIN_RESIDENT_NONE
                      : f->zero_copy ? TWIN_RESIDENT_SHARED
                                     : TWIN_RESIDENT_VALID);
  assert_status(twin_context_trim(f->ctx, 0, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_context_trim(f->ctx, 4, NULL), TWIN_ERR_INVALID_ARGUMENT);
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
  if (two_copies(f))
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
  twin_residency both = f->zero_copy ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_VALID;
  twin_residency device = f->zero_copy ? TWIN_RESIDENT_SHARED : TWIN_RESIDENT_NONE;
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
  if (!two_copies(f))
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
#ifdef TWIN_HAVE_OPENCL
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(r1, TWIN_READ_WRITE, &mem, &off));
  assert_status(twin_array_evict(a, TWIN_DEVICE), TWIN_ERR_BUSY);
  assert_status(twin_array_prefetch(a, TWIN_HOST), TWIN_ERR_BUSY);
  expect_message_has("device write access");
  assert_ok(twin_device_end(r1));
#endif
  assert_ok(twin_array_evict(a, TWIN_HOST)); /* stale or not, the device holds it all */
  expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_VALID);
  assert_ok(twin_array_read(a, data, sizeof data));
  for (int i = 0; i < 100; i++)
    assert_int_equal(data[i], i);
  twin_array_unref(r0);
  twin_array_unref(r1);
  twin_array_unref(a);
}

/* ---- budgets ---- */

static twin_status open_with_limits(const twin_fixture *f, size_t host, size_t device,
                                    twin_context **ctx) {
  char spec[64];
  twin_context_options o = options_for(f, spec, sizeof spec);
  o.host_memory_limit = host;
  o.device_memory_limit = device;
  return twin_context_new_with(&o, ctx);
}

/* A new u8 array of n bytes, made (for messages and the report) on the caller's line. */
#define NEW_U8(ctx, n, out) assert_ok(twin_array_new((ctx), TWIN_U8, 1, (size_t[]){(n)}, (out)))

static void test_host_budget_trims_or_explains(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(open_with_limits(f, 10000, 0, &ctx));
  twin_array *a, *b, *fits;
  int line = __LINE__ + 1;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 4000, &b);
  NEW_U8(ctx, 2000, &fits);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  fixture_device_touch(f, a, TWIN_READ); /* with two copies, a's host copy is now redundant */
  twin_status s = twin_array_prefetch(b, TWIN_HOST);
  if (two_copies(f)) {
    assert_ok(s); /* a's host copy was trimmed and the allocation retried */
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 4000);
    expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_VALID);
    /* Bringing a back would exceed the budget while b holds its only copy: refused, with b
     * named as the holder; a's data is still there once b is gone. */
    assert_status(twin_array_prefetch(a, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
    expect_message_has("cannot allocate 8000 bytes of host memory");
    expect_message_has("host memory held now 4000 bytes");
    char holder[600];
    snprintf(holder, sizeof holder, "largest holders: 4000 bytes made at %s;", here(line + 1));
    expect_message_has(holder);
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 4000);
    twin_array_unref(b);
    b = NULL;
    assert_ok(twin_array_prefetch(a, TWIN_HOST));
    assert_int_equal(fixture_ctx_stats(ctx).bytes_to_host, 8000);
  } else {
    assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    expect_message_has("cannot allocate 4000 bytes of host memory");
    expect_message_has("host budget 10000 bytes");
    expect_message_has("host memory held now 8000 bytes");
    char holder[600];
    snprintf(holder, sizeof holder, "largest holders: 8000 bytes made at %s;", here(line));
    expect_message_has(holder);
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 8000);
    expect_residency(b, TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE);
    assert_ok(twin_array_prefetch(fits, TWIN_HOST)); /* 10000 exactly is within budget */
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 10000);
    assert_int_equal(fixture_ctx_stats(ctx).peak_host_bytes, 10000);
  }
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(fits);
  twin_context_unref(ctx);
}

static void test_device_budget_trims_or_explains(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_context *ctx;
  assert_ok(open_with_limits(f, 0, 10000, &ctx));
  twin_array *a, *b, *c;
  int line = __LINE__ + 1;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 4000, &b);
  NEW_U8(ctx, 7000, &c);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  fixture_device_touch(f, a, TWIN_READ);  /* with two copies, a's device copy is now redundant */
  fixture_device_touch(f, b, TWIN_WRITE); /* which this trims */
  twin_stats st = fixture_ctx_stats(ctx);
  if (f->zero_copy) {
    /* One allocation per buffer, counted as host memory: the device budget never applies. */
    fixture_device_touch(f, c, TWIN_WRITE);
    st = fixture_ctx_stats(ctx);
    assert_int_equal(st.device_bytes, 0);
    assert_int_equal(st.host_bytes, 19000);
  } else {
    assert_int_equal(st.device_bytes, 4000);
    expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
    /* b holds the only copy of its data on the device: nothing left to trim for c. */
#ifdef TWIN_HAVE_OPENCL
    cl_mem mem = NULL;
    size_t off;
    assert_status(twin_device_begin(c, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    assert_null(mem);
#endif
    expect_message_has("cannot allocate 7000 bytes of device memory");
    expect_message_has("device budget 10000 bytes");
    expect_message_has("device memory held now 4000 bytes");
    char holder[600];
    assert_int_equal(fixture_ctx_stats(ctx).device_bytes, 4000);
    expect_residency(c, TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE);
    snprintf(holder, sizeof holder, "largest holders: 4000 bytes made at %s;", here(line + 1));
    expect_message_has(holder);
    assert_null(strstr(twin_last_error(), "8000 bytes made")); /* a holds no device memory */
  }
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);
}

/* Opens the group's kind of context with one variable set, then unsets it. */
static twin_status open_with_env(const twin_fixture *f, const char *name, const char *value,
                                 twin_context **ctx) {
  setenv(name, value, 1);
  twin_status s = fixture_open(f->spec, ctx);
  unsetenv(name);
  return s;
}

static void test_budgets_from_the_environment(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(open_with_env(f, "TWIN_HOST_MEMORY_LIMIT", "10K", &ctx));
  twin_array *a, *b, *c;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 2241, &b);
  NEW_U8(ctx, 2240, &c);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_status(twin_array_prefetch(b, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message_has("host budget 10240 bytes");
  assert_ok(twin_array_prefetch(c, TWIN_HOST)); /* 10240 exactly */
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);

  assert_ok(open_with_env(f, "TWIN_HOST_MEMORY_LIMIT", "1m", &ctx));
  NEW_U8(ctx, 1 << 20, &a);
  NEW_U8(ctx, 1, &b);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_status(twin_array_prefetch(b, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message_has("host budget 1048576 bytes");
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);

  if (two_copies(f)) {
    assert_ok(open_with_env(f, "TWIN_DEVICE_MEMORY_LIMIT", "6144", &ctx));
    NEW_U8(ctx, 6144, &a);
    NEW_U8(ctx, 1, &b);
    fixture_device_touch(f, a, TWIN_WRITE);
#ifdef TWIN_HAVE_OPENCL
    cl_mem mem;
    size_t off;
    assert_status(twin_device_begin(b, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    expect_message_has("device budget 6144 bytes");
#endif
    twin_array_unref(a);
    twin_array_unref(b);
    twin_context_unref(ctx);
  }

  /* An option wins over the environment. */
  setenv("TWIN_HOST_MEMORY_LIMIT", "1K", 1);
  twin_status s = open_with_limits(f, 10000, 0, &ctx);
  unsetenv("TWIN_HOST_MEMORY_LIMIT");
  assert_ok(s);
  NEW_U8(ctx, 8000, &a);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  twin_array_unref(a);
  twin_context_unref(ctx);

  /* Empty means unset. */
  assert_ok(open_with_env(f, "TWIN_DEVICE_MEMORY_LIMIT", "", &ctx));
  twin_context_unref(ctx);
}

static void test_malformed_limits_are_invalid(void **state) {
  twin_fixture *f = fixture(state);
  static const char *bad[] = {
      "12Q", "-5", "K", "1.5G", "10KB", " 5", "0x10", "99999999999999999999", "17179869184G"};
  static const char *names[] = {"TWIN_HOST_MEMORY_LIMIT", "TWIN_DEVICE_MEMORY_LIMIT"};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      twin_context *ctx = (twin_context *)&ctx;
      assert_status(open_with_env(f, names[k], bad[i], &ctx), TWIN_ERR_INVALID_ARGUMENT);
      assert_ptr_equal(ctx, (twin_context *)&ctx);
      expect_message_has(names[k]);
      char quoted[64];
      snprintf(quoted, sizeof quoted, "\"%s\"", bad[i]);
      expect_message_has(quoted);
    }
}

static void test_allocation_above_the_device_limit_is_refused_up_front(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  uint64_t limit = twin_context_device(f->ctx)->max_alloc_bytes;
  if (limit >= PTRDIFF_MAX / 2)
    skip();
  const size_t n = (size_t)limit + 1;
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, &n, &a)); /* lazy: nothing allocated */
  char asked[64];
  snprintf(asked, sizeof asked, "%zu bytes exceed", n);
  assert_status(twin_array_prefetch(a, TWIN_DEVICE), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  expect_message_has("CL_DEVICE_MAX_MEM_ALLOC_SIZE");
  expect_message_has(asked);
  if (f->zero_copy) { /* one allocation: the host side is refused too */
    void *p = NULL;
    assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    expect_message_has("CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    assert_null(p);
  }
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes, base.host_bytes);
  assert_int_equal(st.device_bytes, base.device_bytes);
  assert_int_equal(st.peak_device_bytes, base.peak_device_bytes);
  twin_array_unref(a);
}

/* ---- failure sweeps over a scripted workload ---- */

typedef struct work {
  twin_array *a, *v, *c, *d;
  int32_t a0; /* what a[0] holds by now */
} work;

/* Creates an array from host data, a strided view, a copy of the view (a kernel on OpenCL),
 * uses the copy on the device, writes the base on the host, moves the copy's data between
 * sides with prefetch and evict, makes one more array, trims, and reads everything back;
 * stops at the first failure. With two copies, two allocations find a redundant copy to trim
 * when they fail: the copy's device memory in the second prefetch (the base's device copy
 * is redundant then) and the last array's host memory (the copy's host copy is). */
static twin_status workload(const twin_fixture *f, work *w) {
  int32_t src[64], got[64];
  for (int i = 0; i < 64; i++)
    src[i] = 100 + i;
  const size_t shape[] = {64};
  twin_status s = twin_array_from_host(f->ctx, TWIN_I32, 1, shape, src, &w->a);
  if (s != TWIN_OK)
    return s;
  w->a0 = 100;
  if ((s = twin_array_slice(w->a, (twin_slice[]){{8, 40, 2}}, &w->v)) != TWIN_OK)
    return s;
  if ((s = twin_array_copy(w->v, &w->c)) != TWIN_OK)
    return s;
#ifdef TWIN_HAVE_OPENCL
  if (f->has_device) {
    cl_mem mem;
    size_t off;
    if ((s = twin_device_begin(w->c, TWIN_READ, &mem, &off)) != TWIN_OK)
      return s;
    assert_ok(twin_device_end(w->c));
  }
#endif
  int32_t *p;
  if ((s = twin_host_begin(w->a, TWIN_READ_WRITE, (void **)&p)) != TWIN_OK)
    return s;
  p[0] = -1;
  w->a0 = -1;
  if ((s = twin_host_end(w->a)) != TWIN_OK)
    return s;
  if ((s = twin_array_prefetch(w->c, TWIN_HOST)) != TWIN_OK)
    return s;
  if (two_copies(f)) {
    assert_ok(twin_array_evict(w->c, TWIN_DEVICE));
    if ((s = twin_array_prefetch(w->c, TWIN_DEVICE)) != TWIN_OK)
      return s;
  }
  const size_t dshape[] = {32};
  if ((s = twin_array_from_host(f->ctx, TWIN_I32, 1, dshape, src, &w->d)) != TWIN_OK)
    return s;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST | TWIN_TRIM_DEVICE, NULL));
  if ((s = twin_array_read(w->c, got, 16 * sizeof *got)) != TWIN_OK)
    return s;
  for (int i = 0; i < 16; i++)
    assert_int_equal(got[i], 108 + 2 * i);
  if ((s = twin_array_read(w->a, got, sizeof got)) != TWIN_OK)
    return s;
  assert_int_equal(got[0], -1);
  return TWIN_OK;
}

/* Checks that what a (partial) workload made holds the right data, then drops it. */
static void check_and_drop_work(work *w) {
  int32_t got[64];
  if (w->a) {
    assert_ok(twin_array_read(w->a, got, sizeof got));
    assert_int_equal(got[0], w->a0);
    for (int i = 1; i < 64; i++)
      assert_int_equal(got[i], 100 + i);
  }
  if (w->v) {
    assert_ok(twin_array_read(w->v, got, 16 * sizeof *got));
    for (int i = 0; i < 16; i++)
      assert_int_equal(got[i], 108 + 2 * i);
  }
  if (w->c) {
    assert_ok(twin_array_read(w->c, got, 16 * sizeof *got));
    for (int i = 0; i < 16; i++)
      assert_int_equal(got[i], 108 + 2 * i);
  }
  if (w->d) {
    assert_ok(twin_array_read(w->d, got, 32 * sizeof *got));
    for (int i = 0; i < 32; i++)
      assert_int_equal(got[i], 100 + i);
  }
  twin_array_unref(w->d);
  twin_array_unref(w->c);
  twin_array_unref(w->v);
  twin_array_unref(w->a);
}

static void expect_same_live(const twin_fixture *f, const twin_stats *base) {
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays, base->arrays);
  assert_int_equal(st.buffers, base->buffers);
  assert_int_equal(st.host_bytes, base->host_bytes);
  assert_int_equal(st.device_bytes, base->device_bytes);
}

/* An array the sweeps must never disturb: held on the host only, so no trim can free it. */
static twin_array *sweep_setup(twin_fixture *f, twin_stats *base) {
  twin_array *keep = fixture_i32(f->ctx, 50, 7);
  work w = {0};
  assert_ok(workload(f, &w)); /* builds the kernels once, outside the sweep */
  check_and_drop_work(&w);
  *base = fixture_stats(f);
  return keep;
}

static void test_host_allocation_failure_sweep(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base;
  twin_array *keep = sweep_setup(f, &base);
  quiesce(f);
  install_alloc(0);
  work w = {0};
  assert_ok(workload(f, &w));
  quiesce(f);
  restore_alloc();
  int calls = atomic_load(&alloc_calls); /* host allocations of one clean run */
  check_and_drop_work(&w);
  int failures = 0, recovered = 0, n;
  for (n = 1; n < 200; n++) {
    memset(&w, 0, sizeof w);
    quiesce(f);
    install_alloc(n);
    twin_status s = workload(f, &w);
    quiesce(f);
    restore_alloc();
    if (s == TWIN_OK) {
      check_and_drop_work(&w);
      if (atomic_load(&alloc_calls) < n)
        break;     /* no call was the Nth: each has been failed once */
      recovered++; /* a redundant copy was trimmed and the allocation retried */
      continue;
    }
    failures++;
    if (s != TWIN_ERR_OUT_OF_HOST_MEMORY)
      print_error("n = %d: %s\n", n, twin_last_error());
    assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    assert_int_equal(atomic_load(&alloc_calls), n); /* the failure stopped the workload */
    expect_message_has("TWIN_ERR_OUT_OF_HOST_MEMORY: ");
    check_and_drop_work(&w);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7);
  }
  assert_int_equal(failures + recovered, calls);
  assert_int_equal(n, calls + 1);
  /* The last array's host memory finds the copy's host copy to trim (two copies only). */
  assert_int_equal(recovered, two_copies(f) ? 1 : 0);
  /* Buffer, array and view objects, host copies, bookkeeping of the copy: at least 9. */
  assert_true(calls >= 9);
  expect_same_live(f, &base);
  twin_array_unref(keep);
  quiesce(f); /* before the teardown restores the hooks */
}

#ifdef TWIN_HAVE_OPENCL

static void cl_wrap(int fail_at) {
  cl_inject(fail_at, CL_OUT_OF_RESOURCES);
  twin__cl.clCreateBuffer = fault_create_buffer;
  twin__cl.clSetMemObjectDestructorCallback = fault_destructor;
  twin__cl.clEnqueueWriteBuffer = fault_write_buffer;
  twin__cl.clEnqueueReadBuffer = fault_read_buffer;
  twin__cl.clEnqueueFillBuffer = fault_fill_buffer;
  twin__cl.clEnqueueCopyBuffer = fault_copy_buffer;
  twin__cl.clEnqueueMapBuffer = fault_map;
  twin__cl.clEnqueueUnmapMemObject = fault_unmap;
  twin__cl.clEnqueueMigrateMemObjects = fault_migrate;
  twin__cl.clSetKernelArg = fault_set_arg;
  twin__cl.clEnqueueNDRangeKernel = fault_launch;
}

#endif /* TWIN_HAVE_OPENCL */

static void test_opencl_failure_sweep(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_stats base;
  twin_array *keep = sweep_setup(f, &base);
  work w = {0};
  cl_wrap(0);
  assert_ok(workload(f, &w));
  twin__cl = twin__cl_real;
  int calls = cl_calls; /* wrapped OpenCL calls of one clean run */
  check_and_drop_work(&w);
  cl_seen[0] = '\0';
  int failures = 0, recovered = 0, n;
  for (n = 1; n < 200; n++) {
    memset(&w, 0, sizeof w);
    cl_wrap(n);
    twin_status s = workload(f, &w);
    twin__cl = twin__cl_real;
    if (s == TWIN_OK) {
      check_and_drop_work(&w);
      if (cl_calls < n)
        break;
      recovered++;
      continue;
    }
    failures++;
    if (s != TWIN_ERR_OUT_OF_DEVICE_MEMORY)
      print_error("n = %d (%s): %s\n", n, cl_failed, twin_last_error());
    assert_int_equal(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    assert_non_null(cl_failed);
    expect_message_has(cl_failed);
    check_and_drop_work(&w);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7);
  }
  assert_int_equal(failures + recovered, calls);
  assert_int_equal(n, calls + 1);
  /* With two copies, the copy's device memory in the second prefetch finds the base's device
   * copy to trim, after either of its two calls fails. */
  assert_int_equal(recovered, two_copies(f) ? 2 : 0);
  /* Zero-copy wraps host blocks and maps them for host access; two copies (on a device that
   * shares host memory, wrapped blocks too) move data with reads and writes. Both run the
   * copy kernel. */
  const char *expected = f->zero_copy
                             ? "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueMapBuffer clEnqueueUnmapMemObject clSetKernelArg "
                               "clEnqueueNDRangeKernel "
                             : "clCreateBuffer clSetMemObjectDestructorCallback "
                               "clEnqueueWriteBuffer clSetKernelArg clEnqueueNDRangeKernel "
                               "clEnqueueReadBuffer ";
  if (strcmp(cl_seen, expected) != 0)
    print_error("failed calls: %s\n", cl_seen);
  assert_string_equal(cl_seen, expected);
  expect_same_live(f, &base);
  twin_array_unref(keep);
  quiesce(f);
#endif
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_stats_follow_allocations_exactly),
    TWIN_TEST(test_held_by_views_is_the_numpy_trap),
    TWIN_TEST(test_held_by_views_is_exact_for_odd_sizes),
    TWIN_TEST(test_owner_stats_count_views_and_shared_buffers),
    TWIN_TEST(test_walk_describes_every_buffer_largest_first),
    TWIN_TEST(test_report_prints_one_line_per_buffer_and_per_view),
    TWIN_TEST(test_leak_handler_runs_once_and_memory_stays_until_the_arrays_go),
    TWIN_TEST(test_no_leak_report_when_nothing_is_alive),
    TWIN_TEST(test_leak_report_goes_to_stderr_without_a_handler),
    TWIN_TEST(test_trim_device_frees_exactly_the_redundant_device_copies),
    TWIN_TEST(test_trim_both_frees_host_copies_first),
    TWIN_TEST(test_trim_skips_copies_in_use),
    TWIN_TEST(test_evict_and_prefetch_on_the_host_backend_and_zero_copy),
    TWIN_TEST(test_evict_and_prefetch_with_two_copies),
    TWIN_TEST(test_host_budget_trims_or_explains),
    TWIN_TEST(test_device_budget_trims_or_explains),
    TWIN_TEST(test_budgets_from_the_environment),
    TWIN_TEST(test_malformed_limits_are_invalid),
    TWIN_TEST(test_allocation_above_the_device_limit_is_refused_up_front),
    TWIN_TEST(test_host_allocation_failure_sweep),
    TWIN_TEST(test_opencl_failure_sweep),
};

TWIN_TEST_MAIN(tests)

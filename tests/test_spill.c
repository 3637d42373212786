/* Spilling under device memory pressure (two copies: opencl+copy and fake+copy): a device copy
 * spilled to make room writes back exactly its device-newer bytes, its data survives and comes
 * back moving exactly what the host holds newer; copies in use (an open device access, a
 * DLPack export, a kernel in flight) are never taken while an idle one is left, and the error
 * that follows when nothing can move names each holder and why; the host budget bounds the
 * write-back; TWIN_SPILL and the option; the report and the walk. Where buffers are one copy
 * (zero-copy, the host backend), spilling has nothing to do. Every case runs on every backend
 * group and skips where it does not apply. */
#include <dlpack/dlpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define N 1024                   /* elements of every array here */
#define NB (N * sizeof(int32_t)) /* its bytes: 4096 */

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* "FILE:LINE" of this file (four calls may share one message). */
static const char *here(int line) {
  static char site[4][256];
  static int next;
  char *s = site[next++ % 4];
  snprintf(s, sizeof site[0], "%s:%d", __FILE__, line);
  return s;
}

static twin_context *open_with(const twin_fixture *f, size_t host, size_t device,
                               twin_spill spill) {
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  o.host_memory_limit = host;
  o.device_memory_limit = device;
  o.spill = spill;
  twin_context *ctx;
  assert_ok(twin_context_new_with(&o, &ctx));
  return ctx;
}

/* An i32 array of N elements holding first + i on the host, made on the caller's line. */
#define NEW_I32(ctx, first, out)                                                                   \
  do {                                                                                             \
    int32_t data_[N];                                                                              \
    for (int i_ = 0; i_ < N; i_++)                                                                 \
      data_[i_] = (first) + i_;                                                                    \
    assert_ok(twin_array_from_host((ctx), TWIN_I32, 1, (size_t[]){N}, data_, (out)));              \
  } while (0)

/* A new, uninitialised i32 array of N elements, made on the caller's line. */
#define NEW_EMPTY(ctx, out) assert_ok(twin_array_new((ctx), TWIN_I32, 1, (size_t[]){N}, (out)))

/* Writes first + i into every element of a (any length) on the device. */
static void device_write_i32(twin_array *a, int first) {
  int32_t data[N];
  size_t n = twin_array_size(a);
  for (size_t i = 0; i < n; i++)
    data[i] = first + (int32_t)i;
  fixture_device_write(a, TWIN_WRITE, data);
}

/* a[lo:hi], a view. */
static twin_array *slice(twin_array *a, ptrdiff_t lo, ptrdiff_t hi) {
  twin_array *v;
  assert_ok(twin_array_slice(a, (twin_slice[]){{lo, hi, 1}}, &v));
  return v;
}

static void expect_residency(twin_array *a, twin_residency host, twin_residency device) {
  twin_residency h = 99, d = 99;
  assert_ok(twin_array_residency(a, &h, &d));
  assert_int_equal(h, host);
  assert_int_equal(d, device);
}

/* The walk's record of the buffer made at `line` of this file. */
static twin_buffer_info walk_find(twin_context *ctx, int line) {
  return fixture_walk_find(ctx, "test_spill.c", line);
}

/* The device's contents of a whole i32 array, read by the application (not counted). */
static void expect_device_i32(twin_array *a, const int32_t *want) {
  int32_t got[N];
  fixture_device_read(a, got);
  assert_memory_equal(got, want, twin_array_nbytes(a));
}

/* ---- spilled data, and the bytes moved ---- */

static void test_spill_moves_exactly_the_device_newer_bytes_and_keeps_the_data(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip(); /* nothing to spill where a buffer is one copy */
  twin_context *ctx = open_with(f, 0, 2 * NB, TWIN_SPILL_AUTO);
  twin_array *a, *b, *c, *d;
  /* a: host data, of which 200 elements are then written on the device (800 bytes newer there);
   * b: zeros never on the host, its first 250 elements written on the device (1000 bytes). */
  int la = __LINE__ + 1;
  NEW_I32(ctx, 0, &a);
  twin_array *av = slice(a, 100, 300);
  device_write_i32(av, 5000);
  twin_array_unref(av);
  int lb = __LINE__ + 1;
  assert_ok(twin_array_zeros(ctx, TWIN_I32, 1, (size_t[]){N}, &b));
  twin_array *bv = slice(b, 0, 250);
  device_write_i32(bv, 7000);
  twin_array_unref(bv);
  assert_ok(twin_context_stats_reset(ctx));

  /* c needs a's room: a is the least recently used; exactly its 800 device-newer bytes move. */
  NEW_EMPTY(ctx, &c);
  device_write_i32(c, 9000);
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.spill_count, 1);
  assert_int_equal(st.spilled_bytes, 800);
  assert_int_equal(st.spill_freed_bytes, NB);
  assert_int_equal(st.bytes_to_host, 800);
  assert_int_equal(st.transfers_to_host, 1);
  assert_int_equal(st.bytes_to_device, 0);
  assert_int_equal(st.pressure_events, 1);
  assert_int_equal(st.pressure_failures, 0);
  assert_int_equal(st.device_bytes, 2 * NB);
  expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
  assert_int_equal(walk_find(ctx, la).spill, TWIN_SPILL_STATE_SPILLED);
  assert_int_equal(walk_find(ctx, lb).spill, TWIN_SPILL_STATE_PRESENT);

  /* d needs b's room: its 1000 bytes move, into a host copy made for them. */
  NEW_EMPTY(ctx, &d);
  device_write_i32(d, 11000);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.spill_count, 2);
  assert_int_equal(st.spilled_bytes, 1800);
  assert_int_equal(st.bytes_to_host, 1800);
  assert_int_equal(st.host_bytes, 2 * NB); /* a's and b's host copies */

  /* Both read back right on the host, moving nothing more. */
  int32_t want_a[N], want_b[N], got[N];
  for (int i = 0; i < N; i++) {
    want_a[i] = i >= 100 && i < 300 ? 5000 + i - 100 : i;
    want_b[i] = i < 250 ? 7000 + i : 0;
  }
  assert_ok(twin_array_read(a, got, NB));
  assert_memory_equal(got, want_a, NB);
  assert_ok(twin_array_read(b, got, NB));
  assert_memory_equal(got, want_b, NB);
  assert_int_equal(fixture_ctx_stats(ctx).bytes_to_host, 1800);

  /* Back on the device, each moves exactly what its host copy holds newer: b the 1000 bytes
   * written back (spilling c, whole: only its device copy held it), then a all of it (its host
   * copy existed, so none of a new device copy's first content matches it); for a, trim comes
   * first and frees b's device copy, redundant now. */
  assert_ok(twin_context_stats_reset(ctx));
  expect_device_i32(b, want_b);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.bytes_to_device, 1000);
  assert_int_equal(st.spilled_bytes, NB);
  assert_int_equal(walk_find(ctx, lb).spill, TWIN_SPILL_STATE_PRESENT);
  expect_device_i32(a, want_a);
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.bytes_to_device, 1000 + NB);
  assert_int_equal(st.pressure_trimmed_bytes, NB);
  assert_int_equal(st.spilled_bytes, NB);
  assert_int_equal(st.spill_count, 1);
  assert_int_equal(walk_find(ctx, lb).spill, TWIN_SPILL_STATE_NONE); /* trimmed, not spilled */
  /* c and d came through it too. */
  for (int i = 0; i < N; i++)
    want_a[i] = 9000 + i;
  assert_ok(twin_array_read(c, got, NB));
  assert_memory_equal(got, want_a, NB);
  fixture_expect_i32(d, 11000);
  /* A new period starts the pressure counters from 0. */
  assert_ok(twin_context_stats_reset(ctx));
  st = fixture_ctx_stats(ctx);
  assert_int_equal(st.spilled_bytes + st.spill_count + st.spill_freed_bytes + st.pressure_events,
                   0);
  twin_array *all[] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    twin_array_unref(all[i]);
  twin_context_unref(ctx);
}

/* ---- copies in use stay; the error names why ---- */

static void test_spill_never_takes_a_copy_in_use_and_the_error_says_why(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip();
  twin_context *ctx = open_with(f, 0, 3 * NB, TWIN_SPILL_AUTO);
  twin_array *a, *e, *b, *c, *d;
  void *mem;
  size_t off;
  /* The least recently used copies are in use: a has a device access open, e is exported. */
  int la = __LINE__ + 1;
  NEW_I32(ctx, 0, &a);
  int la_open = __LINE__ + 1;
  assert_ok(fixture_device_begin(a, TWIN_READ_WRITE, &mem, &off));
  int le = __LINE__ + 1;
  NEW_I32(ctx, 100, &e);
  struct DLManagedTensor *t;
  int le_export = __LINE__ + 1;
  assert_ok(fixture_to_dlpack_device(e, TWIN_READ, &t));
  int lb = __LINE__ + 1;
  NEW_EMPTY(ctx, &b);
  device_write_i32(b, 200);
  /* c needs room: b goes, although it is the most recently used. */
  int lc = __LINE__ + 1;
  NEW_EMPTY(ctx, &c);
  device_write_i32(c, 300);
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 1);
  expect_residency(b, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
  expect_residency(a, TWIN_RESIDENT_STALE, TWIN_RESIDENT_VALID);
  expect_residency(e, TWIN_RESIDENT_VALID, TWIN_RESIDENT_VALID);

  /* With c in use too, d cannot fit: the error names every holder and why it stays. */
  int lc_open = __LINE__ + 1;
  assert_ok(fixture_device_begin(c, TWIN_READ, &mem, &off));
  NEW_EMPTY(ctx, &d);
  assert_status(fixture_device_begin(d, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  expect_message_has("cannot allocate 4096 bytes of device memory (");
  expect_message_has("trimmed redundant copies (0 bytes freed), spilled 0 device copies (0 "
                     "bytes freed, 0 bytes written back), released unreachable host pages (0 "
                     "bytes) and retried; device budget 12288 bytes; device memory held now "
                     "12288 bytes; largest holders:");
  char holder[2048];
  snprintf(holder, sizeof holder,
           "4096 bytes made at %s (a device write access to this buffer is still open, begun at "
           "%s by twin_device_begin);",
           here(la), here(la_open));
  expect_message_has(holder);
  snprintf(holder, sizeof holder,
           "4096 bytes made at %s (a device read access to this buffer is still open, begun at "
           "%s by twin_array_to_dlpack_opencl for a DLPack export, until its deleter runs);",
           here(le), here(le_export));
  expect_message_has(holder);
  snprintf(holder, sizeof holder,
           "4096 bytes made at %s (a device read access to this buffer is still open, begun at "
           "%s by twin_device_begin);",
           here(lc), here(lc_open));
  expect_message_has(holder);
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.pressure_failures, 1);
  assert_int_equal(st.spill_count, 1);

  /* The walk and the report say the same. */
  twin_buffer_info ia = walk_find(ctx, la), ie = walk_find(ctx, le), ib = walk_find(ctx, lb);
  assert_int_equal(ia.pin, TWIN_PIN_ACCESS);
  assert_string_equal(ia.pin_file, __FILE__);
  assert_int_equal(ia.pin_line, la_open);
  assert_string_equal(ia.pin_call, "twin_device_begin");
  assert_int_equal(ie.pin, TWIN_PIN_EXPORT);
  assert_int_equal(ie.pin_line, le_export);
  assert_string_equal(ie.pin_call, "twin_array_to_dlpack_opencl");
  assert_int_equal(ib.pin, TWIN_PIN_NONE);
  assert_int_equal(ib.spill, TWIN_SPILL_STATE_SPILLED);
  assert_int_equal(ib.device, TWIN_RESIDENT_NONE);
  assert_true(ib.reachable == 1.0);
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  twin_context_report(ctx, tmp);
  static char text[8192];
  fflush(tmp);
  rewind(tmp);
  text[fread(text, 1, sizeof text - 1, tmp)] = '\0';
  fclose(tmp);
  snprintf(holder, sizeof holder,
           "pinned: a device access is open, begun at %s by twin_device_begin\n", here(la_open));
  assert_non_null(strstr(text, holder));
  snprintf(
      holder, sizeof holder,
      "pinned: a DLPack kDLOpenCL export holds it, made at %s by twin_array_to_dlpack_opencl\n",
      here(le_export));
  assert_non_null(strstr(text, holder));
  assert_non_null(strstr(text, "host valid  device spilled  reachable 100%"));
  assert_non_null(strstr(text, "1 device copies spilled, writing back 4.0 KiB"));

  /* Once they are free, d fits, and nothing was lost. */
  assert_ok(fixture_device_end(c));
  assert_ok(fixture_device_end(a));
  t->deleter(t);
  device_write_i32(d, 400);
  fixture_expect_i32(a, 0);
  fixture_expect_i32(e, 100);
  fixture_expect_i32(b, 200);
  fixture_expect_i32(c, 300);
  fixture_expect_i32(d, 400);
  twin_array *all[] = {a, e, b, c, d};
  for (int i = 0; i < 5; i++)
    twin_array_unref(all[i]);
  twin_context_unref(ctx);
}

/* ---- a kernel in flight ---- */

/* Spins `iters` steps of a 32-bit LCG in every work item, then adds 1 to its element (1000 if
 * the device's value differs from the host's, which the loop needs to be kept). */
static const char spin_source[] =
    "__kernel void spin(TWIN_ARRAY(__global int, x), int iters, uint expected) {\n"
    "  size_t i = get_global_id(0);\n"
    "  uint v = 1u + (uint)(i & 0u);\n"
    "  for (int k = 0; k < iters; k++)\n"
    "    v = v * 1103515245u + 12345u;\n"
    "  TWIN_AT(x, i) += v == expected ? 1 : 1000;\n"
    "}\n";

enum { SPIN_ITERS = 400000 }; /* about a second on PoCL's 2-core CPU device */

static void spin(twin_kernel *k, twin_array *a) {
  uint32_t v = 1;
  for (int i = 0; i < SPIN_ITERS; i++)
    v = v * 1103515245u + 12345u;
  twin_arg args[] = {twin_arg_array(a, TWIN_READ_WRITE), twin_arg_i32(SPIN_ITERS), twin_arg_u32(v)};
  assert_ok(twin_kernel_launch(k, 1, (size_t[]){N}, NULL, 3, args));
}

static bool in_flight(twin_array *a) {
  twin_context *ctx = twin_array_context(a);
  return ctx->ops->dev_busy(ctx, &a->buf->track);
}

/* A copy with a kernel in flight is taken only when no idle one is left, and then after the
 * kernel: its data is the kernel's. */
static void test_spill_takes_a_copy_with_a_kernel_in_flight_only_last(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES || !f->opencl)
    skip(); /* OpenCL C; the fake device completes every command before it returns */
  twin_context *ctx = open_with(f, 0, 2 * NB, TWIN_SPILL_AUTO);
  twin_program *p;
  twin_kernel *k;
  assert_ok(twin_program_new(ctx, spin_source, NULL, &p));
  assert_ok(twin_kernel_new(p, "spin", &k));
  twin_array *a, *b, *c, *d;
  NEW_I32(ctx, 0, &a);
  NEW_EMPTY(ctx, &b);
  device_write_i32(b, 100);
  spin(k, a);                                     /* a: used before b ... */
  assert_ok(twin_array_prefetch(b, TWIN_DEVICE)); /* ... which is used now, queueing nothing */
  assert_true(in_flight(a));
  assert_false(in_flight(b));
  NEW_EMPTY(ctx, &c);
  device_write_i32(c, 200); /* needs room: b goes, not a, the least recently used */
  expect_residency(b, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
  twin_residency h, dv;
  assert_ok(twin_array_residency(a, &h, &dv));
  assert_int_equal(dv, TWIN_RESIDENT_VALID);
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 1);
  /* Both copies busy: the least recently used goes, once its kernel is done. */
  spin(k, a);
  spin(k, c);
  assert_true(in_flight(a) && in_flight(c));
  NEW_EMPTY(ctx, &d);
  device_write_i32(d, 300);
  expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 2);
  assert_int_equal(fixture_ctx_stats(ctx).spilled_bytes, NB + NB); /* b's and a's, whole */
  fixture_expect_i32(a, 2);
  fixture_expect_i32(b, 100);
  fixture_expect_i32(c, 201);
  fixture_expect_i32(d, 300);
  twin_array *all[] = {a, b, c, d};
  for (int i = 0; i < 4; i++)
    twin_array_unref(all[i]);
  twin_kernel_unref(k);
  twin_program_unref(p);
  twin_context_unref(ctx);
}

/* ---- the host budget ---- */

static void test_spill_respects_the_host_budget(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip();
  twin_context *ctx = open_with(f, NB, NB, TWIN_SPILL_AUTO);
  twin_array *a, *h, *b;
  /* a lives on the device only; h fills the host budget. */
  int la = __LINE__ + 1;
  NEW_EMPTY(ctx, &a);
  device_write_i32(a, 50);
  NEW_I32(ctx, 0, &h);
  NEW_EMPTY(ctx, &b);
  void *mem;
  size_t off;
  assert_status(fixture_device_begin(b, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  expect_message_has("spilled 0 device copies (0 bytes freed, 0 bytes written back)");
  char holder[600];
  snprintf(holder, sizeof holder,
           "largest holders: 4096 bytes made at %s (the host cannot take its 4096-byte "
           "write-back);",
           here(la));
  expect_message_has(holder);
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.spill_count, 0);
  assert_int_equal(st.host_bytes, NB);
  assert_int_equal(st.device_bytes, NB);
  int32_t want[N];
  for (int i = 0; i < N; i++)
    want[i] = 50 + i;
  expect_device_i32(a, want); /* still there, on the device */
  /* With room on the host, it goes. */
  twin_array_unref(h);
  device_write_i32(b, 60);
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 1);
  assert_int_equal(fixture_ctx_stats(ctx).spilled_bytes, NB);
  fixture_expect_i32(a, 50);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);
}

/* ---- the policy ---- */

static void test_spill_policy_from_the_option_and_TWIN_SPILL(void **state) {
  twin_fixture *f = fixture(state);
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  twin_context *ctx = (twin_context *)&o;
  o.spill = (twin_spill)5;
  assert_status(twin_context_new_with(&o, &ctx), TWIN_ERR_INVALID_ARGUMENT);
  expect_message_has("spill 5 is not a twin_spill");
  assert_ptr_equal(ctx, (twin_context *)&o);
  o.spill = TWIN_SPILL_AUTO;
  setenv("TWIN_SPILL", "sometimes", 1);
  assert_status(twin_context_new_with(&o, &ctx), TWIN_ERR_INVALID_ARGUMENT);
  expect_message_has("TWIN_SPILL is \"sometimes\"; use \"auto\" or \"off\"");
  /* The option wins over the environment. */
  o.spill = TWIN_SPILL_OFF;
  assert_ok(twin_context_new_with(&o, &ctx));
  twin_context_unref(ctx);
  setenv("TWIN_SPILL", "oFf", 1);
  o.spill = TWIN_SPILL_AUTO;
  o.device_memory_limit = NB;
  assert_ok(twin_context_new_with(&o, &ctx));
  unsetenv("TWIN_SPILL");
  twin_array *a, *b;
  NEW_EMPTY(ctx, &a);
  NEW_EMPTY(ctx, &b);
  if (f->layout == FIXTURE_TWO_COPIES) {
    device_write_i32(a, 0);
    void *mem;
    size_t off;
    assert_status(fixture_device_begin(b, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    expect_message_has("spilled nothing (spilling is off)");
  }
  assert_int_equal(fixture_ctx_stats(ctx).spill_count, 0);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);
}

/* Where each buffer is one copy, nothing is ever spilled: the device budget does not apply to
 * shared memory, which is host memory, and the host backend has no device. */
static void test_spill_has_nothing_to_do_where_buffers_are_one_copy(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout == FIXTURE_TWO_COPIES)
    skip();
  twin_context *ctx = open_with(f, 2 * NB, NB, TWIN_SPILL_AUTO);
  twin_array *a, *b, *c;
  int la = __LINE__ + 1;
  NEW_I32(ctx, 0, &a);
  NEW_I32(ctx, 10, &b);
  if (f->has_device) {
    device_write_i32(a, 20);
    device_write_i32(b, 30);
  }
  NEW_EMPTY(ctx, &c);
  void *p;
  assert_status(twin_host_begin(c, TWIN_WRITE, &p), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message_has("spilled nothing (buffers here are one copy)");
  twin_stats st = fixture_ctx_stats(ctx);
  assert_int_equal(st.spill_count, 0);
  assert_int_equal(st.device_bytes, 0);
  assert_int_equal(walk_find(ctx, la).spill, TWIN_SPILL_STATE_NONE);
  assert_int_equal(walk_find(ctx, la).pin, TWIN_PIN_NONE);
  fixture_expect_i32(a, f->has_device ? 20 : 0);
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);
}

/* ---- threads ---- */

typedef struct worker {
  twin_context *ctx;
  int id;
  twin_array *made[6];
} worker;

static void *work(void *arg) {
  worker *w = arg;
  for (int i = 0; i < 6; i++) {
    NEW_EMPTY(w->ctx, &w->made[i]);
    device_write_i32(w->made[i], w->id * 100000 + i * 1000);
  }
  return NULL;
}

/* Two threads keep making arrays on the device under a budget of three: they spill each
 * other's copies (and their own), and every value survives. */
static void test_spill_under_two_threads(void **state) {
  twin_fixture *f = fixture(state);
  if (f->layout != FIXTURE_TWO_COPIES)
    skip();
  twin_context *ctx = open_with(f, 0, 3 * NB, TWIN_SPILL_AUTO);
  worker w[2] = {{ctx, 1, {NULL}}, {ctx, 2, {NULL}}};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, work, &w[1]), 0);
  work(&w[0]);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_true(fixture_ctx_stats(ctx).spill_count >= 9);
  assert_true(fixture_ctx_stats(ctx).device_bytes <= 3 * NB);
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 6; i++) {
      fixture_expect_i32(w[k].made[i], w[k].id * 100000 + i * 1000);
      twin_array_unref(w[k].made[i]);
    }
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_spill_moves_exactly_the_device_newer_bytes_and_keeps_the_data),
    TWIN_TEST(test_spill_never_takes_a_copy_in_use_and_the_error_says_why),
    TWIN_TEST(test_spill_takes_a_copy_with_a_kernel_in_flight_only_last),
    TWIN_TEST(test_spill_respects_the_host_budget),
    TWIN_TEST(test_spill_policy_from_the_option_and_TWIN_SPILL),
    TWIN_TEST(test_spill_has_nothing_to_do_where_buffers_are_one_copy),
    TWIN_TEST(test_spill_under_two_threads),
};

TWIN_TEST_MAIN(tests)

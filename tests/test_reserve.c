/* Region reservations (twin_array_reserve): which accesses a read or a write reservation
 * refuses, through every way in (host and device access, twin_copy, twin_fill, kernels,
 * twin_array_read, DLPack exports); the reserving object's own accesses; the exact overlap of
 * step-1 slices and the byte-extent overlap of other views; reservations against each other
 * and against open accesses (this thread's, another thread's, an export's); argument errors;
 * and the release at the reserving object's last reference. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dlpack/dlpack.h>

#include "fixture.h"

/* A rows x cols i32 array holding its element numbers, 0, 1, 2, ... in C order. */
static twin_array *grid(twin_context *ctx, size_t rows, size_t cols) {
  int32_t data[1024];
  size_t shape[] = {rows, cols};
  assert_true(rows * cols <= 1024);
  for (size_t i = 0; i < rows * cols; i++)
    data[i] = (int32_t)i;
  twin_array *a;
  assert_ok(twin_array_from_host(ctx, TWIN_I32, 2, shape, data, &a));
  return a;
}

/* a[r0:r1, c0:c1], a new array object. */
static twin_array *block(twin_array *a, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1) {
  twin_slice s[] = {{r0, r1, 1}, {c0, c1, 1}};
  twin_array *v;
  assert_ok(twin_array_slice(a, s, &v));
  return v;
}

static void expect_message(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* The message names the reservation made at this file's `line`. */
static void expect_reservation(const char *what, int line) {
  char text[160];
  snprintf(text, sizeof text, "%s at element", what);
  expect_message(text);
  snprintf(text, sizeof text, "made at %s:%d, which no thread holds", __FILE__, line);
  expect_message(text);
}

static twin_status nothing(const twin_host_launch *launch, void *user) {
  (void)launch;
  (void)user;
  return TWIN_OK;
}

/* Launches a host kernel (every backend has them) with a as its one argument. */
static twin_status launch_on(twin_context *ctx, twin_array *a, twin_access access) {
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(ctx, "nothing", nothing, NULL, &k));
  size_t global[] = {1};
  twin_arg arg = twin_arg_view(a, access);
  twin_status s = twin_kernel_launch(k, 1, global, NULL, 1, &arg);
  twin_kernel_unref(k);
  return s;
}

/* Opens and ends a host access of a; its status. */
static twin_status host_touch(twin_array *a, twin_access access) {
  void *p;
  twin_status s = twin_host_begin(a, access, &p);
  if (s == TWIN_OK)
    assert_ok(twin_host_end(a));
  return s;
}

static twin_status device_touch(twin_array *a, twin_access access) {
  void *mem;
  size_t off;
  twin_status s = fixture_device_begin(a, access, &mem, &off);
  if (s == TWIN_OK)
    assert_ok(fixture_device_end(a));
  return s;
}

/* ---- What a reservation refuses ---- */

/* A write reservation (ghosts being received) refuses every other object's access that
 * overlaps it, reads too, through every way in, at once and naming it; the rest of the buffer
 * stays usable. */
static void test_write_reservation_refuses_every_overlapping_access(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 6, 8), *ghost = block(a, 0, 1, 0, 8), *rest = block(a, 1, 6, 0, 8);
  twin_array *tmp;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 2, twin_array_shape(a), &tmp));
  int line = __LINE__ + 1;
  assert_ok(twin_array_reserve(ghost, TWIN_WRITE));
  assert_status(host_touch(a, TWIN_READ), TWIN_ERR_BUSY);
  expect_reservation("a write reservation of a view of shape 1 x 8", line);
  expect_message("twin_host_begin (" __FILE__ ":");
  int32_t buf[48];
  assert_status(twin_array_read(a, buf, sizeof buf), TWIN_ERR_BUSY);
  int32_t seven = 7;
  assert_status(twin_fill(a, &seven), TWIN_ERR_BUSY);
  expect_reservation("a write reservation of a view of shape 1 x 8", line);
  assert_status(twin_copy(tmp, a), TWIN_ERR_BUSY);
  expect_message("src");
  assert_status(launch_on(f->ctx, a, TWIN_READ), TWIN_ERR_BUSY);
  expect_reservation("a write reservation of a view of shape 1 x 8", line);
  DLManagedTensor *t = NULL;
  assert_status(twin_array_to_dlpack(a, TWIN_READ, &t), TWIN_ERR_BUSY);
  assert_null(t);
  if (f->has_device)
    assert_status(device_touch(a, TWIN_READ), TWIN_ERR_BUSY);
  /* The rows the reservation does not hold, on either side, by any way in. */
  assert_ok(host_touch(rest, TWIN_READ_WRITE));
  assert_ok(twin_fill(rest, &seven));
  assert_ok(launch_on(f->ctx, rest, TWIN_READ_WRITE));
  if (f->has_device)
    assert_ok(device_touch(rest, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(ghost));
  assert_ok(host_touch(a, TWIN_READ_WRITE));
  twin_array_unref(tmp);
  twin_array_unref(rest);
  twin_array_unref(ghost);
  twin_array_unref(a);
}

/* A read reservation (a face being sent) lets other objects read it and refuses their writes. */
static void test_read_reservation_refuses_only_writes(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 6, 8), *face = block(a, 1, 2, 1, 7);
  twin_array *inner = block(a, 1, 5, 1, 7), *deep = block(a, 2, 4, 2, 6);
  int line = __LINE__ + 1;
  assert_ok(twin_array_reserve(face, TWIN_READ));
  assert_ok(host_touch(a, TWIN_READ));
  assert_ok(launch_on(f->ctx, inner, TWIN_READ));
  if (f->has_device)
    assert_ok(device_touch(a, TWIN_READ));
  assert_status(host_touch(a, TWIN_WRITE), TWIN_ERR_BUSY);
  expect_reservation("a read reservation of a view of shape 1 x 6", line);
  int32_t seven = 7;
  assert_status(twin_fill(inner, &seven), TWIN_ERR_BUSY);
  assert_status(launch_on(f->ctx, inner, TWIN_READ_WRITE), TWIN_ERR_BUSY);
  if (f->has_device)
    assert_status(device_touch(inner, TWIN_WRITE), TWIN_ERR_BUSY);
  assert_ok(twin_fill(deep, &seven)); /* the cells away from the face */
  assert_ok(launch_on(f->ctx, deep, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(face));
  assert_ok(twin_fill(inner, &seven));
  twin_array_unref(deep);
  twin_array_unref(inner);
  twin_array_unref(face);
  twin_array_unref(a);
}

/* Through the reserving array object itself access goes on as usual, by every way in; a view
 * made from it is another object. */
static void test_the_reserving_object_itself_passes(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 6, 8), *ghost = block(a, 5, 6, 0, 8), *src = grid(f->ctx, 1, 8);
  assert_ok(twin_array_reserve(ghost, TWIN_WRITE));
  assert_ok(twin_copy(ghost, src));
  int32_t seven = 7;
  assert_ok(twin_fill(ghost, &seven));
  assert_ok(host_touch(ghost, TWIN_READ_WRITE));
  assert_ok(launch_on(f->ctx, ghost, TWIN_READ_WRITE));
  if (f->has_device)
    assert_ok(device_touch(ghost, TWIN_READ_WRITE));
  twin_array *same = twin_array_ref(ghost); /* a reference is the same object */
  assert_ok(host_touch(same, TWIN_READ));
  twin_array_unref(same);
  twin_array *part = block(ghost, 0, 1, 0, 4);
  assert_status(host_touch(part, TWIN_READ), TWIN_ERR_BUSY);
  assert_status(twin_array_unreserve(part), TWIN_ERR_BAD_STATE);
  expect_message("holds no reservation");
  assert_ok(twin_array_unreserve(ghost));
  int32_t got[8];
  assert_ok(twin_array_read(ghost, got, sizeof got));
  for (int i = 0; i < 8; i++)
    assert_int_equal(got[i], 7);
  twin_array_unref(part);
  twin_array_unref(src);
  twin_array_unref(ghost);
  twin_array_unref(a);
}

/* ---- Overlap ---- */

/* Step-1 boxes of parent p (rows and columns of its own axes), reserved and accessed in both
 * orders: refused exactly when the boxes share an element of p. */
static void check_box_pairs(twin_array *p, unsigned seed, int pairs) {
  const size_t *n = twin_array_shape(p);
  for (int i = 0; i < pairs; i++) {
    ptrdiff_t r[4], c[4];
    for (int j = 0; j < 2; j++) {
      r[2 * j] = rand_r(&seed) % (ptrdiff_t)n[0];
      r[2 * j + 1] = r[2 * j] + 1 + rand_r(&seed) % ((ptrdiff_t)n[0] - r[2 * j]);
      c[2 * j] = rand_r(&seed) % (ptrdiff_t)n[1];
      c[2 * j + 1] = c[2 * j] + 1 + rand_r(&seed) % ((ptrdiff_t)n[1] - c[2 * j]);
    }
    twin_array *x = block(p, r[0], r[1], c[0], c[1]), *y = block(p, r[2], r[3], c[2], c[3]);
    bool share = r[0] < r[3] && r[2] < r[1] && c[0] < c[3] && c[2] < c[1];
    twin_status want = share ? TWIN_ERR_BUSY : TWIN_OK;
    assert_int_equal(twin_array_overlaps(x, y), share);
    assert_int_equal(twin_array_overlaps(y, x), share);
    assert_ok(twin_array_reserve(x, TWIN_WRITE));
    if (host_touch(y, TWIN_READ) != want)
      print_error("[%td:%td, %td:%td] reserved, [%td:%td, %td:%td] read: %s\n", r[0], r[1], c[0],
                  c[1], r[2], r[3], c[2], c[3], twin_last_error());
    assert_status(host_touch(y, TWIN_READ), want);
    assert_ok(twin_array_unreserve(x));
    assert_ok(twin_array_reserve(y, TWIN_READ));
    assert_status(host_touch(x, TWIN_WRITE), want);
    assert_ok(twin_array_unreserve(y));
    twin_array_unref(y);
    twin_array_unref(x);
  }
}

/* Slices with step 1 of one parent are compared exactly, whatever the parent's strides: a C
 * array, its transpose, a reversed view, every other column, a block of a larger array. */
static void test_overlap_of_step_one_slices_is_exact(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 12, 14), *t, *rev, *odd, *inner;
  int perm[] = {1, 0};
  assert_ok(twin_array_transpose(a, perm, &t));
  twin_slice flip[] = {{TWIN_NONE, TWIN_NONE, -1}, {TWIN_NONE, TWIN_NONE, 1}};
  assert_ok(twin_array_slice(a, flip, &rev));
  twin_slice every_other[] = {{TWIN_NONE, TWIN_NONE, 1}, {1, TWIN_NONE, 2}};
  assert_ok(twin_array_slice(a, every_other, &odd));
  inner = block(a, 2, 10, 3, 11);
  twin_array *parents[] = {a, t, rev, odd, inner};
  for (unsigned i = 0; i < sizeof parents / sizeof parents[0]; i++)
    check_box_pairs(parents[i], 17 + i, 150);
  /* Every other column against the columns between them: interleaved, never the same. */
  twin_slice even_cols[] = {{TWIN_NONE, TWIN_NONE, 1}, {0, TWIN_NONE, 2}};
  twin_array *even;
  assert_ok(twin_array_slice(a, even_cols, &even));
  assert_ok(twin_array_reserve(even, TWIN_WRITE));
  assert_ok(host_touch(odd, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(even));
  twin_array_unref(even);
  for (unsigned i = 1; i < sizeof parents / sizeof parents[0]; i++)
    twin_array_unref(parents[i]);
  twin_array_unref(a);
}

/* Views that are not slices of one lattice (other strides or ndim) are compared by byte
 * extent: never missing an overlap, and refusing a view inside the extent of a column even
 * when they share no element (the conservative side, documented). */
static void test_overlap_of_other_views_is_by_extent(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 7, 9), *column, *crossing, *between, *beyond;
  assert_ok(twin_array_index(a, 1, 0, &column));   /* a[:, 0]: elements 0, 9, ..., 54 */
  assert_ok(twin_array_index(a, 0, 3, &crossing)); /* a[3, :]: elements 27..35, 27 shared */
  twin_slice mid[] = {{1, 3, 1}};
  twin_array *row5;
  assert_ok(twin_array_index(a, 0, 5, &row5));
  assert_ok(twin_array_slice(row5, mid, &between)); /* 46, 47: inside the column's extent */
  twin_array *row6;
  assert_ok(twin_array_index(a, 0, 6, &row6));
  assert_ok(twin_array_slice(row6, mid, &beyond));   /* 55, 56: past its last element */
  assert_true(twin_array_overlaps(column, between)); /* what reservations go by */
  assert_false(twin_array_overlaps(column, beyond));
  assert_ok(twin_array_reserve(column, TWIN_WRITE));
  assert_status(host_touch(crossing, TWIN_READ), TWIN_ERR_BUSY);
  assert_status(host_touch(between, TWIN_READ), TWIN_ERR_BUSY);
  assert_ok(host_touch(beyond, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(column));
  twin_array_unref(row6);
  twin_array_unref(row5);
  twin_array_unref(beyond);
  twin_array_unref(between);
  twin_array_unref(crossing);
  twin_array_unref(column);
  twin_array_unref(a);
}

/* A view with the parent's strides whose rows run on past the parent's rows (as_strided) is
 * not on the lattice of the parent's rows and columns: it is compared by extent, and the
 * element it shares with a block of another row is not missed. */
static void test_overlap_of_rows_that_wrap_is_not_missed(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 5), *wrapping, *next_row = block(a, 1, 2, 1, 2); /* element 6 */
  size_t shape[] = {1, 7};
  ptrdiff_t strides[] = {5, 1};
  assert_ok(twin_array_as_strided(a, 2, shape, strides, 0, &wrapping)); /* elements 0..6 */
  assert_ok(twin_array_reserve(wrapping, TWIN_WRITE));
  assert_status(host_touch(next_row, TWIN_READ), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(wrapping));
  assert_ok(twin_array_reserve(next_row, TWIN_READ));
  assert_status(host_touch(wrapping, TWIN_WRITE), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(next_row));
  twin_array_unref(next_row);
  twin_array_unref(wrapping);
  twin_array_unref(a);
}

/* An empty view reserves nothing, and an empty view's access meets no reservation; views of
 * different buffers never overlap. */
static void test_an_empty_view_overlaps_nothing(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 4), *none = block(a, 2, 2, 0, 4), *all = block(a, 0, 4, 0, 4);
  twin_array *other = grid(f->ctx, 4, 4);
  assert_false(twin_array_overlaps(none, all));
  assert_false(twin_array_overlaps(a, other)); /* another buffer */
  assert_false(twin_array_overlaps(a, NULL));
  assert_true(twin_array_overlaps(a, all));
  twin_array_unref(other);
  assert_ok(twin_array_reserve(none, TWIN_WRITE));
  assert_ok(host_touch(a, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(none));
  assert_ok(twin_array_reserve(all, TWIN_WRITE));
  assert_ok(host_touch(none, TWIN_READ_WRITE));
  assert_ok(twin_array_unreserve(all));
  twin_array_unref(all);
  twin_array_unref(none);
  twin_array_unref(a);
}

/* ---- Reservations against reservations and open accesses ---- */

/* Overlapping reservations of other objects: reads together, never with a write. */
static void test_reservations_refuse_each_other_when_one_writes(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 6, 4), *r01 = block(a, 0, 2, 0, 4), *r12 = block(a, 1, 3, 0, 4);
  twin_array *r23 = block(a, 2, 4, 0, 4);
  assert_ok(twin_array_reserve(r01, TWIN_READ));
  assert_ok(twin_array_reserve(r12, TWIN_READ)); /* row 1 read-reserved twice */
  assert_ok(twin_array_unreserve(r12));
  int line = __LINE__ + 1;
  assert_ok(twin_array_reserve(r23, TWIN_WRITE)); /* beside r01: no row in common */
  assert_status(twin_array_reserve(r12, TWIN_READ), TWIN_ERR_BUSY);
  expect_message("twin_array_reserve (" __FILE__ ":");
  expect_message("the view's elements overlap");
  expect_reservation("a write reservation of a view of shape 2 x 4", line);
  assert_ok(twin_array_unreserve(r01));
  assert_status(twin_array_reserve(r12, TWIN_WRITE), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(r23));
  assert_ok(twin_array_reserve(r12, TWIN_WRITE));
  assert_status(twin_array_reserve(r23, TWIN_READ_WRITE), TWIN_ERR_BUSY);
  assert_status(twin_array_reserve(r01, TWIN_READ), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(r12));
  assert_ok(twin_array_reserve(r01, TWIN_WRITE));
  assert_ok(twin_array_reserve(r23, TWIN_WRITE));
  assert_ok(twin_array_unreserve(r01));
  assert_ok(twin_array_unreserve(r23));
  twin_array_unref(r23);
  twin_array_unref(r12);
  twin_array_unref(r01);
  twin_array_unref(a);
}

/* A reservation is admitted as an access of its mode would be against open accesses of other
 * objects that overlap it: this thread's, or an export's, refuse it at once, naming them. */
static void test_reserve_meets_open_accesses(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 6, 4), *ghost = block(a, 0, 1, 0, 4);
  void *p;
  int line = __LINE__ + 1;
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  assert_ok(twin_array_reserve(ghost, TWIN_READ));
  assert_ok(twin_array_unreserve(ghost));
  assert_status(twin_array_reserve(ghost, TWIN_WRITE), TWIN_ERR_BUSY);
  char site[160];
  snprintf(site, sizeof site, "a host read access to this buffer is still open, begun at %s:%d",
           __FILE__, line);
  expect_message(site);
  assert_ok(twin_host_end(a));
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack(a, TWIN_READ, &t));
  assert_status(twin_array_reserve(ghost, TWIN_WRITE), TWIN_ERR_BUSY);
  expect_message("for a DLPack export");
  t->deleter(t);
  assert_ok(twin_array_reserve(ghost, TWIN_WRITE));
  assert_ok(host_touch(ghost, TWIN_READ_WRITE)); /* its own object's access */
  assert_ok(twin_array_unreserve(ghost));
  twin_array_unref(ghost);
  twin_array_unref(a);
}

/* A thread that holds a host write on `a` until main waits, then writes and ends it. */
typedef struct holder {
  twin_array *a;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool open;
  twin_status begun, ended;
} holder;

static void *hold_then_write(void *arg) {
  holder *h = arg;
  int32_t *p;
  h->begun = twin_host_begin(h->a, TWIN_WRITE, (void **)&p);
  pthread_mutex_lock(&h->lock);
  h->open = true;
  pthread_cond_signal(&h->cond);
  pthread_mutex_unlock(&h->lock);
  if (h->begun != TWIN_OK)
    return NULL;
  for (int i = 0; i < 5000 && twin__access_waiting() < 1; i++)
    usleep(1000);
  usleep(20 * 1000);
  for (size_t i = 0; i < twin_array_size(h->a); i++)
    p[i] = -1;
  h->ended = twin_host_end(h->a);
  return NULL;
}

/* Another thread's overlapping access is waited for, as a begin would wait for it. */
static void test_reserve_waits_for_another_threads_access(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 4), *ghost = block(a, 3, 4, 0, 4);
  holder h = {.a = a};
  pthread_mutex_init(&h.lock, NULL);
  pthread_cond_init(&h.cond, NULL);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, hold_then_write, &h), 0);
  pthread_mutex_lock(&h.lock);
  while (!h.open)
    pthread_cond_wait(&h.cond, &h.lock);
  pthread_mutex_unlock(&h.lock);
  assert_ok(h.begun);
  assert_ok(twin_array_reserve(ghost, TWIN_WRITE));
  int32_t got[4];
  assert_ok(twin_array_read(ghost, got, sizeof got)); /* after the other thread's write */
  assert_int_equal(got[0], -1);
  pthread_join(th, NULL);
  assert_ok(h.ended);
  assert_ok(twin_array_unreserve(ghost));
  pthread_cond_destroy(&h.cond);
  pthread_mutex_destroy(&h.lock);
  twin_array_unref(ghost);
  twin_array_unref(a);
}

/* ---- Errors and lifetime ---- */

static void test_reserve_argument_errors(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 4), *row = block(a, 0, 1, 0, 4), *last = block(a, 3, 4, 0, 4);
  twin_array *wide;
  size_t shape[] = {3, 4};
  assert_ok(twin_array_broadcast_to(last, 2, shape, &wide));
  assert_status(twin_array_reserve(NULL, TWIN_READ), TWIN_ERR_INVALID_ARGUMENT);
  expect_message("twin_array_reserve: view is NULL");
  assert_status(twin_array_reserve(row, (twin_access)0), TWIN_ERR_INVALID_ARGUMENT);
  expect_message("mode is 0");
  assert_status(twin_array_reserve(row, (twin_access)4), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_reserve(wide, TWIN_WRITE), TWIN_ERR_READ_ONLY);
  assert_status(twin_array_unreserve(NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_unreserve(row), TWIN_ERR_BAD_STATE);
  expect_message("twin_array_unreserve: this array object holds no reservation");
  assert_ok(twin_array_reserve(wide, TWIN_READ)); /* a broadcast view may be read-reserved */
  int line = __LINE__ + 1;
  assert_ok(twin_array_reserve(row, TWIN_WRITE));
  assert_status(twin_array_reserve(row, TWIN_READ), TWIN_ERR_BAD_STATE);
  char made[160];
  snprintf(made, sizeof made,
           "holds a write reservation of a view of shape 1 x 4 at element 0 of this "
           "buffer, made at %s:%d already",
           __FILE__, line);
  expect_message(made);
  /* The failures changed nothing: row's write reservation stands, wide's read one too. */
  assert_status(host_touch(a, TWIN_READ), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(row));
  assert_ok(host_touch(a, TWIN_READ));
  assert_status(host_touch(a, TWIN_WRITE), TWIN_ERR_BUSY);
  assert_ok(twin_array_unreserve(wide));
  assert_status(twin_array_unreserve(wide), TWIN_ERR_BAD_STATE);
  twin_array_unref(wide);
  twin_array_unref(last);
  twin_array_unref(row);
  twin_array_unref(a);
}

/* The reserving object's last reference releases its reservation (nothing else holds it, and
 * nothing leaks: the fixture's teardown finds no array or buffer left). */
static void test_last_reference_releases_the_reservation(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 4), *ghost = block(a, 0, 1, 0, 4);
  twin_array *face = block(a, 1, 2, 0, 4);
  assert_ok(twin_array_reserve(ghost, TWIN_WRITE));
  assert_ok(twin_array_reserve(face, TWIN_READ));
  assert_status(host_touch(a, TWIN_READ), TWIN_ERR_BUSY);
  twin_array_unref(ghost);
  assert_ok(host_touch(a, TWIN_READ));
  assert_status(host_touch(a, TWIN_WRITE), TWIN_ERR_BUSY);
  twin_array_unref(face);
  assert_ok(host_touch(a, TWIN_READ_WRITE));
  twin_array_unref(a);
}

/* Fresh array objects hold no reservation, whatever their memory held before (meson's
 * MALLOC_PERTURB_ fills new blocks with garbage; the objects kept for reuse were released). */
static void test_new_views_hold_no_reservation(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = grid(f->ctx, 4, 4);
  for (int i = 0; i < 4; i++) {
    twin_array *row = block(a, i, i + 1, 0, 4);
    assert_ok(twin_array_reserve(row, TWIN_WRITE));
    twin_array_unref(row);
  }
  assert_ok(host_touch(a, TWIN_READ_WRITE));
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_write_reservation_refuses_every_overlapping_access),
    TWIN_TEST(test_read_reservation_refuses_only_writes),
    TWIN_TEST(test_the_reserving_object_itself_passes),
    TWIN_TEST(test_overlap_of_step_one_slices_is_exact),
    TWIN_TEST(test_overlap_of_other_views_is_by_extent),
    TWIN_TEST(test_overlap_of_rows_that_wrap_is_not_missed),
    TWIN_TEST(test_an_empty_view_overlaps_nothing),
    TWIN_TEST(test_reservations_refuse_each_other_when_one_writes),
    TWIN_TEST(test_reserve_meets_open_accesses),
    TWIN_TEST(test_reserve_waits_for_another_threads_access),
    TWIN_TEST(test_reserve_argument_errors),
    TWIN_TEST(test_last_reference_releases_the_reservation),
    TWIN_TEST(test_new_views_hold_no_reservation),
};

TWIN_TEST_MAIN(tests)

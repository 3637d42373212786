/* twin_mpi_send and twin_mpi_recv of views across ranks: ranks pair up (0-1, 2-3; a rank
 * without a partner talks to itself, with messages small enough for MPI to buffer), each
 * sending views of an array newer on the device and receiving into views of another, through
 * the datatype path and the pack path (TWIN_MPI_PACK_BELOW forces either), checking every
 * element of the receiving array: the view's from the partner, the rest untouched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_fixture.h"

enum { R = 12, C = 10 }; /* 960 bytes of f64: every message fits MPI's eager buffers */

static int partner(const mpi_fixture *f) {
  int p = f->rank ^ 1;
  return p < f->size ? p : f->rank;
}

/* Element (i, j) of rank r's array. */
static double value(int r, int i, int j) {
  return r * 10000.0 + i * 100.0 + j;
}

/* An R x C f64 array holding value(rank, i, j), newer on the device: written by twin_copy,
 * which runs there. */
static twin_array *device_newer(const mpi_fixture *f, int rank) {
  double data[R * C];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++)
      data[i * C + j] = value(rank, i, j);
  twin_array *a, *tmp;
  size_t shape[] = {R, C};
  assert_ok(twin_array_from_host(f->ctx, TWIN_F64, 2, shape, data, &tmp));
  assert_ok(twin_array_new(f->ctx, TWIN_F64, 2, shape, &a));
  assert_ok(twin_copy(a, tmp));
  twin_array_unref(tmp);
  return a;
}

/* An R x C f64 array of -1, filled on the device. */
static twin_array *sentinel(const mpi_fixture *f) {
  twin_array *a;
  size_t shape[] = {R, C};
  double minus_one = -1;
  assert_ok(twin_array_new(f->ctx, TWIN_F64, 2, shape, &a));
  assert_ok(twin_fill(a, &minus_one));
  return a;
}

/* Sends `out` to the partner and receives into `in`, in an order that cannot deadlock. */
static void swap(const mpi_fixture *f, twin_array *out, twin_array *in, int tag) {
  int p = partner(f);
  if (f->rank <= p) {
    assert_ok(twin_mpi_send(out, p, tag, MPI_COMM_WORLD));
    assert_ok(twin_mpi_recv(in, p, tag, MPI_COMM_WORLD));
  } else {
    assert_ok(twin_mpi_recv(in, p, tag, MPI_COMM_WORLD));
    assert_ok(twin_mpi_send(out, p, tag, MPI_COMM_WORLD));
  }
}

/* A view of a by one slice per axis, optionally transposed. */
static twin_array *view(twin_array *a, twin_slice s0, twin_slice s1, bool transposed) {
  twin_slice s[] = {s0, s1};
  twin_array *v, *t;
  assert_ok(twin_array_slice(a, s, &v));
  if (!transposed)
    return v;
  assert_ok(twin_array_transpose(v, NULL, &t));
  twin_array_unref(v);
  return t;
}

typedef struct shape_case {
  const char *name;
  twin_slice s0, s1;
  bool transposed;
} shape_case;

#define ALL                                                                                        \
  { TWIN_NONE, TWIN_NONE, 1 } /* TWIN_ALL, as a constant initializer */
static const shape_case cases[] = {
    {"column a[:, 3]", ALL, {3, 4, 1}, false},
    {"rows a[2:6, :]", {2, 6, 1}, ALL, false},
    {"block a[1:5, 2:8].T", {1, 5, 1}, {2, 8, 1}, true},
    {"reversed a[::-2, ::-3]", {TWIN_NONE, TWIN_NONE, -2}, {TWIN_NONE, TWIN_NONE, -3}, false},
};

/* The receiving array after a case: the view's elements (in C order) hold the partner's
 * values of the same view, every other element is still -1. */
static void expect(const mpi_fixture *f, twin_array *in, const shape_case *c) {
  double want[R * C], got[R * C];
  for (int i = 0; i < R * C; i++)
    want[i] = -1;
  /* The same view over a host array of the partner's values marks what must have arrived. */
  twin_context *host;
  assert_ok(twin_context_new("host", &host));
  double theirs[R * C];
  for (int i = 0; i < R; i++)
    for (int j = 0; j < C; j++)
      theirs[i * C + j] = value(partner(f), i, j);
  twin_array *a, *idx, *v, *iv;
  size_t shape[] = {R, C};
  int64_t where[R * C];
  for (int i = 0; i < R * C; i++)
    where[i] = i;
  assert_ok(twin_array_from_host(host, TWIN_F64, 2, shape, theirs, &a));
  assert_ok(twin_array_from_host(host, TWIN_I64, 2, shape, where, &idx));
  v = view(a, c->s0, c->s1, c->transposed);
  iv = view(idx, c->s0, c->s1, c->transposed);
  size_t n = twin_array_size(v);
  double vals[R * C];
  int64_t pos[R * C];
  assert_ok(twin_array_read(v, vals, n * sizeof *vals));
  assert_ok(twin_array_read(iv, pos, n * sizeof *pos));
  for (size_t i = 0; i < n; i++)
    want[pos[i]] = vals[i];
  twin_array_unref(iv);
  twin_array_unref(v);
  twin_array_unref(idx);
  twin_array_unref(a);
  twin_context_unref(host);
  assert_ok(twin_array_read(in, got, sizeof got));
  for (int i = 0; i < R * C; i++)
    if (got[i] != want[i]) {
      print_error("%s: element %d is %g, expected %g\n", c->name, i, got[i], want[i]);
      fail();
    }
}

/* Every shape of view through the path TWIN_MPI_PACK_BELOW selects. */
static void run_cases(const mpi_fixture *f, const char *pack_below) {
  if (pack_below)
    setenv("TWIN_MPI_PACK_BELOW", pack_below, 1);
  else
    unsetenv("TWIN_MPI_PACK_BELOW");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const shape_case *c = &cases[i];
    twin_array *src = device_newer(f, f->rank), *dst = sentinel(f);
    twin_array *out = view(src, c->s0, c->s1, c->transposed);
    twin_array *in = view(dst, c->s0, c->s1, c->transposed);
    swap(f, out, in, (int)i);
    expect(f, dst, c);
    twin_array_unref(in);
    twin_array_unref(out);
    twin_array_unref(dst);
    twin_array_unref(src);
  }
  unsetenv("TWIN_MPI_PACK_BELOW");
}

MPI_CASE(test_send_recv_views_by_default_path) {
  run_cases(mpi_fix(state), NULL);
}

MPI_CASE(test_send_recv_views_through_datatypes) {
  run_cases(mpi_fix(state), "0");
}

MPI_CASE(test_send_recv_views_packed) {
  run_cases(mpi_fix(state), "1000000000");
}

/* The message is the elements in C order: a column of 12 arrives in a 3 x 4 transposed
 * block, by either path. */
MPI_CASE(test_send_recv_across_layouts) {
  mpi_fixture *f = mpi_fix(state);
  for (int path = 0; path < 2; path++) {
    setenv("TWIN_MPI_PACK_BELOW", path ? "0" : "1000000000", 1);
    twin_array *src = device_newer(f, f->rank), *dst = sentinel(f);
    twin_array *col = view(src, TWIN_ALL, (twin_slice){3, 4, 1}, false);
    twin_array *block = view(dst, (twin_slice){4, 8, 1}, (twin_slice){1, 4, 1}, true);
    swap(f, col, block, 7);
    double got[12];
    assert_ok(twin_array_read(block, got, sizeof got));
    for (int i = 0; i < 12; i++)
      assert_true(got[i] == value(partner(f), i, 3));
    twin_array_unref(block);
    twin_array_unref(col);
    twin_array_unref(dst);
    twin_array_unref(src);
  }
  unsetenv("TWIN_MPI_PACK_BELOW");
}

/* A send reads through a host access: in copy mode it brings the view's stale bytes to the
 * host once (a contiguous view: exactly its bytes), never again; nothing where the buffer is
 * one copy. A receive into a contiguous view writes it on the host without moving anything;
 * the device gets exactly those bytes at its next use. */
MPI_CASE(test_send_and_recv_move_only_the_view) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *src = device_newer(f, f->rank), *dst = sentinel(f);
  twin_array *out = view(src, (twin_slice){2, 6, 1}, TWIN_ALL, false);
  twin_array *in = view(dst, (twin_slice){5, 9, 1}, TWIN_ALL, false);
  size_t bytes = 4 * C * sizeof(double);
  assert_ok(twin_context_stats_reset(f->ctx));
  swap(f, out, in, 8);
  twin_stats st = mpi_stats(f->ctx);
  assert_int_equal(st.bytes_to_host, f->one_copy ? 0 : bytes);
  assert_int_equal(st.bytes_to_device, 0);
  twin_residency host, device;
  assert_ok(twin_array_residency(dst, &host, &device));
  assert_int_equal(device, !f->has_device ? TWIN_RESIDENT_NONE
                           : f->one_copy  ? TWIN_RESIDENT_SHARED
                                          : TWIN_RESIDENT_STALE);
  swap(f, out, in, 9); /* the sent view is on the host now */
  assert_int_equal(mpi_stats(f->ctx).bytes_to_host, f->one_copy ? 0 : bytes);
  assert_ok(twin_array_prefetch(dst, TWIN_DEVICE));
  assert_int_equal(mpi_stats(f->ctx).bytes_to_device, f->one_copy ? 0 : bytes);
  twin_array_unref(in);
  twin_array_unref(out);
  twin_array_unref(dst);
  twin_array_unref(src);
}

/* MPI_PROC_NULL: nothing sent or received, no access opened, nothing moved. */
MPI_CASE(test_proc_null_sends_and_receives_nothing) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *src = device_newer(f, f->rank), *dst = sentinel(f);
  assert_ok(twin_context_stats_reset(f->ctx));
  assert_ok(twin_mpi_send(src, MPI_PROC_NULL, 0, MPI_COMM_WORLD));
  assert_ok(twin_mpi_recv(dst, MPI_PROC_NULL, 0, MPI_COMM_WORLD));
  twin_stats st = mpi_stats(f->ctx);
  assert_int_equal(st.bytes_to_host + st.bytes_to_device, 0);
  double got[R * C];
  assert_ok(twin_array_read(dst, got, sizeof got));
  for (int i = 0; i < R * C; i++)
    assert_true(got[i] == -1);
  twin_array_unref(dst);
  twin_array_unref(src);
}

/* A message of another element count, fewer or more, is refused naming both counts, and
 * stays queued: a view of the right size receives it next. */
MPI_CASE(test_recv_of_another_count_is_refused_and_kept) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *src = device_newer(f, f->rank), *dst = sentinel(f);
  twin_array *ten = view(src, (twin_slice){0, 1, 1}, TWIN_ALL, false);
  twin_array *twelve = view(dst, TWIN_ALL, (twin_slice){0, 1, 1}, false);
  twin_array *row = view(dst, (twin_slice){0, 1, 1}, TWIN_ALL, false);
  twin_array *col = view(src, TWIN_ALL, (twin_slice){1, 2, 1}, false);
  int p = partner(f);
  if (f->rank <= p) {
    assert_ok(twin_mpi_send(ten, p, 10, MPI_COMM_WORLD));
    assert_ok(twin_mpi_send(col, p, 11, MPI_COMM_WORLD));
  }
  assert_status(twin_mpi_recv(twelve, p, 10, MPI_COMM_WORLD), TWIN_ERR_SHAPE_MISMATCH);
  assert_message("holds 80 bytes (10 elements of f64), the view 12 elements; it stays queued");
  assert_status(twin_mpi_recv(row, p, 11, MPI_COMM_WORLD), TWIN_ERR_SHAPE_MISMATCH);
  assert_message("holds 96 bytes (12 elements of f64), the view 10 elements");
  assert_ok(twin_mpi_recv(twelve, p, 11, MPI_COMM_WORLD));
  assert_ok(twin_mpi_recv(row, p, 10, MPI_COMM_WORLD));
  if (f->rank > p) {
    assert_ok(twin_mpi_send(ten, p, 10, MPI_COMM_WORLD));
    assert_ok(twin_mpi_send(col, p, 11, MPI_COMM_WORLD));
  }
  double got[C];
  assert_ok(twin_array_read(row, got, sizeof got));
  for (int j = 0; j < C; j++)
    assert_true(got[j] == value(p, 0, j));
  twin_array_unref(col);
  twin_array_unref(row);
  twin_array_unref(twelve);
  twin_array_unref(ten);
  twin_array_unref(dst);
  twin_array_unref(src);
}

/* An MPI error comes back as a status with MPI's own words, and the communicator keeps its
 * error handler (MPI_COMM_WORLD's is fatal: a leak of MPI_ERRORS_RETURN would hide errors). */
MPI_CASE(test_mpi_error_is_reported_with_its_string) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *src = device_newer(f, f->rank);
  assert_status(twin_mpi_send(src, f->size + 3, 0, MPI_COMM_WORLD), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("twin_mpi_send: MPI_Send to rank");
  assert_message("MPI_ERR_RANK");
  assert_status(twin_mpi_recv(src, 0, -5, MPI_COMM_WORLD), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("MPI_ERR_TAG");
  MPI_Errhandler h;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &h);
  assert_true(h == MPI_ERRORS_ARE_FATAL);
  MPI_Errhandler_free(&h);
  twin_array_unref(src);
}

/* The receiving access is opened before the message is taken: a view that cannot be written
 * (read-only, or busy with the caller's own access) leaves the message for a later receive. */
MPI_CASE(test_refused_recv_leaves_the_message_queued) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *src = device_newer(f, f->rank), *dst = sentinel(f), *row, *bcast;
  row = view(src, (twin_slice){1, 2, 1}, TWIN_ALL, false);
  twin_array *in = view(dst, (twin_slice){1, 2, 1}, TWIN_ALL, false);
  size_t shape[] = {1, C};
  assert_ok(twin_array_broadcast_to(in, 2, shape, &bcast));
  int p = partner(f);
  if (f->rank <= p)
    assert_ok(twin_mpi_send(row, p, 12, MPI_COMM_WORLD));
  assert_status(twin_mpi_recv(bcast, p, 12, MPI_COMM_WORLD), TWIN_ERR_READ_ONLY);
  assert_message("twin_mpi_recv: a: writing the view");
  void *ptr;
  assert_ok(twin_host_begin(in, TWIN_READ, &ptr));
  assert_status(twin_mpi_recv(in, p, 12, MPI_COMM_WORLD), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(in));
  assert_ok(twin_mpi_recv(in, p, 12, MPI_COMM_WORLD));
  if (f->rank > p)
    assert_ok(twin_mpi_send(row, p, 12, MPI_COMM_WORLD));
  double got[C];
  assert_ok(twin_array_read(in, got, sizeof got));
  for (int j = 0; j < C; j++)
    assert_true(got[j] == value(p, 1, j));
  twin_array_unref(bcast);
  twin_array_unref(in);
  twin_array_unref(row);
  twin_array_unref(dst);
  twin_array_unref(src);
}

/* A view whose elements alias (stride 0) receives by packing, whatever the threshold: each
 * element ends with one of the values sent to it (all equal here). */
MPI_CASE(test_recv_into_aliasing_view) {
  mpi_fixture *f = mpi_fix(state);
  setenv("TWIN_MPI_PACK_BELOW", "0", 1);
  twin_array *dst = sentinel(f), *twice, *src;
  size_t shape[] = {2, C};
  ptrdiff_t strides[] = {0, 1};
  assert_ok(twin_array_as_strided(dst, 2, shape, strides, 0, &twice));
  double data[2 * C];
  for (int j = 0; j < C; j++)
    data[j] = data[C + j] = value(f->rank, 0, j);
  assert_ok(twin_array_from_host(f->ctx, TWIN_F64, 2, shape, data, &src));
  swap(f, src, twice, 13);
  double got[C];
  twin_array *row = view(dst, (twin_slice){0, 1, 1}, TWIN_ALL, false);
  assert_ok(twin_array_read(row, got, sizeof got));
  for (int j = 0; j < C; j++)
    assert_true(got[j] == value(partner(f), 0, j));
  unsetenv("TWIN_MPI_PACK_BELOW");
  twin_array_unref(row);
  twin_array_unref(src);
  twin_array_unref(twice);
  twin_array_unref(dst);
}

MPI_CASE(test_bad_arguments_are_refused) {
  mpi_fixture *f = mpi_fix(state);
  twin_array *a = sentinel(f);
  assert_status(twin_mpi_send(NULL, 0, 0, MPI_COMM_WORLD), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("twin_mpi_send: a is NULL");
  assert_status(twin_mpi_recv(a, 0, 0, MPI_COMM_NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("twin_mpi_recv: comm is MPI_COMM_NULL");
  setenv("TWIN_MPI_PACK_BELOW", "lots", 1);
  assert_status(twin_mpi_send(a, MPI_PROC_NULL, 0, MPI_COMM_WORLD), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("TWIN_MPI_PACK_BELOW is \"lots\"");
  unsetenv("TWIN_MPI_PACK_BELOW");
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    MPI_TEST(test_send_recv_views_by_default_path),
    MPI_TEST(test_send_recv_views_through_datatypes),
    MPI_TEST(test_send_recv_views_packed),
    MPI_TEST(test_send_recv_across_layouts),
    MPI_TEST(test_send_and_recv_move_only_the_view),
    MPI_TEST(test_proc_null_sends_and_receives_nothing),
    MPI_TEST(test_recv_of_another_count_is_refused_and_kept),
    MPI_TEST(test_mpi_error_is_reported_with_its_string),
    MPI_TEST(test_refused_recv_leaves_the_message_queued),
    MPI_TEST(test_recv_into_aliasing_view),
    MPI_TEST(test_bad_arguments_are_refused),
};

MPI_TEST_MAIN(tests)

/* Halo exchanges over every Cartesian grid MPI_Dims_create makes of the ranks, in 1, 2 and 3
 * dimensions, periodic, not, and mixed, ghost widths 1 and 2: after each exchange every cell
 * of the field is checked against the global picture (a ghost holds the value of the global
 * cell it mirrors, wrapped on periodic axes, or stays untouched beyond a non-periodic edge,
 * corners and edges included), and the bytes moved between host and device are exactly the
 * strips sent (to the host) and received (to the device) in copy mode, none where a buffer is
 * one copy. The expected bytes are computed here, not asked of the library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_fixture.h"

static const size_t interior[] = {6, 5, 4}; /* per axis, on every rank */

/* One configuration: the grid of ranks, this rank's place in it, and the field's geometry. */
typedef struct grid {
  twin_dtype dtype;
  int ndim, width;
  int dims[3], periods[3], coords[3];
  MPI_Comm cart;
  size_t shape[3], global[3], cells;
} grid;

static void make_grid(const mpi_fixture *f, grid *g, twin_dtype dtype, int ndim, const int *periods,
                      int width) {
  memset(g, 0, sizeof *g);
  g->dtype = dtype;
  g->ndim = ndim;
  g->width = width;
  MPI_Dims_create(f->size, ndim, g->dims);
  memcpy(g->periods, periods, (size_t)ndim * sizeof *periods);
  MPI_Cart_create(MPI_COMM_WORLD, ndim, g->dims, g->periods, 0, &g->cart);
  int rank;
  MPI_Comm_rank(g->cart, &rank);
  MPI_Cart_coords(g->cart, rank, ndim, g->coords);
  g->cells = 1;
  for (int k = 0; k < ndim; k++) {
    g->shape[k] = interior[k] + 2 * (size_t)width;
    g->global[k] = interior[k] * (size_t)g->dims[k];
    g->cells *= g->shape[k];
  }
}

/* The local multi-index of cell c (C order). */
static void unravel(const grid *g, size_t c, ptrdiff_t *i) {
  for (int k = g->ndim - 1; k >= 0; k--) {
    i[k] = (ptrdiff_t)(c % g->shape[k]);
    c /= g->shape[k];
  }
}

/* What an untouched ghost holds: -1, or 255 in a u8 field. */
static double sentinel(const grid *g) {
  return g->dtype == TWIN_U8 ? 255 : -1;
}

/* Global cell values: distinct per cell and per round (u8: distinct among neighbours, and
 * never the sentinel). */
static double code(const grid *g, const ptrdiff_t *global, int round) {
  if (g->dtype == TWIN_U8)
    return (double)((global[0] * 7 + global[1] * 13 + global[2] * 29 + round * 31) % 251);
  double v = round * 1e6;
  for (int k = 0, scale = 1; k < g->ndim; k++, scale *= 100)
    v += (double)global[k] * scale;
  return v;
}

/* What local cell i holds: its interior value before the exchange (ghosts -1); after it
 * (`exchanged`), a ghost holds its global cell's value, wrapped on a periodic axis, or -1
 * beyond a non-periodic edge. */
static double expected(const grid *g, const ptrdiff_t *i, int round, bool exchanged) {
  ptrdiff_t global[3] = {0, 0, 0}, w = g->width;
  bool ghost = false;
  for (int k = 0; k < g->ndim; k++) {
    ghost |= i[k] < w || i[k] >= (ptrdiff_t)g->shape[k] - w;
    ptrdiff_t n = (ptrdiff_t)g->global[k];
    global[k] = g->coords[k] * (ptrdiff_t)interior[k] + i[k] - w;
    if (g->periods[k])
      global[k] = (global[k] % n + n) % n;
    else if (global[k] < 0 || global[k] >= n)
      return sentinel(g);
  }
  return ghost && !exchanged ? sentinel(g) : code(g, global, round);
}

/* The field's contents for a round, as the host sees them. */
static void picture(const grid *g, int round, bool exchanged, double *out) {
  ptrdiff_t i[3];
  for (size_t c = 0; c < g->cells; c++) {
    unravel(g, c, i);
    out[c] = expected(g, i, round, exchanged);
  }
}

/* Writes the round's interior (ghosts -1) into field by twin_copy, so the field is newer on
 * the device, as after a kernel. */
static void load(const mpi_fixture *f, const grid *g, twin_array *field, int round) {
  double *host = malloc(g->cells * sizeof *host);
  picture(g, round, false, host);
  twin_array *src, *tmp;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F64, g->ndim, g->shape, host, &src));
  assert_ok(twin_array_new(f->ctx, g->dtype, g->ndim, g->shape, &tmp));
  assert_ok(twin_copy(tmp, src)); /* converts to the field's dtype */
  assert_ok(twin_copy(field, tmp));
  twin_array_unref(tmp);
  twin_array_unref(src);
  free(host);
}

static void check_field(const grid *g, twin_array *field, int round) {
  double *want = malloc(g->cells * sizeof *want), *got = malloc(g->cells * sizeof *got);
  picture(g, round, true, want);
  twin_array *as_f64;
  twin_context *ctx = twin_array_context(field);
  assert_ok(twin_array_new(ctx, TWIN_F64, g->ndim, g->shape, &as_f64));
  assert_ok(twin_copy(as_f64, field));
  assert_ok(twin_array_read(as_f64, got, g->cells * sizeof *got));
  twin_array_unref(as_f64);
  for (size_t c = 0; c < g->cells; c++)
    if (got[c] != want[c]) {
      ptrdiff_t i[3] = {0};
      unravel(g, c, i);
      print_error("%d-d width %d periods %d%d%d at (%td, %td, %td) of rank (%d, %d, %d): %g, "
                  "expected %g\n",
                  g->ndim, g->width, g->periods[0], g->periods[1], g->periods[2], i[0], i[1], i[2],
                  g->coords[0], g->coords[1], g->coords[2], got[c], want[c]);
      fail();
    }
  free(want);
  free(got);
}

/* The strips' bytes, from the geometry: along axis k, width x the whole of the axes before k
 * x the interior of those after, for each side that has a neighbour. */
static size_t strip_bytes(const grid *g, size_t elem) {
  size_t total = 0;
  for (int k = 0; k < g->ndim; k++) {
    size_t strip = (size_t)g->width * elem;
    for (int j = 0; j < g->ndim; j++)
      if (j != k)
        strip *= j < k ? g->shape[j] : interior[j];
    int lo, hi;
    MPI_Cart_shift(g->cart, k, 1, &lo, &hi);
    total += strip * ((lo != MPI_PROC_NULL) + (hi != MPI_PROC_NULL));
  }
  return total;
}

/* Three rounds of new interiors and exchanges (exchange, then begin + end), each checked. */
static void run(const mpi_fixture *f, int ndim, const int *periods, int width, twin_dtype dtype) {
  grid g;
  make_grid(f, &g, dtype, ndim, periods, width);
  twin_array *field;
  twin_mpi_halo *h;
  assert_ok(twin_array_new(f->ctx, dtype, ndim, g.shape, &field));
  load(f, &g, field, 0);
  assert_ok(twin_mpi_halo_new(field, g.cart, width, &h));
  size_t sent, received, bytes = strip_bytes(&g, twin_dtype_size(dtype));
  twin_mpi_halo_bytes(h, &sent, &received);
  assert_int_equal(sent, bytes);
  assert_int_equal(received, bytes);
  for (int round = 0; round < 3; round++) {
    if (round > 0)
      load(f, &g, field, round);
    assert_ok(twin_context_stats_reset(f->ctx));
    if (round == 1) {
      assert_ok(twin_mpi_halo_begin(h));
      assert_ok(twin_mpi_halo_end(h));
    } else
      assert_ok(twin_mpi_halo_exchange(h));
    twin_stats st = mpi_stats(f->ctx);
    assert_int_equal(st.bytes_to_host, f->one_copy ? 0 : bytes);
    assert_int_equal(st.bytes_to_device, f->one_copy ? 0 : bytes);
    check_field(&g, field, round);
  }
  twin_mpi_halo_free(h);
  twin_array_unref(field);
  MPI_Comm_free(&g.cart);
}

static const int none[3] = {0, 0, 0}, all[3] = {1, 1, 1}, mixed[3] = {1, 0, 1};

MPI_CASE(test_halo_1d) {
  mpi_fixture *f = mpi_fix(state);
  for (int width = 1; width <= 2; width++) {
    run(f, 1, none, width, TWIN_F64);
    run(f, 1, all, width, TWIN_F64);
  }
}

MPI_CASE(test_halo_2d_fills_edges_and_corners) {
  mpi_fixture *f = mpi_fix(state);
  for (int width = 1; width <= 2; width++) {
    run(f, 2, none, width, TWIN_F64);
    run(f, 2, all, width, TWIN_F64);
    run(f, 2, mixed, width, TWIN_F64);
  }
}

MPI_CASE(test_halo_3d_fills_edges_and_corners) {
  mpi_fixture *f = mpi_fix(state);
  run(f, 3, none, 1, TWIN_F64);
  run(f, 3, all, 1, TWIN_F64);
  run(f, 3, mixed, 2, TWIN_F64);
}

MPI_CASE(test_halo_of_other_dtypes) {
  mpi_fixture *f = mpi_fix(state);
  run(f, 2, all, 1, TWIN_I32);
  run(f, 2, mixed, 1, TWIN_U8);
}

/* A 2-d periodic field and its halo, loaded for round 0. */
static void setup_2d(const mpi_fixture *f, grid *g, twin_array **field, twin_mpi_halo **h) {
  make_grid(f, g, TWIN_F64, 2, all, 1);
  assert_ok(twin_array_new(f->ctx, TWIN_F64, 2, g->shape, field));
  load(f, g, *field, 0);
  assert_ok(twin_mpi_halo_new(*field, g->cart, 1, h));
}

static void teardown_2d(grid *g, twin_array *field, twin_mpi_halo *h) {
  twin_mpi_halo_free(h);
  twin_array_unref(field);
  MPI_Comm_free(&g->cart);
}

/* field[r0:r1, c0:c1], an array object of the caller's. */
static twin_array *block(twin_array *field, size_t r0, size_t r1, size_t c0, size_t c1) {
  twin_slice s[] = {{(ptrdiff_t)r0, (ptrdiff_t)r1, 1}, {(ptrdiff_t)c0, (ptrdiff_t)c1, 1}};
  twin_array *v;
  assert_ok(twin_array_slice(field, s, &v));
  return v;
}

/* Opens and ends a host access of a; its status. */
static twin_status host_touch(twin_array *a, twin_access access) {
  void *p;
  twin_status s = twin_host_begin(a, access, &p);
  if (s == TWIN_OK)
    assert_ok(twin_host_end(a));
  return s;
}

static twin_status nothing(const twin_host_launch *launch, void *user) {
  (void)launch;
  (void)user;
  return TWIN_OK;
}

/* A host kernel: copies its first argument, a 2-d f64 view, into its second, a contiguous
 * array of that shape. */
static twin_status copy_view(const twin_host_launch *launch, void *user) {
  (void)user;
  const twin_array *v = launch->args[0].array;
  const size_t *n = twin_array_shape(v);
  const ptrdiff_t *st = twin_array_strides(v);
  const double *src = launch->data[0];
  double *dst = launch->data[1];
  for (size_t i = 0; i < n[0]; i++)
    for (size_t j = 0; j < n[1]; j++)
      dst[i * n[1] + j] = src[(ptrdiff_t)i * st[0] + (ptrdiff_t)j * st[1]];
  return TWIN_OK;
}

/* Launches a host kernel (any backend has them) that does nothing with a. */
static twin_status launch_on(twin_context *ctx, twin_array *a, twin_access access) {
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(ctx, "nothing", nothing, NULL, &k));
  size_t global[] = {1};
  twin_arg arg = twin_arg_view(a, access);
  twin_status s = twin_kernel_launch(k, 1, global, NULL, 1, &arg);
  twin_kernel_unref(k);
  return s;
}

/* twin_last_error() names a reservation of `what` made at this file's `line`. */
static void expect_reservation(const char *what, int line) {
  char made[160];
  snprintf(made, sizeof made, "made at %s:%d, which no thread holds", __FILE__, line);
  if (!strstr(twin_last_error(), what) || !strstr(twin_last_error(), made))
    print_error("twin_last_error() lacks \"%s\" or \"%s\": %s\n", what, made, twin_last_error());
  assert_non_null(strstr(twin_last_error(), what));
  assert_non_null(strstr(twin_last_error(), made));
}

/* Between begin and end the interior away from the faces can be computed on, and the whole
 * interior read: a fill of the deep interior (on the device) and a kernel that reads the
 * interior, faces included, run, and neither disturbs the exchange. */
MPI_CASE(test_halo_interior_is_usable_between_begin_and_end) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field, *deep, *inner, *out;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  size_t n0 = g.shape[0], n1 = g.shape[1];
  deep = block(field, 2, n0 - 2, 2, n1 - 2); /* the cells of no face: width 1, ghosts 1 */
  inner = block(field, 1, n0 - 1, 1, n1 - 1);
  assert_ok(twin_array_new(f->ctx, TWIN_F64, 2, twin_array_shape(inner), &out));
  twin_kernel *k;
  assert_ok(twin_kernel_new_host(f->ctx, "copy_view", copy_view, NULL, &k));
  size_t global[] = {1};
  twin_arg args[] = {twin_arg_view(inner, TWIN_READ), twin_arg_array(out, TWIN_WRITE)};
  assert_ok(twin_mpi_halo_begin(h));
  double seven = 7;
  assert_ok(twin_fill(deep, &seven));
  assert_ok(twin_kernel_launch(k, 1, global, NULL, 2, args));
  assert_ok(twin_mpi_halo_end(h));
  double *got = malloc(g.cells * sizeof *got), *want = malloc(g.cells * sizeof *want);
  picture(&g, 0, true, want);
  assert_ok(twin_array_read(out, got, twin_array_nbytes(out)));
  for (size_t i = 1; i < n0 - 1; i++)
    for (size_t j = 1; j < n1 - 1; j++) /* the interior as it was, the deep part before the fill */
      assert_true(
          got[(i - 1) * (n1 - 2) + j - 1] == want[i * n1 + j] ||
          (i >= 2 && i < n0 - 2 && j >= 2 && j < n1 - 2 && got[(i - 1) * (n1 - 2) + j - 1] == 7));
  assert_ok(twin_array_read(field, got, g.cells * sizeof *got));
  for (size_t i = 2; i < n0 - 2; i++)
    for (size_t j = 2; j < n1 - 2; j++)
      want[i * n1 + j] = 7;
  assert_memory_equal(got, want, g.cells * sizeof *got);
  free(got);
  free(want);
  twin_kernel_unref(k);
  twin_array_unref(out);
  twin_array_unref(inner);
  twin_array_unref(deep);
  teardown_2d(&g, field, h);
}

/* Between begin and end a kernel or access that touches a ghost (a kernel given the whole
 * field, a read of a ghost or a corner) or writes a face being sent is TWIN_ERR_BUSY at once,
 * naming the exchange's reservation and the line of its begin; reading a face is fine. After
 * end nothing is held, and the ghosts are right. */
MPI_CASE(test_halo_ghosts_and_sent_faces_are_busy_between_begin_and_end) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  size_t n0 = g.shape[0], n1 = g.shape[1];
  twin_array *ghost = block(field, 0, 1, 1, n1 - 1), *corner = block(field, 0, 1, 0, 1);
  twin_array *face = block(field, 1, 2, 1, n1 - 1), *inner = block(field, 1, n0 - 1, 1, n1 - 1);
  twin_array *deep = block(field, 2, n0 - 2, 2, n1 - 2);
  int line = __LINE__ + 1;
  assert_ok(twin_mpi_halo_begin(h));
  assert_status(launch_on(f->ctx, field, TWIN_READ), TWIN_ERR_BUSY);
  expect_reservation("overlap a write reservation", line);
  assert_status(host_touch(ghost, TWIN_READ), TWIN_ERR_BUSY);
  char what[64];
  snprintf(what, sizeof what, "a write reservation of a view of shape 1 x %zu", n1 - 2);
  expect_reservation(what, line);
  assert_status(host_touch(corner, TWIN_READ), TWIN_ERR_BUSY);
  snprintf(what, sizeof what, "a write reservation of a view of shape %zu x 1", n0);
  expect_reservation(what, line); /* the ghost column along axis 1, whole rows */
  assert_ok(host_touch(face, TWIN_READ));
  assert_status(host_touch(face, TWIN_WRITE), TWIN_ERR_BUSY);
  expect_reservation("a read reservation", line);
  assert_status(launch_on(f->ctx, inner, TWIN_READ_WRITE), TWIN_ERR_BUSY);
  double seven = 7;
  assert_status(twin_fill(inner, &seven), TWIN_ERR_BUSY);
  assert_ok(launch_on(f->ctx, inner, TWIN_READ));
  assert_ok(launch_on(f->ctx, deep, TWIN_READ_WRITE));
  assert_ok(twin_mpi_halo_end(h));
  check_field(&g, field, 0);
  assert_ok(launch_on(f->ctx, field, TWIN_READ_WRITE));
  assert_ok(host_touch(ghost, TWIN_READ_WRITE));
  assert_ok(host_touch(face, TWIN_READ_WRITE));
  twin_array *parts[] = {ghost, corner, face, inner, deep};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    twin_array_unref(parts[i]);
  teardown_2d(&g, field, h);
}

/* Beyond an edge without a neighbour the ghosts are the caller's (boundary values): the halo
 * never writes them, and they may be written during an exchange, but for the cells a later
 * axis's face sends on (to the neighbours' corners), which are reserved for reading. */
MPI_CASE(test_halo_boundary_cells_a_face_sends_are_reserved) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  static const int edge_then_ring[3] = {0, 1, 0};
  make_grid(f, &g, TWIN_F64, 2, edge_then_ring, 1);
  twin_array *field;
  twin_mpi_halo *h;
  assert_ok(twin_array_new(f->ctx, TWIN_F64, 2, g.shape, &field));
  load(f, &g, field, 0);
  assert_ok(twin_mpi_halo_new(field, g.cart, 1, &h));
  int lo, hi;
  MPI_Cart_shift(g.cart, 0, 1, &lo, &hi);
  size_t n1 = g.shape[1];
  twin_array *sent = block(field, 0, 1, 1, 2), *rest = block(field, 0, 1, 2, n1 - 2);
  bool edge = lo == MPI_PROC_NULL; /* row 0 is boundary, not ghost */
  int line = __LINE__ + 1;
  assert_ok(twin_mpi_halo_begin(h));
  assert_status(host_touch(sent, TWIN_WRITE), TWIN_ERR_BUSY);
  expect_reservation(edge ? "a read reservation of a view of shape 1 x 1" : "a write reservation",
                     line);
  assert_status(host_touch(sent, TWIN_READ), edge ? TWIN_OK : TWIN_ERR_BUSY);
  assert_status(host_touch(rest, TWIN_READ_WRITE), edge ? TWIN_OK : TWIN_ERR_BUSY);
  assert_ok(twin_mpi_halo_end(h));
  assert_ok(host_touch(sent, TWIN_READ_WRITE));
  check_field(&g, field, 0);
  twin_array_unref(rest);
  twin_array_unref(sent);
  teardown_2d(&g, field, h);
}

/* One exchange at a time: a second begin is busy, an end without begin a bad state. */
MPI_CASE(test_halo_refuses_a_second_begin) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  assert_status(twin_mpi_halo_end(h), TWIN_ERR_BAD_STATE);
  assert_message("no exchange under way");
  assert_ok(twin_mpi_halo_begin(h));
  assert_status(twin_mpi_halo_begin(h), TWIN_ERR_BUSY);
  assert_message("an exchange is under way");
  assert_status(twin_mpi_halo_exchange(h), TWIN_ERR_BUSY);
  assert_ok(twin_mpi_halo_end(h));
  assert_status(twin_mpi_halo_end(h), TWIN_ERR_BAD_STATE);
  check_field(&g, field, 0);
  teardown_2d(&g, field, h);
}

/* A begin that meets the caller's own access on the field starts nothing and holds nothing:
 * the reservation of the ghosts refuses it (on every backend), or, on a device, the pack meets
 * a host write on the interior; either way begin is busy, the halo stays idle, no
 * reservation is left, and an exchange afterwards works. */
MPI_CASE(test_halo_begin_blocked_by_own_access_starts_nothing) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  size_t n0 = g.shape[0], n1 = g.shape[1];
  twin_array *ghost = block(field, 0, 1, 1, n1 - 1), *deep = block(field, 2, n0 - 2, 2, n1 - 2);
  void *p;
  assert_ok(twin_host_begin(field, TWIN_READ_WRITE, &p));
  assert_status(twin_mpi_halo_begin(h), TWIN_ERR_BUSY);
  assert_message("twin_mpi_halo_begin: reserving the ghosts received from rank");
  assert_message("a host write access to this buffer is still open");
  assert_status(twin_mpi_halo_end(h), TWIN_ERR_BAD_STATE);
  assert_ok(twin_host_end(field));
  assert_ok(host_touch(ghost, TWIN_READ_WRITE));
  if (f->has_device) { /* the host backend copies on the host side: no clash there */
    assert_ok(twin_host_begin(deep, TWIN_WRITE, &p));
    assert_status(twin_mpi_halo_begin(h), TWIN_ERR_BUSY);
    assert_message("twin_mpi_halo_begin: packing the face sent to rank");
    assert_ok(host_touch(ghost, TWIN_READ_WRITE)); /* reserved, then released */
    assert_ok(twin_host_end(deep));
  }
  assert_ok(twin_mpi_halo_exchange(h));
  check_field(&g, field, 0);
  twin_array_unref(deep);
  twin_array_unref(ghost);
  teardown_2d(&g, field, h);
}

/* An unpack (on the device) that meets the caller's own host read of the deep interior is
 * busy, twin's accesses conflicting across the sides of a buffer; the ghosts not yet unpacked
 * stay reserved; end resumes once the access is closed, the ghosts come out right, and
 * nothing is held after. */
MPI_CASE(test_halo_end_resumes_after_busy) {
  mpi_fixture *f = mpi_fix(state);
  if (!f->has_device)
    mpi_skip();
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  size_t n0 = g.shape[0], n1 = g.shape[1];
  twin_array *ghost = block(field, 0, 1, 1, n1 - 1), *deep = block(field, 2, n0 - 2, 2, n1 - 2);
  assert_ok(twin_mpi_halo_begin(h));
  void *p;
  assert_ok(twin_host_begin(deep, TWIN_READ, &p));
  assert_status(twin_mpi_halo_end(h), TWIN_ERR_BUSY);
  assert_message("twin_mpi_halo_end: unpacking the ghosts from rank");
  assert_status(host_touch(ghost, TWIN_READ), TWIN_ERR_BUSY);
  assert_ok(twin_host_end(deep));
  assert_ok(twin_mpi_halo_end(h));
  check_field(&g, field, 0);
  assert_ok(host_touch(ghost, TWIN_READ_WRITE));
  twin_array_unref(deep);
  twin_array_unref(ghost);
  teardown_2d(&g, field, h);
}

/* Staging arrays and requests are made once: later exchanges allocate nothing. */
MPI_CASE(test_halo_reuses_its_staging) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  assert_ok(twin_mpi_halo_exchange(h));
  twin_stats before = mpi_stats(f->ctx);
  for (int i = 0; i < 5; i++)
    assert_ok(twin_mpi_halo_exchange(h));
  twin_stats after = mpi_stats(f->ctx);
  assert_int_equal(after.arrays, before.arrays);
  assert_int_equal(after.buffers, before.buffers);
  assert_int_equal(after.host_bytes, before.host_bytes);
  assert_int_equal(after.device_bytes, before.device_bytes);
  teardown_2d(&g, field, h);
}

/* Freeing a halo mid-exchange completes the exchange's messages first (no rank is left
 * waiting, no buffer freed under MPI) and releases its reservations. */
MPI_CASE(test_halo_free_mid_exchange) {
  mpi_fixture *f = mpi_fix(state);
  grid g;
  twin_array *field;
  twin_mpi_halo *h;
  setup_2d(f, &g, &field, &h);
  assert_ok(twin_mpi_halo_begin(h));
  assert_status(host_touch(field, TWIN_READ), TWIN_ERR_BUSY);
  twin_mpi_halo_free(h);
  assert_ok(host_touch(field, TWIN_READ_WRITE));
  twin_array_unref(field);
  MPI_Comm_free(&g.cart);
}

static const struct CMUnitTest tests[] = {
    MPI_TEST(test_halo_1d),
    MPI_TEST(test_halo_2d_fills_edges_and_corners),
    MPI_TEST(test_halo_3d_fills_edges_and_corners),
    MPI_TEST(test_halo_of_other_dtypes),
    MPI_TEST(test_halo_interior_is_usable_between_begin_and_end),
    MPI_TEST(test_halo_ghosts_and_sent_faces_are_busy_between_begin_and_end),
    MPI_TEST(test_halo_boundary_cells_a_face_sends_are_reserved),
    MPI_TEST(test_halo_refuses_a_second_begin),
    MPI_TEST(test_halo_begin_blocked_by_own_access_starts_nothing),
    MPI_TEST(test_halo_end_resumes_after_busy),
    MPI_TEST(test_halo_reuses_its_staging),
    MPI_TEST(test_halo_free_mid_exchange),
};

MPI_TEST_MAIN(tests)

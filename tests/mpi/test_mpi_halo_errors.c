/* twin_mpi_halo_new's refusals: each names what is wrong, and since the call is collective,
 * every rank fails when any rank's arguments are wrong (the others naming that rank), so no
 * rank goes on to exchange with one that gave up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_fixture.h"

/* A Cartesian communicator over every rank: ndim axes as MPI_Dims_create splits them. */
static MPI_Comm cart_of(const mpi_fixture *f, int ndim, int periodic) {
  int dims[3] = {0, 0, 0}, periods[3] = {periodic, periodic, periodic};
  MPI_Dims_create(f->size, ndim, dims);
  MPI_Comm cart;
  MPI_Cart_create(MPI_COMM_WORLD, ndim, dims, periods, 0, &cart);
  return cart;
}

static twin_array *field_of(const mpi_fixture *f, int ndim, const size_t *shape) {
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F64, ndim, shape, &a));
  return a;
}

MPI_CASE(test_halo_field_of_wrong_ndim) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 2, 0);
  size_t shape[] = {6, 6, 6};
  twin_array *a = field_of(f, 3, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("twin_mpi_halo_new: field has 3 axes, but cart has 2 dimensions");
  assert_null(h);
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

MPI_CASE(test_halo_width_larger_than_the_block) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 2, 1);
  size_t shape[] = {8, 5};
  twin_array *a = field_of(f, 2, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart, 2, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("axis 1 has length 5, too short for 2 ghost cells on each side");
  assert_status(twin_mpi_halo_new(a, cart, 0, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("width is 0, not at least 1");
  assert_null(h);
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

MPI_CASE(test_halo_needs_a_cartesian_communicator) {
  mpi_fixture *f = mpi_fix(state);
  size_t shape[] = {6};
  twin_array *a = field_of(f, 1, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, MPI_COMM_WORLD, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("cart has no topology, not a Cartesian topology");
  MPI_Comm graph;
  int me = f->rank, weight = 1; /* weights, not MPI_UNWEIGHTED, which gcc 12 warns about */
  MPI_Dist_graph_create_adjacent(MPI_COMM_WORLD, 1, &me, &weight, 1, &me, &weight, MPI_INFO_NULL, 0,
                                 &graph);
  assert_status(twin_mpi_halo_new(a, graph, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("cart has a distributed graph topology");
  assert_status(twin_mpi_halo_new(a, MPI_COMM_NULL, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("cart is MPI_COMM_NULL");
  assert_null(h);
  MPI_Comm_free(&graph);
  twin_array_unref(a);
}

/* One rank's bad width fails every rank: that rank with the reason, the others naming it. */
MPI_CASE(test_halo_one_rank_wrong_fails_every_rank) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 1, 1);
  size_t shape[] = {9};
  twin_array *a = field_of(f, 1, shape);
  twin_mpi_halo *h = NULL;
  int bad = f->size - 1;
  assert_status(twin_mpi_halo_new(a, cart, f->rank == bad ? 4 : 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  if (f->rank == bad)
    assert_message("axis 0 has length 9, too short for 4 ghost cells");
  else {
    char text[64];
    snprintf(text, sizeof text, "rank %d's arguments do not fit", bad);
    assert_message(text);
  }
  assert_null(h);
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

/* Neighbours whose shared faces differ (rank 1's block is wider along the face): both sides
 * name each other's blocks; every rank fails. */
MPI_CASE(test_halo_neighbours_of_mismatched_sizes) {
  mpi_fixture *f = mpi_fix(state);
  if (f->size < 2)
    mpi_skip(); /* one rank is its own neighbour: its faces always match */
  size_t shape[] = {6, f->rank == 1 ? 7 : 6};
  int dims[] = {f->size, 1}, periods[] = {0, 0};
  MPI_Comm cart2;
  MPI_Cart_create(MPI_COMM_WORLD, 2, dims, periods, 0, &cart2);
  twin_array *a = field_of(f, 2, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart2, 1, &h), TWIN_ERR_SHAPE_MISMATCH);
  if (f->rank == 0)
    assert_message("this rank (0) has a 6 x 6 f64, width 1 block, its upper neighbour along "
                   "axis 0 (rank 1) a 6 x 7 f64, width 1 block");
  else if (f->rank == 1)
    assert_message("this rank (1) has a 6 x 7 f64, width 1 block, its lower neighbour");
  else if (f->rank == 3)
    assert_message("rank 0's arguments do not fit (TWIN_ERR_SHAPE_MISMATCH)");
  assert_null(h);
  twin_array_unref(a);
  MPI_Comm_free(&cart2);
}

/* A mismatched dtype is a mismatch too: the messages would not fit. */
MPI_CASE(test_halo_neighbours_of_other_dtypes) {
  mpi_fixture *f = mpi_fix(state);
  if (f->size < 2)
    mpi_skip();
  MPI_Comm cart = cart_of(f, 1, 1);
  size_t shape[] = {6};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, f->rank == 0 ? TWIN_F32 : TWIN_F64, 1, shape, &a));
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart, 1, &h), TWIN_ERR_SHAPE_MISMATCH);
  if (f->rank == 0)
    assert_message("has a 6 f32, width 1 block");
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

/* A field whose strides twin cannot place on one lattice (7 and 2: neither divides the
 * other) has strips twin compares by byte extent, which an exchange could not reserve apart:
 * refused on every rank, naming the strides. */
MPI_CASE(test_halo_field_whose_strips_twin_cannot_tell_apart) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 2, 1);
  size_t n = 46, shape[] = {6, 6};
  ptrdiff_t strides[] = {7, 2}; /* elements 7 r + 2 c: distinct, the last 45 */
  twin_array *base = field_of(f, 1, &n), *a;
  assert_ok(twin_array_as_strided(base, 2, shape, strides, 0, &a));
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart, 1, &h), TWIN_ERR_UNSUPPORTED);
  assert_message("twin_mpi_halo_new: field: twin cannot tell the ghosts");
  assert_message("its strides (7, 2)");
  assert_null(h);
  twin_array_unref(a);
  twin_array_unref(base);
  MPI_Comm_free(&cart);
}

MPI_CASE(test_halo_null_arguments) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 1, 1);
  size_t shape[] = {6};
  twin_array *a = field_of(f, 1, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(NULL, cart, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("field is NULL");
  assert_status(twin_mpi_halo_new(a, cart, 1, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("out is NULL");
  assert_status(twin_mpi_halo_begin(NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_mpi_halo_end(NULL), TWIN_ERR_INVALID_ARGUMENT);
  twin_mpi_halo_free(NULL);
  size_t sent = 1, received = 1;
  twin_mpi_halo_bytes(NULL, &sent, &received);
  assert_int_equal(sent + received, 0);
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

/* After a failed twin_mpi_halo_new, the caller's communicator still has its own handler. */
MPI_CASE(test_halo_new_leaves_the_error_handler) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Comm cart = cart_of(f, 1, 1);
  size_t shape[] = {2};
  twin_array *a = field_of(f, 1, shape);
  twin_mpi_halo *h = NULL;
  assert_status(twin_mpi_halo_new(a, cart, 1, &h), TWIN_ERR_INVALID_ARGUMENT);
  MPI_Errhandler e;
  MPI_Comm_get_errhandler(cart, &e);
  assert_true(e == MPI_ERRORS_ARE_FATAL);
  MPI_Errhandler_free(&e);
  twin_array_unref(a);
  MPI_Comm_free(&cart);
}

static const struct CMUnitTest tests[] = {
    MPI_TEST(test_halo_field_of_wrong_ndim),
    MPI_TEST(test_halo_width_larger_than_the_block),
    MPI_TEST(test_halo_needs_a_cartesian_communicator),
    MPI_TEST(test_halo_one_rank_wrong_fails_every_rank),
    MPI_TEST(test_halo_neighbours_of_mismatched_sizes),
    MPI_TEST(test_halo_neighbours_of_other_dtypes),
    MPI_TEST(test_halo_field_whose_strips_twin_cannot_tell_apart),
    MPI_TEST(test_halo_null_arguments),
    MPI_TEST(test_halo_new_leaves_the_error_handler),
};

MPI_TEST_MAIN(tests)

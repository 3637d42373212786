/* twin_mpi_halo_new and twin_mpi_halo_free: a field's faces and ghosts as views, their
 * staging arrays, and the neighbours, made once for every exchange. */
#include <limits.h>
#include <stdlib.h>

#include "halo.h"

#define FN "twin_mpi_halo_new"

/* The index range of axis j in the strips of axis k: the whole axis for the axes before k
 * (their ghosts are filled by then), the interior for the axes after it, and on axis k itself
 * the face (`ghost` false) or the ghosts (true) on side d. */
static twin_slice strip_range(const twin_mpi_halo *h, int j, int k, int d, bool ghost) {
  ptrdiff_t n = (ptrdiff_t)twin_array_shape(h->field)[j], w = h->width;
  if (j < k)
    return (twin_slice){0, n, 1};
  if (j > k)
    return (twin_slice){w, n - w, 1};
  ptrdiff_t start = d == 0 ? (ghost ? 0 : w) : (ghost ? n - w : n - 2 * w);
  return (twin_slice){start, start + w, 1};
}

/* The whole of axis j, and its interior. */
static twin_slice whole(const twin_mpi_halo *h, int j) {
  return (twin_slice){0, (ptrdiff_t)twin_array_shape(h->field)[j], 1};
}

static twin_slice interior(const twin_mpi_halo *h, int j) {
  ptrdiff_t n = (ptrdiff_t)twin_array_shape(h->field)[j], w = h->width;
  return (twin_slice){w, n - w, 1};
}

static twin_status add_sent(twin_mpi_halo *h, twin_mpi__side *s, const twin_slice *box) {
  twin_status st = twin_array_slice(h->field, box, &s->sent[s->nsent]);
  s->nsent += st == TWIN_OK;
  return st;
}

/* The sent boxes of side (k, d) (see twin_mpi__side). A cell of the face lies in a ghost of an
 * earlier axis j when j is the last axis before k where the cell is outside the interior;
 * the exchange fills it when that ghost's side has a neighbour. So the face's cells that no
 * exchange writes are its interior part, and for each earlier side (j, e) without a
 * neighbour, the part where axis j is in that ghost and the axes between j and k are
 * interior. */
static twin_status make_sent(twin_mpi_halo *h, int k, int d) {
  twin_mpi__side *s = &h->side[k][d];
  twin_slice box[TWIN_MAX_DIMS], piece[TWIN_MAX_DIMS];
  for (int j = 0; j < h->ndim; j++)
    box[j] = j < k ? interior(h, j) : strip_range(h, j, k, d, false);
  twin_status st = add_sent(h, s, box);
  for (int j = 0; j < k && st == TWIN_OK; j++)
    for (int e = 0; e < 2 && st == TWIN_OK; e++) {
      if (h->side[j][e].peer != MPI_PROC_NULL)
        continue;
      for (int i = 0; i < h->ndim; i++)
        piece[i] = i < j ? whole(h, i) : i == j ? strip_range(h, j, j, e, true) : box[i];
      st = add_sent(h, s, piece);
    }
  return st;
}

/* A contiguous staging array of the face's shape, owner-tagged for the memory report. */
static twin_status make_staging_array(const twin_mpi_halo *h, const twin_array *face,
                                      twin_array **out) {
  twin_status s = twin_array_new(twin_array_context(h->field), twin_array_dtype(h->field), h->ndim,
                                 twin_array_shape(face), out);
  return s == TWIN_OK ? twin_array_set_owner(*out, "twin_mpi_halo") : s;
}

static twin_status make_strips(twin_mpi_halo *h, int k, int d) {
  twin_mpi__side *s = &h->side[k][d];
  twin_slice face[TWIN_MAX_DIMS], ghost[TWIN_MAX_DIMS];
  for (int j = 0; j < h->ndim; j++) {
    face[j] = strip_range(h, j, k, d, false);
    ghost[j] = strip_range(h, j, k, d, true);
  }
  twin_status st = twin_array_slice(h->field, face, &s->face);
  if (st == TWIN_OK)
    st = twin_array_slice(h->field, ghost, &s->ghost);
  if (st == TWIN_OK)
    st = make_sent(h, k, d);
  if (st == TWIN_OK)
    st = make_staging_array(h, s->face, &s->out);
  if (st == TWIN_OK)
    st = make_staging_array(h, s->face, &s->in);
  if (st != TWIN_OK)
    return twin_mpi__fail_twin(st, FN ": making the strips of axis %d", k);
  return TWIN_OK;
}

/* Neighbours, tags, views and staging for every side that has a neighbour. */
static twin_status make_sides(twin_mpi_halo *h) {
  for (int k = 0; k < h->ndim; k++) {
    int err = MPI_Cart_shift(h->comm, k, 1, &h->side[k][0].peer, &h->side[k][1].peer);
    if (err != MPI_SUCCESS)
      return twin_mpi__fail_mpi(err, FN ": MPI_Cart_shift along axis %d", k);
    for (int d = 0; d < 2; d++) {
      twin_mpi__side *s = &h->side[k][d];
      s->send_tag = 2 * k + d;     /* the face goes down (d = 0) or up (d = 1) */
      s->recv_tag = 2 * k + 1 - d; /* the ghosts come from the other way */
    }
  }
  return TWIN_OK;
}

static twin_status make_staging(twin_mpi_halo *h) {
  for (int k = 0; k < h->ndim; k++)
    for (int d = 0; d < 2; d++) {
      twin_mpi__side *s = &h->side[k][d];
      if (s->peer == MPI_PROC_NULL)
        continue;
      twin_status st = make_strips(h, k, d);
      if (st != TWIN_OK)
        return st;
      size_t n = twin_array_size(s->out), bytes = twin_array_nbytes(s->out);
      if (n > INT_MAX)
        return twin_mpi__fail(TWIN_ERR_OVERFLOW,
                              FN ": field: a strip of axis %d holds %zu elements, more than "
                                 "MPI's int count (%d)",
                              k, n, INT_MAX);
      h->bytes_sent += bytes;
      h->bytes_received += bytes;
    }
  return TWIN_OK;
}

static twin_mpi_halo *halo_alloc(twin_array *field, int width) {
  twin_mpi_halo *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->field = twin_array_ref(field);
  h->comm = MPI_COMM_NULL;
  h->ndim = twin_array_ndim(field);
  h->width = width;
  h->phase = TWIN_MPI__IDLE;
  for (int k = 0; k < TWIN_MAX_DIMS; k++)
    for (int d = 0; d < 2; d++) {
      h->side[k][d].peer = MPI_PROC_NULL;
      h->side[k][d].send = h->side[k][d].recv = MPI_REQUEST_NULL;
    }
  return h;
}

/* Duplicates cart with MPI_ERRORS_RETURN, cart's own handler in place for the call. */
static twin_status dup_comm(MPI_Comm cart, MPI_Comm *out) {
  twin_mpi__handler guard;
  int err = twin_mpi__errors_enter(cart, &guard);
  if (err == MPI_SUCCESS)
    err = MPI_Comm_dup(cart, out);
  twin_mpi__errors_leave(&guard);
  if (err == MPI_SUCCESS)
    err = MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, FN ": duplicating cart");
  return TWIN_OK;
}

/* Refusals every rank makes alike, so no rank waits for another: a communicator that is not
 * Cartesian, or none at all. */
static twin_status check_cart(MPI_Comm cart) {
  int topo = MPI_UNDEFINED;
  if (cart == MPI_COMM_NULL)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, FN ": cart is MPI_COMM_NULL");
  twin_mpi__handler guard;
  int err = twin_mpi__errors_enter(cart, &guard);
  if (err == MPI_SUCCESS)
    err = MPI_Topo_test(cart, &topo);
  twin_mpi__errors_leave(&guard);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, FN ": cart: MPI_Topo_test");
  if (topo != MPI_CART)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT,
                          FN ": cart has %s, not a Cartesian topology (make one with "
                             "MPI_Cart_create)",
                          topo == MPI_GRAPH        ? "a graph topology"
                          : topo == MPI_DIST_GRAPH ? "a distributed graph topology"
                                                   : "no topology");
  return TWIN_OK;
}

static twin_status check_local(twin_array *field, MPI_Comm comm, int width, twin_mpi_halo **out) {
  if (!field || !out)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, FN ": %s is NULL", field ? "out" : "field");
  if (width < 1)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, FN ": width is %d, not at least 1", width);
  return twin_mpi__check_field(field, comm, width);
}

/* This rank's halo once the arguments passed everywhere: neighbours, their sizes, strips. */
static twin_status make_halo(twin_array *field, MPI_Comm comm, int width, twin_mpi_halo **out) {
  twin_mpi_halo *h = halo_alloc(field, width);
  if (!h)
    return twin_mpi__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, FN ": no memory for the halo");
  h->comm = comm;
  twin_status s = make_sides(h);
  if (s == TWIN_OK)
    s = twin_mpi__check_neighbours(h);
  if (s == TWIN_OK)
    s = make_staging(h);
  if (s == TWIN_OK)
    s = twin_mpi__check_strips_apart(h);
  *out = h; /* also on failure: the caller frees it once every rank knows */
  return s;
}

twin_status twin_mpi_halo_new(twin_array *field, MPI_Comm cart, int width, twin_mpi_halo **out) {
  MPI_Comm comm;
  twin_status s = check_cart(cart);
  if (s == TWIN_OK)
    s = dup_comm(cart, &comm);
  if (s != TWIN_OK)
    return s;
  twin_mpi_halo *h = NULL;
  s = twin_mpi__agree(comm, check_local(field, comm, width, out));
  if (s == TWIN_OK)
    s = make_halo(field, comm, width, &h);
  s = twin_mpi__agree(comm, s); /* every rank learns whether any rank failed */
  if (s == TWIN_OK)
    *out = h;
  else if (h)
    twin_mpi_halo_free(h); /* frees comm too */
  else
    MPI_Comm_free(&comm);
  return s;
}

void twin_mpi_halo_free(twin_mpi_halo *h) {
  if (!h)
    return;
  if (h->phase == TWIN_MPI__FLIGHT) /* the buffers must outlive the messages */
    for (int d = 0; d < 2; d++) {
      MPI_Wait(&h->side[h->axis][d].send, MPI_STATUS_IGNORE);
      MPI_Wait(&h->side[h->axis][d].recv, MPI_STATUS_IGNORE);
    }
  twin_mpi__release_all(h);
  for (int k = 0; k < h->ndim; k++)
    for (int d = 0; d < 2; d++) {
      twin_mpi__side *s = &h->side[k][d];
      twin_mpi__side_release(s);
      for (int i = 0; i < s->nsent; i++)
        twin_array_unref(s->sent[i]);
      twin_array_unref(s->face);
      twin_array_unref(s->ghost);
      twin_array_unref(s->out);
      twin_array_unref(s->in);
    }
  if (h->comm != MPI_COMM_NULL)
    MPI_Comm_free(&h->comm);
  twin_array_unref(h->field);
  free(h);
}

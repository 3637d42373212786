/* The checks of twin_mpi_halo_new. Some are this rank's alone (the field's ndim and lengths),
 * some need the neighbours (their block sizes); either way every rank must learn the outcome,
 * since a rank that went on to exchange with one that gave up would wait for ever. */
#include <limits.h>
#include <stdio.h>

#include "halo.h"

#define FN "twin_mpi_halo_new"

twin_status twin_mpi__check_field(const twin_array *field, MPI_Comm comm, int width) {
  int dims = 0;
  MPI_Cartdim_get(comm, &dims);
  if (twin_array_ndim(field) != dims)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT,
                          FN ": field has %d axes, but cart has %d dimensions",
                          twin_array_ndim(field), dims);
  const size_t *shape = twin_array_shape(field);
  for (int k = 0; k < dims; k++)
    if (shape[k] < 3 * (size_t)width)
      return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT,
                            FN ": field: axis %d has length %zu, too short for %d ghost cells "
                               "on each side around an interior at least as wide (%zu or more)",
                            k, shape[k], width, 3 * (size_t)width);
  return TWIN_OK;
}

twin_status twin_mpi__agree(MPI_Comm comm, twin_status local) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  /* MINLOC finds the lowest faulty rank (INT_MAX stands for "fine") and carries its status. */
  struct {
    int rank, status;
  } mine = {local == TWIN_OK ? INT_MAX : rank, (int)local}, first;
  int err = MPI_Allreduce(&mine, &first, 1, MPI_2INT, MPI_MINLOC, comm);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, FN ": agreeing on the checks (MPI_Allreduce)");
  if (first.rank == INT_MAX || local != TWIN_OK)
    return local;
  return twin_mpi__fail((twin_status)first.status,
                        FN ": rank %d's arguments do not fit (%s); its twin_mpi_last_error() "
                           "says why",
                        first.rank, twin_status_name((twin_status)first.status));
}

/* What a neighbour must agree on: dtype, width, ndim, then the lengths of every axis. */
enum { DESC_DTYPE, DESC_WIDTH, DESC_NDIM, DESC_SHAPE, DESC_LEN = DESC_SHAPE + TWIN_MAX_DIMS };

static void describe(const twin_mpi_halo *h, long long desc[DESC_LEN]) {
  const size_t *shape = twin_array_shape(h->field);
  desc[DESC_DTYPE] = twin_array_dtype(h->field);
  desc[DESC_WIDTH] = h->width;
  desc[DESC_NDIM] = h->ndim;
  for (int k = 0; k < TWIN_MAX_DIMS; k++)
    desc[DESC_SHAPE + k] = k < h->ndim ? (long long)shape[k] : 0;
}

static void format_block(const long long desc[DESC_LEN], char *out, size_t cap) {
  size_t used = 0;
  for (int k = 0; k < desc[DESC_NDIM] && used < cap; k++)
    used +=
        (size_t)snprintf(out + used, cap - used, "%s%lld", k ? " x " : "", desc[DESC_SHAPE + k]);
  if (used < cap)
    snprintf(out + used, cap - used, " %s, width %lld",
             twin_dtype_name((twin_dtype)desc[DESC_DTYPE]), desc[DESC_WIDTH]);
}

/* The face along axis k spans every other axis, so those lengths must match. */
static bool faces_agree(const long long *a, const long long *b, int k) {
  if (a[DESC_DTYPE] != b[DESC_DTYPE] || a[DESC_WIDTH] != b[DESC_WIDTH] ||
      a[DESC_NDIM] != b[DESC_NDIM])
    return false;
  for (int j = 0; j < a[DESC_NDIM]; j++)
    if (j != k && a[DESC_SHAPE + j] != b[DESC_SHAPE + j])
      return false;
  return true;
}

static twin_status mismatch(const twin_mpi_halo *h, int k, int d, const long long *mine,
                            const long long *theirs) {
  char a[256], b[256];
  int rank = 0;
  MPI_Comm_rank(h->comm, &rank);
  format_block(mine, a, sizeof a);
  format_block(theirs, b, sizeof b);
  return twin_mpi__fail(TWIN_ERR_SHAPE_MISMATCH,
                        FN ": field: this rank (%d) has a %s block, its %s neighbour along axis "
                           "%d (rank %d) a %s block: the face they share differs",
                        rank, a, d ? "upper" : "lower", k, h->side[k][d].peer, b);
}

/* Both neighbours of axis k at once, non-blocking: on one rank of a periodic axis both are
 * this rank, and blocking calls in turn would wait for each other. */
static int swap_axis(const twin_mpi_halo *h, int k, long long *mine,
                     long long theirs[2][DESC_LEN]) {
  MPI_Request r[4] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL, MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  int err = MPI_SUCCESS;
  for (int d = 0; d < 2 && err == MPI_SUCCESS; d++) {
    const twin_mpi__side *s = &h->side[k][d];
    err = MPI_Irecv(theirs[d], DESC_LEN, MPI_LONG_LONG, s->peer, s->recv_tag, h->comm, &r[2 * d]);
    if (err == MPI_SUCCESS)
      err = MPI_Isend(mine, DESC_LEN, MPI_LONG_LONG, s->peer, s->send_tag, h->comm, &r[2 * d + 1]);
  }
  int waited = MPI_Waitall(4, r, MPI_STATUSES_IGNORE);
  return err != MPI_SUCCESS ? err : waited;
}

twin_status twin_mpi__check_neighbours(const twin_mpi_halo *h) {
  long long mine[DESC_LEN], theirs[2][DESC_LEN];
  describe(h, mine);
  twin_status s = TWIN_OK;
  for (int k = 0; k < h->ndim; k++) {
    int err = swap_axis(h, k, mine, theirs);
    if (err != MPI_SUCCESS)
      return twin_mpi__fail_mpi(err, FN ": exchanging block sizes along axis %d", k);
    for (int d = 0; d < 2; d++)
      if (s == TWIN_OK && h->side[k][d].peer != MPI_PROC_NULL && !faces_agree(mine, theirs[d], k))
        s = mismatch(h, k, d, mine, theirs[d]);
  }
  return s;
}

/* The first of the views an exchange reserves besides side (k, d)'s ghost that the ghost
 * overlaps (as twin judges it), described in what; false when none does. */
static bool ghost_overlaps(const twin_mpi_halo *h, int k, int d, char *what, size_t cap) {
  const twin_array *ghost = h->side[k][d].ghost;
  for (int j = 0; j < h->ndim; j++)
    for (int e = 0; e < 2; e++) {
      const twin_mpi__side *s = &h->side[j][e];
      if (s->peer == MPI_PROC_NULL)
        continue;
      if ((j != k || e != d) && twin_array_overlaps(ghost, s->ghost)) {
        snprintf(what, cap, "the ghosts received along axis %d (%s side)", j,
                 e ? "upper" : "lower");
        return true;
      }
      for (int i = 0; i < s->nsent; i++)
        if (twin_array_overlaps(ghost, s->sent[i])) {
          snprintf(what, cap, "the face sent along axis %d (%s side)", j, e ? "upper" : "lower");
          return true;
        }
    }
  return false;
}

twin_status twin_mpi__check_strips_apart(const twin_mpi_halo *h) {
  char what[96], strides[128] = "";
  for (int k = 0; k < h->ndim; k++)
    for (int d = 0; d < 2; d++) {
      if (h->side[k][d].peer == MPI_PROC_NULL || !ghost_overlaps(h, k, d, what, sizeof what))
        continue;
      for (int j = 0, used = 0; j < h->ndim && used < (int)sizeof strides; j++)
        used += snprintf(strides + used, sizeof strides - (size_t)used, "%s%td", j ? ", " : "",
                         twin_array_strides(h->field)[j]);
      return twin_mpi__fail(TWIN_ERR_UNSUPPORTED,
                            FN ": field: twin cannot tell the ghosts received along axis %d (%s "
                               "side) apart from %s: its strides (%s) are not those of a slice "
                               "with step 1 of an array in C or Fortran order (each dividing the "
                               "next larger), so twin compares its strips by byte extent, and "
                               "an exchange could not reserve them (twin_array_contiguous "
                               "makes a field that works)",
                            k, d ? "upper" : "lower", what, strides);
    }
  return TWIN_OK;
}

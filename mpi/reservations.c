/* What an exchange holds on the field between twin_mpi_halo_begin and twin_mpi_halo_end:
 * twin region reservations (twin_array_reserve) of the halo's own views. The ghosts are
 * reserved for writing (every other access that touches one is refused: its value is not
 * there yet), the cells each face sends for reading (a write elsewhere would change what the
 * neighbour gets). The halo's own copies go through the reserving views, which the
 * reservations let pass, and the reservations are disjoint (twin_mpi__check_strips_apart):
 * a face's ghost cells, which the exchange fills before the face is packed, are left out of
 * its sent boxes. Each is released as its step completes. */
#include "halo.h"

static bool has_peer(const twin_mpi__side *s) {
  return s->peer != MPI_PROC_NULL;
}

static void release_sent(twin_mpi__side *s) {
  if (!s->sent_reserved)
    return;
  for (int i = 0; i < s->nsent; i++)
    twin_array_unreserve(s->sent[i]);
  s->sent_reserved = false;
}

static void release_ghost(twin_mpi__side *s) {
  if (s->ghost_reserved)
    twin_array_unreserve(s->ghost);
  s->ghost_reserved = false;
}

/* Reserves side s's sent boxes, all or none. */
static twin_status reserve_sent(twin_mpi__side *s, const char *file, int line) {
  twin_status st = TWIN_OK;
  int i = 0;
  for (; i < s->nsent && st == TWIN_OK; i++)
    st = twin_array_reserve_at(s->sent[i], TWIN_READ, file, line);
  if (st == TWIN_OK) {
    s->sent_reserved = true;
    return TWIN_OK;
  }
  for (i -= 2; i >= 0; i--) /* the ones before the box that failed */
    twin_array_unreserve(s->sent[i]);
  return st;
}

static twin_status reserve_side(twin_mpi__side *s, int k, const char *fn, const char *file,
                                int line) {
  twin_status st = twin_array_reserve_at(s->ghost, TWIN_WRITE, file, line);
  s->ghost_reserved = st == TWIN_OK;
  if (st != TWIN_OK)
    return twin_mpi__fail_twin(st, "%s: reserving the ghosts received from rank %d along axis %d",
                               fn, s->peer, k);
  st = reserve_sent(s, file, line);
  if (st != TWIN_OK)
    return twin_mpi__fail_twin(st, "%s: reserving the face sent to rank %d along axis %d", fn,
                               s->peer, k);
  return TWIN_OK;
}

twin_status twin_mpi__reserve(twin_mpi_halo *h, const char *fn, const char *file, int line) {
  for (int k = 0; k < h->ndim; k++)
    for (int d = 0; d < 2; d++) {
      twin_mpi__side *s = &h->side[k][d];
      twin_status st = has_peer(s) ? reserve_side(s, k, fn, file, line) : TWIN_OK;
      if (st != TWIN_OK) {
        twin_mpi__release_all(h);
        return st;
      }
    }
  return TWIN_OK;
}

void twin_mpi__release_sent(twin_mpi_halo *h, int k) {
  release_sent(&h->side[k][0]);
  release_sent(&h->side[k][1]);
}

void twin_mpi__release_ghosts(twin_mpi_halo *h, int k) {
  release_ghost(&h->side[k][0]);
  release_ghost(&h->side[k][1]);
}

void twin_mpi__release_all(twin_mpi_halo *h) {
  for (int k = 0; k < h->ndim; k++) {
    twin_mpi__release_sent(h, k);
    twin_mpi__release_ghosts(h, k);
  }
}

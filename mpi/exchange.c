/* A halo exchange, axis by axis: pack the faces on the device into staging arrays, open the
 * staging arrays' host accesses (which move exactly their bytes, or nothing on a zero-copy
 * device), start the persistent requests; wait; close the accesses and unpack into the ghosts
 * on the device. Begin first reserves the ghosts and the cells the faces send
 * (reservations.c); each is released as its step completes. Each step that can fail on twin
 * leaves the phase where it was, so a later call resumes; an MPI failure breaks the halo. */
#include <stdio.h>
#include <string.h>

#include "halo.h"

static bool has_peer(const twin_mpi__side *s) {
  return s->peer != MPI_PROC_NULL;
}

static bool axis_has_peer(const twin_mpi_halo *h, int k) {
  return has_peer(&h->side[k][0]) || has_peer(&h->side[k][1]);
}

static void close_staging(twin_mpi__side *s) {
  if (s->out_open)
    twin_host_end(s->out);
  if (s->in_open)
    twin_host_end(s->in);
  s->out_open = s->in_open = false;
}

void twin_mpi__side_release(twin_mpi__side *s) {
  close_staging(s);
  if (s->send != MPI_REQUEST_NULL)
    MPI_Request_free(&s->send);
  if (s->recv != MPI_REQUEST_NULL)
    MPI_Request_free(&s->recv);
}

/* An MPI failure mid-exchange leaves messages in an unknown state: the halo is done for. */
static twin_status broken(twin_mpi_halo *h, int err, const char *fn, const char *what, int k) {
  h->broken = twin_mpi__fail_mpi(err, "%s: %s along axis %d", fn, what, k);
  h->phase = TWIN_MPI__BROKEN;
  twin_mpi__release_all(h); /* no exchange will complete: its ghosts stay unspecified */
  snprintf(h->why, sizeof h->why, "%s", twin_mpi_last_error());
  return h->broken;
}

static twin_status pack_axis(twin_mpi_halo *h, int k, const char *fn) {
  for (int d = 0; d < 2; d++) {
    twin_mpi__side *s = &h->side[k][d];
    twin_status st = has_peer(s) ? twin_copy(s->out, s->face) : TWIN_OK;
    if (st != TWIN_OK)
      return twin_mpi__fail_twin(st, "%s: packing the face sent to rank %d along axis %d", fn,
                                 s->peer, k);
  }
  return TWIN_OK;
}

/* Persistent requests are bound to a buffer address. twin gives a staging array the same
 * address at each host access in practice but promises it for one access at a time, so a
 * changed address gets a new request. */
static int bind(twin_mpi_halo *h, twin_mpi__side *s, void *out, void *in) {
  MPI_Datatype t = twin_mpi_element_type(twin_array_dtype(h->field));
  int n = (int)twin_array_size(s->out), err = MPI_SUCCESS;
  if (s->send == MPI_REQUEST_NULL || out != s->out_ptr) {
    if (s->send != MPI_REQUEST_NULL)
      MPI_Request_free(&s->send);
    err = MPI_Send_init(out, n, t, s->peer, s->send_tag, h->comm, &s->send);
    s->out_ptr = out;
  }
  if (err == MPI_SUCCESS && (s->recv == MPI_REQUEST_NULL || in != s->in_ptr)) {
    if (s->recv != MPI_REQUEST_NULL)
      MPI_Request_free(&s->recv);
    err = MPI_Recv_init(in, n, t, s->peer, s->recv_tag, h->comm, &s->recv);
    s->in_ptr = in;
  }
  return err;
}

/* Opens the staging accesses MPI works through: the packed face read on the host (waiting
 * for the pack, moving its bytes in copy mode), the receiving strip written there. */
static twin_status open_side(twin_mpi__side *s, void **out, void **in) {
  twin_status st = twin_host_begin(s->out, TWIN_READ, out);
  s->out_open = st == TWIN_OK;
  if (st == TWIN_OK)
    st = twin_host_begin(s->in, TWIN_WRITE, in);
  s->in_open = s->out_open && st == TWIN_OK;
  return st;
}

static twin_status open_axis(twin_mpi_halo *h, int k, const char *fn) {
  twin_status st = TWIN_OK;
  int err = MPI_SUCCESS;
  for (int d = 0; d < 2 && st == TWIN_OK && err == MPI_SUCCESS; d++) {
    twin_mpi__side *s = &h->side[k][d];
    void *out, *in;
    if (has_peer(s) && (st = open_side(s, &out, &in)) == TWIN_OK)
      err = bind(h, s, out, in);
  }
  if (st == TWIN_OK && err == MPI_SUCCESS)
    return TWIN_OK;
  close_staging(&h->side[k][0]);
  close_staging(&h->side[k][1]);
  if (err != MPI_SUCCESS)
    return broken(h, err, fn, "making the persistent requests", k);
  return twin_mpi__fail_twin(st, "%s: opening the staging arrays of axis %d", fn, k);
}

static twin_status start_axis(twin_mpi_halo *h, int k, const char *fn) {
  for (int d = 0; d < 2; d++) {
    twin_mpi__side *s = &h->side[k][d];
    int err = has_peer(s) ? MPI_Start(&s->recv) : MPI_SUCCESS;
    if (err == MPI_SUCCESS && has_peer(s))
      err = MPI_Start(&s->send);
    if (err != MPI_SUCCESS)
      return broken(h, err, fn, "MPI_Start", k);
  }
  return TWIN_OK;
}

static twin_status wait_axis(twin_mpi_halo *h, int k, const char *fn) {
  MPI_Request r[4];
  for (int d = 0; d < 2; d++) {
    const twin_mpi__side *s = &h->side[k][d];
    r[2 * d] = has_peer(s) ? s->recv : MPI_REQUEST_NULL;
    r[2 * d + 1] = has_peer(s) ? s->send : MPI_REQUEST_NULL;
  }
  int err = MPI_Waitall(4, r, MPI_STATUSES_IGNORE);
  if (err != MPI_SUCCESS)
    return broken(h, err, fn, "MPI_Waitall", k);
  close_staging(&h->side[k][0]);
  close_staging(&h->side[k][1]);
  return TWIN_OK;
}

static twin_status unpack_axis(twin_mpi_halo *h, int k, const char *fn) {
  for (int d = 0; d < 2; d++) {
    twin_mpi__side *s = &h->side[k][d];
    twin_status st = has_peer(s) ? twin_copy(s->ghost, s->in) : TWIN_OK;
    if (st != TWIN_OK)
      return twin_mpi__fail_twin(st, "%s: unpacking the ghosts from rank %d along axis %d", fn,
                                 s->peer, k);
  }
  return TWIN_OK;
}

/* Packs and starts the current axis, skipping axes without neighbours. */
static twin_status step_pack(twin_mpi_halo *h, const char *fn) {
  if (!axis_has_peer(h, h->axis)) {
    h->phase = ++h->axis == h->ndim ? TWIN_MPI__IDLE : TWIN_MPI__PACK;
    return TWIN_OK;
  }
  twin_status s = pack_axis(h, h->axis, fn);
  if (s == TWIN_OK)
    s = open_axis(h, h->axis, fn);
  if (s == TWIN_OK)
    s = start_axis(h, h->axis, fn);
  if (s == TWIN_OK)
    h->phase = TWIN_MPI__FLIGHT;
  return s;
}

/* Runs the exchange forward until it is done, fails, or (begin) the first messages are under
 * way. */
static twin_status advance(twin_mpi_halo *h, const char *fn, bool until_started) {
  twin_status s = TWIN_OK;
  while (s == TWIN_OK && h->phase != TWIN_MPI__IDLE) {
    switch (h->phase) {
    case TWIN_MPI__PACK:
      s = step_pack(h, fn);
      if (s == TWIN_OK && until_started && h->phase == TWIN_MPI__FLIGHT)
        return TWIN_OK;
      break;
    case TWIN_MPI__FLIGHT:
      s = wait_axis(h, h->axis, fn);
      if (s == TWIN_OK) {
        twin_mpi__release_sent(h, h->axis); /* the faces have left */
        h->phase = TWIN_MPI__UNPACK;
      }
      break;
    case TWIN_MPI__UNPACK:
      s = unpack_axis(h, h->axis, fn);
      if (s == TWIN_OK) {
        twin_mpi__release_ghosts(h, h->axis); /* they hold their new values */
        h->phase = ++h->axis == h->ndim ? TWIN_MPI__IDLE : TWIN_MPI__PACK;
      }
      break;
    default:
      return h->broken;
    }
  }
  return s;
}

static twin_status check_usable(const twin_mpi_halo *h, const char *fn) {
  if (!h)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: h is NULL", fn);
  if (h->phase == TWIN_MPI__BROKEN)
    return twin_mpi__fail(h->broken, "%s: an earlier MPI failure broke this halo (%s)", fn, h->why);
  return TWIN_OK;
}

twin_status twin_mpi_halo_begin_at(twin_mpi_halo *h, const char *file, int line) {
  static const char fn[] = "twin_mpi_halo_begin";
  twin_status s = check_usable(h, fn);
  if (s != TWIN_OK)
    return s;
  if (h->active)
    return twin_mpi__fail(TWIN_ERR_BUSY,
                          "%s: an exchange is under way (begun, not yet ended); its ghosts and "
                          "faces are still in use: call twin_mpi_halo_end first",
                          fn);
  s = twin_mpi__reserve(h, fn, file, line);
  if (s != TWIN_OK)
    return s;
  h->active = true;
  h->axis = 0;
  h->phase = TWIN_MPI__PACK;
  s = advance(h, fn, true);
  if (s != TWIN_OK && h->phase == TWIN_MPI__PACK) {
    /* The first axis with neighbours failed to pack or to open its staging: nothing
     * started, as if begin had failed before it did anything. */
    twin_mpi__release_all(h);
    h->active = false;
    h->phase = TWIN_MPI__IDLE;
  }
  return s;
}

twin_status(twin_mpi_halo_begin)(twin_mpi_halo *h) {
  return twin_mpi_halo_begin_at(h, NULL, 0);
}

twin_status twin_mpi_halo_end(twin_mpi_halo *h) {
  static const char fn[] = "twin_mpi_halo_end";
  twin_status s = check_usable(h, fn);
  if (s != TWIN_OK)
    return s;
  if (!h->active)
    return twin_mpi__fail(TWIN_ERR_BAD_STATE,
                          "%s: no exchange under way (call "
                          "twin_mpi_halo_begin first)",
                          fn);
  s = advance(h, fn, false);
  if (h->phase == TWIN_MPI__IDLE)
    h->active = false;
  return s;
}

twin_status twin_mpi_halo_exchange_at(twin_mpi_halo *h, const char *file, int line) {
  twin_status s = twin_mpi_halo_begin_at(h, file, line);
  return s == TWIN_OK ? twin_mpi_halo_end(h) : s;
}

twin_status(twin_mpi_halo_exchange)(twin_mpi_halo *h) {
  return twin_mpi_halo_exchange_at(h, NULL, 0);
}

void twin_mpi_halo_bytes(const twin_mpi_halo *h, size_t *sent, size_t *received) {
  if (sent)
    *sent = h ? h->bytes_sent : 0;
  if (received)
    *received = h ? h->bytes_received : 0;
}

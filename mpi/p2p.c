/* twin_mpi_send and twin_mpi_recv: any view over MPI through twin's host access, in place
 * with a derived datatype where the view's contiguous runs are long, packed where they are
 * short (MPI's datatype engine costs per piece; see twin_mpi.h for the threshold). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Runs of at least this many bytes go through a datatype, shorter ones are packed. Measured
 * with twin-bench-mpi (README, "Beyond one machine"), Open MPI 4.1 over shared memory: the
 * datatype path was faster at every run length from 1 byte to 4 KiB (0.3-0.9x the pack path's
 * time in one copy, 0.02-1.0x in two copies), since MPI packs straight into its own transfer
 * buffers and the pack path adds a copy on each side. So by default nothing packs but a
 * receive into aliasing elements; TWIN_MPI_PACK_BELOW serves transports whose datatype engine
 * is slow on small pieces. */
#define DEFAULT_PACK_BELOW 0

/* TWIN_MPI_PACK_BELOW, or the default; a value that is not a byte count is refused. */
static twin_status pack_below(const char *fn, size_t *out) {
  const char *env = getenv("TWIN_MPI_PACK_BELOW");
  *out = DEFAULT_PACK_BELOW;
  if (!env || !*env)
    return TWIN_OK;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(env, &end, 10);
  if (*end || errno || env[0] == '-')
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT,
                          "%s: TWIN_MPI_PACK_BELOW is \"%s\", not a number of bytes", fn, env);
  *out = (size_t)v;
  return TWIN_OK;
}

static twin_status check_args(const char *fn, twin_array *a, MPI_Comm comm) {
  if (!a)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: a is NULL", fn);
  if (comm == MPI_COMM_NULL)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: comm is MPI_COMM_NULL", fn);
  if (twin_array_size(a) > INT_MAX)
    return twin_mpi__fail(TWIN_ERR_OVERFLOW,
                          "%s: a: %zu elements exceed MPI's int count (%d) in one message", fn,
                          twin_array_size(a), INT_MAX);
  return TWIN_OK;
}

/* ---- Sending ---- */

static twin_status send_in_place(twin_array *a, int dest, int tag, MPI_Comm comm) {
  MPI_Datatype t;
  void *p;
  twin_status s = twin_mpi_datatype(a, &t);
  if (s != TWIN_OK)
    return s;
  s = twin_host_begin(a, TWIN_READ, &p);
  if (s != TWIN_OK) {
    MPI_Type_free(&t);
    return twin_mpi__fail_twin(s, "twin_mpi_send: a: reading the view");
  }
  int err = MPI_Send(p, 1, t, dest, tag, comm);
  twin_host_end(a);
  MPI_Type_free(&t);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_send: MPI_Send to rank %d, tag %d", dest, tag);
  return TWIN_OK;
}

static twin_status send_packed(twin_array *a, int dest, int tag, MPI_Comm comm) {
  size_t n = twin_array_size(a), bytes = twin_array_nbytes(a);
  void *buf = malloc(bytes ? bytes : 1);
  if (!buf)
    return twin_mpi__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_mpi_send: no memory to pack %zu bytes",
                          bytes);
  twin_status s = twin_array_read(a, buf, bytes);
  if (s != TWIN_OK) {
    free(buf);
    return twin_mpi__fail_twin(s, "twin_mpi_send: a: reading the view");
  }
  MPI_Datatype element = twin_mpi_element_type(twin_array_dtype(a));
  int err = MPI_Send(buf, (int)n, element, dest, tag, comm);
  free(buf);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_send: MPI_Send to rank %d, tag %d", dest, tag);
  return TWIN_OK;
}

twin_status twin_mpi_send(twin_array *a, int dest, int tag, MPI_Comm comm) {
  size_t below;
  twin_status s = check_args("twin_mpi_send", a, comm);
  if (s == TWIN_OK)
    s = pack_below("twin_mpi_send", &below);
  if (s != TWIN_OK || dest == MPI_PROC_NULL)
    return s;
  twin_mpi__layout l;
  twin_mpi__layout_of(a, &l);
  twin_mpi__handler h;
  int err = twin_mpi__errors_enter(comm, &h);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_send: comm");
  if (twin_mpi__run_bytes(&l) >= below)
    s = send_in_place(a, dest, tag, comm);
  else
    s = send_packed(a, dest, tag, comm);
  twin_mpi__errors_leave(&h);
  return s;
}

/* ---- Receiving ---- */

/* One strided axis of elements; a constant size lets the compiler make each copy one move. */
static void scatter_axis(char *dst, ptrdiff_t stride, size_t n, const char *src, size_t elem) {
#define SCATTER(size)                                                                              \
  for (size_t i = 0; i < n; i++)                                                                   \
    memcpy(dst + (ptrdiff_t)i * stride, src + i * (size), (size));
  switch (elem) {
  case 8:
    SCATTER(8);
    break;
  case 4:
    SCATTER(4);
    break;
  case 2:
    SCATTER(2);
    break;
  default:
    SCATTER(elem);
  }
#undef SCATTER
}

/* Scatters packed elements into the view at dst (element 0) by its layout, axis k inward;
 * returns the first source byte not used. */
static const char *scatter(char *dst, const twin_mpi__layout *l, int k, const char *src) {
  if (k == l->n) {
    memcpy(dst, src, l->elem); /* a view of one element */
    return src + l->elem;
  }
  size_t n = l->shape[k];
  if (k == l->n - 1) {
    if (l->stride[k] == (ptrdiff_t)l->elem)
      memcpy(dst, src, n * l->elem);
    else
      scatter_axis(dst, l->stride[k], n, src, l->elem);
    return src + n * l->elem;
  }
  for (size_t i = 0; i < n; i++)
    src = scatter(dst + (ptrdiff_t)i * l->stride[k], l, k + 1, src);
  return src;
}

/* Checks the received element count against the view's. */
static twin_status check_count(const MPI_Status *st, MPI_Datatype t, size_t want) {
  int got = 0;
  MPI_Get_elements(st, t, &got);
  if (got >= 0 && (size_t)got == want)
    return TWIN_OK;
  return twin_mpi__fail(TWIN_ERR_SHAPE_MISMATCH,
                        "twin_mpi_recv: a: the message from rank %d (tag %d) held %d "
                        "elements, the view %zu",
                        st->MPI_SOURCE, st->MPI_TAG, got, want);
}

static twin_status recv_failed(int err, int source, int tag, size_t want) {
  if (twin_mpi__status_of(err) == TWIN_ERR_SHAPE_MISMATCH)
    return twin_mpi__fail_mpi(err,
                              "twin_mpi_recv: a: the message from rank %d (tag %d) is longer "
                              "than the view's %zu elements",
                              source, tag, want);
  return twin_mpi__fail_mpi(err, "twin_mpi_recv: MPI_Recv from rank %d, tag %d", source, tag);
}

/* Receives into a buffer first, then scatters it into the view. */
static twin_status recv_packed(twin_array *a, const twin_mpi__layout *l, void *p, int source,
                               int tag, MPI_Comm comm) {
  size_t n = twin_array_size(a), bytes = twin_array_nbytes(a);
  char *buf = malloc(bytes ? bytes : 1);
  if (!buf)
    return twin_mpi__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                          "twin_mpi_recv: no memory to unpack %zu bytes", bytes);
  MPI_Datatype element = twin_mpi_element_type(twin_array_dtype(a));
  MPI_Status st;
  int err = MPI_Recv(buf, (int)n, element, source, tag, comm, &st);
  twin_status s = err == MPI_SUCCESS ? check_count(&st, element, n) : TWIN_OK;
  if (err != MPI_SUCCESS)
    s = recv_failed(err, source, tag, n);
  else if (s == TWIN_OK && !l->empty)
    scatter(p, l, 0, buf);
  free(buf);
  return s;
}

static twin_status recv_in_place(twin_array *a, void *p, int source, int tag, MPI_Comm comm) {
  MPI_Datatype t;
  twin_status s = twin_mpi_datatype(a, &t);
  if (s != TWIN_OK)
    return s;
  MPI_Status st;
  int err = MPI_Recv(p, 1, t, source, tag, comm, &st);
  if (err == MPI_SUCCESS)
    s = check_count(&st, t, twin_array_size(a));
  else
    s = recv_failed(err, source, tag, twin_array_size(a));
  MPI_Type_free(&t);
  return s;
}

/* The message waiting from source with tag, probed without taking it: invalid ranks and tags
 * fail here, and a message of another size is refused while it stays queued. */
static twin_status probe(twin_array *a, int source, int tag, MPI_Comm comm, MPI_Status *st) {
  int err = MPI_Probe(source, tag, comm, st);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_recv: MPI_Probe from rank %d, tag %d", source, tag);
  int count = MPI_UNDEFINED, bytes = 0;
  MPI_Get_count(st, twin_mpi_element_type(twin_array_dtype(a)), &count);
  if (count != MPI_UNDEFINED && (size_t)count == twin_array_size(a))
    return TWIN_OK;
  MPI_Get_count(st, MPI_BYTE, &bytes);
  return twin_mpi__fail(TWIN_ERR_SHAPE_MISMATCH,
                        "twin_mpi_recv: a: the message from rank %d (tag %d) holds %d bytes "
                        "(%d elements of %s), the view %zu elements; it stays queued",
                        st->MPI_SOURCE, st->MPI_TAG, bytes, count == MPI_UNDEFINED ? -1 : count,
                        twin_dtype_name(twin_array_dtype(a)), twin_array_size(a));
}

/* Probes, opens the host write access, then takes the probed message (its own source and tag,
 * so a wildcard receive takes the message it checked). */
static twin_status recv_into(twin_array *a, size_t below, int source, int tag, MPI_Comm comm) {
  MPI_Status st;
  twin_status s = probe(a, source, tag, comm, &st);
  if (s != TWIN_OK)
    return s;
  twin_mpi__layout l;
  twin_mpi__layout_of(a, &l);
  void *p;
  s = twin_host_begin(a, TWIN_WRITE, &p);
  if (s != TWIN_OK)
    return twin_mpi__fail_twin(s, "twin_mpi_recv: a: writing the view");
  if (twin_mpi__run_bytes(&l) >= below && !twin_mpi__may_alias(&l))
    s = recv_in_place(a, p, st.MPI_SOURCE, st.MPI_TAG, comm);
  else
    s = recv_packed(a, &l, p, st.MPI_SOURCE, st.MPI_TAG, comm);
  twin_host_end(a);
  return s;
}

twin_status twin_mpi_recv(twin_array *a, int source, int tag, MPI_Comm comm) {
  size_t below;
  twin_status s = check_args("twin_mpi_recv", a, comm);
  if (s == TWIN_OK)
    s = pack_below("twin_mpi_recv", &below);
  if (s != TWIN_OK || source == MPI_PROC_NULL)
    return s;
  twin_mpi__handler h;
  int err = twin_mpi__errors_enter(comm, &h);
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_recv: comm");
  s = recv_into(a, below, source, tag, comm);
  twin_mpi__errors_leave(&h);
  return s;
}

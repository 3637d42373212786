/* libtwin-mpi's private declarations. libtwin-mpi is a client of libtwin's public API
 * (twin.h) only; nothing here reaches into libtwin's internals. */
#ifndef TWIN_MPI_INTERNAL_H
#define TWIN_MPI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "twin_mpi.h"

/* ---- Errors (error.c) ---- */

/* Records "NAME: <fmt>" as this thread's twin_mpi_last_error() and returns s. */
twin_status twin_mpi__fail(twin_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As twin_mpi__fail, followed by the message of the twin call that just failed with s
 * (twin_last_error(), without its leading status name when it is s's). */
twin_status twin_mpi__fail_twin(twin_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records an MPI failure: the status its error class maps to, the prefix, then the MPI call's
 * error string. Returns the status. */
twin_status twin_mpi__fail_mpi(int mpi_error, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The twin status of an MPI error code, by its error class (see twin_mpi.h). */
twin_status twin_mpi__status_of(int mpi_error);

/* MPI_ERRORS_RETURN on a communicator for the length of one call: `enter` swaps it in and
 * keeps the old handler in *saved, `leave` puts that back. enter fails only on a bad comm. */
typedef struct twin_mpi__handler {
  MPI_Comm comm;
  MPI_Errhandler saved;
} twin_mpi__handler;
int twin_mpi__errors_enter(MPI_Comm comm, twin_mpi__handler *h);
void twin_mpi__errors_leave(twin_mpi__handler *h);

/* ---- Views as MPI sees them (layout.c) ---- */

/* A view's axes after dropping length-1 axes and merging axes that are contiguous together
 * (outer stride == inner length x inner stride), strides in bytes. n == 0 is one element
 * (or, with empty set, no element at all). */
typedef struct twin_mpi__layout {
  int n;
  bool empty;
  size_t elem;
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t stride[TWIN_MAX_DIMS];
} twin_mpi__layout;

void twin_mpi__layout_of(const twin_array *a, twin_mpi__layout *out);

/* Bytes of the view's innermost contiguous run: the last merged axis's bytes when its stride
 * is the element size, else one element. */
size_t twin_mpi__run_bytes(const twin_mpi__layout *l);

/* False only when no two elements of the view share bytes (proved by the sufficient rule:
 * sorted by stride, each axis steps past the whole extent of the axes inside it). */
bool twin_mpi__may_alias(const twin_mpi__layout *l);

#endif

/* libtwin-mpi's per-thread last-error message, MPI error classes as twin statuses, and the
 * error handler swap that makes MPI return its errors. libtwin's own message
 * (twin_last_error) cannot be set from outside it, so this library keeps its own. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MESSAGE_CAP 4096

static _Thread_local char last_message[MESSAGE_CAP];

const char *twin_mpi_last_error(void) {
  return last_message;
}

static void record(twin_status s, const char *fmt, va_list ap, const char *cause) {
  int used = snprintf(last_message, MESSAGE_CAP, "%s: ", twin_status_name(s));
  if (used > 0 && used < MESSAGE_CAP)
    used += vsnprintf(last_message + used, MESSAGE_CAP - (size_t)used, fmt, ap);
  if (cause && used > 0 && used < MESSAGE_CAP) {
    /* The cause is cut where the message reaches the cap; the precision tells the compiler. */
    int room = MESSAGE_CAP - used - 3; /* ": " and the terminating zero */
    snprintf(last_message + used, MESSAGE_CAP - (size_t)used, ": %.*s", room, cause);
  }
}

twin_status twin_mpi__fail(twin_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  record(s, fmt, ap, NULL);
  va_end(ap);
  return s;
}

/* twin_last_error() starts with the status name; it is said once, at the front. */
static const char *without_name(twin_status s, const char *message) {
  const char *name = twin_status_name(s);
  size_t len = strlen(name);
  if (strncmp(message, name, len) == 0 && strncmp(message + len, ": ", 2) == 0)
    return message + len + 2;
  return message;
}

twin_status twin_mpi__fail_twin(twin_status s, const char *fmt, ...) {
  /* Copied first: formatting may not call twin, but the cause must not alias our buffer. */
  char cause[MESSAGE_CAP];
  snprintf(cause, sizeof cause, "%s", without_name(s, twin_last_error()));
  va_list ap;
  va_start(ap, fmt);
  record(s, fmt, ap, cause);
  va_end(ap);
  return s;
}

twin_status twin_mpi__status_of(int mpi_error) {
  int cls = MPI_ERR_OTHER;
  if (MPI_Error_class(mpi_error, &cls) != MPI_SUCCESS)
    return TWIN_ERR_UNSUPPORTED;
  switch (cls) {
  case MPI_ERR_TRUNCATE:
    return TWIN_ERR_SHAPE_MISMATCH;
  case MPI_ERR_NO_MEM:
    return TWIN_ERR_OUT_OF_HOST_MEMORY;
  case MPI_ERR_BUFFER:
  case MPI_ERR_COUNT:
  case MPI_ERR_TYPE:
  case MPI_ERR_TAG:
  case MPI_ERR_COMM:
  case MPI_ERR_RANK:
  case MPI_ERR_REQUEST:
  case MPI_ERR_ROOT:
  case MPI_ERR_TOPOLOGY:
  case MPI_ERR_DIMS:
  case MPI_ERR_ARG:
    return TWIN_ERR_INVALID_ARGUMENT;
  default:
    return TWIN_ERR_UNSUPPORTED;
  }
}

twin_status twin_mpi__fail_mpi(int mpi_error, const char *fmt, ...) {
  char text[MPI_MAX_ERROR_STRING + 64];
  int len = 0;
  if (MPI_Error_string(mpi_error, text, &len) != MPI_SUCCESS)
    snprintf(text, sizeof text, "MPI error code %d", mpi_error);
  twin_status s = twin_mpi__status_of(mpi_error);
  va_list ap;
  va_start(ap, fmt);
  record(s, fmt, ap, text);
  va_end(ap);
  return s;
}

int twin_mpi__errors_enter(MPI_Comm comm, twin_mpi__handler *h) {
  h->comm = comm;
  h->saved = MPI_ERRHANDLER_NULL;
  int err = MPI_Comm_get_errhandler(comm, &h->saved);
  if (err == MPI_SUCCESS)
    err = MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  return err;
}

void twin_mpi__errors_leave(twin_mpi__handler *h) {
  if (h->saved == MPI_ERRHANDLER_NULL)
    return;
  MPI_Comm_set_errhandler(h->comm, h->saved);
  MPI_Errhandler_free(&h->saved);
}

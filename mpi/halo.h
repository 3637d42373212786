/* The halo object, shared by its construction (halo.c, halo_check.c) and its exchanges
 * (exchange.c). */
#ifndef TWIN_MPI_HALO_H
#define TWIN_MPI_HALO_H

#include "internal.h"

/* One side of one axis: the face this rank sends that way and the ghosts it receives from
 * there, with their staging arrays and persistent requests. */
typedef struct twin_mpi__side {
  int peer;               /* the neighbour's rank in the halo's comm, or MPI_PROC_NULL */
  int send_tag, recv_tag; /* 2k for messages travelling down axis k, 2k + 1 up */
  twin_array *face;       /* view of the field: the interior strip sent to peer */
  twin_array *ghost;      /* view of the field: the ghost strip peer's face fills */
  /* The cells of the face that no exchange writes, as disjoint boxes: its part of the
   * interior, and its parts in the ghosts of earlier axes beyond an edge without a neighbour
   * (the caller's boundary values, which the face carries on). Its other cells are ghosts of
   * earlier axes, which the exchange fills before it sends them. */
  twin_array *sent[2 * TWIN_MAX_DIMS - 1];
  int nsent;
  /* Reserved from begin: the sent boxes for reading until the face's message is complete,
   * the ghost for writing until it is unpacked (reservations.c). */
  bool sent_reserved, ghost_reserved;
  twin_array *out, *in;   /* contiguous staging of the face's shape: packed, received */
  void *out_ptr, *in_ptr; /* the host addresses the requests were made for */
  bool out_open, in_open; /* a host access of out (read) or in (write) is open */
  MPI_Request send, recv; /* persistent; MPI_REQUEST_NULL until the first exchange */
} twin_mpi__side;

/* Where an exchange stands. Each step can fail on twin (a busy access): the phase then stays,
 * so the next call resumes there. An MPI failure breaks the halo for good. */
typedef enum twin_mpi__phase {
  TWIN_MPI__IDLE,   /* no exchange under way */
  TWIN_MPI__PACK,   /* axis `axis` is to be packed and its messages started */
  TWIN_MPI__FLIGHT, /* axis `axis`'s messages are under way */
  TWIN_MPI__UNPACK, /* axis `axis`'s strips arrived; they are to go into the ghosts */
  TWIN_MPI__BROKEN, /* an MPI call failed mid-exchange */
} twin_mpi__phase;

struct twin_mpi_halo {
  twin_array *field;
  MPI_Comm comm; /* a duplicate of the Cartesian communicator, with MPI_ERRORS_RETURN */
  int ndim, width;
  size_t bytes_sent, bytes_received;     /* per exchange */
  twin_mpi__side side[TWIN_MAX_DIMS][2]; /* [axis][0: towards the lower rank, 1: upper] */
  bool active;                           /* between a begin and the end that completes it */
  twin_mpi__phase phase;                 /* where the active exchange stands */
  int axis;                              /* the axis it is at */
  twin_status broken;                    /* the MPI failure that broke the halo, and its message */
  char why[512];
};

/* halo_check.c: the collective checks of twin_mpi_halo_new. */

/* Checks field and width on this rank alone (ndim against comm's, each axis's length). */
twin_status twin_mpi__check_field(const twin_array *field, MPI_Comm comm, int width);

/* Every rank passes its own status; all get TWIN_OK only when every rank's was TWIN_OK. A rank
 * whose own check failed gets its status back with its message; the others get the first
 * faulty rank's status with a message naming that rank. */
twin_status twin_mpi__agree(MPI_Comm comm, twin_status local);

/* Exchanges block descriptions with both neighbours along each axis and compares what their
 * shared faces need to agree on. */
twin_status twin_mpi__check_neighbours(const twin_mpi_halo *h);

/* Refuses a field whose strips twin cannot tell apart (its strides place them on no lattice,
 * so twin compares them by byte extent): a ghost would overlap another strip, and the
 * exchange's own reservations would refuse each other. */
twin_status twin_mpi__check_strips_apart(const twin_mpi_halo *h);

/* exchange.c: frees a side's requests and ends its open staging accesses. */
void twin_mpi__side_release(twin_mpi__side *s);

/* reservations.c: what an exchange holds on the field, so that between begin and end a
 * kernel or access that touches a ghost, or writes a face being sent, is TWIN_ERR_BUSY (see
 * twin_mpi.h). */

/* Reserves the sent boxes (for reading) and the ghosts (for writing) of every side with a
 * neighbour, under the caller's file and line; on failure it reserves nothing. fn names the
 * public call for the message. */
twin_status twin_mpi__reserve(twin_mpi_halo *h, const char *fn, const char *file, int line);
/* Releases axis k's sent boxes (its messages are complete), or its ghosts (unpacked). */
void twin_mpi__release_sent(twin_mpi_halo *h, int k);
void twin_mpi__release_ghosts(twin_mpi_halo *h, int k);
/* Releases everything the halo still holds (an exchange that failed, broke, or is freed). */
void twin_mpi__release_all(twin_mpi_halo *h);

#endif

/* twin_mpi: twin arrays over MPI (libtwin-mpi, pkg-config twin-mpi).
 *
 * A library beside libtwin, built on its public API only: libtwin never depends on MPI. MPI
 * cannot take a cl_mem, so every transfer goes through host memory, moving between host and
 * device only what must move: a send or receive goes through twin's host access of the view
 * (coherence exact, nothing moved on a zero-copy device), and a halo exchange packs its faces
 * on the device into small staging arrays, so only the strips cross.
 *
 * Conventions, as twin.h's unless said:
 * - Every fallible call returns a twin_status. On failure, twin_mpi_last_error() holds this
 *   thread's message, naming the call and the argument or rank at fault; when a twin call
 *   failed inside, its message follows as the cause (and twin_last_error() still holds it).
 *   An MPI failure carries MPI_Error_string's text and maps MPI's error class to a status:
 *   MPI_ERR_TRUNCATE to TWIN_ERR_SHAPE_MISMATCH, MPI_ERR_NO_MEM to
 *   TWIN_ERR_OUT_OF_HOST_MEMORY, the classes of a bad argument (rank, tag, count, type, comm,
 *   topology, buffer, arg, dims) to TWIN_ERR_INVALID_ARGUMENT, every other class to
 *   TWIN_ERR_UNSUPPORTED (twin has no status of its own for a transport failure).
 * - MPI errors come back as statuses, never through the communicator's error handler: the
 *   calls set MPI_ERRORS_RETURN on a communicator for the time they use it, then put its own
 *   handler back (the halo uses a duplicate of its communicator instead).
 * - Call these between MPI_Init and MPI_Finalize, from threads as MPI's thread level allows.
 * - Messages carry the elements' bytes only: both sides must agree on the dtype, as with MPI
 *   itself (the element count is checked, the type is not).
 */
#ifndef TWIN_MPI_H
#define TWIN_MPI_H

#include <mpi.h>

#include "twin.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TWIN_MPI_BUILDING) && defined(__GNUC__)
#define TWIN_MPI_API __attribute__((visibility("default")))
#else
#define TWIN_MPI_API
#endif

/* This thread's message for the last failed twin_mpi call, "STATUS: call: what failed"; ""
 * when none has failed. Belongs to the thread; valid until its next failing twin_mpi call. */
TWIN_MPI_API const char *twin_mpi_last_error(void);

/* ---- Datatypes ---------------------------------------------------------------------------- */

/* The MPI type of one element of dtype (MPI_INT8_T ... MPI_UINT64_T, MPI_FLOAT, MPI_DOUBLE);
 * MPI_DATATYPE_NULL for a value that is not a twin_dtype. A predefined type: never freed. */
TWIN_MPI_API MPI_Datatype twin_mpi_element_type(twin_dtype dtype);

/* A committed datatype for a's elements relative to element 0, for use with count 1 and the
 * pointer twin_host_begin gives: its type map lists the elements in C order (the order
 * twin_array_read packs them in), each at its byte offset sum(i[k] * strides[k]) * element
 * size, so negative offsets (reversed axes) and repeated ones (zero strides, broadcasts) are
 * included. Built from the view's axes after dropping length-1 axes and merging axes that are
 * contiguous together: a contiguous run is one MPI_Type_contiguous, each outer axis one
 * MPI_Type_create_hvector with its signed byte stride (an axis of byte stride -1 a list of
 * displacements instead, which Open MPI 4.1 packs right); an empty view gives an empty type.
 * An axis longer than INT_MAX after merging is TWIN_ERR_OVERFLOW. A type with repeated
 * offsets may be sent, never received into (MPI's rule). The caller owns *out and frees it
 * with MPI_Type_free. Thread-safe as MPI's type calls are at its thread level. */
TWIN_MPI_API twin_status twin_mpi_datatype(const twin_array *a, MPI_Datatype *out);

/* ---- Point to point ------------------------------------------------------------------------
 * twin_mpi_send and twin_mpi_recv move any view (of any strides) with twin's coherence exact:
 * a send reads the view through a host access (bringing to the host only the stale ranges of
 * its byte extent; nothing on a zero-copy device), a receive writes it through one (so it is
 * newer on the host and moves to the device at its next use there). Elements of the buffer
 * outside the view are untouched. The message is the view's elements in C order, as the
 * element type of its dtype: a view sent one way may be received into a view of any layout
 * with as many elements.
 * How the elements reach MPI depends on the view's contiguous runs (the bytes its innermost
 * axes cover without a gap, after merging): runs of at least TWIN_MPI_PACK_BELOW bytes go
 * through twin_mpi_datatype in place, shorter runs are packed into a temporary host buffer
 * first (twin_array_read, or a scatter on receipt). The environment variable is read at each
 * call; its default is 0 (always a datatype), measured: with Open MPI over shared memory the
 * datatype path beat packing at every run length from 1 byte to 4 KiB, as MPI packs straight
 * into its own transfer buffers (twin-bench-mpi; README, "Beyond one machine"). Set it on a
 * transport whose datatype engine is slow on small pieces. A receive into a view whose
 * elements may alias (a zero stride, or strides that overlap) always packs. Both paths send
 * the same message. */

/* Sends a's elements to rank dest of comm with tag, blocking as MPI_Send. dest MPI_PROC_NULL
 * sends nothing and opens no access. A host write access, or a device write (another thread's
 * kernel, say), in the way waits or fails by twin_host_begin's rules. Thread-safe as MPI_Send
 * is, except that comm's error handler is swapped for the call. */
TWIN_MPI_API twin_status twin_mpi_send(twin_array *a, int dest, int tag, MPI_Comm comm);

/* Receives a message from source (or MPI_ANY_SOURCE) with tag (or MPI_ANY_TAG) on comm into
 * a's elements, blocking as MPI_Recv. It probes first (MPI_Probe), then opens a's host write
 * access, then takes the message it probed, so a refusal leaves the message queued for a
 * later receive and a untouched: a message of another element count is
 * TWIN_ERR_SHAPE_MISMATCH naming both counts, an a that is read-only TWIN_ERR_READ_ONLY, one
 * with a conflicting access the caller holds TWIN_ERR_BUSY. An MPI failure while the message
 * arrives leaves a's elements unspecified. source MPI_PROC_NULL receives nothing and leaves a
 * untouched. Another thread receiving on comm from the same source and tag at the same time
 * may take the probed message (as with MPI_Probe + MPI_Recv): give threads their own tags.
 * Otherwise thread-safe as MPI_Recv is, except that comm's error handler is swapped for the
 * call. */
TWIN_MPI_API twin_status twin_mpi_recv(twin_array *a, int source, int tag, MPI_Comm comm);

/* ---- Halo exchange -------------------------------------------------------------------------
 * A field is this rank's block of an n-d grid spread over a Cartesian communicator, with
 * `width` ghost cells on each side of each axis around its interior. An exchange fills every
 * ghost cell from the rank that owns it (corners and edges too), moving between host and
 * device only the strips sent and received. Along axis k it sends the faces of the interior
 * `width` thick (the face towards the lower neighbour: index width..2*width-1 on axis k), over
 * the whole extent of the axes before k (ghosts included, which were filled already) and the
 * interior of the axes after it, and receives the ghosts beyond each side the same way: axes
 * go one after the other, so values reach diagonal neighbours in two or three hops. Per axis,
 * one message per neighbour. How:
 * - each face is packed on the device by twin_copy (the built-in copy kernel) into a
 *   contiguous staging array; the host access of the staging array then moves exactly its
 *   bytes (nothing on a zero-copy device) and MPI sends from it; a received strip is written
 *   into a host staging array and unpacked into the ghost view by twin_copy on the device.
 *   Per exchange, in copy mode: bytes_to_host grows by the strips sent and bytes_to_device by
 *   the strips received, exactly, when the field is up to date on the device (after a kernel,
 *   or twin_array_prefetch); a field newer on the host first brings the faces' byte extents
 *   to the device, once.
 * - staging arrays and persistent requests (MPI_Send_init / MPI_Recv_init) are made once and
 *   reused by every exchange; a side whose neighbour is MPI_PROC_NULL (a non-periodic edge)
 *   sends nothing and leaves its ghosts untouched.
 * Overlap: between twin_mpi_halo_begin and twin_mpi_halo_end the cells the exchange does not
 * touch may be used by kernels, copies and host accesses as usual, and the faces read. The
 * exchange holds twin region reservations (twin_array_reserve, made at the caller's line of
 * twin_mpi_halo_begin) on its own views of the field:
 * - every ghost that a neighbour fills, for writing: any access that touches one (a kernel
 *   given the whole field, a host read of a ghost) is TWIN_ERR_BUSY at once, its message
 *   naming the reservation and that line, until the ghost holds its new value;
 * - every cell a face sends that the exchange does not fill itself (the interior's outer
 *   `width` cells on each side with a neighbour, and the caller's boundary values in ghosts
 *   beyond an edge without one, which later axes' faces carry on), for reading: an access that
 *   writes one is TWIN_ERR_BUSY until the face's message has left.
 * So a kernel over the interior away from the faces runs during the exchange, one that reads
 * the whole interior too, and one that writes a face, or touches a ghost, is refused; each is
 * released as its step of the exchange completes, everything by the end that completes it
 * (or a failure that starts nothing, a broken halo, twin_mpi_halo_free). Overlap is judged per
 * axis, exactly, for the caller's views that are step-1 slices of the field (other views, of
 * other strides, by byte extent: such a view may be refused where it only comes near a ghost),
 * and for a field made by twin or a step-1 slice or transpose of one; a field whose strides
 * twin cannot place on such a lattice is refused by twin_mpi_halo_new.
 * A second begin before end is TWIN_ERR_BUSY. */
typedef struct twin_mpi_halo twin_mpi_halo;

/* Makes a halo for field over cart, collectively: every rank of cart calls it with its own
 * block. Checks, failing on every rank with the first faulty rank named when any rank's
 * arguments are wrong (a rank's own message gives the reason):
 * - cart has a Cartesian topology (MPI_Topo_test), else TWIN_ERR_INVALID_ARGUMENT, on every
 *   rank at once;
 * - field's ndim equals cart's dimensions and width is at least 1, and each axis holds its
 *   ghosts and an interior at least `width` long (shape >= 3 * width), else
 *   TWIN_ERR_INVALID_ARGUMENT naming the axis;
 * - each neighbour's block (exchanged here) has the same dtype, width, and lengths on the
 *   axes the shared face spans, else TWIN_ERR_SHAPE_MISMATCH naming both ranks and shapes;
 * - a strip has at most INT_MAX elements, else TWIN_ERR_OVERFLOW;
 * - twin can tell the strips apart (twin_array_overlaps: the field's strides, sorted, each
 *   divide the next larger, as any array twin makes and its step-1 slices and transposes
 *   have), else TWIN_ERR_UNSUPPORTED naming the strips and the strides.
 * Neighbours come from MPI_Cart_shift(cart, k, 1). The halo holds a reference on field and
 * a duplicate of cart (with MPI_ERRORS_RETURN); its staging arrays live in field's context,
 * owner-tagged "twin_mpi_halo". The caller owns *out and frees it with twin_mpi_halo_free. */
TWIN_MPI_API twin_status twin_mpi_halo_new(twin_array *field, MPI_Comm cart, int width,
                                           twin_mpi_halo **out);

/* Starts an exchange: reserves the ghosts and the cells the faces send (see Overlap above),
 * then packs the faces of the first axis on the device and starts their messages. A
 * reservation refused (TWIN_ERR_BUSY for an access the calling thread holds on a ghost or
 * writes on a face, or another reservation there; an access another thread holds is waited
 * for) or a pack that fails starts nothing, releases what was reserved and leaves the halo
 * idle. TWIN_ERR_BUSY while an exchange is under way. Not thread-safe on one halo. */
TWIN_MPI_API twin_status twin_mpi_halo_begin(twin_mpi_halo *h);
/* twin_mpi_halo_begin recording the caller's file and line, which the messages of the
 * accesses its reservations refuse name; the macro makes every call record them. */
TWIN_MPI_API twin_status twin_mpi_halo_begin_at(twin_mpi_halo *h, const char *file, int line);
#define twin_mpi_halo_begin(...) twin_mpi_halo_begin_at(__VA_ARGS__, __FILE__, __LINE__)

/* Completes the exchange begun: waits for each axis's messages, unpacks them into the ghosts
 * on the device, and runs the later axes. TWIN_ERR_BAD_STATE without a begin. A twin failure
 * while unpacking or packing (TWIN_ERR_BUSY, say: the caller's host access of the interior
 * meets the device's unpack, as twin's accesses conflict across the sides of a buffer) returns
 * with the exchange still under way, the reservations of its steps not yet done still held:
 * calling end again resumes it. After an MPI failure the halo is broken: its reservations are
 * released, begin and end return that failure again, and only twin_mpi_halo_free is useful.
 * The ghosts' new values are on the device (queued there; a later access waits for them).
 * Once end returns TWIN_OK the halo holds no reservation. Not thread-safe on one halo. */
TWIN_MPI_API twin_status twin_mpi_halo_end(twin_mpi_halo *h);

/* twin_mpi_halo_begin, then twin_mpi_halo_end. */
TWIN_MPI_API twin_status twin_mpi_halo_exchange(twin_mpi_halo *h);
TWIN_MPI_API twin_status twin_mpi_halo_exchange_at(twin_mpi_halo *h, const char *file, int line);
#define twin_mpi_halo_exchange(...) twin_mpi_halo_exchange_at(__VA_ARGS__, __FILE__, __LINE__)

/* The bytes one exchange sends and receives on this rank (the strips: what bytes_to_host and
 * bytes_to_device grow by in copy mode), either pointer may be NULL. */
TWIN_MPI_API void twin_mpi_halo_bytes(const twin_mpi_halo *h, size_t *sent, size_t *received);

/* Frees h: its staging arrays, requests, reservations and communicator, and its reference on
 * the field. An exchange still under way has its messages waited for first. Call it before
 * MPI_Finalize. NULL is a no-op. */
TWIN_MPI_API void twin_mpi_halo_free(twin_mpi_halo *h);

#ifdef __cplusplus
}
#endif

#endif /* TWIN_MPI_H */

/* twin: n-dimensional arrays that live on the host and on an OpenCL device at once.
 *
 * Conventions that hold for every function below unless its comment says otherwise:
 *
 * - Every fallible call returns a twin_status; TWIN_OK is 0. On failure, twin_last_error()
 *   names the argument or call at fault, out-parameters are left untouched, no object changed
 *   and nothing leaked.
 * - Objects come back through out-parameters holding one new reference, which the caller
 *   owns and drops with the matching *_unref(). *_unref(NULL) is a no-op.
 * - Reference counts are atomic: ref/unref may be called from any thread. Arrays are
 *   immutable views; any number of threads may read one concurrently.
 * - Shapes are in elements, strides are in elements (not bytes, unlike NumPy).
 */
#ifndef TWIN_H
#define TWIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TWIN_BUILDING) && defined(__GNUC__)
#define TWIN_API __attribute__((visibility("default")))
#else
#define TWIN_API
#endif

/* The most dimensions an array may have. */
#define TWIN_MAX_DIMS 8

/* ---- Status codes ----------------------------------------------------------------------- */

/* One table gives the enum, twin_status_name() and twin_status_message(), so they cannot
 * drift apart. X(name, message) */
// clang-format off
#define TWIN_STATUS_TABLE(X)                                                                   \
  X(TWIN_OK, "success")                                                                        \
  X(TWIN_ERR_INVALID_ARGUMENT, "an argument is invalid")                                      \
  X(TWIN_ERR_OVERFLOW, "a size, shape or offset overflows")                                   \
  X(TWIN_ERR_UNSUPPORTED, "the backend or device does not support this")                      \
  X(TWIN_ERR_NO_DEVICE, "no device matches the requested device spec")                       \
  X(TWIN_ERR_OUT_OF_HOST_MEMORY, "host memory could not be allocated")                       \
  X(TWIN_ERR_OUT_OF_DEVICE_MEMORY, "device memory could not be allocated")                   \
  X(TWIN_ERR_OPENCL, "an OpenCL call failed")                                                 \
  X(TWIN_ERR_BUILD, "a kernel program failed to build")                                      \
  X(TWIN_ERR_BUSY, "the array is in use by an access that is still open")                    \
  X(TWIN_ERR_BAD_STATE, "the call does not fit the array's access state")                    \
  X(TWIN_ERR_NOT_VIEWABLE, "the result cannot be a view of the same memory")                 \
  X(TWIN_ERR_READ_ONLY, "the array cannot be written through")                               \
  X(TWIN_ERR_SHAPE_MISMATCH, "array shapes do not match")
// clang-format on

typedef enum twin_status {
#define TWIN_X_ENUM(name, msg) name,
  TWIN_STATUS_TABLE(TWIN_X_ENUM)
#undef TWIN_X_ENUM
} twin_status;

/* The enumerator's name, e.g. "TWIN_ERR_NO_DEVICE"; "TWIN_STATUS_UNKNOWN" for other values.
 * Static storage, thread-safe. */
TWIN_API const char *twin_status_name(twin_status s);

/* A one-line generic description of a status. Static storage, thread-safe. */
TWIN_API const char *twin_status_message(twin_status s);

/* This thread's message for the last failed call: what failed and which argument or value was
 * at fault (for OpenCL failures, the call and the error code's name). "" when no call on this
 * thread has failed. Successful calls do not clear it. The string belongs to the thread and
 * stays valid until its next failing twin call. */
TWIN_API const char *twin_last_error(void);

/* ---- Version ------------------------------------------------------------------------------ */

/* The library's version, "MAJOR.MINOR.PATCH"; it matches the SONAME. Static storage. */
TWIN_API const char *twin_version(void);

/* ---- Element types ------------------------------------------------------------------------ */

typedef enum twin_dtype {
  TWIN_I8,
  TWIN_U8,
  TWIN_I16,
  TWIN_U16,
  TWIN_I32,
  TWIN_U32,
  TWIN_I64,
  TWIN_U64,
  TWIN_F32,
  TWIN_F64,
} twin_dtype;

#define TWIN_DTYPE_COUNT 10

/* Bytes per element of dtype; 0 for a value that is not a twin_dtype. Thread-safe. */
TWIN_API size_t twin_dtype_size(twin_dtype dtype);

/* "i8", "u8", ..., "f64"; NULL for a value that is not a twin_dtype. Static storage. */
TWIN_API const char *twin_dtype_name(twin_dtype dtype);

/* ---- Devices ------------------------------------------------------------------------------ */

typedef enum twin_device_type {
  TWIN_DEVICE_HOST = 0, /* the host backend: plain host memory, no OpenCL */
  TWIN_DEVICE_GPU,
  TWIN_DEVICE_ACCELERATOR,
  TWIN_DEVICE_CPU,
  TWIN_DEVICE_OTHER,
} twin_device_type;

typedef struct twin_device_info {
  char spec[24];      /* a spec that selects exactly this device: "host", "opencl:P.D", "fake" */
  char platform[128]; /* OpenCL platform name; "twin" for the host backend and the fake device */
  char name[128];     /* device name */
  twin_device_type type;
  int platform_index; /* P and D of "opencl:P.D"; -1 for the host backend and the fake device */
  int device_index;
  uint64_t global_mem_bytes; /* CL_DEVICE_GLOBAL_MEM_SIZE; physical memory for the host */
  uint64_t max_alloc_bytes;  /* CL_DEVICE_MAX_MEM_ALLOC_SIZE; PTRDIFF_MAX for the host; a
                                quarter of the memory for the fake device */
  bool host_unified_memory;  /* the device shares host memory (true for the host backend) */
  bool fp64;                 /* f64 arrays can be used on the device */
  /* Limits twin_kernel_launch checks a launch against; 0 where there is no such limit (the
   * host backend) or the device did not report it. */
  uint64_t local_mem_bytes;      /* CL_DEVICE_LOCAL_MEM_SIZE: __local memory per work-group */
  size_t max_work_group_size;    /* CL_DEVICE_MAX_WORK_GROUP_SIZE: work items per work-group */
  size_t max_work_item_sizes[3]; /* CL_DEVICE_MAX_WORK_ITEM_SIZES: per dimension of local */
  unsigned address_bits;         /* CL_DEVICE_ADDRESS_BITS: the width of the device's size_t */
} twin_device_info;

/* Lists every device twin can use: each OpenCL device of each platform the ICD loader knows,
 * then the host backend, which is always last and always present. On success *out is an array
 * of *count entries that the caller releases with twin_device_list_free(). A platform that
 * fails to answer is skipped, not an error. Thread-safe. */
TWIN_API twin_status twin_device_list(twin_device_info **out, size_t *count);

/* Releases a list from twin_device_list(). NULL is a no-op. */
TWIN_API void twin_device_list_free(twin_device_info *list);

/* Resolves a device spec to the device twin_context_new(spec) would open, without opening it.
 * spec NULL reads TWIN_DEVICE; an unset or empty variable means the default choice.
 * Grammar: "host", "opencl" (the default choice among OpenCL devices), "opencl:gpu",
 * "opencl:cpu", "opencl:accelerator", "opencl:P.D" (platform and device index),
 * "opencl:NAME" (case-insensitive substring of the platform or device name), and "fake", a
 * test device (never listed, never the default; any case): its device memory is host memory
 * from twin's allocator behind the same backend interface as OpenCL's, so the coherence layer
 * (two copies with TWIN_COHERENCE_COPY, zero-copy otherwise) runs in builds without OpenCL too;
 * it runs no OpenCL C, and twin_opencl.h's calls refuse it (it has no cl_mem). Default order:
 * first GPU, else accelerator, else CPU device of any platform, else the host backend.
 * A spec that matches nothing is TWIN_ERR_NO_DEVICE with a message listing what exists.
 * Thread-safe. */
TWIN_API twin_status twin_device_resolve(const char *spec, twin_device_info *out);

/* ---- Contexts ----------------------------------------------------------------------------- */

typedef struct twin_context twin_context;

/* Opens the device that spec selects (see twin_device_resolve) with its own command queue.
 * Environment: TWIN_DEVICE when spec is NULL. The caller owns the returned reference; every
 * buffer holds one more, so a context lives until its last array is gone. Thread-safe. */
TWIN_API twin_status twin_context_new(const char *spec, twin_context **out);

/* How a context keeps host and device data coherent. */
typedef enum twin_coherence {
  /* TWIN_COHERENCE from the environment ("auto" or "copy", in any case); unset means
   * zero-copy where the device shares host memory (CL_DEVICE_HOST_UNIFIED_MEMORY), two copies
   * elsewhere. The host backend has one copy whatever is asked. */
  TWIN_COHERENCE_AUTO = 0,
  /* Separate host and device copies even where the device shares host memory, moving only
   * stale byte ranges: the discrete-GPU path, testable on any machine. */
  TWIN_COHERENCE_COPY = 1,
} twin_coherence;

/* What twin does with device copies when device memory runs out (see twin_context_options). */
typedef enum twin_spill {
  /* TWIN_SPILL from the environment ("auto" or "off", in any case); unset means auto: under
   * device memory pressure, twin writes back to the host the ranges of the least recently used
   * device copies that are newer there, frees those copies, and retries; a spilled buffer comes
   * back at its next device use. */
  TWIN_SPILL_AUTO = 0,
  /* Never spill: a device allocation that does not fit after trimming fails, as before
   * spilling existed. */
  TWIN_SPILL_OFF = 1,
} twin_spill;

typedef struct twin_context_options {
  const char *device; /* device spec as for twin_context_new; NULL reads TWIN_DEVICE */
  twin_coherence coherence;
  /* Budgets twin enforces itself, in bytes; 0 reads TWIN_HOST_MEMORY_LIMIT and
   * TWIN_DEVICE_MEMORY_LIMIT (a byte count with an optional K, M or G suffix), unset means no
   * budget. Zero-copy memory counts as host memory. An allocation that would exceed one, or
   * that the device or the host allocator refuses, runs the pressure order before it fails:
   *   1. trim: free redundant copies of that kind of memory (as twin_context_trim does);
   *   2. spill (device memory of a two-copy buffer only, unless `spill` is TWIN_SPILL_OFF):
   *      least recently used device copies first, skipping those in use (an open device
   *      access, a DLPack kDLOpenCL export, memory the application lent) and taking a copy
   *      with a command still in flight only when no idle one is left (then after that
   *      command), write back to the host only the ranges newer on the device and free the
   *      device copy, until the allocation fits;
   *   3. release host pages no live view can reach (twin_context_trim's TWIN_TRIM_UNREACHABLE);
   *   4. retry. After each step that freed something the allocation is retried; the first
   *      success ends the order. Each step is counted in twin_stats.
   * When the allocation still fails, the status is TWIN_ERR_OUT_OF_HOST_MEMORY or
   * TWIN_ERR_OUT_OF_DEVICE_MEMORY and the message names the size asked, the cause, what each
   * step freed, the budget, what is held, and the largest holders with the file:line that made
   * each and why it could not move (an open access at file:line, lent memory, an export,
   * spilling off, the host unable to take a write-back). */
  size_t host_memory_limit, device_memory_limit;
  /* Spilling under device memory pressure: TWIN_SPILL_AUTO (the default; reads TWIN_SPILL) or
   * TWIN_SPILL_OFF. Zero-copy buffers and the host backend have no second copy: nothing to
   * spill, whatever is asked. */
  twin_spill spill;
  /* Lifetime checks, as TWIN_DEBUG=1 in the environment turns on: from this context's creation
   * on, for the whole process, a released array object is poisoned instead of freed (the last
   * 4096 are kept), and a later use of it, or a second unref, prints the call and where the
   * array was made to stderr and calls abort(). Costs a little memory; off, nothing. */
  bool debug;
} twin_context_options;

/* twin_context_new with options; options NULL means all defaults. An unknown TWIN_COHERENCE or
 * TWIN_SPILL value, an unknown coherence or spill option, or a malformed memory limit is
 * TWIN_ERR_INVALID_ARGUMENT. Thread-safe. */
TWIN_API twin_status twin_context_new_with(const twin_context_options *options, twin_context **out);

/* True when each of the context's buffers is one copy, so nothing ever moves between host and
 * device: on a device sharing host memory with automatic coherence (one allocation both use),
 * and on the host backend (one host allocation, no device). Portable code can rely on it
 * without asking which backend it runs on. Thread-safe. */
TWIN_API bool twin_context_is_zero_copy(const twin_context *ctx);

/* Takes one more reference on ctx and returns ctx. Thread-safe. */
TWIN_API twin_context *twin_context_ref(twin_context *ctx);

/* Drops one reference; the last one closes the device. While arrays are alive they keep the
 * context; the last of them closes it, and when that unref returns the device's objects are
 * released (on OpenCL, the context's cl_context is gone unless the application holds objects
 * of it). NULL is a no-op. Thread-safe. */
TWIN_API void twin_context_unref(twin_context *ctx);

/* Waits until all work queued on the context's device has completed. Thread-safe. */
TWIN_API twin_status twin_context_finish(twin_context *ctx);

/* The device the context runs on. The pointer is borrowed and lives as long as ctx. */
TWIN_API const twin_device_info *twin_context_device(const twin_context *ctx);

/* ---- Statistics --------------------------------------------------------------------------- */

typedef struct twin_stats {
  size_t host_bytes;          /* host memory allocated for buffers now */
  size_t device_bytes;        /* device memory allocated for buffers now */
  size_t peak_host_bytes;     /* highest host_bytes since the context was made */
  size_t peak_device_bytes;   /* highest device_bytes since the context was made */
  size_t buffers;             /* live buffers */
  size_t arrays;              /* live arrays (views included) */
  size_t zero_copy_buffers;   /* live buffers that are one copy (twin_array_is_zero_copy):
                                 host and device memory are one, counted once in host_bytes;
                                 on the host backend, every buffer */
  size_t held_by_views_bytes; /* bytes of buffers whose live views cover under a quarter of
                                 them: the huge[:, 100] trap made visible */
  uint64_t bytes_to_device, bytes_to_host;         /* bytes moved each way */
  uint64_t transfers_to_device, transfers_to_host; /* transfer commands each way */
  /* Memory pressure (the order in twin_context_options), per period like the movements. */
  uint64_t spilled_bytes;           /* bytes spills wrote back to the host (also counted in
                                       bytes_to_host): exactly the ranges newer on the device */
  uint64_t spill_count;             /* device copies freed by spilling */
  uint64_t spill_freed_bytes;       /* device memory those copies held */
  uint64_t pressure_events;         /* allocations that ran out of memory and ran the order */
  uint64_t pressure_failures;       /* of those, the ones that still failed */
  uint64_t pressure_trimmed_bytes;  /* redundant copies freed by its first step (trim) */
  uint64_t pressure_released_bytes; /* host bytes its third step (unreachable pages) released */
} twin_stats;

/* Copies the context's counters into *out. Counters are updated atomically as allocations and
 * transfers happen; a snapshot taken while other threads work may mix instants. Thread-safe. */
TWIN_API twin_status twin_context_stats(twin_context *ctx, twin_stats *out);

/* Starts a new measurement period: the peaks restart from the bytes live now, and the bytes
 * and transfers counted each way and the memory pressure counters restart from 0. Live counts
 * are untouched. Thread-safe (a
 * concurrent allocation may land on either side of the reset). */
TWIN_API twin_status twin_context_stats_reset(twin_context *ctx);

/* ---- Residency, eviction, trim ---------------------------------------------------------- */

/* A side of a buffer. */
typedef enum twin_side { TWIN_HOST = 1, TWIN_DEVICE = 2 } twin_side;

/* twin_context_trim flags. TWIN_TRIM_UNREACHABLE returns to the OS the host pages of buffers
 * that no live view can reach (the third step of the pressure order). */
#define TWIN_TRIM_HOST 1u
#define TWIN_TRIM_DEVICE 2u
#define TWIN_TRIM_UNREACHABLE 4u

/* ---- What holds memory ----------------------------------------------------------------- */

/* Where one side of a buffer stands. */
typedef enum twin_residency {
  TWIN_RESIDENT_NONE = 0, /* no memory allocated on this side */
  TWIN_RESIDENT_VALID,    /* allocated and up to date */
  TWIN_RESIDENT_STALE,    /* allocated; the other side holds newer data in some range */
  TWIN_RESIDENT_SHARED,   /* one allocation shared by host and device (zero-copy) */
} twin_residency;

#define TWIN_OWNER_MAX 32

/* One live array object (a view) of a buffer, as the report sees it. */
typedef struct twin_view_info {
  const char *file; /* where it was made; NULL when made through a plain (non-_at) call */
  int line;
  char owner[TWIN_OWNER_MAX]; /* its owner tag, "" for none */
  twin_dtype dtype;
  int ndim;
  size_t shape[TWIN_MAX_DIMS];
  size_t nbytes; /* bytes of its elements */
} twin_view_info;

/* A buffer's device copy as spilling sees it. */
typedef enum twin_spill_state {
  TWIN_SPILL_STATE_NONE = 0, /* no separate device copy: never made, trimmed or evicted, or the
                                buffer is one copy (zero-copy, the host backend) */
  TWIN_SPILL_STATE_PRESENT,  /* a device copy exists */
  TWIN_SPILL_STATE_SPILLED,  /* spilled under pressure: its device-newer ranges went to the host;
                                it comes back at its next device use */
} twin_spill_state;

/* Why a buffer's device copy cannot be spilled now. */
typedef enum twin_pin {
  TWIN_PIN_NONE = 0,  /* nothing holds it (or it has no device copy to spill) */
  TWIN_PIN_LENT,      /* its device memory is the application's (twin_array_wrap_cl_mem, a
                         kDLOpenCL import): pin_file:pin_line made the array */
  TWIN_PIN_EXPORT,    /* a DLPack kDLOpenCL export holds it until its deleter runs: pin_call
                         made it at pin_file:pin_line */
  TWIN_PIN_ACCESS,    /* a device access is open: pin_call began it at pin_file:pin_line */
  TWIN_PIN_IN_FLIGHT, /* a command queued on it has not finished: not a pin for good, it is
                         spilled only after that command, when no idle copy is left */
} twin_pin;

/* One live buffer. */
typedef struct twin_buffer_info {
  size_t nbytes; /* an empty buffer is 0 bytes here and in every statistic */
  twin_residency host, device;
  bool zero_copy;   /* one copy, as twin_array_is_zero_copy (always on the host backend) */
  const char *file; /* where the array that made the buffer was made */
  int line;
  size_t views;    /* live array objects on it */
  double coverage; /* their element bytes summed (overlaps count twice) / nbytes, at most 1 */
  const twin_view_info *view; /* `views` entries, valid only during the callback */
  twin_spill_state spill;     /* its device copy: none, present or spilled */
  /* The share of its bytes in memory pages (the system's size) that some live view reaches:
   * what TWIN_TRIM_UNREACHABLE cannot give back (a column of a matrix with rows of 8 pages
   * reaches 1/8 of it; any view of a buffer under a page reaches all of it). 0 with no view. */
  double reachable;
  twin_pin pin;         /* why its device copy cannot be spilled now, TWIN_PIN_NONE if it can */
  const char *pin_file; /* where (see twin_pin); NULL when unknown or not pinned */
  int pin_line;
  const char *pin_call;  /* the public call that opened the access or made the export, or NULL */
  size_t released_bytes; /* host pages TWIN_TRIM_UNREACHABLE gave back to the OS, no longer
                            counted in host_bytes */
} twin_buffer_info;

/* Called once per buffer; return false to stop the walk. */
typedef bool (*twin_walk_fn)(const twin_buffer_info *buffer, void *user);

/* Calls fn for every live buffer of ctx, largest first, from a snapshot taken at the call:
 * fn runs with no twin lock held and may call twin. Thread-safe. */
TWIN_API twin_status twin_context_walk(twin_context *ctx, twin_walk_fn fn, void *user);

/* Frees, now, every redundant copy on the sides in `what` (TWIN_TRIM_HOST, TWIN_TRIM_DEVICE or
 * both): a host mirror whose data the device copy also holds and no host access has open, or a
 * device copy whose data the host also holds and no device access has open (the runtime frees
 * it once queued commands using it are done). Only bytes some live view can reach count: newer
 * data no view reaches is garbage and keeps no copy alive. Data is never lost: a later access
 * allocates the copy again and moves the data back. Zero-copy buffers have nothing redundant.
 * Buffers another thread is working on at that instant are skipped.
 * TWIN_TRIM_UNREACHABLE (alone or with the others, after them) gives back to the OS the whole
 * host pages that no live view reaches (madvise MADV_DONTNEED: the resident size drops now),
 * on every layout, zero-copy included; every view keeps its shape, strides and data. Released
 * pages no longer count in host_bytes nor against the host budget, never move, and stay
 * released until a view reaches them again, which only twin_array_as_strided can: they read as
 * zeros then, undefined content as in a new array. Memory the application lent (wrapped or
 * imported) is never released, nor a zero-copy block while a command on it runs.
 * *freed_bytes (may be NULL) gets the bytes freed. Thread-safe. */
TWIN_API twin_status twin_context_trim(twin_context *ctx, unsigned what, size_t *freed_bytes);

/* Prints the live report to out: a summary line (with what spilling moved this period), then
 * one line per live buffer, largest first (size, host and device state, where "device spilled"
 * is a device copy spilled under pressure, the share of it in pages live views reach, live views
 * and the share of the buffer they cover, where it was made), a line with the host pages
 * TWIN_TRIM_UNREACHABLE released when there are some, a line saying why its device copy
 * cannot be spilled when something pins it (twin_pin, with the file:line), and one line per
 * live view (dtype, shape, where it was made, owner). Thread-safe. */
TWIN_API void twin_context_report(twin_context *ctx, FILE *out);

/* Called instead of printing the live report to stderr when the application drops its last
 * reference to a context whose arrays are still alive. */
typedef void (*twin_leak_fn)(twin_context *ctx, void *user);

/* Sets (or with fn NULL clears) the leak handler. Not thread-safe with a concurrent last
 * twin_context_unref of the same context. */
TWIN_API twin_status twin_context_set_leak_handler(twin_context *ctx, twin_leak_fn fn, void *user);

/* The statistics of the buffers that at least one live view tagged `owner` keeps alive:
 * host_bytes, device_bytes, buffers, arrays (the tagged ones), zero_copy_buffers and
 * held_by_views_bytes; transfer counts are not kept per owner and stay 0. Thread-safe. */
TWIN_API twin_status twin_context_owner_stats(twin_context *ctx, const char *owner,
                                              twin_stats *out);

/* ---- Arrays ------------------------------------------------------------------------------- */

typedef struct twin_array twin_array;

/* Every function that makes an array or a view has an `_at` twin taking the caller's file and
 * line, which the memory report shows for each buffer and view; the macro of the plain name
 * passes __FILE__ and __LINE__, so ordinary calls record where they were made. The plain
 * functions stay callable (from other languages, or as `(twin_array_new)(...)`), recording
 * no location. */

/* A new C-contiguous array of ndim (0..TWIN_MAX_DIMS) axes with the given shape (ndim entries;
 * may be NULL when ndim is 0) and uninitialised contents. Memory is allocated lazily on each
 * side at its first use. The caller owns the returned reference; the array holds a reference
 * on its buffer, which holds one on ctx. Thread-safe.
 * Zero-length axes are valid: an empty array counts 0 bytes in every statistic and budget, and
 * works on every path (views, accesses, copies, fills, kernels with no work, DLPack). A shape
 * is valid for every operation or refused here with TWIN_ERR_OVERFLOW: the element count times
 * the element size, and for an empty array its axis lengths with zero-length ones counted as 1
 * times the element size, must fit in ptrdiff_t (so strides in any axis order fit). Every
 * constructor and view keeps this rule. */
TWIN_API twin_status twin_array_new(twin_context *ctx, twin_dtype dtype, int ndim,
                                    const size_t *shape, twin_array **out);
TWIN_API twin_status twin_array_new_at(twin_context *ctx, twin_dtype dtype, int ndim,
                                       const size_t *shape, twin_array **out, const char *file,
                                       int line);
#define twin_array_new(...) twin_array_new_at(__VA_ARGS__, __FILE__, __LINE__)

/* As twin_array_new, with every element zero. The zeros are written on whichever side is used
 * first, never transferred. Thread-safe. */
TWIN_API twin_status twin_array_zeros(twin_context *ctx, twin_dtype dtype, int ndim,
                                      const size_t *shape, twin_array **out);
TWIN_API twin_status twin_array_zeros_at(twin_context *ctx, twin_dtype dtype, int ndim,
                                         const size_t *shape, twin_array **out, const char *file,
                                         int line);
#define twin_array_zeros(...) twin_array_zeros_at(__VA_ARGS__, __FILE__, __LINE__)

/* As twin_array_new, with contents copied from data: C order, tightly packed, of the array's
 * byte size. data stays the caller's and may be reused as soon as the call returns (NULL only
 * when the array has no elements). Thread-safe. */
TWIN_API twin_status twin_array_from_host(twin_context *ctx, twin_dtype dtype, int ndim,
                                          const size_t *shape, const void *data, twin_array **out);
TWIN_API twin_status twin_array_from_host_at(twin_context *ctx, twin_dtype dtype, int ndim,
                                             const size_t *shape, const void *data,
                                             twin_array **out, const char *file, int line);
#define twin_array_from_host(...) twin_array_from_host_at(__VA_ARGS__, __FILE__, __LINE__)

/* Takes one more reference on a and returns a. Thread-safe. */
TWIN_API twin_array *twin_array_ref(twin_array *a);

/* Drops one reference. The last reference to the last array viewing a buffer frees the
 * buffer's host and device memory in this call and drops the buffer's reference on its
 * context: when it returns, the memory is back with the allocator (the cl_mem destroyed) and
 * twin_context_stats no longer counts it. To get there it waits for the device commands that
 * use this buffer (kernels, copies, fills, and the application's own commands before
 * twin_device_end), never for work on other buffers, so dropping an idle buffer is quick while
 * a long kernel runs elsewhere. NULL is a no-op. Thread-safe.
 * An access still open through the array object (a begin without its end) ends with the
 * object's last reference: a zero-copy mapping is unmapped, what a write access wrote counts
 * as written, and the buffer is free for other accesses; pointers and handles it gave are
 * invalid from then on. This is a misuse, silent by default.
 * With TWIN_DEBUG=1 in the environment (read when the first context is made) or
 * twin_context_options.debug, the array object itself is kept, poisoned: a later unref of it,
 * or any call given it, prints the call and the file:line where the array was made to stderr
 * and aborts, instead of corrupting memory. A last unref with an access open is reported the
 * same way, naming the file:line where each open access began (after ending them). */
TWIN_API void twin_array_unref(twin_array *a);

/* Getters. The returned pointers are borrowed and live as long as a. Thread-safe. */
TWIN_API twin_dtype twin_array_dtype(const twin_array *a);
TWIN_API int twin_array_ndim(const twin_array *a);
TWIN_API const size_t *twin_array_shape(const twin_array *a);
TWIN_API const ptrdiff_t *twin_array_strides(const twin_array *a); /* in elements */
TWIN_API size_t twin_array_size(const twin_array *a);              /* number of elements */
TWIN_API size_t twin_array_nbytes(const twin_array *a);            /* size * element bytes */
TWIN_API twin_context *twin_array_context(const twin_array *a);    /* borrowed */
/* Tags a with an owner label (at most TWIN_OWNER_MAX - 1 characters; NULL or "" clears it),
 * which views made from a afterwards inherit, so a program linking several libraries can see
 * which one holds what (twin_context_owner_stats, the report). Not thread-safe with other
 * threads reading the same array's owner. */
TWIN_API twin_status twin_array_set_owner(twin_array *a, const char *owner);
/* a's owner tag, "" for none; borrowed, valid while a lives. */
TWIN_API const char *twin_array_owner(const twin_array *a);
/* True when a's buffer is one copy, so nothing is ever copied between host and device: one
 * allocation that a device sharing host memory uses in place, or on the host backend the only
 * (host) copy. As twin_context_is_zero_copy, but per buffer: memory lent with
 * twin_array_wrap_cl_mem is two copies on any context. Thread-safe. */
TWIN_API bool twin_array_is_zero_copy(const twin_array *a);
/* True when the elements are laid out in C order without gaps. */
TWIN_API bool twin_array_is_contiguous(const twin_array *a);

/* ---- Views --------------------------------------------------------------------------------
 * A view is a new array object on the same buffer: no memory is allocated or copied on either
 * side. It holds its own reference on the buffer, so the buffer (both memories) lives until
 * the last view of it is unreferenced, whichever order they drop in. */

/* A view of ndim axes with the given shape and strides (in elements, any sign, 0 allowed),
 * whose first element is `offset` elements from a's first element. Every element the view can
 * address must lie inside a's buffer, or it is TWIN_ERR_INVALID_ARGUMENT; unlike NumPy's
 * as_strided it cannot reach outside. Like NumPy's it may reach past a's own elements, to any
 * byte of the buffer: to host pages TWIN_TRIM_UNREACHABLE released too, which then count as host
 * memory again and hold undefined content (zeros). It is TWIN_ERR_OVERFLOW when the arithmetic
 * overflows: every stride times the element size, and the extent of the axes that have
 * elements, must fit in ptrdiff_t, also for a length-1 axis or a view with no element (so that
 * every view made from this one can be computed). The view is read-only when a is.
 * Thread-safe. */
TWIN_API twin_status twin_array_as_strided(twin_array *a, int ndim, const size_t *shape,
                                           const ptrdiff_t *strides, ptrdiff_t offset,
                                           twin_array **out);
TWIN_API twin_status twin_array_as_strided_at(twin_array *a, int ndim, const size_t *shape,
                                              const ptrdiff_t *strides, ptrdiff_t offset,
                                              twin_array **out, const char *file, int line);
#define twin_array_as_strided(...) twin_array_as_strided_at(__VA_ARGS__, __FILE__, __LINE__)

/* Omitted slice bound, NumPy's None. */
#define TWIN_NONE PTRDIFF_MIN

/* One axis of a slice, as NumPy's start:stop:step. start and stop may be TWIN_NONE (the axis
 * end that fits the step's sign); negative values count from the end; out-of-range values
 * clamp as in NumPy. step may be TWIN_NONE (1) but not 0. */
typedef struct twin_slice {
  ptrdiff_t start, stop, step;
} twin_slice;

/* The whole axis, `:`. */
#define TWIN_ALL ((twin_slice){TWIN_NONE, TWIN_NONE, 1})

/* A view selecting per_axis[i] on each of a's ndim axes (per_axis has ndim entries; it may be
 * NULL when ndim is 0). Step 0 is TWIN_ERR_INVALID_ARGUMENT. Any slice of an empty array is
 * empty. On an axis the slice leaves with one element, a stride x step that would overflow
 * (in bytes; a[::PTRDIFF_MAX]) becomes 0, since it addresses nothing. Thread-safe. */
TWIN_API twin_status twin_array_slice(twin_array *a, const twin_slice *per_axis, twin_array **out);
TWIN_API twin_status twin_array_slice_at(twin_array *a, const twin_slice *per_axis,
                                         twin_array **out, const char *file, int line);
#define twin_array_slice(...) twin_array_slice_at(__VA_ARGS__, __FILE__, __LINE__)

/* A view with axis `axis` (-ndim..ndim-1; negative counts from the end) fixed at `index`
 * (negative counts from the end) and dropped, as NumPy's a[..., index, ...]. An index outside
 * the axis is TWIN_ERR_INVALID_ARGUMENT; indexing an axis that has elements works when another
 * axis is empty (the result is empty). Thread-safe. */
TWIN_API twin_status twin_array_index(twin_array *a, int axis, ptrdiff_t index, twin_array **out);
TWIN_API twin_status twin_array_index_at(twin_array *a, int axis, ptrdiff_t index, twin_array **out,
                                         const char *file, int line);
#define twin_array_index(...) twin_array_index_at(__VA_ARGS__, __FILE__, __LINE__)

/* A view whose axis i is a's axis perm[i]; perm has ndim entries naming every axis once
 * (negative entries count from the end, as in NumPy: -1 is the last axis), or is NULL to
 * reverse the axes (NumPy's a.T). Thread-safe. */
TWIN_API twin_status twin_array_transpose(twin_array *a, const int *perm, twin_array **out);
TWIN_API twin_status twin_array_transpose_at(twin_array *a, const int *perm, twin_array **out,
                                             const char *file, int line);
#define twin_array_transpose(...) twin_array_transpose_at(__VA_ARGS__, __FILE__, __LINE__)

/* In a reshape's shape, the one axis whose length follows from the others (NumPy's -1). */
#define TWIN_INFER ((size_t)-1)

/* A view with a new shape of the same element count, in C order, wherever a's strides allow
 * it (NumPy's rule: every group of merged axes must be contiguous among themselves).
 * Otherwise TWIN_ERR_NOT_VIEWABLE: make a contiguous first with twin_array_contiguous().
 * A count mismatch is TWIN_ERR_SHAPE_MISMATCH. Thread-safe. */
TWIN_API twin_status twin_array_reshape(twin_array *a, int ndim, const size_t *shape,
                                        twin_array **out);
TWIN_API twin_status twin_array_reshape_at(twin_array *a, int ndim, const size_t *shape,
                                           twin_array **out, const char *file, int line);
#define twin_array_reshape(...) twin_array_reshape_at(__VA_ARGS__, __FILE__, __LINE__)

/* A read-only view of a broadcast to shape (ndim >= a's ndim) by NumPy's rules: axes align at
 * the end, and length-1 or missing axes repeat with stride 0. Writing through it (or a view
 * of it) is TWIN_ERR_READ_ONLY. An axis that cannot broadcast is TWIN_ERR_SHAPE_MISMATCH.
 * Thread-safe. */
TWIN_API twin_status twin_array_broadcast_to(twin_array *a, int ndim, const size_t *shape,
                                             twin_array **out);
TWIN_API twin_status twin_array_broadcast_to_at(twin_array *a, int ndim, const size_t *shape,
                                                twin_array **out, const char *file, int line);
#define twin_array_broadcast_to(...) twin_array_broadcast_to_at(__VA_ARGS__, __FILE__, __LINE__)

/* A view without a's length-1 axes. Thread-safe. */
TWIN_API twin_status twin_array_squeeze(twin_array *a, twin_array **out);
TWIN_API twin_status twin_array_squeeze_at(twin_array *a, twin_array **out, const char *file,
                                           int line);
#define twin_array_squeeze(...) twin_array_squeeze_at(__VA_ARGS__, __FILE__, __LINE__)

/* A view without a's axis `axis` (-ndim..ndim-1; negative counts from the end), which must have
 * length 1 (else TWIN_ERR_INVALID_ARGUMENT naming its length, as NumPy's squeeze(axis=)).
 * Thread-safe. */
TWIN_API twin_status twin_array_squeeze_axis(twin_array *a, int axis, twin_array **out);
TWIN_API twin_status twin_array_squeeze_axis_at(twin_array *a, int axis, twin_array **out,
                                                const char *file, int line);
#define twin_array_squeeze_axis(...) twin_array_squeeze_axis_at(__VA_ARGS__, __FILE__, __LINE__)

/* A view with a new length-1 axis inserted at position axis (-ndim-1..ndim; negative counts
 * from the end, as in NumPy). Thread-safe. */
TWIN_API twin_status twin_array_expand_dims(twin_array *a, int axis, twin_array **out);
TWIN_API twin_status twin_array_expand_dims_at(twin_array *a, int axis, twin_array **out,
                                               const char *file, int line);
#define twin_array_expand_dims(...) twin_array_expand_dims_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---- Residency ---------------------------------------------------------------------------- */

/* Where a's elements stand on each side: TWIN_RESIDENT_NONE (no memory there),
 * TWIN_RESIDENT_VALID, TWIN_RESIDENT_STALE (the other side holds newer data somewhere in a's
 * byte extent) or TWIN_RESIDENT_SHARED (zero-copy). Thread-safe. */
TWIN_API twin_status twin_array_residency(twin_array *a, twin_residency *host,
                                          twin_residency *device);

/* Frees the copy of a's buffer on `side` now, when the other side holds all of its data
 * (TWIN_ERR_BAD_STATE otherwise, TWIN_ERR_BUSY while an access on that side is open,
 * TWIN_ERR_UNSUPPORTED for a side that is memory the application lent). A later access there
 * allocates it again and moves the data back. A buffer that is one copy
 * (twin_array_is_zero_copy: zero-copy, or the host backend) has nothing redundant: evicting
 * either side succeeds and frees nothing, so portable code need not ask. Thread-safe. */
TWIN_API twin_status twin_array_evict(twin_array *a, twin_side side);

/* Brings a's byte extent up to date on `side` now, ahead of use, so a later begin there moves
 * nothing. On a buffer that is one copy nothing ever moves: prefetching either side only
 * allocates that copy if it is not yet (on the host backend, the device side is the host
 * memory its operations run on). Thread-safe. */
TWIN_API twin_status twin_array_prefetch(twin_array *a, twin_side side);

/* ---- Copies and fills ----------------------------------------------------------------------
 * The built-in operations run where the context computes: on its OpenCL device (enqueued in
 * order on the context's queue; they may still be running when the call returns, and any later
 * access waits for them), or in the calling thread on the host backend. Each opens and closes
 * the accesses it needs itself (src's read, then dst's write), by twin_host_begin's rules: it
 * waits for conflicting accesses other threads hold, and fails with TWIN_ERR_BUSY when one the
 * calling thread holds is in the way. On a device without fp64, any f64 array
 * is TWIN_ERR_UNSUPPORTED. The first operation in an OpenCL context builds twin's kernels (about
 * a second on PoCL when its kernel cache is cold); a build failure is TWIN_ERR_BUILD with the
 * compiler's log in twin_last_error(). Messages name the call, the argument (dst, src) and
 * the caller's file:line. Thread-safe: any number of threads may run operations on one context
 * at once; writes through one array object take turns, writes through different views of one
 * buffer on the same side do not (their elements are the caller's business). */

/* Copies src's elements into dst. src has dst's shape, or broadcasts to it by NumPy's rules
 * (trailing axes line up; src axes of length 1, or missing, repeat; extra leading src axes of
 * length 1 are ignored); otherwise TWIN_ERR_SHAPE_MISMATCH naming both shapes. Either may be
 * any view. Both must belong to the same context (else TWIN_ERR_INVALID_ARGUMENT); dst must
 * be writable (a broadcast view is TWIN_ERR_READ_ONLY). When src and dst are views of one
 * buffer whose elements overlap, the result is that of copying through a temporary (which this
 * call makes). When dst has aliasing elements (stride 0 from twin_array_as_strided), which
 * value each of them ends with is unspecified.
 * Differing dtypes convert element by element, identically on every backend:
 * - integer to integer wraps modulo 2^bits (the low bits are kept: 300 to u8 is 44, -1 to u16
 *   is 65535);
 * - integer or float to float rounds to nearest, ties to even (f64 to f32 overflows to +-inf;
 *   i64 and u64 round once, directly);
 * - float to integer truncates toward zero and saturates: values beyond the integer type's
 *   range become its minimum or maximum (-1.5 to u8 is 0, 1e10 to i32 is INT32_MAX), and NaN
 *   becomes 0. (C leaves these cases undefined; twin defines them the same way everywhere.) */
TWIN_API twin_status twin_copy(twin_array *dst, twin_array *src);
/* twin_copy recording the caller's file and line, which messages about its accesses name (see
 * twin_host_begin_at); the macro makes every twin_copy call record them. */
TWIN_API twin_status twin_copy_at(twin_array *dst, twin_array *src, const char *file, int line);
#define twin_copy(...) twin_copy_at(__VA_ARGS__, __FILE__, __LINE__)

/* Sets every element of dst to *value, which points to one element of dst's dtype (its bits
 * are copied as they are). dst may be any writable view; elements of its buffer outside the
 * view are untouched. */
TWIN_API twin_status twin_fill(twin_array *dst, const void *value);
/* twin_fill recording the caller's file and line for messages (see twin_copy_at). */
TWIN_API twin_status twin_fill_at(twin_array *dst, const void *value, const char *file, int line);
#define twin_fill(...) twin_fill_at(__VA_ARGS__, __FILE__, __LINE__)

/* *out is a C-contiguous array with a's dtype, shape and elements: a itself, with a new
 * reference, when twin_array_is_contiguous(a) (even if a is read-only), else a new compact
 * array made by twin_copy. The caller owns *out. */
TWIN_API twin_status twin_array_contiguous(twin_array *a, twin_array **out);
TWIN_API twin_status twin_array_contiguous_at(twin_array *a, twin_array **out, const char *file,
                                              int line);
#define twin_array_contiguous(...) twin_array_contiguous_at(__VA_ARGS__, __FILE__, __LINE__)

/* *out is a new, writable, C-contiguous array of exactly a's elements (dtype and shape), in a
 * buffer of its own: a view's copy no longer keeps its (possibly huge) base alive. The caller
 * owns *out. */
TWIN_API twin_status twin_array_copy(twin_array *a, twin_array **out);
TWIN_API twin_status twin_array_copy_at(twin_array *a, twin_array **out, const char *file,
                                        int line);
#define twin_array_copy(...) twin_array_copy_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---- Access ------------------------------------------------------------------------------- */

typedef enum twin_access { TWIN_READ = 1, TWIN_WRITE = 2, TWIN_READ_WRITE = 3 } twin_access;

/* Opens host access to a's elements and stores in *ptr the address of its first element
 * (index 0 on every axis; the element at index i is at ptr + sum(i[k] * strides[k]) elements).
 * With TWIN_READ the array's byte extent is brought up to date on the host first, moving only
 * the parts the device holds newer. TWIN_WRITE alone promises to overwrite every element of a
 * and moves nothing when a is contiguous. On a zero-copy buffer nothing is ever moved: the
 * extent is mapped. The pointer is valid only until twin_host_end(a), or until the last
 * reference to a goes (which ends the access; see twin_array_unref).
 * Which accesses may be open together, through any array objects on one buffer (views of it):
 * - reads never conflict: any number of TWIN_READ accesses, on the host and on the device,
 *   through one array object or several, each closed by its own end;
 * - an access that writes conflicts with every other access through the same array object,
 *   and with every access on the other side (device) of the buffer. Accesses on one side
 *   through different array objects never conflict: which elements they share is the
 *   caller's business, unless a region reservation claims them (twin_array_reserve: an
 *   access that a reservation refuses is TWIN_ERR_BUSY at once).
 * An access belongs to the thread that began it. A begin that conflicts only with accesses
 * other threads hold waits until they end (sleeping, not spinning), then opens. A begin that
 * conflicts with an access the calling thread holds, which waiting could not end, is
 * TWIN_ERR_BUSY at once, and so is one that conflicts with a DLPack export's access
 * (twin_array_to_dlpack), which no thread holds. A wait that would never end (a thread it would
 * wait for waits itself, directly or through others, for an access the calling thread holds)
 * is TWIN_ERR_BUSY at once, naming both accesses. Every BUSY message names each open access
 * in the way with the file:line and call that began it. Built-in operations and kernel
 * launches open their accesses by these rules too. Thread-safe. */
TWIN_API twin_status twin_host_begin(twin_array *a, twin_access access, void **ptr);

/* twin_host_begin recording the caller's file and line, which messages about an access left
 * open name (TWIN_ERR_BUSY, TWIN_DEBUG reports). The macro below makes every twin_host_begin
 * call record them; the plain function stays callable (e.g. from other languages, or as
 * (twin_host_begin)). */
TWIN_API twin_status twin_host_begin_at(twin_array *a, twin_access access, void **ptr,
                                        const char *file, int line);
#define twin_host_begin(...) twin_host_begin_at(__VA_ARGS__, __FILE__, __LINE__)

/* Closes a host access of a: the newest one the calling thread holds, else the newest open one
 * (so another thread may end it). After a write, the device copy is stale and moves at its
 * next use. Threads waiting for the access wake. Without an open host access it is
 * TWIN_ERR_BAD_STATE. Thread-safe. */
TWIN_API twin_status twin_host_end(twin_array *a);

/* Copies a's elements into dst (C order, packed, twin_array_nbytes(a) bytes), bringing them
 * from the device if it holds the newest copy. A convenience over host_begin/end (the same
 * rules: it waits for other threads' conflicting accesses). */
TWIN_API twin_status twin_array_read(twin_array *a, void *dst, size_t dst_bytes);

/* Overwrites a's elements from src (C order, packed, twin_array_nbytes(a) bytes). */
TWIN_API twin_status twin_array_write(twin_array *a, const void *src, size_t src_bytes);

/* ---- Region reservations -------------------------------------------------------------------
 * Accesses conflict per buffer side (above): a host write through one view and a kernel on
 * another view of the same buffer are the caller's business when their elements differ, and
 * twin cannot tell when they do not. A reservation says which elements are in use across a
 * span of time no access covers (an exchange in flight, say): through the array object that
 * made it, access goes on as usual; every other array object's access whose elements overlap
 * the reserved ones is refused while it stands:
 * - a TWIN_READ reservation (no one else changes these elements) refuses other objects'
 *   accesses that write;
 * - a TWIN_WRITE (or TWIN_READ_WRITE) reservation (these elements are being produced) refuses
 *   every other object's access, on either side, reads too.
 * No thread holds a reservation (as with a DLPack export): an access it refuses is
 * TWIN_ERR_BUSY at once, never waited for, and the message names the reservation (mode, the
 * reserved view's shape and element offset, and the file:line twin_array_reserve_at was given:
 * its caller's, or a library's caller's).
 * Accesses means every way in: host and device begin, twin_copy, twin_fill, kernel launches,
 * DLPack exports, twin_array_read and _write. Views of the reserving object are other objects.
 * Overlap is exact for views with the same strides and dtype size laid out as slices with
 * step 1 of one parent (rows, columns, blocks, a field's faces, ghosts and interior: per-axis
 * index ranges are compared); any other pair is compared by byte extent, from its lowest to
 * its highest element, which may refuse two views that share no element but never admits
 * two that do. */

/* Reserves view's elements in mode (TWIN_READ, TWIN_WRITE or TWIN_READ_WRITE) until
 * twin_array_unreserve(view), or until view's last reference goes, which releases it (under
 * TWIN_DEBUG, that unref reports it with the accesses left open and aborts, as for an access
 * never ended).
 * The reservation is admitted as an access of that mode would be, against the accesses open
 * through other array objects whose elements overlap view's, on either side: it waits for
 * those other threads hold, and is TWIN_ERR_BUSY when this thread or a DLPack export holds one;
 * it is TWIN_ERR_BUSY too when it overlaps another object's reservation and either writes.
 * One reservation per array object: a second is TWIN_ERR_BAD_STATE. A write reservation of a
 * broadcast view is TWIN_ERR_READ_ONLY. Nothing is allocated or moved. Thread-safe: any
 * thread may reserve, and any thread may release. */
TWIN_API twin_status twin_array_reserve(twin_array *view, twin_access mode);
/* twin_array_reserve recording the caller's file and line, which the messages of the accesses
 * it refuses name; the macro makes every twin_array_reserve call record them. A library that
 * reserves on its caller's behalf passes its caller's file and line. file must stay valid
 * (a string literal) while the reservation stands. */
TWIN_API twin_status twin_array_reserve_at(twin_array *view, twin_access mode, const char *file,
                                           int line);
#define twin_array_reserve(...) twin_array_reserve_at(__VA_ARGS__, __FILE__, __LINE__)

/* Releases view's reservation; accesses it refused may open from now on. TWIN_ERR_BAD_STATE
 * when view (this array object) holds none. Thread-safe. */
TWIN_API twin_status twin_array_unreserve(twin_array *view);

/* True when a and b may share an element, as reservations judge it (see above): false for
 * views of different buffers or an empty view, exact for step-1 slices of one parent,
 * by byte extent otherwise. NULL is false. Thread-safe. */
TWIN_API bool twin_array_overlaps(const twin_array *a, const twin_array *b);

/* ---- Memory the application lends ---------------------------------------------------------
 * An application can hand twin memory it already has instead of copying it in: a host block
 * (twin_array_wrap_host), an OpenCL buffer (twin_array_wrap_cl_mem in twin_opencl.h), or a
 * DLPack tensor (twin_array_from_dlpack). The result is an array like any other: views,
 * accesses, copies and kernels all work on it. From then on the application reads and writes
 * that memory only through twin (on a zero-copy context the device uses it in place, elsewhere
 * twin keeps a copy on the other side that it updates by byte ranges).
 * Such memory is counted in twin_stats (host_bytes, or device_bytes for an adopted cl_mem)
 * like twin's own, and shown by the report, but it is never refused for a memory budget (it
 * exists already), and trim and evict never free it (twin_array_evict of that side is
 * TWIN_ERR_UNSUPPORTED). */

/* Called once when twin no longer uses memory the application lent it. */
typedef void (*twin_release_fn)(void *user_data);

/* An array over host memory the application owns. ptr is the address of the element at index
 * 0, aligned for dtype; shape and strides have ndim entries (strides in elements, any sign, or
 * NULL for C order), and every element they reach must stay valid memory until release_fn
 * runs. The buffer is exactly the bytes from the lowest to the highest element.
 * release_fn(user_data) (release_fn may be NULL) runs exactly once, when the last view of the
 * buffer is unreferenced, inside that twin_array_unref, which first brings back what the device
 * holds newer and waits until the device is done with the memory (the commands queued on the
 * buffer; a cl_mem from twin_device_begin on it must not be retained past the array's life,
 * or release_fn runs only when that reference is released), so the memory then holds the
 * array's final contents and is the application's again.
 * On a zero-copy context the block becomes the shared memory of host and device
 * (CL_MEM_USE_HOST_PTR); on a two-copy context it is the host side, and the device copy is
 * twin's, made at first device use. On failure release_fn is not called and nothing changed.
 * The caller owns *out. Thread-safe. */
TWIN_API twin_status twin_array_wrap_host(twin_context *ctx, void *ptr, twin_dtype dtype, int ndim,
                                          const size_t *shape, const ptrdiff_t *strides,
                                          twin_release_fn release_fn, void *user_data,
                                          twin_array **out);
TWIN_API twin_status twin_array_wrap_host_at(twin_context *ctx, void *ptr, twin_dtype dtype,
                                             int ndim, const size_t *shape,
                                             const ptrdiff_t *strides, twin_release_fn release_fn,
                                             void *user_data, twin_array **out, const char *file,
                                             int line);
#define twin_array_wrap_host(...) twin_array_wrap_host_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---- DLPack ---------------------------------------------------------------------------------
 * Arrays cross to and from other frameworks as DLPack 0.6 tensors (<dlpack/dlpack.h>,
 * DLManagedTensor; this header needs only the declaration below). Strides are in elements in
 * both, as DLPack wants; twin also exports negative and zero strides, which DLPack allows but
 * some consumers refuse (give those twin_array_contiguous(a) instead). */
struct DLManagedTensor;

/* Exports a as a kDLCPU tensor over its host data, for a consumer that reads it (access
 * TWIN_READ) or also writes it (TWIN_WRITE, TWIN_READ_WRITE) in place. The tensor holds a
 * reference on a's buffer and an open host access of that mode (made through a private view,
 * so a itself stays free for other accesses), both given up by its deleter. Until then the
 * data at dl_tensor.data is valid and current, and device-side writes to the buffer (kernels,
 * twin_copy, twin_device_begin) are TWIN_ERR_BUSY, as while any host access is open; since no
 * thread holds the export's access, no call waits for it (see twin_host_begin).
 * dl_tensor.data is the address of element 0 and byte_offset is 0; device is {kDLCPU, 0};
 * dtype is {kDLInt, kDLUInt or kDLFloat, bits, lanes 1}; shape and strides live in the tensor.
 * *out belongs to the consumer, which must call (*out)->deleter(*out) exactly once, from any
 * thread. Thread-safe. */
TWIN_API twin_status twin_array_to_dlpack(twin_array *a, twin_access access,
                                          struct DLManagedTensor **out);
/* twin_array_to_dlpack recording the caller's file and line, which messages about the
 * export's open access name; the macro makes every call record them. */
TWIN_API twin_status twin_array_to_dlpack_at(twin_array *a, twin_access access,
                                             struct DLManagedTensor **out, const char *file,
                                             int line);
#define twin_array_to_dlpack(...) twin_array_to_dlpack_at(__VA_ARGS__, __FILE__, __LINE__)

/* An array over a tensor another library produced: kDLCPU memory is adopted as by
 * twin_array_wrap_host; kDLOpenCL memory (data is a cl_mem of ctx's OpenCL context, byte_offset
 * a multiple of the element size) as by twin_array_wrap_cl_mem. The dtype must be one twin has
 * (int and uint of 8 to 64 bits, float of 32 and 64, lanes 1); strides NULL means C order. On
 * success twin owns the tensor and calls its deleter (when not NULL) exactly once, when the
 * array's buffer is released, as release_fn of twin_array_wrap_host. On failure the tensor is
 * untouched and still the caller's. The caller owns *out. Thread-safe. */
TWIN_API twin_status twin_array_from_dlpack(twin_context *ctx, struct DLManagedTensor *tensor,
                                            twin_array **out);
TWIN_API twin_status twin_array_from_dlpack_at(twin_context *ctx, struct DLManagedTensor *tensor,
                                               twin_array **out, const char *file, int line);
#define twin_array_from_dlpack(...) twin_array_from_dlpack_at(__VA_ARGS__, __FILE__, __LINE__)

/* ---- User kernels ---------------------------------------------------------------------------
 * An application runs its own OpenCL C kernels on twin arrays: build a program, take a kernel
 * from it, and launch it with arrays, scalars and local memory as arguments. twin brings each
 * array up to date on the device before the launch (moving only stale byte ranges), records
 * what the kernel writes, and checks every argument against the kernel's own parameter list.
 * How arguments bind to parameters, and macros for indexing any view from kernel code, are in
 * twin_kernel.h (installed beside this header, and prepended to every program). On the host
 * backend, OpenCL C cannot run (TWIN_ERR_UNSUPPORTED); twin_kernel_new_host makes a kernel
 * from a C function instead, launched the same way on every backend, so an application can
 * keep one code path. */

typedef struct twin_program twin_program;
typedef struct twin_kernel twin_kernel;

/* Builds OpenCL C source (a NUL-terminated string) for ctx's device, with build_options (NULL
 * for none; twin adds -cl-kernel-arg-info). Programs are cached per context by source and
 * options: building the same pair again returns the same program without compiling. The cache
 * holds a reference of its own on each program, dropped when the context closes, so a program
 * stays built until then, even after the application's last reference and its kernels' are
 * gone. Every other reference (the caller's, each kernel's) holds ctx, so the context closes
 * only once they are all dropped, and its programs go with it.
 * A compiler failure is TWIN_ERR_BUILD with the device's build log in twin_last_error() (line
 * numbers are the source's own); it is not cached. On the host backend: TWIN_ERR_UNSUPPORTED.
 * The caller owns *out. Thread-safe. */
TWIN_API twin_status twin_program_new(twin_context *ctx, const char *source,
                                      const char *build_options, twin_program **out);

/* As twin_program_new with the source read from the file at path (the build log names it). A
 * file that cannot be read is TWIN_ERR_INVALID_ARGUMENT naming it and the reason. */
TWIN_API twin_status twin_program_new_from_file(twin_context *ctx, const char *path,
                                                const char *build_options, twin_program **out);

/* Takes one more reference on prog (which holds its context too) and returns prog.
 * Thread-safe. */
TWIN_API twin_program *twin_program_ref(twin_program *prog);
/* Drops one reference and its hold on the context; the cache's own reference keeps the program
 * built until the context closes. NULL is a no-op. Thread-safe. */
TWIN_API void twin_program_unref(twin_program *prog);

/* A kernel of prog, by its function name (else TWIN_ERR_INVALID_ARGUMENT listing the
 * program's kernels). twin reads the kernel's parameter list (clGetKernelArgInfo) and its own
 * limits (CL_KERNEL_WORK_GROUP_SIZE, CL_KERNEL_LOCAL_MEM_SIZE) to check every launch against;
 * a device that gives no argument information is TWIN_ERR_UNSUPPORTED, since twin makes no
 * kernel whose launches it cannot check. Each kernel object has its own arguments: threads may
 * share one (its launches then take turns setting arguments and enqueuing) or make one each.
 * The kernel holds a reference on prog. The caller owns *out. Thread-safe. */
TWIN_API twin_status twin_kernel_new(twin_program *prog, const char *name, twin_kernel **out);

typedef enum twin_arg_kind {
  TWIN_ARG_ARRAY = 1, /* a C-contiguous array: binds `T *x, long x_offset`, T its dtype */
  TWIN_ARG_VIEW,      /* any view: `T *x, long x_offset, long8 x_shape, long8 x_strides` */
  TWIN_ARG_SCALAR,    /* one value of dtype: one parameter of exactly that OpenCL C type */
  TWIN_ARG_LOCAL,     /* local memory of local_bytes: one `__local T *` parameter, any T */
} twin_arg_kind;

typedef union twin_scalar {
  int8_t i8;
  uint8_t u8;
  int16_t i16;
  uint16_t u16;
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  float f32;
  double f64;
} twin_scalar;

/* One argument of a launch; make them with the twin_arg_* functions below. */
typedef struct twin_arg {
  twin_arg_kind kind;
  twin_array *array;  /* ARRAY, VIEW: borrowed for the call */
  twin_access access; /* ARRAY, VIEW: what the kernel does with it */
  twin_dtype dtype;   /* SCALAR */
  twin_scalar value;  /* SCALAR */
  size_t local_bytes; /* LOCAL */
} twin_arg;

static inline twin_arg twin__arg(twin_arg_kind kind, twin_array *a, twin_access access,
                                 twin_dtype dtype, size_t local_bytes) {
  twin_arg r;
  r.kind = kind;
  r.array = a;
  r.access = access;
  r.dtype = dtype;
  r.value.u64 = 0;
  r.local_bytes = local_bytes;
  return r;
}
static inline twin_arg twin_arg_array(twin_array *a, twin_access access) {
  return twin__arg(TWIN_ARG_ARRAY, a, access, TWIN_U8, 0);
}
static inline twin_arg twin_arg_view(twin_array *a, twin_access access) {
  return twin__arg(TWIN_ARG_VIEW, a, access, TWIN_U8, 0);
}
/* local_bytes of __local memory per work-group for one `__local T *` parameter. A device
 * launch refuses (TWIN_ERR_INVALID_ARGUMENT, naming the argument) local memory that, with the
 * launch's other local arguments and the kernel's own __local variables
 * (CL_KERNEL_LOCAL_MEM_SIZE), exceeds the device's CL_DEVICE_LOCAL_MEM_SIZE
 * (twin_device_info.local_mem_bytes). A host kernel gets a scratch block of that size. */
static inline twin_arg twin_arg_local(size_t bytes) {
  return twin__arg(TWIN_ARG_LOCAL, NULL, TWIN_READ, TWIN_U8, bytes);
}
#define TWIN__ARG_SCALAR(name, T, DTYPE)                                                           \
  static inline twin_arg twin_arg_##name(T v) {                                                    \
    twin_arg r = twin__arg(TWIN_ARG_SCALAR, NULL, TWIN_READ, DTYPE, 0);                            \
    r.value.name = v;                                                                              \
    return r;                                                                                      \
  }
TWIN__ARG_SCALAR(i8, int8_t, TWIN_I8)
TWIN__ARG_SCALAR(u8, uint8_t, TWIN_U8)
TWIN__ARG_SCALAR(i16, int16_t, TWIN_I16)
TWIN__ARG_SCALAR(u16, uint16_t, TWIN_U16)
TWIN__ARG_SCALAR(i32, int32_t, TWIN_I32)
TWIN__ARG_SCALAR(u32, uint32_t, TWIN_U32)
TWIN__ARG_SCALAR(i64, int64_t, TWIN_I64)
TWIN__ARG_SCALAR(u64, uint64_t, TWIN_U64)
TWIN__ARG_SCALAR(f32, float, TWIN_F32)
TWIN__ARG_SCALAR(f64, double, TWIN_F64)
#undef TWIN__ARG_SCALAR

/* What a host kernel's function receives: the launch's geometry and arguments. */
typedef struct twin_host_launch {
  int work_dim;
  size_t global[3];
  size_t local[3]; /* 0 where the launch gave no local size */
  int nargs;
  const twin_arg *args; /* as given to twin_kernel_launch */
  /* Per argument: an array's element 0 (a host address, valid during the call; index it with
   * twin_array_strides(args[i].array)), a scalar's value, local memory's scratch block. */
  void *const *data;
} twin_host_launch;

/* A host kernel's function: runs the whole launch in the calling thread (looping over
 * global itself). A status other than TWIN_OK is returned by twin_kernel_launch as it is; the
 * arrays passed for writing count as written either way. twin_last_error() then names
 * twin_kernel_launch, the caller's file:line, the kernel and the status; when a twin call made
 * by the function failed during the launch, its message follows as the cause (the last such
 * failure on the launching thread); else the message says the function set none. */
typedef twin_status (*twin_host_fn)(const twin_host_launch *launch, void *user);

/* A kernel that runs fn(launch, user) on the host, on any backend: twin_kernel_launch opens
 * each array argument's host access (bringing it up to date on the host), calls fn, and closes
 * the accesses, so fn sees and writes current data. name is for messages; user is borrowed.
 * The caller owns *out; the kernel holds a reference on ctx. Thread-safe. */
TWIN_API twin_status twin_kernel_new_host(twin_context *ctx, const char *name, twin_host_fn fn,
                                          void *user, twin_kernel **out);

/* Takes one more reference on k and returns k. Thread-safe. */
TWIN_API twin_kernel *twin_kernel_ref(twin_kernel *k);
/* Drops one reference. NULL is a no-op. Thread-safe. */
TWIN_API void twin_kernel_unref(twin_kernel *k);
/* The kernel's function name; borrowed, valid while k lives. */
TWIN_API const char *twin_kernel_name(const twin_kernel *k);

/* Launches k over a work_dim (1..3) range of global[] work items, in work-groups of local[]
 * (NULL: the runtime chooses; else each global[i] must be a multiple of local[i]), with nargs
 * arguments (see twin_kernel.h for how they bind). Checks first, changing nothing when one
 * fails (TWIN_ERR_INVALID_ARGUMENT unless said):
 * - every array belongs to k's context and is writable when passed for writing
 *   (TWIN_ERR_READ_ONLY); a TWIN_ARG_ARRAY array is C-contiguous;
 * - the arguments bind exactly the kernel's parameters: their number and kinds, constness
 *   (an array passed TWIN_READ binds a pointer to const, one passed for writing a pointer to
 *   non-const), and types. A pointer binds an array only when its element type is exactly the
 *   array's dtype as OpenCL C spells it (float for f32, uint or unsigned int for u32, char or
 *   signed char for i8, ...); a scalar binds only a parameter of exactly its type. Vector,
 *   half, bool, size_t, struct and typedef types are refused, since the kernel would read or
 *   write in units of another size;
 * - global[i], and their product, are at most the largest signed value of the device's size_t
 *   (2^(CL_DEVICE_ADDRESS_BITS - 1) - 1; the host's for a host kernel): the range
 *   get_global_id and twin_kernel.h's long indices hold, and what rules out a negative count
 *   converted to size_t, or a product that overflows;
 * - a device kernel's local[i] is at most CL_DEVICE_MAX_WORK_ITEM_SIZES[i], and their product
 *   at most CL_DEVICE_MAX_WORK_GROUP_SIZE and the kernel's CL_KERNEL_WORK_GROUP_SIZE; its
 *   local memory fits the device (see twin_arg_local). twin_device_info holds the limits.
 * A refusal names the argument (and the parameter) or the dimension, the value and the limit,
 * after "twin_kernel_launch (file:line)", the caller's. Then it opens a device access of each
 * array (once per array object, with the union of its modes when passed twice), which brings
 * it up to date on the device and marks what the kernel writes as newer there, by
 * twin_host_begin's rules: a host write open on an array's buffer, or a host read there while
 * the kernel writes the array, makes the launch wait when another thread holds it and
 * TWIN_ERR_BUSY when the calling thread does (which the message names with its file:line). The
 * arguments that did not change since the kernel's last launch are not set again. The kernel is enqueued on the context's in-order queue and may still run when
 * this returns: a later host access waits for it, and twin_context_finish waits for
 * everything. Views of one buffer may be passed together, for reading and writing; whether
 * their elements overlap is the kernel's business, as in OpenCL. A range with a zero in global
 * launches nothing. A host kernel runs in the calling thread instead, with host accesses (see
 * twin_kernel_new_host). Thread-safe. */
TWIN_API twin_status twin_kernel_launch(twin_kernel *k, int work_dim, const size_t *global,
                                        const size_t *local, int nargs, const twin_arg *args);
/* twin_kernel_launch recording the caller's file and line, which messages about the accesses
 * it opens name (see twin_host_begin_at); the macro makes every call record them. */
TWIN_API twin_status twin_kernel_launch_at(twin_kernel *k, int work_dim, const size_t *global,
                                           const size_t *local, int nargs, const twin_arg *args,
                                           const char *file, int line);
#define twin_kernel_launch(...) twin_kernel_launch_at(__VA_ARGS__, __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif /* TWIN_H */

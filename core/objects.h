/* The public objects, the top layer: it uses storage, the context and ground, and nothing below
 * calls it (but for the context's two teardown hooks, context.h). Within it, a file calls only
 * files before it in this order (scripts/check-layers.py ranks them): arrays (array.c); views
 * (view.c), memory the application lends (external.c) and the overlap of two views
 * (overlap.c); reshape and broadcast_to (reshape.c) and the access protocol (access.c);
 * residency (residency.c) and the built-in operations (ops.c); DLPack (dlpack.c) and the report
 * (report.c); programs, kernels and launches; the OpenCL interop (opencl.c). Never installed. */
#ifndef TWIN_OBJECTS_H
#define TWIN_OBJECTS_H

#include <string.h>

#include "storage.h"

/* ---- Array objects (array.c) ---- */

/* Reports a use of a released (or foreign) array object on stderr with its creation site,
 * then calls twin__debug_fatal. */
void twin__debug_check_slow(const twin_array *a, const char *fn);
/* The check every public call taking an array makes first: one predictable branch while
 * debugging is off. A NULL array passes (the call's own argument check handles it). */
static inline void twin__debug_check(const twin_array *a, const char *fn) {
  if (__builtin_expect(atomic_load_explicit(&twin__debug, memory_order_relaxed), 0))
    twin__debug_check_slow(a, fn);
}
/* Reports on stderr that the last reference to a went while the accesses `what` describes
 * were open (twin__records_drop ended them); the caller then calls twin__debug_fatal. */
void twin__debug_report_open(const twin_array *a, const char *what);

/* Checks the arguments every array constructor shares: ctx, dtype, ndim and shape. The checks
 * below take a dtype that passed it (or an array's). */
twin_status twin__check_geometry(const char *fn, const twin_context *ctx, twin_dtype dtype,
                                 int ndim, const size_t *shape);
/* The invariant every array's shape keeps, checked by every constructor: the element count and
 * byte size fit, and the axis lengths, zero-length ones counted as 1, times the element size fit
 * in ptrdiff_t, so C-order strides and extents computed in any axis order (transpose, reshape,
 * packed reads) fit too, with elements or not. Stores the element count in *size. */
twin_status twin__check_shape(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                              size_t *size);
/* The extent invariant of every view, for a shape that passed twin__check_shape: each stride
 * times the element size fits in ptrdiff_t (a length-1 axis's too), and so does the byte span
 * of the axes that have elements, summed per sign (also with no element at all, so that views
 * made from an empty one fit). *lo <= 0 <= *hi: the lowest and highest element reached,
 * relative to element 0. */
twin_status twin__check_extent(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                               const ptrdiff_t *strides, ptrdiff_t *lo, ptrdiff_t *hi);
/* stride x factor, the stride of an axis of len elements in a new view. The elements of the
 * view lie inside the buffer, so the product misses ptrdiff_t (in bytes) only on an axis of at
 * most one element, whose stride addresses nothing: it is 0 there. False if len > 1. */
bool twin__scaled_stride(ptrdiff_t stride, ptrdiff_t factor, size_t len, twin_dtype dtype,
                         ptrdiff_t *out);
/* Refuses a write through a broadcast view (or a view of one), whose elements alias each
 * other: "who: what is a broadcast view (...) and cannot be written; copy it first"
 * (TWIN_ERR_READ_ONLY). who is the start of the message (the public call, "argument 2"),
 * what names the array ("dst", "the array"). */
twin_status twin__check_writable(const twin_array *a, const char *who, const char *what);
/* twin_array_is_contiguous without the debug check, for callers that made it already. */
bool twin__is_contiguous(const twin_array *a);
/* A new array on a new buffer (zeroed when zero is true), with the checks and messages of
 * twin_array_new under fn's name. */
twin_status twin__array_new(const char *fn, twin_context *ctx, twin_dtype dtype, int ndim,
                            const size_t *shape, bool zero, twin__site site, twin_array **out);
/* A new array object, uninitialised (twin__take: maybe one this thread released); NULL when
 * out of memory. twin_array_unref releases it. Inline: every view makes one. */
static inline twin_array *twin__array_alloc(void) {
  return twin__take(TWIN__KEEP_ARRAY, sizeof(twin_array));
}
/* Sets the fields of a new array object (from twin__array_alloc: nothing needs to be zeroed)
 * over buffer b but its owner: its geometry (ndim entries of shape and strides; the axes past
 * them are garbage, never read), writable, no access open. It is not attached yet. Inline: every
 * view makes one. */
static inline void twin__array_init(twin_array *a, twin__buffer *b, twin_dtype dtype, int ndim,
                                    const size_t *shape, const ptrdiff_t *strides, size_t size,
                                    size_t offset, twin__site site) {
  a->buf = b;
  a->site = site;
  a->dtype = dtype;
  a->ndim = ndim;
  a->size = size;
  a->offset = offset;
  /* Only the ndim axes: nothing reads past them (the report copies ndim entries), and zeroing
   * the rest cost a view some 16 stores. */
  for (int i = 0; i < ndim; i++) {
    a->shape[i] = shape[i];
    a->strides[i] = strides[i];
  }
  a->read_only = false;
  a->opens = a->host_opens = 0;
  a->mapped = NULL;
  a->reservation.mode = 0; /* none */
  a->slot_used = false;    /* the slot itself is filled when an access takes it */
}
/* Registers a new array object with its buffer (view list, counters) and sets its refcount;
 * adopt as twin__buffer_attach's: the caller's reference on a->buf passes to the views. */
static inline void twin__array_attach(twin_array *a, bool adopt) {
  a->magic = TWIN__ARRAY_ALIVE;
  twin__ref_init(&a->refs);
  twin__buffer_attach(a, adopt);
}
/* Byte range [*lo, *hi) of the buffer that a's elements occupy; lo == hi when a is empty. */
void twin__array_extent(const twin_array *a, size_t *lo, size_t *hi);

/* ---- Views (view.c) ---- */

/* A new view on a's buffer with the given geometry (offset in elements from the buffer's
 * start), proven inside the buffer with overflow-checked arithmetic; it inherits read_only.
 * fn names the public call for messages. */
twin_status twin__array_view(const char *fn, twin_array *a, int ndim, const size_t *shape,
                             const ptrdiff_t *strides, ptrdiff_t offset, twin__site site,
                             twin_array **out);

/* ---- Overlap of two views (overlap.c) ---- */

/* True when array objects a and b may share an element: never for different buffers or an
 * empty view; exactly (per-axis index ranges) for views of one dtype size and the same strides
 * that sit on one lattice (step-1 slices of one parent); else when their byte extents meet,
 * which never misses an overlap. */
bool twin__arrays_overlap(const twin_array *a, const twin_array *b);

/* ---- Memory the application lends (external.c) ---- */

/* An array over host memory the application owns (twin_array_wrap_host and DLPack kDLCPU
 * imports): ptr is element 0; strides NULL means C order. release(user) runs once at the end;
 * on failure it is not called. fn names the public call for messages. */
twin_status twin__array_wrap_host(const char *fn, twin_context *ctx, void *ptr, twin_dtype dtype,
                                  int ndim, const size_t *shape, const ptrdiff_t *strides,
                                  void (*release)(void *), void *user, twin__site site,
                                  twin_array **out);
/* An array over a device handle the application made (twin_array_wrap_cl_mem and DLPack
 * kDLOpenCL imports), adopted through twin__adopt_device: element 0 is byte_offset bytes into
 * it. release(user), may be NULL, runs once after twin drops its own reference to the handle;
 * on failure twin keeps no reference and release is not called. */
twin_status twin__array_wrap_device(const char *fn, twin_context *ctx, void *handle,
                                    size_t byte_offset, twin_dtype dtype, int ndim,
                                    const size_t *shape, const ptrdiff_t *strides,
                                    void (*release)(void *), void *user, twin__site site,
                                    twin_array **out);

/* ---- The access protocol (access.c) ---- */

/* For built-in operations, which run on one side's memory: opens `access` on `side` and
 * returns that side's memory (the device handle, or the host block's start; never used for a
 * shared host access). For a write, *before (when not NULL) receives the dirty map as it was,
 * so that twin__close_for_op can undo the marking if the operation then failed. */
twin_status twin__open_for_op(twin_array *a, twin__side_id side, twin_access access,
                              const twin__opener *who, twin__dirty *before, void **mem);
/* Closes it; failed_before is the map from the open when the operation failed, else NULL. */
void twin__close_for_op(twin_array *a, twin__side_id side, const twin__dirty *failed_before);

/* The generic halves of twin_host_begin (storing the address of a's element 0) and
 * twin_device_begin (storing the backend's device handle and the byte offset of element 0),
 * for the call `who` names; unowned: the access is held for a DLPack consumer, by no thread,
 * so no conflict waits for it. And the generic halves of the ends, for the call fn names. */
twin_status twin__host_begin(const twin__opener *who, bool unowned, twin_array *a,
                             twin_access access, void **ptr);
twin_status twin__device_begin(const twin__opener *who, bool unowned, twin_array *a,
                               twin_access access, void **handle, size_t *byte_offset);
twin_status twin__host_end(const char *fn, twin_array *a);
twin_status twin__device_end(twin_array *a);

/* ---- DLPack (dlpack.c) ---- */

struct DLManagedTensor;
/* A DLPack tensor over a's memory on `side`, holding a private view with an open access of
 * that mode until the tensor's deleter runs; site is the caller's, for messages. */
twin_status twin__array_to_dlpack(const char *fn, twin_array *a, twin__side_id side,
                                  twin_access access, twin__site site,
                                  struct DLManagedTensor **out);

/* ==== User programs, kernels and launches (program.c, kernel.c, launch_check.c, launch.c) ====
 * The top of core: calls go one way, launch.c -> launch_check.c -> kernel.c -> program.c, each
 * file using only those after it. The one call up into them is the context's teardown hook,
 * twin__programs_release, which ends the cache's references when the context closes. */

/* ---- Programs (program.c) ---- */

/* twin__programs_release, the context's teardown hook, is declared in context.h. */
/* The context a program was built on, and the backend's program (NULL for a NULL prog); both
 * borrowed, valid while prog lives. */
twin_context *twin__program_context(const twin_program *prog);
void *twin__program_handle(const twin_program *prog);

/* ---- Kernels (kernel.c) ---- */

/* What twin reads from a parameter's type name (kernel.c classifies it at creation). */
typedef struct twin__param_type {
  int elem;         /* the twin_dtype its type (a pointer's pointee) is exactly; -1: none */
  bool pointer;     /* a pointer of any kind */
  bool offset_type; /* long or ulong: an array's element offset */
  bool long8;       /* a view's shape or strides */
} twin__param_type;

struct twin__param;     /* backends/backend.h */
struct twin__kvalue;    /* backends/backend.h */
struct twin__arg_state; /* kernel.c's: the value a parameter was last set to */

/* Fixed from creation on but for state, which the kernel's lock guards. */
struct twin_kernel {
  atomic_size_t refs;
  twin_context *ctx;     /* held */
  twin_program *program; /* a reference; NULL for a host kernel */
  pthread_mutex_t lock;  /* held across setting the arguments and enqueuing, and for state */
  void *handle;          /* the backend's kernel; NULL for a host kernel */
  int nparams;
  struct twin__param *params;    /* nparams entries, as the device describes them */
  twin__param_type *types;       /* nparams entries */
  struct twin__arg_state *state; /* nparams entries */
  size_t group_limit;            /* CL_KERNEL_WORK_GROUP_SIZE; 0: none known */
  uint64_t own_local;            /* CL_KERNEL_LOCAL_MEM_SIZE: its own __local variables, in bytes */
  twin_host_fn host_fn;          /* a host kernel's function, else NULL */
  void *host_user;
  char name[];
};

/* The OpenCL C name of a dtype, for messages: "float" for TWIN_F32. */
const char *twin__kernel_type_name(twin_dtype dtype);
/* The backend's kernel behind k; NULL for a host kernel or a NULL k. */
void *twin__kernel_handle(const twin_kernel *k);
/* Sets a device kernel's parameters to values[0..nvalues) and enqueues it through the backend's
 * kernel_enqueue, under the kernel's lock; values the kernel holds from its previous launch
 * are marked same, so the backend may skip them. *failed_value as kernel_enqueue's. */
twin_status twin__kernel_enqueue(twin_kernel *k, struct twin__kvalue *values, int nvalues,
                                 int work_dim, const size_t *global, const size_t *local,
                                 int *failed_value);

/* ---- Checking a launch (launch_check.c) ---- */

static inline bool twin__arg_is_array(twin_arg_kind kind) {
  return kind == TWIN_ARG_ARRAY || kind == TWIN_ARG_VIEW;
}
/* Kernel parameters an argument binds (see twin_kernel.h). */
static inline int twin__arg_binds(twin_arg_kind kind) {
  return kind == TWIN_ARG_ARRAY ? 2 : kind == TWIN_ARG_VIEW ? 4 : 1;
}
/* Checks a launch of k before anything opens, changing nothing: the arguments and work sizes,
 * and for a device kernel its parameters and limits. The message has no public call in front.
 * *items is the number of work items. */
twin_status twin__launch_check(const twin_kernel *k, int work_dim, const size_t *global,
                               const size_t *local, int nargs, const twin_arg *args, size_t *items);

/* ==== End of user programs, kernels and launches ==== */

#endif /* TWIN_OBJECTS_H */

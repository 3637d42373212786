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
  char spec[24];        /* a spec that selects exactly this device: "host" or "opencl:P.D" */
  char platform[128];   /* OpenCL platform name; "twin" for the host backend */
  char name[128];       /* device name */
  twin_device_type type;
  int platform_index;   /* P and D of "opencl:P.D"; -1 for the host backend */
  int device_index;
  uint64_t global_mem_bytes;    /* CL_DEVICE_GLOBAL_MEM_SIZE; physical memory for the host */
  uint64_t max_alloc_bytes;     /* CL_DEVICE_MAX_MEM_ALLOC_SIZE; PTRDIFF_MAX for the host */
  bool host_unified_memory;     /* the device shares host memory (true for the host backend) */
  bool fp64;                    /* f64 arrays can be used on the device */
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
 * "opencl:NAME" (case-insensitive substring of the platform or device name). Default order:
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

/* Takes one more reference on ctx and returns ctx. Thread-safe. */
TWIN_API twin_context *twin_context_ref(twin_context *ctx);

/* Drops one reference; the last one closes the device. NULL is a no-op. Thread-safe. */
TWIN_API void twin_context_unref(twin_context *ctx);

/* Waits until all work queued on the context's device has completed. Thread-safe. */
TWIN_API twin_status twin_context_finish(twin_context *ctx);

/* The device the context runs on. The pointer is borrowed and lives as long as ctx. */
TWIN_API const twin_device_info *twin_context_device(const twin_context *ctx);

/* ---- Statistics --------------------------------------------------------------------------- */

typedef struct twin_stats {
  size_t host_bytes;         /* host memory allocated for buffers now */
  size_t device_bytes;       /* device memory allocated for buffers now */
  size_t peak_host_bytes;    /* highest host_bytes since the context was made */
  size_t peak_device_bytes;  /* highest device_bytes since the context was made */
  size_t buffers;            /* live buffers */
  size_t arrays;             /* live arrays (views included) */
  size_t zero_copy_buffers;  /* live buffers whose host and device memory are one */
  size_t held_by_views_bytes;
  uint64_t bytes_to_device, bytes_to_host;             /* bytes moved each way */
  uint64_t transfers_to_device, transfers_to_host;     /* transfer commands each way */
} twin_stats;

/* Copies the context's counters into *out. Counters are updated atomically as allocations and
 * transfers happen; a snapshot taken while other threads work may mix instants. Thread-safe. */
TWIN_API twin_status twin_context_stats(twin_context *ctx, twin_stats *out);

/* ---- Arrays ------------------------------------------------------------------------------- */

typedef struct twin_array twin_array;

/* A new C-contiguous array of ndim (0..TWIN_MAX_DIMS) axes with the given shape (ndim entries;
 * may be NULL when ndim is 0) and uninitialised contents. Memory is allocated lazily on each
 * side at its first use. Zero-length axes are valid. The caller owns the returned reference;
 * the array holds a reference on its buffer, which holds one on ctx. Thread-safe. */
TWIN_API twin_status twin_array_new(twin_context *ctx, twin_dtype dtype, int ndim,
                                    const size_t *shape, twin_array **out);

/* As twin_array_new, with every element zero. The zeros are written on whichever side is used
 * first, never transferred. Thread-safe. */
TWIN_API twin_status twin_array_zeros(twin_context *ctx, twin_dtype dtype, int ndim,
                                      const size_t *shape, twin_array **out);

/* As twin_array_new, with contents copied from data: C order, tightly packed, of the array's
 * byte size. data stays the caller's and may be reused as soon as the call returns (NULL only
 * when the array has no elements). Thread-safe. */
TWIN_API twin_status twin_array_from_host(twin_context *ctx, twin_dtype dtype, int ndim,
                                          const size_t *shape, const void *data,
                                          twin_array **out);

/* Takes one more reference on a and returns a. Thread-safe. */
TWIN_API twin_array *twin_array_ref(twin_array *a);

/* Drops one reference. The last reference to the last array viewing a buffer frees the
 * buffer's host and device memory in this call and drops the buffer's reference on its
 * context. NULL is a no-op. Thread-safe. */
TWIN_API void twin_array_unref(twin_array *a);

/* Getters. The returned pointers are borrowed and live as long as a. Thread-safe. */
TWIN_API twin_dtype twin_array_dtype(const twin_array *a);
TWIN_API int twin_array_ndim(const twin_array *a);
TWIN_API const size_t *twin_array_shape(const twin_array *a);
TWIN_API const ptrdiff_t *twin_array_strides(const twin_array *a); /* in elements */
TWIN_API size_t twin_array_size(const twin_array *a);              /* number of elements */
TWIN_API size_t twin_array_nbytes(const twin_array *a);            /* size * element bytes */
TWIN_API twin_context *twin_array_context(const twin_array *a);    /* borrowed */
/* True when the elements are laid out in C order without gaps. */
TWIN_API bool twin_array_is_contiguous(const twin_array *a);

/* ---- Views --------------------------------------------------------------------------------
 * A view is a new array object on the same buffer: no memory is allocated or copied on either
 * side. It holds its own reference on the buffer, so the buffer (both memories) lives until
 * the last view of it is unreferenced, whichever order they drop in. */

/* A view of ndim axes with the given shape and strides (in elements, any sign, 0 allowed),
 * whose first element is `offset` elements from a's first element. Every element the view can
 * address must lie inside a's buffer, or it is TWIN_ERR_INVALID_ARGUMENT (TWIN_ERR_OVERFLOW
 * when the arithmetic overflows); unlike NumPy's as_strided it cannot reach outside. The view
 * is read-only when a is. Thread-safe. */
TWIN_API twin_status twin_array_as_strided(twin_array *a, int ndim, const size_t *shape,
                                           const ptrdiff_t *strides, ptrdiff_t offset,
                                           twin_array **out);

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
 * NULL when ndim is 0). Step 0 is TWIN_ERR_INVALID_ARGUMENT. Thread-safe. */
TWIN_API twin_status twin_array_slice(twin_array *a, const twin_slice *per_axis,
                                      twin_array **out);

/* A view with axis `axis` fixed at `index` (negative counts from the end) and dropped, as
 * NumPy's a[..., index, ...]. Thread-safe. */
TWIN_API twin_status twin_array_index(twin_array *a, int axis, ptrdiff_t index,
                                      twin_array **out);

/* A view whose axis i is a's axis perm[i]; perm has ndim entries naming every axis once, or
 * is NULL to reverse the axes (NumPy's a.T). Thread-safe. */
TWIN_API twin_status twin_array_transpose(twin_array *a, const int *perm, twin_array **out);

/* In a reshape's shape, the one axis whose length follows from the others (NumPy's -1). */
#define TWIN_INFER ((size_t)-1)

/* A view with a new shape of the same element count, in C order, wherever a's strides allow
 * it (NumPy's rule: every group of merged axes must be contiguous among themselves).
 * Otherwise TWIN_ERR_NOT_VIEWABLE: make a contiguous first with twin_array_contiguous().
 * A count mismatch is TWIN_ERR_SHAPE_MISMATCH. Thread-safe. */
TWIN_API twin_status twin_array_reshape(twin_array *a, int ndim, const size_t *shape,
                                        twin_array **out);

/* A read-only view of a broadcast to shape (ndim >= a's ndim) by NumPy's rules: axes align at
 * the end, and length-1 or missing axes repeat with stride 0. Writing through it (or a view
 * of it) is TWIN_ERR_READ_ONLY. An axis that cannot broadcast is TWIN_ERR_SHAPE_MISMATCH.
 * Thread-safe. */
TWIN_API twin_status twin_array_broadcast_to(twin_array *a, int ndim, const size_t *shape,
                                             twin_array **out);

/* A view without a's length-1 axes. Thread-safe. */
TWIN_API twin_status twin_array_squeeze(twin_array *a, twin_array **out);

/* A view with a new length-1 axis inserted at position axis (-ndim-1..ndim; negative counts
 * from the end, as in NumPy). Thread-safe. */
TWIN_API twin_status twin_array_expand_dims(twin_array *a, int axis, twin_array **out);

/* ---- Copies and fills ----------------------------------------------------------------------
 * The built-in operations run where the context computes: on its OpenCL device (enqueued in
 * order on the context's queue; they may still be running when the call returns, and any later
 * access waits for them), or in the calling thread on the host backend. Each opens and closes
 * the accesses it needs itself, so it fails with TWIN_ERR_BUSY when an access to one of its
 * arrays that conflicts is open (see twin_host_begin). On a device without fp64, any f64 array
 * is TWIN_ERR_UNSUPPORTED. The first operation in an OpenCL context builds twin's kernels (about
 * a second on PoCL when its kernel cache is cold); a build failure is TWIN_ERR_BUILD with the
 * compiler's log in twin_last_error(). Thread-safe: any number of threads may run operations
 * on one context at once, as long as no two write the same array at the same time. */

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

/* Sets every element of dst to *value, which points to one element of dst's dtype (its bits
 * are copied as they are). dst may be any writable view; elements of its buffer outside the
 * view are untouched. */
TWIN_API twin_status twin_fill(twin_array *dst, const void *value);

/* *out is a C-contiguous array with a's dtype, shape and elements: a itself, with a new
 * reference, when twin_array_is_contiguous(a) (even if a is read-only), else a new compact
 * array made by twin_copy. The caller owns *out. */
TWIN_API twin_status twin_array_contiguous(twin_array *a, twin_array **out);

/* *out is a new, writable, C-contiguous array of exactly a's elements (dtype and shape), in a
 * buffer of its own: a view's copy no longer keeps its (possibly huge) base alive. The caller
 * owns *out. */
TWIN_API twin_status twin_array_copy(twin_array *a, twin_array **out);

/* ---- Access ------------------------------------------------------------------------------- */

typedef enum twin_access { TWIN_READ = 1, TWIN_WRITE = 2, TWIN_READ_WRITE = 3 } twin_access;

/* Opens host access to a's elements and stores in *ptr the address of its first element
 * (index 0 on every axis; the element at index i is at ptr + sum(i[k] * strides[k]) elements).
 * With TWIN_READ the data is made valid on the host first, moving it from the device only if
 * the device holds a newer copy. TWIN_WRITE alone promises to overwrite every element of a and
 * moves nothing when a covers its whole buffer. The pointer is valid until twin_host_end(a).
 * Several TWIN_READ accesses to one array object may be open at once (each closed by its own
 * end); an access that writes is exclusive: any other begin on the same array object while it
 * is open is TWIN_ERR_BUSY. Thread-safe. */
TWIN_API twin_status twin_host_begin(twin_array *a, twin_access access, void **ptr);

/* Closes host access. After a write, the device copy is stale and moves at its next use.
 * Without an open host access it is TWIN_ERR_BAD_STATE. Thread-safe. */
TWIN_API twin_status twin_host_end(twin_array *a);

/* Copies a's elements into dst (C order, packed, twin_array_nbytes(a) bytes), bringing them
 * from the device if it holds the newest copy. A convenience over host_begin/end. */
TWIN_API twin_status twin_array_read(twin_array *a, void *dst, size_t dst_bytes);

/* Overwrites a's elements from src (C order, packed, twin_array_nbytes(a) bytes). */
TWIN_API twin_status twin_array_write(twin_array *a, const void *src, size_t src_bytes);

#ifdef __cplusplus
}
#endif

#endif /* TWIN_H */

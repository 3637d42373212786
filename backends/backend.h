/* The interface every backend fills in. Core validates arguments, keeps the coherence state
 * and the statistics, and calls these for the mechanics. A backend with no device memory of
 * its own (the host backend) says so (device_memory false) and leaves every device member
 * NULL; core then keeps data on the host only and refuses device access with
 * TWIN_ERR_UNSUPPORTED.
 *
 * What a backend sees of core: the ground layer (core/ground.h: errors, host memory, element
 * types, the host copy and fill) and the context fields core/context.h documents (device, and
 * backend, its own state). Nothing of core's buffers, arrays or accesses: a backend is handed
 * handles, byte ranges, views and tracks, and calls nothing above the ground layer
 * (scripts/check-layers.py checks it). Only core's storage layer calls the memory members
 * (dev_alloc .. mark).
 *
 * Locking: core calls the buffer members with that buffer's lock held. While one buffer's
 * allocation frees memory elsewhere (trim, spill), core holds that buffer's lock too, having
 * taken the other's only with a try, so no two threads wait on each other's buffers. The
 * backend must be safe for concurrent calls on different buffers.
 *
 * Release: every member that queues a command on a buffer's device handle without waiting for
 * it records the command in the buffer's twin__track, in queue order, and dev_free waits for
 * that command and no other before it releases the handle; so the call that drops a buffer's
 * last view returns after its device memory is really gone, and quickly when the buffer is
 * idle, whatever runs on other buffers. Members that complete their work before they return
 * (to_device, to_host, map) record nothing. */
#ifndef TWIN_BACKEND_H
#define TWIN_BACKEND_H

#include "../core/context.h"

/* What a backend follows of one buffer's device memory: the latest command queued on it, which
 * releasing the memory waits for (that buffer's commands only, never the whole queue), and the
 * backend's record of a handle it made. Core keeps one per buffer, zeroed, and hands it to the
 * backend members that make, use and free the buffer's device handle; only the backend reads
 * or writes it, `last` under its own enqueue lock, so that the recorded command is the latest
 * in queue order even when threads enqueue work on one buffer at once. */
struct twin__track {
  void *last; /* the backend's event of the latest command using the memory (retained), or NULL */
  void *life; /* the backend's record of a handle it made; NULL for none or an adopted handle */
};

/* One parameter of a user kernel as the device describes it (clGetKernelArgInfo); fields it
 * cannot describe stay zero, and core then checks less. */
typedef enum twin__space {
  TWIN__SPACE_UNKNOWN = 0,
  TWIN__SPACE_GLOBAL,
  TWIN__SPACE_CONSTANT,
  TWIN__SPACE_LOCAL,
  TWIN__SPACE_PRIVATE,
} twin__space;

typedef struct twin__param {
  char name[64]; /* as declared in the source */
  char type[64]; /* as the compiler spells it, without qualifiers: "float*", "long8", "uint" */
  twin__space space;
  bool is_const; /* a pointer to const (or __constant) data */
} twin__param;

/* What kernel_create reports of a kernel: its parameters and its own launch limits. */
typedef struct twin__kernel_desc {
  twin__param *params; /* nparams entries from twin__malloc, the caller's to free */
  int nparams;
  /* CL_KERNEL_WORK_GROUP_SIZE: the most work items per work-group this kernel runs with on
   * the device (it may be below the device's own limit); 0: no limit known. */
  size_t work_group_size;
  /* CL_KERNEL_LOCAL_MEM_SIZE, read before any argument is set: the bytes of __local memory
   * the kernel uses itself (its __local variables), to which the launch's local arguments
   * add. */
  uint64_t local_bytes;
} twin__kernel_desc;

/* One value for one kernel parameter: size bytes at value (NULL: local memory of size bytes).
 * A device handle is passed as the handle itself, a pointer: {sizeof(void *), &handle}, with
 * its buffer's track, where the launch is recorded (NULL for any other value). same: the kernel
 * holds this very value from its previous launch, so setting it may be skipped. */
typedef struct twin__kvalue {
  size_t size;
  const void *value;
  bool same;
  twin__track *track;
} twin__kvalue;

/* The native objects behind a context, for the OpenCL interop calls of twin_opencl.h. */
typedef enum twin__native {
  TWIN__NATIVE_CONTEXT, /* cl_context */
  TWIN__NATIVE_DEVICE,  /* cl_device_id */
  TWIN__NATIVE_QUEUE,   /* cl_command_queue, in order */
} twin__native;

struct twin_backend_ops {
  const char *name; /* "opencl", "host" */
  /* True when the backend has device memory of its own: then dev_alloc, dev_free, to_device,
   * to_host and dev_zero are set. Core stores it in the context when the context is made
   * (twin_context.has_device) and never guesses it from a NULL member. */
  bool device_memory;

  /* Opens ctx->device (already resolved) and stores the backend state in ctx->backend.
   * On failure nothing is left allocated. */
  twin_status (*open)(twin_context *ctx);
  /* Releases ctx->backend; called once, when the last context reference drops. */
  void (*close)(twin_context *ctx);
  /* The native object `what` of ctx, borrowed (valid while ctx lives), for twin_opencl.h's
   * twin_context_cl_context and friends; NULL (the member or its answer) when the backend has
   * none. Safe to call from several threads at once. */
  void *(*native)(twin_context *ctx, twin__native what);
  /* Waits for every queued command. May be NULL when nothing is ever queued. */
  twin_status (*finish)(twin_context *ctx);
  /* Records in track, as the latest command on its buffer's device memory, a point of ctx's
   * queue after every command queued so far: the application's own, queued through interop
   * during a device access it is about to end. NULL when nothing is ever queued. Called with
   * the buffer's lock held. */
  twin_status (*mark)(twin_context *ctx, twin__track *track);
  /* True while the latest command recorded in track has not completed (queued or running), so
   * freeing the memory now would wait for it; false once it completed or failed, or when
   * nothing is recorded. Never waits. NULL when nothing is ever queued. Called with the
   * buffer's lock held. */
  bool (*dev_busy)(twin_context *ctx, twin__track *track);

  /* Allocates nbytes (>= 1) of device memory and returns the backend's handle for it. Core has
   * checked nbytes against ctx->device.max_alloc_bytes (for dev_wrap and dev_wrap_external
   * too), so the backend need not. The memory must really exist when this returns, so a later
   * command cannot fail for lack of memory. The handle is owned by core until dev_free; track is
   * its buffer's (empty), where the backend keeps what it needs to free the handle. On failure
   * track stays empty. */
  twin_status (*dev_alloc)(twin_context *ctx, size_t nbytes, void **handle, twin__track *track);
  /* Releases a handle and empties its track. First waits for the last command recorded in
   * track (on the in-order queue that covers every earlier command on the handle; other
   * buffers' commands are not waited for). A handle from dev_alloc, dev_wrap or
   * dev_wrap_external is then destroyed, its memory released, before this returns true; false
   * means that a reference taken outside twin (a cl_mem from twin_device_begin, retained)
   * still held it after a bounded wait, and the memory goes when that reference does. A handle
   * from dev_adopt loses the reference dev_adopt took; true. */
  bool (*dev_free)(twin_context *ctx, void *handle, twin__track *track);
  /* Copies n bytes from host memory to the handle at byte offset off, complete on return. */
  twin_status (*to_device)(twin_context *ctx, void *handle, size_t off, size_t n, const void *src);
  /* Copies n bytes at byte offset off of the handle to host memory, complete on return. */
  twin_status (*to_host)(twin_context *ctx, void *handle, size_t off, size_t n, void *dst);
  /* Rectangular transfers (NULL: core moves run by run): copy the bytes of pattern p
   * (ground.h: count[1] groups stride[1] apart of count[0] runs stride[0] apart of p->run
   * bytes, from byte p->lo) between the handle and host memory `host`, at the same byte
   * offsets on both (host + p->lo is the host copy of the handle's byte p->lo), complete on
   * return. Both are set or neither. */
  twin_status (*to_device_rect)(twin_context *ctx, void *handle, const twin__pattern *p,
                                const void *host);
  twin_status (*to_host_rect)(twin_context *ctx, void *handle, const twin__pattern *p, void *host);
  /* Packed transfers (NULL: core moves the view's extent instead): the elements of view v (on
   * the handle v->mem, no axis of stride 0) gathered on the device into a contiguous staging
   * buffer in C order of v's shape and read into `packed`; or `packed` written to staging and
   * scattered on the device into v's elements. packed holds the view's elements, item bytes
   * each. Complete on return, or recorded in v->track. Both are set or neither. */
  twin_status (*to_host_packed)(twin_context *ctx, const twin__view *v, void *packed);
  twin_status (*to_device_packed)(twin_context *ctx, const twin__view *v, const void *packed);
  /* Sets n bytes at byte offset off of the handle to zero (may complete later, in order, and
   * is recorded in track). */
  twin_status (*dev_zero)(twin_context *ctx, void *handle, size_t off, size_t n,
                          twin__track *track);

  /* Zero-copy (NULL when the backend cannot share host memory): wraps nbytes of host memory
   * from twin__alloc_block as device memory used in place, as dev_alloc (track likewise).
   * From success on, the handle owns the block and frees it with twin__free_block(host, nbytes)
   * when it is destroyed (see dev_free). */
  twin_status (*dev_wrap)(twin_context *ctx, void *host, size_t nbytes, void **handle,
                          twin__track *track);
  /* Maps bytes [off, off + n) of a wrapped handle for host access, waiting for queued commands
   * that use it; *ptr is the host address of byte off. invalidate: the caller overwrites all
   * of it, so its content need not be made current. */
  twin_status (*map)(twin_context *ctx, void *handle, size_t off, size_t n, twin_access access,
                     bool invalidate, void **ptr);
  /* Ends a mapping from map; device commands queued later see the host's writes. The unmap may
   * complete later, in order, and is recorded in track. */
  twin_status (*unmap)(twin_context *ctx, void *handle, void *ptr, twin__track *track);
  /* Built-in operations. core opens the arrays' accesses first (on the device side when the
   * backend has device memory, else on the host side) and passes views whose mem is that
   * side's memory; the backend only does the mechanics. Work may complete later, in queue
   * order. Safe to call from several threads at once, also on the same context.
   * prepare_ops (may be NULL) readies what copy and fill need, such as a kernel program; core
   * calls it before opening any access, so that a build failure leaves every array as it was.
   * copy: src and dst have the same shape, do not overlap, and may differ in dtype (see
   * twin_copy for the conversion rules). fill: value points to one element of dst's dtype.
   * On the device, the command is recorded in each view's track.
   * When copy or fill is NULL, core runs twin__host_copy / twin__host_fill (ground.h) on the
   * host side. */
  twin_status (*prepare_ops)(twin_context *ctx);
  twin_status (*copy)(twin_context *ctx, const twin__view *dst, const twin__view *src);
  twin_status (*fill)(twin_context *ctx, const twin__view *dst, const void *value);

  /* ---- Memory the application lends (storage, for external.c); each may be NULL ----
   * dev_adopt: checks that a device handle the application made belongs to ctx's device
   * context, stores its size in bytes in *nbytes and takes a reference of its own on it, which
   * dev_free drops. On failure it takes nothing. NULL: device memory cannot be adopted.
   * dev_wrap_external: as dev_wrap, over host memory twin does not own: the handle never frees
   * it, and done(arg), may be NULL, runs exactly once when the runtime no longer uses it: in
   * dev_free's thread before dev_free returns true; when dev_free returns false, later, in
   * whichever thread drops the last reference (never after a failure). NULL: adopted host
   * memory is used through two copies. Both are safe to call from several threads at once. */
  twin_status (*dev_adopt)(twin_context *ctx, void *handle, size_t *nbytes);
  twin_status (*dev_wrap_external)(twin_context *ctx, void *host, size_t nbytes,
                                   void (*done)(void *arg), void *arg, void **handle,
                                   twin__track *track);

  /* ---- User programs and kernels (core's program.c, kernel.c, launch.c); all NULL on a
   * backend that runs no OpenCL C, where core answers TWIN_ERR_UNSUPPORTED ----
   * program_build: compiles source (label names it in the build log) with options for ctx's
   * device, with twin_kernel.h prepended and argument information asked for, and returns the
   * backend's program, owned by core until program_free. A compiler
   * failure is TWIN_ERR_BUILD with the build log appended to the message. No shared state:
   * safe to call from several threads at once.
   * kernel_create: creates kernel `name` of a built program, owned by core until kernel_free,
   * and describes it in *desc: its parameters (fields the device cannot describe stay zero)
   * and its own limits. On failure nothing is kept and the message names twin_kernel_new.
   * kernel_enqueue: sets the kernel's parameters to values[0..nvalues) (a NULL value is local
   * memory of that size; a value marked same may be left as it is) and enqueues the kernel,
   * without waiting, on ctx's in-order queue, recorded in each value's track. Core holds
   * the kernel's own lock across the call, since a kernel's arguments are shared by every
   * thread using it. On a failure in setting value i, *failed_value is i (else -1). */
  twin_status (*program_build)(twin_context *ctx, const char *source, const char *label,
                               const char *options, void **program);
  void (*program_free)(twin_context *ctx, void *program);
  twin_status (*kernel_create)(twin_context *ctx, void *program, const char *name, void **kernel,
                               twin__kernel_desc *desc);
  void (*kernel_free)(twin_context *ctx, void *kernel);
  twin_status (*kernel_enqueue)(twin_context *ctx, void *kernel, const twin__kvalue *values,
                                int nvalues, int work_dim, const size_t *global,
                                const size_t *local, int *failed_value);
};

/* The backends core knows, and what it asks of them before a context exists: the OpenCL
 * backend's device list (absent from builds without OpenCL) and the host backend's entry. */
extern const struct twin_backend_ops twin__opencl_ops;
extern const struct twin_backend_ops twin__host_ops;
twin_status twin__opencl_list(twin_device_info **out, size_t *count);
void twin__host_device_info(twin_device_info *out);
/* The fake device (backends/fake): device memory from the host allocator, for tests; selected
 * only by the spec "fake", never listed. */
extern const struct twin_backend_ops twin__fake_ops;
void twin__fake_device_info(twin_device_info *out);

#endif /* TWIN_BACKEND_H */

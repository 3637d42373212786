/* The interface every backend fills in. Core validates arguments, keeps the coherence state
 * and the statistics, and calls these for the mechanics. A backend with no device memory of
 * its own (the host backend) leaves every device member NULL; core then keeps data on the
 * host only and refuses device access with TWIN_ERR_UNSUPPORTED.
 *
 * Locking: core calls the buffer members with that buffer's lock held, and never holds two
 * buffer locks at once. The backend must be safe for concurrent calls on different buffers. */
#ifndef TWIN_BACKEND_H
#define TWIN_BACKEND_H

#include "../core/internal.h"

struct twin_backend_ops {
  const char *name; /* "opencl", "host" */

  /* Opens ctx->device (already resolved) and stores the backend state in ctx->backend.
   * On failure nothing is left allocated. */
  twin_status (*open)(twin_context *ctx);
  /* Releases ctx->backend; called once, when the last context reference drops. */
  void (*close)(twin_context *ctx);
  /* Waits for every queued command. May be NULL when nothing is ever queued. */
  twin_status (*finish)(twin_context *ctx);

  /* Allocates nbytes (>= 1) of device memory and returns the backend's handle for it; the
   * memory must really exist when this returns, so a later command cannot fail for lack
   * of memory. The handle is owned by core until dev_free. */
  twin_status (*dev_alloc)(twin_context *ctx, size_t nbytes, void **handle);
  /* Releases a handle from dev_alloc once queued commands using it are done. */
  void (*dev_free)(twin_context *ctx, void *handle);
  /* Copies n bytes from host memory to the handle at byte offset off, complete on return. */
  twin_status (*to_device)(twin_context *ctx, void *handle, size_t off, size_t n,
                           const void *src);
  /* Copies n bytes at byte offset off of the handle to host memory, complete on return. */
  twin_status (*to_host)(twin_context *ctx, void *handle, size_t off, size_t n, void *dst);
  /* Sets n bytes at byte offset off of the handle to zero (may complete later, in order). */
  twin_status (*dev_zero)(twin_context *ctx, void *handle, size_t off, size_t n);

  /* Zero-copy (NULL when the backend cannot share host memory): wraps nbytes of host memory
   * from twin__alloc_block as device memory used in place. From success on, the handle owns
   * the block and frees it with twin__free once the runtime is done with it. */
  twin_status (*dev_wrap)(twin_context *ctx, void *host, size_t nbytes, void **handle);
  /* Maps bytes [off, off + n) of a wrapped handle for host access, waiting for queued commands
   * that use it; *ptr is the host address of byte off. invalidate: the caller overwrites all
   * of it, so its content need not be made current. */
  twin_status (*map)(twin_context *ctx, void *handle, size_t off, size_t n, twin_access access,
                     bool invalidate, void **ptr);
  /* Ends a mapping from map; device commands queued later see the host's writes. */
  twin_status (*unmap)(twin_context *ctx, void *handle, void *ptr);
  /* Built-in operations. core opens the arrays' accesses first (on the device side when the
   * backend has device memory, else on the host side) and passes views whose mem is that
   * side's memory; the backend only does the mechanics. Work may complete later, in queue
   * order. Safe to call from several threads at once, also on the same context.
   * prepare_ops (may be NULL) readies what copy and fill need, such as a kernel program; core
   * calls it before opening any access, so that a build failure leaves every array as it was.
   * copy: src and dst have the same shape, do not overlap, and may differ in dtype (see
   * twin_copy for the conversion rules). fill: value points to one element of dst's dtype.
   * When copy or fill is NULL, core runs twin__host_copy / twin__host_fill on the host side. */
  twin_status (*prepare_ops)(twin_context *ctx);
  twin_status (*copy)(twin_context *ctx, const twin__view *dst, const twin__view *src);
  twin_status (*fill)(twin_context *ctx, const twin__view *dst, const void *value);
};

#endif /* TWIN_BACKEND_H */

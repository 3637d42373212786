/* Device memory of the OpenCL backend: cl_mem buffers and the transfers between them and the
 * host mirror. */
#include "clapi.h"

/* Makes a plain buffer's memory real now: runtimes may allocate at first use, and real
 * exhaustion then aborts inside the runtime (PoCL asserts at the first enqueue). */
static twin_status commit(twin_context *ctx, cl_mem mem) {
  cl_event done;
  cl_int err = twin__cl.clEnqueueMigrateMemObjects(
      to_cl(ctx)->queue, 1, &mem, CL_MIGRATE_MEM_OBJECT_CONTENT_UNDEFINED, 0, NULL, &done);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clEnqueueMigrateMemObjects", err);
  err = twin__cl.clWaitForEvents(1, &done);
  twin__cl.clReleaseEvent(done);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clWaitForEvents(migrate)", err);
}

twin_status twin__cl_alloc(twin_context *ctx, size_t nbytes, void **handle) {
  if (nbytes > ctx->device.max_alloc_bytes)
    return twin__fail(TWIN_ERR_OUT_OF_DEVICE_MEMORY,
                      "%zu bytes exceed the device's largest "
                      "allocation, CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                      nbytes, (unsigned long long)ctx->device.max_alloc_bytes);
  if (ctx->device.host_unified_memory) {
    /* The device's memory is host memory: allocate it here, where a failure is a clean NULL,
     * and let the device use it in place (it stays a separate copy from the host mirror). */
    void *block = twin__alloc_block(nbytes);
    if (!block)
      return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                        "no host memory for a %zu-byte device copy "
                        "on a device that shares host memory",
                        nbytes);
    twin_status s = twin__cl_wrap(ctx, block, nbytes, handle);
    if (s != TWIN_OK)
      twin__free(block);
    return s;
  }
  cl_int err;
  cl_mem mem = twin__cl.clCreateBuffer(to_cl(ctx)->context, CL_MEM_READ_WRITE, nbytes, NULL, &err);
  if (!mem)
    return twin__cl_fail("clCreateBuffer", err);
  twin_status s = commit(ctx, mem);
  if (s != TWIN_OK) {
    twin__cl.clReleaseMemObject(mem);
    return s;
  }
  *handle = mem;
  return TWIN_OK;
}

void twin__cl_free(twin_context *ctx, void *handle) {
  (void)ctx;
  /* The runtime keeps the memory until queued commands that use it are done. */
  twin__cl.clReleaseMemObject((cl_mem)handle);
}

twin_status twin__cl_to_device(twin_context *ctx, void *handle, size_t off, size_t n,
                               const void *src) {
  cl_int err = twin__cl.clEnqueueWriteBuffer(to_cl(ctx)->queue, (cl_mem)handle, CL_TRUE, off, n,
                                             src, 0, NULL, NULL);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueWriteBuffer", err);
}

twin_status twin__cl_to_host(twin_context *ctx, void *handle, size_t off, size_t n, void *dst) {
  cl_int err = twin__cl.clEnqueueReadBuffer(to_cl(ctx)->queue, (cl_mem)handle, CL_TRUE, off, n, dst,
                                            0, NULL, NULL);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueReadBuffer", err);
}

twin_status twin__cl_zero(twin_context *ctx, void *handle, size_t off, size_t n) {
  static const cl_uchar zero = 0;
  cl_int err = twin__cl.clEnqueueFillBuffer(to_cl(ctx)->queue, (cl_mem)handle, &zero, sizeof zero,
                                            off, n, 0, NULL, NULL);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueFillBuffer", err);
}

/* Frees a zero-copy buffer's host block once the runtime no longer uses the cl_mem. */
static void CL_CALLBACK free_wrapped(cl_mem mem, void *host) {
  (void)mem;
  twin__free(host);
}

twin_status twin__cl_wrap(twin_context *ctx, void *host, size_t nbytes, void **handle) {
  if (nbytes > ctx->device.max_alloc_bytes)
    return twin__fail(TWIN_ERR_OUT_OF_DEVICE_MEMORY,
                      "%zu bytes exceed the device's largest "
                      "allocation, CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                      nbytes, (unsigned long long)ctx->device.max_alloc_bytes);
  cl_int err;
  cl_mem mem = twin__cl.clCreateBuffer(to_cl(ctx)->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
                                       nbytes, host, &err);
  if (!mem)
    return twin__cl_fail("clCreateBuffer(CL_MEM_USE_HOST_PTR)", err);
  err = twin__cl.clSetMemObjectDestructorCallback(mem, free_wrapped, host);
  if (err != CL_SUCCESS) {
    twin__cl.clReleaseMemObject(mem); /* the caller still owns host and frees it */
    return twin__cl_fail("clSetMemObjectDestructorCallback", err);
  }
  *handle = mem;
  return TWIN_OK;
}

twin_status twin__cl_map(twin_context *ctx, void *handle, size_t off, size_t n, twin_access access,
                         bool invalidate, void **ptr) {
  cl_map_flags flags = invalidate ? CL_MAP_WRITE_INVALIDATE_REGION
                                  : ((access & TWIN_READ) ? CL_MAP_READ : 0) |
                                        ((access & TWIN_WRITE) ? CL_MAP_WRITE : 0);
  cl_int err;
  void *p = twin__cl.clEnqueueMapBuffer(to_cl(ctx)->queue, (cl_mem)handle, CL_TRUE, flags, off, n,
                                        0, NULL, NULL, &err);
  if (!p)
    return twin__cl_fail("clEnqueueMapBuffer", err);
  *ptr = p;
  return TWIN_OK;
}

twin_status twin__cl_unmap(twin_context *ctx, void *handle, void *ptr) {
  /* No wait: commands queued later run after the unmap on the in-order queue, and the caller
   * gives up the pointer at twin_host_end anyway. */
  cl_int err =
      twin__cl.clEnqueueUnmapMemObject(to_cl(ctx)->queue, (cl_mem)handle, ptr, 0, NULL, NULL);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueUnmapMemObject", err);
}

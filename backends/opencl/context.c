/* The OpenCL backend: opening a device, its in-order queue, and the ops table. */
#include "clapi.h"

static twin_status cl_open(twin_context *ctx) {
  twin__cl_context *cl = twin__calloc(1, sizeof *cl);
  if (!cl)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for an OpenCL context");
  twin_status s = twin__opencl_find(&ctx->device, &cl->platform, &cl->device);
  if (s != TWIN_OK)
    goto fail_find;
  cl_int err;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)cl->platform, 0};
  cl->context = twin__cl.clCreateContext(props, 1, &cl->device, NULL, NULL, &err);
  if (!cl->context) {
    s = twin__cl_fail("clCreateContext", err);
    goto fail_find;
  }
  cl->queue = twin__cl.clCreateCommandQueue(cl->context, cl->device, 0, &err);
  if (!cl->queue) {
    s = twin__cl_fail("clCreateCommandQueue", err);
    goto fail_queue;
  }
  if (pthread_mutex_init(&cl->ops_lock, NULL) != 0) {
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a context");
    goto fail_lock;
  }
  if (pthread_mutex_init(&cl->enqueue_lock, NULL) != 0) {
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a context");
    goto fail_enqueue_lock;
  }
  ctx->backend = cl;
  return TWIN_OK;

fail_enqueue_lock:
  pthread_mutex_destroy(&cl->ops_lock);
fail_lock:
  twin__cl.clReleaseCommandQueue(cl->queue);
fail_queue:
  twin__cl.clReleaseContext(cl->context);
fail_find:
  twin__free(cl);
  return s;
}

/* Every buffer is gone by now. The runtime may still hold the queue (and through it the
 * context) for a moment after the last command completed; settling first means the OpenCL
 * context is gone when this returns, unless the application holds some of its objects. */
static void cl_close(twin_context *ctx) {
  twin__cl_context *cl = to_cl(ctx);
  twin__cl_settle(cl);
  twin__cl_builtin_release(cl);
  pthread_mutex_destroy(&cl->enqueue_lock);
  pthread_mutex_destroy(&cl->ops_lock);
  twin__cl.clReleaseCommandQueue(cl->queue);
  twin__cl.clReleaseContext(cl->context);
  twin__free(cl);
}

static void *cl_native(twin_context *ctx, twin__native what) {
  twin__cl_context *cl = to_cl(ctx);
  switch (what) {
  case TWIN__NATIVE_CONTEXT:
    return cl->context;
  case TWIN__NATIVE_DEVICE:
    return cl->device;
  case TWIN__NATIVE_QUEUE:
    return cl->queue;
  }
  return NULL;
}

static twin_status cl_finish(twin_context *ctx) {
  cl_int err = twin__cl.clFinish(to_cl(ctx)->queue);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clFinish", err);
}

const struct twin_backend_ops twin__opencl_ops = {
    .name = "opencl",
    .device_memory = true,
    .open = cl_open,
    .close = cl_close,
    .native = cl_native,
    .finish = cl_finish,
    .mark = twin__cl_mark,
    .dev_busy = twin__cl_busy,
    .dev_alloc = twin__cl_alloc,
    .dev_free = twin__cl_free,
    .to_device = twin__cl_to_device,
    .to_host = twin__cl_to_host,
    .to_device_rect = twin__cl_to_device_rect,
    .to_host_rect = twin__cl_to_host_rect,
    .to_device_packed = twin__cl_to_device_packed,
    .to_host_packed = twin__cl_to_host_packed,
    .dev_zero = twin__cl_zero,
    .dev_wrap = twin__cl_wrap,
    .map = twin__cl_map,
    .unmap = twin__cl_unmap,
    .prepare_ops = twin__cl_prepare_ops,
    .copy = twin__cl_copy,
    .fill = twin__cl_fill,
    .dev_adopt = twin__cl_adopt,
    .dev_wrap_external = twin__cl_wrap_external,
    .program_build = twin__cl_program_build,
    .program_free = twin__cl_program_free,
    .kernel_create = twin__cl_kernel_create,
    .kernel_free = twin__cl_kernel_free,
    .kernel_enqueue = twin__cl_kernel_enqueue,
};

/* The public OpenCL interop calls of twin_opencl.h: device access to arrays, the context's
 * OpenCL objects, arrays over an application's cl_mem, DLPack kDLOpenCL export, and the
 * OpenCL objects behind programs and kernels. Compiled only with OpenCL; the one core file
 * that includes CL/cl.h. It wraps the public objects' generic calls, and asks the backend for
 * the context's OpenCL objects through its native member, never through backend state. */
#include "twin_opencl.h"

#include "objects.h"

/* The backend's native object `what` of ctx; NULL without a context or on a backend that has
 * none (the host backend, the fake test device). */
static void *native(twin_context *ctx, twin__native what) {
  return ctx && ctx->ops->native ? ctx->ops->native(ctx, what) : NULL;
}

/* A device that is not OpenCL's (the fake test device) has device memory but no cl_mem: its
 * handles are host addresses, which must never reach an OpenCL call. (The host backend, with no
 * device memory at all, is refused with its own message further on.) */
static twin_status refuse_non_opencl(const char *fn, const twin_array *a) {
  twin__debug_check(a, fn);
  if (!a || !a->buf->ctx->has_device || native(a->buf->ctx, TWIN__NATIVE_CONTEXT))
    return TWIN_OK;
  return twin__fail(TWIN_ERR_UNSUPPORTED,
                    "%s: device \"%s\" is not an OpenCL device and has no cl_mem", fn,
                    a->buf->ctx->device.name);
}

twin_status twin_device_begin_at(twin_array *a, twin_access access, cl_mem *mem,
                                 size_t *byte_offset, const char *file, int line) {
  void *handle;
  twin__opener who = {"twin_device_begin", NULL, {file, line}};
  twin_status s = refuse_non_opencl(who.fn, a);
  if (s != TWIN_OK)
    return s;
  s = twin__device_begin(&who, false, a, access, mem ? &handle : NULL, byte_offset);
  if (s == TWIN_OK)
    *mem = (cl_mem)handle;
  return s;
}

twin_status(twin_device_begin)(twin_array *a, twin_access access, cl_mem *mem,
                               size_t *byte_offset) {
  return twin_device_begin_at(a, access, mem, byte_offset, NULL, 0);
}

twin_status twin_device_end(twin_array *a) {
  return twin__device_end(a);
}

cl_context twin_context_cl_context(twin_context *ctx) {
  return (cl_context)native(ctx, TWIN__NATIVE_CONTEXT);
}

cl_device_id twin_context_cl_device(twin_context *ctx) {
  return (cl_device_id)native(ctx, TWIN__NATIVE_DEVICE);
}

cl_command_queue twin_context_cl_queue(twin_context *ctx) {
  return (cl_command_queue)native(ctx, TWIN__NATIVE_QUEUE);
}

twin_status twin_array_wrap_cl_mem_at(twin_context *ctx, cl_mem mem, size_t byte_offset,
                                      twin_dtype dtype, int ndim, const size_t *shape,
                                      const ptrdiff_t *strides, twin_array **out, const char *file,
                                      int line) {
  return twin__array_wrap_device("twin_array_wrap_cl_mem", ctx, mem, byte_offset, dtype, ndim,
                                 shape, strides, NULL, NULL, (twin__site){file, line}, out);
}

twin_status(twin_array_wrap_cl_mem)(twin_context *ctx, cl_mem mem, size_t byte_offset,
                                    twin_dtype dtype, int ndim, const size_t *shape,
                                    const ptrdiff_t *strides, twin_array **out) {
  return twin_array_wrap_cl_mem_at(ctx, mem, byte_offset, dtype, ndim, shape, strides, out, NULL,
                                   0);
}

twin_status twin_array_to_dlpack_opencl_at(twin_array *a, twin_access access,
                                           struct DLManagedTensor **out, const char *file,
                                           int line) {
  twin_status s = refuse_non_opencl("twin_array_to_dlpack_opencl", a);
  if (s != TWIN_OK)
    return s;
  return twin__array_to_dlpack("twin_array_to_dlpack_opencl", a, TWIN__DEVICE, access,
                               (twin__site){file, line}, out);
}

twin_status(twin_array_to_dlpack_opencl)(twin_array *a, twin_access access,
                                         struct DLManagedTensor **out) {
  return twin_array_to_dlpack_opencl_at(a, access, out, NULL, 0);
}

cl_program twin_program_cl_program(twin_program *prog) {
  return (cl_program)twin__program_handle(prog);
}

cl_kernel twin_kernel_cl_kernel(twin_kernel *k) {
  return (cl_kernel)twin__kernel_handle(k);
}

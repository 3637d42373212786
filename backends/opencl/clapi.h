/* The OpenCL backend calls OpenCL only through this table, so a test can replace any entry
 * (to make the Nth call fail with a chosen code) without --wrap, which cannot reach calls
 * inside a shared library. */
#ifndef TWIN_CLAPI_H
#define TWIN_CLAPI_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../../core/internal.h"

#define TWIN_CL_FUNCTIONS(X)                                                                   \
  X(clGetPlatformIDs)                                                                          \
  X(clGetPlatformInfo)                                                                         \
  X(clGetDeviceIDs)                                                                            \
  X(clGetDeviceInfo)                                                                           \
  X(clCreateContext)                                                                           \
  X(clReleaseContext)                                                                          \
  X(clCreateCommandQueue)                                                                      \
  X(clReleaseCommandQueue)                                                                     \
  X(clFinish)                                                                                  \
  X(clCreateBuffer)                                                                            \
  X(clReleaseMemObject)                                                                        \
  X(clSetMemObjectDestructorCallback)                                                          \
  X(clEnqueueWriteBuffer)                                                                      \
  X(clEnqueueReadBuffer)                                                                       \
  X(clEnqueueFillBuffer)                                                                       \
  X(clEnqueueCopyBuffer)                                                                       \
  X(clEnqueueMapBuffer)                                                                        \
  X(clEnqueueMigrateMemObjects)                                                                \
  X(clEnqueueUnmapMemObject)                                                                   \
  X(clCreateProgramWithSource)                                                                 \
  X(clBuildProgram)                                                                            \
  X(clGetProgramBuildInfo)                                                                     \
  X(clReleaseProgram)                                                                          \
  X(clCreateKernel)                                                                            \
  X(clReleaseKernel)                                                                           \
  X(clSetKernelArg)                                                                            \
  X(clEnqueueNDRangeKernel)                                                                    \
  X(clWaitForEvents)                                                                           \
  X(clReleaseEvent)

typedef struct twin__cl_api {
#define TWIN_X_MEMBER(f) __typeof__(&f) f;
  TWIN_CL_FUNCTIONS(TWIN_X_MEMBER)
#undef TWIN_X_MEMBER
} twin__cl_api;

/* The live table; starts as the real entry points. */
extern twin__cl_api twin__cl;
/* The real entry points, for a test to restore. */
extern const twin__cl_api twin__cl_real;

/* "CL_OUT_OF_RESOURCES" for -5 and so on; "CL_UNKNOWN_ERROR" otherwise. */
const char *twin__cl_error_name(cl_int err);

/* Records "call failed with NAME (code)" and returns the matching status: out-of-memory
 * codes map to TWIN_ERR_OUT_OF_DEVICE_MEMORY / _HOST_MEMORY, the rest to TWIN_ERR_OPENCL. */
twin_status twin__cl_fail(const char *call, cl_int err);

/* Finds the platform and device behind a record from twin__opencl_list (devices.c). */
twin_status twin__opencl_find(const twin_device_info *info, cl_platform_id *platform,
                              cl_device_id *device);

/* The OpenCL backend's per-context state. */
typedef struct twin__cl_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
} twin__cl_context;

/* The buffer members of twin__opencl_ops (memory.c). */
twin_status twin__cl_alloc(twin_context *ctx, size_t nbytes, void **handle);
void twin__cl_free(twin_context *ctx, void *handle);
twin_status twin__cl_to_device(twin_context *ctx, void *handle, size_t off, size_t n,
                               const void *src);
twin_status twin__cl_to_host(twin_context *ctx, void *handle, size_t off, size_t n, void *dst);
twin_status twin__cl_zero(twin_context *ctx, void *handle, size_t off, size_t n);
twin_status twin__cl_wrap(twin_context *ctx, void *host, size_t nbytes, void **handle);
twin_status twin__cl_map(twin_context *ctx, void *handle, size_t off, size_t n,
                         twin_access access, bool invalidate, void **ptr);
twin_status twin__cl_unmap(twin_context *ctx, void *handle, void *ptr);

static inline twin__cl_context *to_cl(const twin_context *ctx) {
  return (twin__cl_context *)ctx->backend;
}

#endif /* TWIN_CLAPI_H */

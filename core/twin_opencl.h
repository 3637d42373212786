/* twin's OpenCL interop: the device side of arrays, and the context's OpenCL objects, for
 * applications that run their own kernels or an OpenCL library on twin arrays.
 * Include this instead of (or after) twin.h; it includes <CL/cl.h>. */
#ifndef TWIN_OPENCL_H
#define TWIN_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "twin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opens device access to a and stores its buffer's cl_mem in *mem and the byte offset of a's
 * first element within that cl_mem in *byte_offset. With TWIN_READ the array's byte extent is
 * brought up to date on the device first, moving only the parts the host holds newer;
 * TWIN_WRITE alone over a contiguous array moves nothing. *mem is borrowed: valid until twin_device_end(a),
 * not to be released. Commands the caller enqueues on twin_context_cl_queue() between begin
 * and end are ordered correctly with twin's own. On the host backend this is
 * TWIN_ERR_UNSUPPORTED. The same open rules as twin_host_begin apply. Thread-safe. */
TWIN_API twin_status twin_device_begin(twin_array *a, twin_access access, cl_mem *mem,
                                       size_t *byte_offset);

/* twin_device_begin recording the caller's file and line for messages (see
 * twin_host_begin_at); the macro makes every twin_device_begin call record them. */
TWIN_API twin_status twin_device_begin_at(twin_array *a, twin_access access, cl_mem *mem,
                                          size_t *byte_offset, const char *file, int line);
#define twin_device_begin(...) twin_device_begin_at(__VA_ARGS__, __FILE__, __LINE__)

/* Closes device access. After a write, the host copy is stale and moves at its next use.
 * Without an open device access it is TWIN_ERR_BAD_STATE. Thread-safe. */
TWIN_API twin_status twin_device_end(twin_array *a);

/* The context's OpenCL objects, borrowed: valid while ctx lives; retain them to keep them
 * longer. NULL on the host backend. The queue is in-order. Thread-safe. */
TWIN_API cl_context twin_context_cl_context(twin_context *ctx);
TWIN_API cl_device_id twin_context_cl_device(twin_context *ctx);
TWIN_API cl_command_queue twin_context_cl_queue(twin_context *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TWIN_OPENCL_H */

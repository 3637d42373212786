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
 * TWIN_WRITE alone over a contiguous array moves nothing. *mem is borrowed: valid until
 * twin_device_end(a), not to be released, and not to be retained past the array's life (the
 * last unref destroys it; if the application still holds a reference then, the unref waits a
 * moment, gives up, and says so on stderr once per context, and the memory is freed only when
 * that reference goes). Commands the caller enqueues on twin_context_cl_queue() between begin
 * and end are ordered correctly with twin's own, and the buffer's release waits for them;
 * commands on any other queue must be finished before twin_device_end. On the host backend
 * and the fake test device (which has no cl_mem) this is TWIN_ERR_UNSUPPORTED. The same open rules as twin_host_begin apply: reads on both
 * sides coexist, a write conflicts with the other side of the buffer and with the same array
 * object; a conflict waits for other threads' accesses and is TWIN_ERR_BUSY for the calling
 * thread's. Thread-safe. */
TWIN_API twin_status twin_device_begin(twin_array *a, twin_access access, cl_mem *mem,
                                       size_t *byte_offset);

/* twin_device_begin recording the caller's file and line for messages (see
 * twin_host_begin_at); the macro makes every twin_device_begin call record them. */
TWIN_API twin_status twin_device_begin_at(twin_array *a, twin_access access, cl_mem *mem,
                                          size_t *byte_offset, const char *file, int line);
#define twin_device_begin(...) twin_device_begin_at(__VA_ARGS__, __FILE__, __LINE__)

/* Closes a device access of a (the calling thread's newest, else the newest; see
 * twin_host_end). After a write, the host copy is stale and moves at its next use. The
 * buffer's release will wait for everything queued on twin_context_cl_queue() until now (a
 * marker is enqueued). Without an open device access it is TWIN_ERR_BAD_STATE. Thread-safe. */
TWIN_API twin_status twin_device_end(twin_array *a);

/* The context's OpenCL objects, borrowed: valid while ctx lives; retain them to keep them
 * longer. NULL on the host backend and the fake test device. The queue is in-order.
 * Thread-safe. */
TWIN_API cl_context twin_context_cl_context(twin_context *ctx);
TWIN_API cl_device_id twin_context_cl_device(twin_context *ctx);
TWIN_API cl_command_queue twin_context_cl_queue(twin_context *ctx);

/* An array over an OpenCL buffer the application made in ctx's OpenCL context
 * (twin_context_cl_context), of dtype with the given shape and strides (ndim entries; strides
 * in elements, any sign, or NULL for C order), whose element 0 is byte_offset bytes into mem
 * (a multiple of the element size). Every element must lie inside mem; the buffer is the whole
 * cl_mem. twin retains mem, and when the last view of the buffer is unreferenced it writes back
 * what the host side holds newer, waits for the commands queued on the buffer, and releases
 * its reference (clReleaseMemObject) before that unref returns, so mem then holds the array's
 * final contents and no twin command uses it. It is a two-copy buffer even on a zero-copy context:
 * mem is its device side, holding the data, and twin makes a host copy at first host access. Until
 * the end, use mem only through twin (twin_device_begin and end bracket outside work on it). A
 * cl_mem of another context, an image, or an element outside it is TWIN_ERR_INVALID_ARGUMENT; on
 * the host backend and the fake test device, TWIN_ERR_UNSUPPORTED. On failure mem is not retained. The caller owns *out.
 * Thread-safe. */
TWIN_API twin_status twin_array_wrap_cl_mem(twin_context *ctx, cl_mem mem, size_t byte_offset,
                                            twin_dtype dtype, int ndim, const size_t *shape,
                                            const ptrdiff_t *strides, twin_array **out);
TWIN_API twin_status twin_array_wrap_cl_mem_at(twin_context *ctx, cl_mem mem, size_t byte_offset,
                                               twin_dtype dtype, int ndim, const size_t *shape,
                                               const ptrdiff_t *strides, twin_array **out,
                                               const char *file, int line);
#define twin_array_wrap_cl_mem(...) twin_array_wrap_cl_mem_at(__VA_ARGS__, __FILE__, __LINE__)

/* Exports a as a DLPack kDLOpenCL tensor: dl_tensor.data is the buffer's cl_mem and
 * byte_offset the byte offset of element 0 in it; device is {kDLOpenCL, the device's index in
 * its platform}; dtype, shape and strides as for twin_array_to_dlpack. The tensor holds a
 * reference on a's buffer and an open device access of the given mode (through a private
 * view), both given up by its deleter: until then the cl_mem's data in a's extent is current
 * on the device, and the consumer enqueues its work on twin_context_cl_queue() (or waits for
 * it before the deleter; the deleter acts as twin_device_end, so the buffer's release waits
 * for the consumer's commands on that queue). Host-side writes to the buffer are TWIN_ERR_BUSY
 * meanwhile (no call waits for an export's access, which no thread holds). On the host
 * backend and the fake test device, TWIN_ERR_UNSUPPORTED. *out belongs to the consumer, which must call
 * (*out)->deleter(*out) exactly once, from any thread. Thread-safe. */
TWIN_API twin_status twin_array_to_dlpack_opencl(twin_array *a, twin_access access,
                                                 struct DLManagedTensor **out);
/* twin_array_to_dlpack_opencl recording the caller's file and line for messages (see
 * twin_array_to_dlpack_at); the macro makes every call record them. */
TWIN_API twin_status twin_array_to_dlpack_opencl_at(twin_array *a, twin_access access,
                                                    struct DLManagedTensor **out, const char *file,
                                                    int line);
#define twin_array_to_dlpack_opencl(...)                                                           \
  twin_array_to_dlpack_opencl_at(__VA_ARGS__, __FILE__, __LINE__)

/* The OpenCL objects behind a program and a kernel, borrowed (valid while the twin object
 * lives; retain them to keep them longer), for queries such as clGetKernelWorkGroupInfo. Do
 * not set the kernel's arguments: twin_kernel_launch remembers what it set last and sets only
 * the arguments that changed. NULL for a host kernel. Thread-safe. */
TWIN_API cl_program twin_program_cl_program(twin_program *prog);
TWIN_API cl_kernel twin_kernel_cl_kernel(twin_kernel *k);

#ifdef __cplusplus
}
#endif

#endif /* TWIN_OPENCL_H */

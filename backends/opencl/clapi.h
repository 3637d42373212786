/* The OpenCL backend calls OpenCL only through this table, so a test can replace any entry
 * (to make the Nth call fail with a chosen code) without --wrap, which cannot reach calls
 * inside a shared library. */
#ifndef TWIN_CLAPI_H
#define TWIN_CLAPI_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../backend.h"

// clang-format off
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
  X(clGetCommandQueueInfo)                                                                     \
  X(clCreateBuffer)                                                                            \
  X(clReleaseMemObject)                                                                        \
  X(clSetMemObjectDestructorCallback)                                                          \
  X(clEnqueueWriteBuffer)                                                                      \
  X(clEnqueueReadBuffer)                                                                       \
  X(clEnqueueWriteBufferRect)                                                                  \
  X(clEnqueueReadBufferRect)                                                                   \
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
  X(clGetEventInfo)                                                                            \
  X(clRetainEvent)                                                                             \
  X(clReleaseEvent)                                                                            \
  X(clEnqueueMarkerWithWaitList)                                                               \
  X(clGetKernelWorkGroupInfo)                                                                   \
  X(clGetKernelInfo)                                                                           \
  X(clGetKernelArgInfo)                                                                        \
  X(clGetProgramInfo)                                                                          \
  X(clGetMemObjectInfo)                                                                        \
  X(clRetainMemObject)
// clang-format on

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

/* The built-in kernels (the .cl files of kernels/), numbered for the per-context cache: five
 * families that move bits, one kernel per element size (1, 2, 4, 8 bytes), then one converting
 * copy per (source, destination) dtype pair. */
typedef enum twin__cl_family {
  TWIN__CL_COPY1, /* 1-D strided copy */
  TWIN__CL_COPYT, /* 2-D transposing copy, one block per work item */
  TWIN__CL_COPYN, /* N-d strided copy */
  TWIN__CL_FILL1, /* 1-D strided fill */
  TWIN__CL_FILLN, /* N-d strided fill */
  TWIN__CL_FAMILIES
} twin__cl_family;

#define TWIN__CL_SIZES 4
#define TWIN__CL_KERNELS (TWIN__CL_FAMILIES * TWIN__CL_SIZES + TWIN_DTYPE_COUNT * TWIN_DTYPE_COUNT)

/* The kernel number of a family at an element size, and of the converting copy src -> dst. */
int twin__cl_kernel_id(twin__cl_family family, size_t item);
int twin__cl_convert_id(twin_dtype src, twin_dtype dst);

/* A created kernel and the largest work-group its device runs it with. */
typedef struct twin__cl_kernel {
  cl_kernel kernel;
  size_t max_group;
} twin__cl_kernel;

/* The OpenCL backend's per-context state. */
typedef struct twin__cl_context {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  /* The built-in kernels: one program, built at the first built-in operation, and kernels
   * created from it on first use. ops_lock guards both, and is held across clSetKernelArg and
   * the enqueue, since a cl_kernel's arguments are shared by every thread that uses it. */
  pthread_mutex_t ops_lock;
  cl_program program;
  twin__cl_kernel kernels[TWIN__CL_KERNELS];
  /* Held across every enqueue of a command that is recorded in a buffer's track, and the
   * recording, so that each track holds the latest command on its memory in queue order.
   * Innermost: taken with ops_lock, a kernel's lock or a buffer's lock held, never the reverse. */
  pthread_mutex_t enqueue_lock;
} twin__cl_context;

/* The program's source, generated from the .cl files of kernels/ by kernels/embed.py: lines to
 * pass together to clCreateProgramWithSource. */
extern const char *const twin__cl_program_lines[];
extern const size_t twin__cl_program_line_count;

/* Builds the context's program unless it is built (builtin.c): the prepare_ops member. A
 * compiler failure is TWIN_ERR_BUILD with the build log appended to the message. */
twin_status twin__cl_prepare_ops(twin_context *ctx);
/* With cl->ops_lock held: builds the program if needed and returns kernel number id. */
twin_status twin__cl_kernel_get(twin_context *ctx, int id, const twin__cl_kernel **out);
/* Releases the built-in program and kernels (at context close). */
void twin__cl_builtin_release(twin__cl_context *cl);

/* The built-in operation members of twin__opencl_ops (ops.c). */
twin_status twin__cl_copy(twin_context *ctx, const twin__view *dst, const twin__view *src);
twin_status twin__cl_fill(twin_context *ctx, const twin__view *dst, const void *value);

/* ---- The commands on each buffer (events.c) ----
 * An enqueue that a buffer's release must wait for runs between twin__cl_enqueue_begin and
 * twin__cl_enqueue_end, asks for its event, and names the tracks of the buffers it uses. */
void twin__cl_enqueue_begin(twin__cl_context *cl);
/* Between the two: ev becomes the latest command on track's memory. */
void twin__cl_record(twin__track *track, cl_event ev);
/* Ends an enqueue: when err is CL_SUCCESS, records ev in tracks[0..n) (NULL entries skipped;
 * one buffer may appear twice) and drops the caller's reference to ev. Returns err. */
cl_int twin__cl_enqueue_end(twin__cl_context *cl, cl_int err, cl_event ev,
                            twin__track *const *tracks, int n);
/* Waits for the command recorded in track, if any, and empties its `last`. */
void twin__cl_wait_last(twin__cl_context *cl, twin__track *track);
/* Waits until the runtime has finished with every command queued so far, including its own
 * bookkeeping after a command completes (its references on the queue, and so on the context,
 * buffers and kernels), within a bound; at context close. */
void twin__cl_settle(twin__cl_context *cl);
/* Polls done() until it is true or limit_ms have passed, yielding then sleeping briefly;
 * returns done()'s last answer. For the runtime's own threads finishing what they do right
 * after a command completes. */
bool twin__cl_poll(bool (*done)(void *arg), void *arg, double limit_ms);
/* How long the release of a cl_mem twin made waits for the runtime to destroy it: long enough
 * for a runtime thread, descheduled on a loaded machine, to finish the bookkeeping that follows
 * a command's completion (PoCL 3.1 on 2 cores under a load average of 12 took up to ~160 ms);
 * short enough that a program that retains a borrowed cl_mem sees a warning rather than a
 * hang. A variable so that a test of that misuse need not wait as long. */
extern double twin__cl_poll_limit_ms;
/* The mark member: a marker after everything queued so far, recorded in track. */
twin_status twin__cl_mark(twin_context *ctx, twin__track *track);
/* dev_busy: the buffer's last recorded command has not completed. */
bool twin__cl_busy(twin_context *ctx, twin__track *track);

/* The buffer members of twin__opencl_ops (memory.c). */
twin_status twin__cl_alloc(twin_context *ctx, size_t nbytes, void **handle, twin__track *track);
bool twin__cl_free(twin_context *ctx, void *handle, twin__track *track);
twin_status twin__cl_to_device(twin_context *ctx, void *handle, size_t off, size_t n,
                               const void *src);
twin_status twin__cl_to_host(twin_context *ctx, void *handle, size_t off, size_t n, void *dst);
twin_status twin__cl_to_device_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                    const void *host);
twin_status twin__cl_to_host_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                  void *host);
twin_status twin__cl_to_host_packed(twin_context *ctx, const twin__view *v, void *packed);
twin_status twin__cl_to_device_packed(twin_context *ctx, const twin__view *v, const void *packed);
twin_status twin__cl_zero(twin_context *ctx, void *handle, size_t off, size_t n,
                          twin__track *track);
twin_status twin__cl_wrap(twin_context *ctx, void *host, size_t nbytes, void **handle,
                          twin__track *track);
twin_status twin__cl_map(twin_context *ctx, void *handle, size_t off, size_t n, twin_access access,
                         bool invalidate, void **ptr);
twin_status twin__cl_unmap(twin_context *ctx, void *handle, void *ptr, twin__track *track);
/* The adopted-memory members (memory.c): a cl_mem the application made, and host memory it
 * lends, used in place. */
twin_status twin__cl_adopt(twin_context *ctx, void *handle, size_t *nbytes);
twin_status twin__cl_wrap_external(twin_context *ctx, void *host, size_t nbytes,
                                   void (*done)(void *arg), void *arg, void **handle,
                                   twin__track *track);
/* A cl_mem twin makes (CL_MEM_USE_HOST_PTR over host, or device memory when host is NULL) with
 * the record dev_free needs in track->life: block, when not NULL, is a block of nbytes from
 * twin__alloc_block, freed when the runtime destroys the cl_mem, and done(arg), when not NULL,
 * runs once it is destroyed (see dev_wrap_external). On failure nothing is kept and neither runs.
 */
twin_status twin__cl_make(twin_context *ctx, cl_mem_flags flags, size_t nbytes, void *host,
                          void *block, void (*done)(void *arg), void *arg, cl_mem *out,
                          twin__track *track);

/* Appends the compiler's log for program to this thread's error message (builtin.c). */
void twin__cl_append_build_log(const twin__cl_context *cl, cl_program program);

/* twin_kernel.h, generated from kernels/twin_kernel.h: prepended to every user program. */
extern const char *const twin__cl_kernel_header_lines[];
extern const size_t twin__cl_kernel_header_line_count;

/* The user program and kernel members of twin__opencl_ops (user_program.c). */
twin_status twin__cl_program_build(twin_context *ctx, const char *source, const char *label,
                                   const char *options, void **program);
void twin__cl_program_free(twin_context *ctx, void *program);
twin_status twin__cl_kernel_create(twin_context *ctx, void *program, const char *name,
                                   void **kernel, twin__kernel_desc *desc);
void twin__cl_kernel_free(twin_context *ctx, void *kernel);
twin_status twin__cl_kernel_enqueue(twin_context *ctx, void *kernel, const twin__kvalue *values,
                                    int nvalues, int work_dim, const size_t *global,
                                    const size_t *local, int *failed_value);

static inline twin__cl_context *to_cl(const twin_context *ctx) {
  return (twin__cl_context *)ctx->backend;
}

#endif /* TWIN_CLAPI_H */

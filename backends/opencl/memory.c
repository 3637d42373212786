/* Device memory of the OpenCL backend: cl_mem buffers, their release, the transfers between
 * them and the host mirror, and memory the application lends (an adopted cl_mem, host memory
 * used in place). Core checks every size against the device's largest allocation first.
 *
 * Release: a runtime frees a cl_mem at its last release only when no queued command uses it,
 * otherwise later, on its own thread (PoCL 3.1 wakes the waiters of a command before it drops
 * the command's references on its buffers). So dev_free waits for the buffer's last command
 * (events.c), releases twin's reference, and then waits, within a bound, for the runtime to
 * destroy the cl_mem: each cl_mem twin makes carries a record that its destructor callback and
 * dev_free both reach, and the second to reach it finishes (runs done, frees the record). */
#include "clapi.h"

typedef struct life {
  atomic_uint arrived;     /* 0, then 1 when the first of the two reached it */
  void *block;             /* freed by the destructor: a zero-copy buffer's host block, or NULL */
  size_t size;             /* block's size, which twin__free_block needs */
  void (*done)(void *arg); /* adopted host memory given back, by the second to arrive */
  void *arg;
} life;

/* The destructor callback or dev_free reaches the record; true for the second. */
static bool arrive(life *l) {
  if (atomic_fetch_add_explicit(&l->arrived, 1, memory_order_acq_rel) == 0)
    return false;
  if (l->done)
    l->done(l->arg);
  twin__free(l);
  return true;
}

static void CL_CALLBACK destroyed(cl_mem mem, void *user) {
  (void)mem;
  life *l = user;
  if (l->block)
    twin__free_block(l->block, l->size);
  arrive(l);
}

static bool destructor_ran(void *arg) {
  return atomic_load_explicit(&((life *)arg)->arrived, memory_order_acquire) != 0;
}

twin_status twin__cl_make(twin_context *ctx, cl_mem_flags flags, size_t nbytes, void *host,
                          void *block, void (*done)(void *arg), void *arg, cl_mem *out,
                          twin__track *track) {
  life *l = twin__malloc(sizeof *l);
  if (!l)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to follow a cl_mem");
  *l = (life){0, block, nbytes, done, arg};
  cl_int err;
  cl_mem mem = twin__cl.clCreateBuffer(to_cl(ctx)->context, flags, nbytes, host, &err);
  if (!mem) {
    twin__free(l);
    return twin__cl_fail(flags & CL_MEM_USE_HOST_PTR ? "clCreateBuffer(CL_MEM_USE_HOST_PTR)"
                                                     : "clCreateBuffer",
                         err);
  }
  err = twin__cl.clSetMemObjectDestructorCallback(mem, destroyed, l);
  if (err != CL_SUCCESS) {
    twin__cl.clReleaseMemObject(mem); /* the caller still owns host and frees it */
    twin__free(l);
    return twin__cl_fail("clSetMemObjectDestructorCallback", err);
  }
  track->life = l;
  *out = mem;
  return TWIN_OK;
}

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

twin_status twin__cl_alloc(twin_context *ctx, size_t nbytes, void **handle, twin__track *track) {
  if (ctx->device.host_unified_memory) {
    /* The device's memory is host memory: allocate it here, where a failure is a clean NULL,
     * and let the device use it in place (it stays a separate copy from the host mirror). */
    void *block = twin__alloc_block(nbytes);
    if (!block)
      return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                        "no host memory for a %zu-byte device copy "
                        "on a device that shares host memory",
                        nbytes);
    twin_status s = twin__cl_wrap(ctx, block, nbytes, handle, track);
    if (s != TWIN_OK)
      twin__free_block(block, nbytes);
    return s;
  }
  cl_mem mem;
  twin_status s =
      twin__cl_make(ctx, CL_MEM_READ_WRITE, nbytes, NULL, NULL, NULL, NULL, &mem, track);
  if (s == TWIN_OK && (s = commit(ctx, mem)) != TWIN_OK)
    twin__cl_free(ctx, mem, track);
  if (s == TWIN_OK)
    *handle = mem;
  return s;
}

bool twin__cl_free(twin_context *ctx, void *handle, twin__track *track) {
  twin__cl_wait_last(to_cl(ctx), track);
  life *l = track->life;
  track->life = NULL;
  twin__cl.clReleaseMemObject((cl_mem)handle);
  if (!l)
    return true; /* adopted: twin's reference is all it had */
  twin__cl_poll(destructor_ran, l, twin__cl_poll_limit_ms);
  return arrive(l);
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

/* One rectangular transfer of up to three levels: region {run, rows, slices} with the row and
 * slice pitches given, at the same offsets in the buffer and in host memory. */
static cl_int rect(twin_context *ctx, void *handle, bool write, size_t lo, const size_t region[3],
                   size_t row_pitch, size_t slice_pitch, void *host) {
  const size_t origin[3] = {lo, 0, 0};
  cl_command_queue q = to_cl(ctx)->queue;
  if (write)
    return twin__cl.clEnqueueWriteBufferRect(q, (cl_mem)handle, CL_TRUE, origin, origin, region,
                                             row_pitch, slice_pitch, row_pitch, slice_pitch, host,
                                             0, NULL, NULL);
  return twin__cl.clEnqueueReadBufferRect(q, (cl_mem)handle, CL_TRUE, origin, origin, region,
                                          row_pitch, slice_pitch, row_pitch, slice_pitch, host, 0,
                                          NULL, NULL);
}

/* Moves pattern p: one 3-D rectangle when its group stride is a multiple of its run stride (as
 * OpenCL asks of a slice pitch), else one 2-D rectangle per group. */
static cl_int move_rect(twin_context *ctx, void *handle, bool write, const twin__pattern *p,
                        void *host) {
  size_t row = p->count[0] > 1 ? p->stride[0] : p->run;
  size_t region[3] = {p->run, p->count[0], p->count[1]};
  if (p->count[1] == 1 || p->stride[1] % row == 0)
    return rect(ctx, handle, write, p->lo, region, row, p->count[1] > 1 ? p->stride[1] : 0, host);
  region[2] = 1;
  cl_int err = CL_SUCCESS;
  for (size_t j = 0; j < p->count[1] && err == CL_SUCCESS; j++)
    err = rect(ctx, handle, write, p->lo + j * p->stride[1], region, row, 0, host);
  return err;
}

twin_status twin__cl_to_device_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                    const void *host) {
  cl_int err = move_rect(ctx, handle, true, p, (void *)host);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueWriteBufferRect", err);
}

twin_status twin__cl_to_host_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                  void *host) {
  cl_int err = move_rect(ctx, handle, false, p, host);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueReadBufferRect", err);
}

/* ---- Packed transfers: a gather (or scatter) kernel between the view and a staging buffer,
 * and one contiguous transfer of the staging bytes ---- */

static size_t packed_bytes(const twin__view *v) {
  size_t n = twin_dtype_size(v->dtype);
  for (int i = 0; i < v->ndim; i++)
    n *= v->shape[i];
  return n;
}

/* A staging buffer for v's packed elements, and the view of them there; the copy kernels
 * built first. */
static twin_status staging(twin_context *ctx, const twin__view *v, twin__view *packed) {
  twin_status s = twin__cl_prepare_ops(ctx);
  if (s != TWIN_OK)
    return s;
  cl_int err;
  cl_mem mem =
      twin__cl.clCreateBuffer(to_cl(ctx)->context, CL_MEM_READ_WRITE, packed_bytes(v), NULL, &err);
  if (!mem)
    return twin__cl_fail("clCreateBuffer(staging)", err);
  *packed = twin__view_packed(v, mem);
  return TWIN_OK;
}

twin_status twin__cl_to_host_packed(twin_context *ctx, const twin__view *v, void *packed) {
  twin__view stage;
  twin_status s = staging(ctx, v, &stage);
  if (s != TWIN_OK)
    return s;
  s = twin__cl_copy(ctx, &stage, v); /* the gather, then the read in queue order */
  if (s == TWIN_OK) {
    cl_int err = twin__cl.clEnqueueReadBuffer(to_cl(ctx)->queue, stage.mem, CL_TRUE, 0,
                                              packed_bytes(v), packed, 0, NULL, NULL);
    s = err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueReadBuffer(staging)", err);
  }
  twin__cl.clReleaseMemObject(stage.mem);
  return s;
}

/* The scatter is recorded in v's track; the staging buffer goes when it is done (a runtime
 * keeps a released cl_mem until the commands using it complete). */
twin_status twin__cl_to_device_packed(twin_context *ctx, const twin__view *v, const void *packed) {
  twin__view stage;
  twin_status s = staging(ctx, v, &stage);
  if (s != TWIN_OK)
    return s;
  cl_int err = twin__cl.clEnqueueWriteBuffer(to_cl(ctx)->queue, stage.mem, CL_TRUE, 0,
                                             packed_bytes(v), packed, 0, NULL, NULL);
  s = err == CL_SUCCESS ? twin__cl_copy(ctx, v, &stage)
                        : twin__cl_fail("clEnqueueWriteBuffer(staging)", err);
  twin__cl.clReleaseMemObject(stage.mem);
  return s;
}

twin_status twin__cl_zero(twin_context *ctx, void *handle, size_t off, size_t n,
                          twin__track *track) {
  static const cl_uchar zero = 0;
  twin__cl_context *cl = to_cl(ctx);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err = twin__cl.clEnqueueFillBuffer(cl->queue, (cl_mem)handle, &zero, sizeof zero, off, n,
                                            0, NULL, &ev);
  err = twin__cl_enqueue_end(cl, err, ev, &track, 1);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueFillBuffer", err);
}

twin_status twin__cl_wrap(twin_context *ctx, void *host, size_t nbytes, void **handle,
                          twin__track *track) {
  cl_mem mem = NULL;
  twin_status s = twin__cl_make(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, nbytes, host, host,
                                NULL, NULL, &mem, track);
  if (s == TWIN_OK)
    *handle = mem;
  return s;
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

twin_status twin__cl_unmap(twin_context *ctx, void *handle, void *ptr, twin__track *track) {
  /* No wait: commands queued later run after the unmap on the in-order queue, and the caller
   * gives up the pointer at twin_host_end anyway. The mapping holds the cl_mem until the unmap
   * completes, so the buffer's release waits for it. */
  twin__cl_context *cl = to_cl(ctx);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err = twin__cl.clEnqueueUnmapMemObject(cl->queue, (cl_mem)handle, ptr, 0, NULL, &ev);
  err = twin__cl_enqueue_end(cl, err, ev, &track, 1);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueUnmapMemObject", err);
}

/* ---- Memory the application lends ---- */

twin_status twin__cl_adopt(twin_context *ctx, void *handle, size_t *nbytes) {
  cl_mem mem = handle;
  cl_context owner = NULL;
  cl_int err = twin__cl.clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof owner, &owner, NULL);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetMemObjectInfo(CL_MEM_CONTEXT)", err);
  if (owner != to_cl(ctx)->context)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "the cl_mem belongs to another OpenCL context "
                      "than the twin context's (twin_context_cl_context)");
  cl_mem_object_type type = 0;
  err = twin__cl.clGetMemObjectInfo(mem, CL_MEM_TYPE, sizeof type, &type, NULL);
  if (err == CL_SUCCESS && type != CL_MEM_OBJECT_BUFFER)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "the cl_mem is an image, not a buffer");
  size_t size = 0;
  if (err == CL_SUCCESS)
    err = twin__cl.clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetMemObjectInfo", err);
  err = twin__cl.clRetainMemObject(mem);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clRetainMemObject", err);
  *nbytes = size;
  return TWIN_OK;
}

twin_status twin__cl_wrap_external(twin_context *ctx, void *host, size_t nbytes,
                                   void (*done)(void *arg), void *arg, void **handle,
                                   twin__track *track) {
  cl_mem mem = NULL;
  twin_status s = twin__cl_make(ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, nbytes, host, NULL,
                                done, arg, &mem, track);
  if (s == TWIN_OK)
    *handle = mem;
  return s;
}

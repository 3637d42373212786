/* The fake device: a backend with device memory of its own and no OpenCL, so that every path of
 * the coherence layer (two copies moved range by range, zero-copy blocks mapped for host access,
 * budgets, trim, evict, prefetch, operations that run on the device side) runs in any build,
 * also without OpenCL. It is a test device: selected only by the device spec "fake", never
 * listed by twin_device_list and never the default choice.
 *
 * Its "device memory" is host memory from twin's own allocator (twin__alloc_block, released
 * with twin__free_block), so the allocator's fault hooks reach device allocations too. A handle is
 * the address of its block, so the built-in copy and fill run on the device side through the
 * host loops applied to the device blocks. Every member completes its work before it returns:
 * nothing is ever queued, so release is immediate. Work on device memory (transfers, zeroing,
 * copy, fill) is serialized per context, as an OpenCL device's in-order queue serializes it:
 * twin lets threads work on different views of one buffer on the device side at once, which
 * the queue orders and which would otherwise race here. It runs no OpenCL C (program_build is
 * NULL: TWIN_ERR_UNSUPPORTED), while host kernels work as everywhere. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "../backend.h"

/* What a fresh device block holds before anything is written to it: not zeros, so that data
 * read from device memory nobody wrote shows up in a test instead of passing as zeros. */
#define UNWRITTEN 0xa5

/* The context's state: the lock that stands for the in-order queue. */
typedef struct fake_context {
  pthread_mutex_t queue;
} fake_context;

static pthread_mutex_t *queue_of(twin_context *ctx) {
  return &((fake_context *)ctx->backend)->queue;
}

static twin_status fake_open(twin_context *ctx) {
  fake_context *f = twin__malloc(sizeof *f);
  if (!f)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for the fake device's context");
  if (pthread_mutex_init(&f->queue, NULL) != 0) {
    twin__free(f);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for the fake device");
  }
  ctx->backend = f;
  return TWIN_OK;
}

static void fake_close(twin_context *ctx) {
  fake_context *f = ctx->backend;
  pthread_mutex_destroy(&f->queue);
  twin__free(f);
}

/* What a handle keeps in its track's life: for a block it owns (from dev_alloc, or dev_wrap's
 * zero-copy block), the block's size, which twin__free_block needs; over memory the application
 * lent, the callback that gives the memory back. */
typedef struct life {
  size_t owned; /* bytes of the handle's own block; 0 over lent memory */
  void (*done)(void *arg);
  void *arg;
} life;

static twin_status keep(twin__track *track, life what) {
  life *l = twin__malloc(sizeof *l);
  if (!l)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to follow a fake device handle");
  *l = what;
  track->life = l;
  return TWIN_OK;
}

static twin_status fake_dev_alloc(twin_context *ctx, size_t nbytes, void **handle,
                                  twin__track *track) {
  (void)ctx;
  /* The device's memory is host memory, so running out of it is running out of host memory
   * (as for OpenCL on a device that shares host memory): core then frees redundant host copies
   * and retries. A device budget is core's to enforce, as on every device. */
  void *block = twin__alloc_block(nbytes);
  if (!block)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                      "no host memory for a %zu-byte device copy on the fake device", nbytes);
  twin_status s = keep(track, (life){nbytes, NULL, NULL});
  if (s != TWIN_OK) {
    twin__free_block(block, nbytes);
    return s;
  }
  memset(block, UNWRITTEN, nbytes);
  *handle = block;
  return TWIN_OK;
}

static bool fake_dev_free(twin_context *ctx, void *handle, twin__track *track) {
  (void)ctx;
  assert(!track->last); /* nothing is ever queued */
  life *l = track->life, gone = *l;
  track->life = NULL;
  /* The memory goes first, then the record (which tests watch); lent memory goes back to the
   * application after the handle is gone. */
  if (gone.owned)
    twin__free_block(handle, gone.owned);
  twin__free(l);
  if (gone.done)
    gone.done(gone.arg);
  return true;
}

static twin_status fake_to_device(twin_context *ctx, void *handle, size_t off, size_t n,
                                  const void *src) {
  pthread_mutex_lock(queue_of(ctx));
  memcpy((char *)handle + off, src, n);
  pthread_mutex_unlock(queue_of(ctx));
  return TWIN_OK;
}

static twin_status fake_to_host(twin_context *ctx, void *handle, size_t off, size_t n, void *dst) {
  pthread_mutex_lock(queue_of(ctx));
  memcpy(dst, (const char *)handle + off, n);
  pthread_mutex_unlock(queue_of(ctx));
  return TWIN_OK;
}

/* Copies the runs of p from one block to another at the same offsets. */
static void copy_runs(char *to, const char *from, const twin__pattern *p) {
  for (size_t j = 0; j < p->count[1]; j++)
    for (size_t i = 0; i < p->count[0]; i++) {
      size_t at = p->lo + j * p->stride[1] + i * p->stride[0];
      memcpy(to + at, from + at, p->run);
    }
}

static twin_status fake_to_device_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                       const void *host) {
  pthread_mutex_lock(queue_of(ctx));
  copy_runs(handle, host, p);
  pthread_mutex_unlock(queue_of(ctx));
  return TWIN_OK;
}

static twin_status fake_to_host_rect(twin_context *ctx, void *handle, const twin__pattern *p,
                                     void *host) {
  pthread_mutex_lock(queue_of(ctx));
  copy_runs(host, handle, p);
  pthread_mutex_unlock(queue_of(ctx));
  return TWIN_OK;
}

/* Packed transfers: the gather into (or scatter from) contiguous memory, here straight
 * between the device block and the host's packed elements. */
static twin_status packed_copy(twin_context *ctx, const twin__view *to, const twin__view *from) {
  pthread_mutex_lock(queue_of(ctx));
  twin_status s = twin__host_copy(ctx, to, from);
  pthread_mutex_unlock(queue_of(ctx));
  return s;
}

static twin_status fake_to_host_packed(twin_context *ctx, const twin__view *v, void *packed) {
  twin__view p = twin__view_packed(v, (void *)packed);
  return packed_copy(ctx, &p, v);
}

static twin_status fake_to_device_packed(twin_context *ctx, const twin__view *v,
                                         const void *packed) {
  twin__view p = twin__view_packed(v, (void *)packed);
  return packed_copy(ctx, v, &p);
}

static twin_status fake_dev_zero(twin_context *ctx, void *handle, size_t off, size_t n,
                                 twin__track *track) {
  (void)track;
  pthread_mutex_lock(queue_of(ctx));
  memset((char *)handle + off, 0, n);
  pthread_mutex_unlock(queue_of(ctx));
  return TWIN_OK;
}

/* Built-in operations: the host loops on the device blocks, in queue order. */
static twin_status fake_copy(twin_context *ctx, const twin__view *dst, const twin__view *src) {
  pthread_mutex_lock(queue_of(ctx));
  twin_status s = twin__host_copy(ctx, dst, src);
  pthread_mutex_unlock(queue_of(ctx));
  return s;
}

static twin_status fake_fill(twin_context *ctx, const twin__view *dst, const void *value) {
  pthread_mutex_lock(queue_of(ctx));
  twin_status s = twin__host_fill(ctx, dst, value);
  pthread_mutex_unlock(queue_of(ctx));
  return s;
}

/* Zero-copy: the host block is the device memory, used in place. */
static twin_status fake_dev_wrap(twin_context *ctx, void *host, size_t nbytes, void **handle,
                                 twin__track *track) {
  (void)ctx;
  twin_status s = keep(track, (life){nbytes, NULL, NULL});
  if (s == TWIN_OK)
    *handle = host;
  return s;
}

static twin_status fake_dev_wrap_external(twin_context *ctx, void *host, size_t nbytes,
                                          void (*done)(void *arg), void *arg, void **handle,
                                          twin__track *track) {
  (void)ctx, (void)nbytes;
  twin_status s = keep(track, (life){0, done, arg});
  if (s == TWIN_OK)
    *handle = host;
  return s;
}

static twin_status fake_map(twin_context *ctx, void *handle, size_t off, size_t n,
                            twin_access access, bool invalidate, void **ptr) {
  (void)ctx, (void)n, (void)access, (void)invalidate;
  *ptr = (char *)handle + off;
  return TWIN_OK;
}

static twin_status fake_unmap(twin_context *ctx, void *handle, void *ptr, twin__track *track) {
  (void)ctx, (void)handle, (void)ptr, (void)track;
  return TWIN_OK;
}

/* finish and mark stay NULL: nothing is ever queued. dev_adopt stays NULL too: adopting device
 * memory the application made is OpenCL's alone (twin_array_wrap_cl_mem). */
const struct twin_backend_ops twin__fake_ops = {
    .name = "fake",
    .device_memory = true,
    .open = fake_open,
    .close = fake_close,
    .dev_alloc = fake_dev_alloc,
    .dev_free = fake_dev_free,
    .to_device = fake_to_device,
    .to_host = fake_to_host,
    .to_device_rect = fake_to_device_rect,
    .to_host_rect = fake_to_host_rect,
    .to_device_packed = fake_to_device_packed,
    .to_host_packed = fake_to_host_packed,
    .dev_zero = fake_dev_zero,
    .dev_wrap = fake_dev_wrap,
    .map = fake_map,
    .unmap = fake_unmap,
    .dev_wrap_external = fake_dev_wrap_external,
    .copy = fake_copy,
    .fill = fake_fill,
};

void twin__fake_device_info(twin_device_info *out) {
  memset(out, 0, sizeof *out);
  strcpy(out->spec, "fake");
  strcpy(out->platform, "twin");
  strcpy(out->name, "fake device (host memory; for tests)");
  out->type = TWIN_DEVICE_OTHER;
  out->platform_index = -1;
  out->device_index = -1;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  out->global_mem_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
  /* A quarter of the memory, the least OpenCL lets a device report, so the refusal of an
   * allocation above the device's largest runs on this device too. */
  out->max_alloc_bytes = out->global_mem_bytes / 4;
  /* Shared memory: automatic coherence gives the zero-copy layout; TWIN_COHERENCE=copy, two
   * copies. */
  out->host_unified_memory = true;
  out->fp64 = true;
}

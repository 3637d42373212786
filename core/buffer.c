/* Buffers: the storage behind arrays, a host mirror and a device allocation of one byte
 * size, each made lazily, both freed together when the last array viewing them drops. */
#include <assert.h>
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

/* Host mirrors are cache-line aligned so every dtype and vector load is aligned. */
#define HOST_ALIGNMENT 64

static size_t alloc_size(const twin__buffer *b) {
  return b->nbytes ? b->nbytes : 1;
}

static bool has_device(const twin__buffer *b) {
  return b->ctx->ops->dev_alloc != NULL;
}

twin_status twin__buffer_new(twin_context *ctx, size_t nbytes, bool zero_init,
                             twin__buffer **out) {
  twin__buffer *b = twin__calloc(1, sizeof *b);
  if (!b)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for a buffer object");
  if (pthread_mutex_init(&b->lock, NULL) != 0) {
    twin__free(b);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a buffer");
  }
  atomic_init(&b->refs, 1);
  b->ctx = twin_context_ref(ctx);
  b->nbytes = nbytes;
  b->zero_init = zero_init;
  /* Nothing is allocated yet, so every side that exists holds the initial content. */
  b->side[TWIN__HOST].valid = true;
  b->side[TWIN__DEVICE].valid = has_device(b);
  atomic_fetch_add_explicit(&ctx->counters.buffers, 1, memory_order_relaxed);
  *out = b;
  return TWIN_OK;
}

twin__buffer *twin__buffer_ref(twin__buffer *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

/* Frees one side's memory, if any; its validity is left to the caller. */
static void release_side(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  void *mem = b->side[which].mem;
  if (!mem)
    return;
  if (which == TWIN__HOST) {
    twin__free(mem);
    twin__count_host_free(ctx, alloc_size(b));
  } else {
    ctx->ops->dev_free(ctx, mem);
    twin__count_device_free(ctx, alloc_size(b));
  }
  b->side[which].mem = NULL;
}

void twin__buffer_unref(twin__buffer *b) {
  if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_release) != 1)
    return;
  atomic_thread_fence(memory_order_acquire);
  twin_context *ctx = b->ctx;
  release_side(b, TWIN__HOST);
  release_side(b, TWIN__DEVICE);
  pthread_mutex_destroy(&b->lock);
  atomic_fetch_sub_explicit(&ctx->counters.buffers, 1, memory_order_relaxed);
  twin__free(b);
  twin_context_unref(ctx);
}

/* Allocates a missing side; a side that is valid but was never materialised gets the
 * buffer's initial content (zeros when zero_init, else whatever the memory holds). */
static twin_status materialise(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  twin__side *side = &b->side[which];
  size_t n = alloc_size(b);
  if (which == TWIN__HOST) {
    side->mem = twin__aligned(HOST_ALIGNMENT, n);
    if (!side->mem)
      return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no host memory for a %zu-byte buffer", n);
    if (side->valid && b->zero_init)
      memset(side->mem, 0, n);
    twin__count_host_alloc(ctx, n);
    return TWIN_OK;
  }
  twin_status s = ctx->ops->dev_alloc(ctx, n, &side->mem);
  if (s != TWIN_OK)
    return s;
  if (side->valid && b->zero_init) {
    s = ctx->ops->dev_zero(ctx, side->mem, 0, n);
    if (s != TWIN_OK) {
      ctx->ops->dev_free(ctx, side->mem);
      side->mem = NULL;
      return s;
    }
  }
  twin__count_device_alloc(ctx, n);
  return TWIN_OK;
}

/* Copies the whole buffer from the other side, which is valid, into `which`. */
static twin_status pull(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  void *host = b->side[TWIN__HOST].mem, *dev = b->side[TWIN__DEVICE].mem;
  size_t n = b->nbytes;
  if (n == 0)
    return TWIN_OK;
  twin_status s = which == TWIN__DEVICE ? ctx->ops->to_device(ctx, dev, 0, n, host)
                                        : ctx->ops->to_host(ctx, dev, 0, n, host);
  if (s == TWIN_OK)
    twin__count_transfer(ctx, which == TWIN__DEVICE, n);
  return s;
}

twin_status twin__buffer_prepare(twin__buffer *b, twin__side_id which, bool need_data) {
  twin__side *side = &b->side[which];
  bool was_missing = side->mem == NULL;
  if (was_missing) {
    twin_status s = materialise(b, which);
    if (s != TWIN_OK)
      return s;
  }
  if (side->valid || !need_data)
    return TWIN_OK;
  /* A side goes stale only when the other is written, and writing materialises it. */
  assert(b->side[!which].valid && b->side[!which].mem);
  twin_status s = pull(b, which);
  if (s != TWIN_OK) {
    if (was_missing)
      release_side(b, which); /* leave the buffer as it was */
    return s;
  }
  side->valid = true;
  return TWIN_OK;
}

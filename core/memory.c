/* The memory of buffers: allocating a side within the budgets and the device's limit, moving
 * bytes between the two sides, freeing a side; trim and evict, which free the copies that lose
 * no data; and the release of unreachable host pages. What to do when an allocation fails (the
 * pressure order) is pressure.c's. */
#include <stdio.h>
#include <string.h>

#include "storage.h"

static twin_status out_of(twin__side_id side) {
  return side == TWIN__HOST ? TWIN_ERR_OUT_OF_HOST_MEMORY : TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}

twin_status twin__device_limit(const twin_context *ctx, size_t n) {
  if (n <= ctx->device.max_alloc_bytes)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_OUT_OF_DEVICE_MEMORY,
                    "%zu bytes exceed the device's largest allocation, "
                    "CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                    n, (unsigned long long)ctx->device.max_alloc_bytes);
}

/* ---- Allocating ---- */

/* The one allocation of a shared buffer: a host block the device uses in place. It counts as
 * host memory. */
static twin_status allocate_shared(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  size_t n = twin__alloc_size(b);
  void *host = twin__alloc_block(n);
  if (!host)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "the host allocator returned NULL");
  if (b->zero_init)
    memset(host, 0, n);
  twin_status s = ctx->ops->dev_wrap(ctx, host, n, &b->mem[TWIN__DEVICE], &b->track);
  if (s != TWIN_OK) {
    twin__free_block(host, n);
    return s;
  }
  b->mem[TWIN__HOST] = host;
  return TWIN_OK;
}

static twin_status allocate_host(twin__buffer *b) {
  size_t n = twin__alloc_size(b);
  b->mem[TWIN__HOST] = twin__alloc_block(n);
  if (!b->mem[TWIN__HOST])
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "the host allocator returned NULL");
  if (b->zero_init)
    memset(b->mem[TWIN__HOST], 0, n);
  return TWIN_OK;
}

static twin_status allocate_device(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  size_t n = twin__alloc_size(b);
  void *dev;
  twin_status s = ctx->ops->dev_alloc(ctx, n, &dev, &b->track);
  if (s == TWIN_OK && b->zero_init &&
      (s = ctx->ops->dev_zero(ctx, dev, 0, n, &b->track)) != TWIN_OK)
    ctx->ops->dev_free(ctx, dev, &b->track);
  if (s == TWIN_OK)
    b->mem[TWIN__DEVICE] = dev;
  return s;
}

twin_status twin__buffer_allocate(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  twin__side_id counted = b->layout == TWIN__SHARED ? TWIN__HOST : which;
  if (!twin__budget_take(ctx, counted, b->nbytes))
    return twin__fail(out_of(counted), "the %s memory budget is reached", twin__side_name(counted));
  twin_status s = b->layout == TWIN__SHARED ? allocate_shared(b)
                  : which == TWIN__HOST     ? allocate_host(b)
                                            : allocate_device(b);
  if (s != TWIN_OK)
    twin__budget_give(ctx, counted, b->nbytes);
  else if (which == TWIN__DEVICE)
    b->spilled = false; /* a spilled copy is back */
  return s;
}

/* ---- Moving ---- */

static twin_status move_bytes(twin__buffer *b, twin__side_id to, size_t lo, size_t hi) {
  twin_context *ctx = b->ctx;
  char *host = b->mem[TWIN__HOST];
  void *dev = b->mem[TWIN__DEVICE];
  twin_status s = to == TWIN__DEVICE ? ctx->ops->to_device(ctx, dev, lo, hi - lo, host + lo)
                                     : ctx->ops->to_host(ctx, dev, lo, hi - lo, host + lo);
  if (s == TWIN_OK)
    twin__count_transfer(ctx, to == TWIN__DEVICE, hi - lo);
  return s;
}

/* Host pages released because no view reached them hold nothing to move, either way, and a
 * move into them would make them resident again behind the statistics' back: runs around them
 * move, and the caller marks the whole range clean. */
twin_status twin__buffer_move(twin__buffer *b, twin__side_id to, size_t lo, size_t hi) {
  twin_status s = TWIN_OK;
  for (size_t end; s == TWIN_OK && twin__reach_kept(b, &lo, hi, &end); lo = end)
    s = move_bytes(b, to, lo, end);
  return s;
}

/* Moves p run by run, for a backend without rectangular transfers. */
static twin_status move_runs(twin__buffer *b, twin__side_id to, const twin__pattern *p) {
  twin_status s = TWIN_OK;
  for (size_t j = 0; j < p->count[1] && s == TWIN_OK; j++)
    for (size_t i = 0; i < p->count[0] && s == TWIN_OK; i++) {
      size_t lo = p->lo + j * p->stride[1] + i * p->stride[0];
      s = twin__buffer_move(b, to, lo, lo + p->run);
    }
  return s;
}

twin_status twin__buffer_move_pattern(twin__buffer *b, twin__side_id to, const twin__pattern *p) {
  twin_context *ctx = b->ctx;
  if (twin__pattern_contiguous(p))
    return twin__buffer_move(b, to, p->lo, p->lo + p->run);
  /* Always a rectangle: on PoCL one is never slower than a transfer of its extent beyond the
   * noise, at any run length, at half density and sparser (twin-bench strided-moves). */
  if (!ctx->ops->to_host_rect || b->released)
    return move_runs(b, to, p); /* run by run, around released pages (twin__buffer_move) */
  char *host = b->mem[TWIN__HOST];
  void *dev = b->mem[TWIN__DEVICE];
  twin_status s = to == TWIN__DEVICE ? ctx->ops->to_device_rect(ctx, dev, p, host)
                                     : ctx->ops->to_host_rect(ctx, dev, p, host);
  if (s == TWIN_OK)
    twin__count_transfer(ctx, to == TWIN__DEVICE, twin__pattern_bytes(p));
  return s;
}

/* The view of a's elements on side x, without the axes that repeat elements (stride 0) or
 * have one, so that packing holds each element once. */
static twin__view side_view(twin__buffer *b, twin__side_id x, const twin_array *a) {
  twin__view v = {b->mem[x], x == TWIN__DEVICE ? &b->track : NULL, a->dtype, 0, a->offset, {0},
                  {0}};
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] > 1 && a->strides[i] != 0) {
      v.shape[v.ndim] = a->shape[i];
      v.strides[v.ndim++] = a->strides[i];
    }
  return v;
}

size_t twin__view_element_bytes(const twin_array *a) {
  size_t n = twin__item_size(a->dtype);
  for (int i = 0; i < a->ndim; i++)
    n *= a->strides[i] != 0 ? a->shape[i] : 1;
  return n;
}

twin_status twin__buffer_move_packed(twin__buffer *b, twin__side_id to, const twin_array *a) {
  twin_context *ctx = b->ctx;
  size_t n = twin__view_element_bytes(a);
  void *packed = twin__malloc(n);
  if (!packed)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to pack %zu bytes of a view", n);
  twin__view dev = side_view(b, TWIN__DEVICE, a), host = side_view(b, TWIN__HOST, a),
             pack = twin__view_packed(&host, packed);
  twin_status s;
  if (to == TWIN__DEVICE) {
    s = twin__host_copy(ctx, &pack, &host);
    if (s == TWIN_OK)
      s = ctx->ops->to_device_packed(ctx, &dev, packed);
  } else {
    s = ctx->ops->to_host_packed(ctx, &dev, packed);
    if (s == TWIN_OK)
      s = twin__host_copy(ctx, &host, &pack);
  }
  twin__free(packed);
  if (s == TWIN_OK)
    twin__count_transfer(ctx, to == TWIN__DEVICE, n);
  return s;
}

/* ---- Freeing ---- */

/* Device memory that outlives twin's release: someone outside twin retained a handle twin
 * lent through twin_device_begin. Said once per context, naming where the buffer was made. */
static void warn_retained(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  if (atomic_exchange(&ctx->borrowed_warned, true))
    return;
  fprintf(stderr,
          "twin: warning: the device memory of the buffer made at %s:%d is still referenced "
          "outside twin after its last array was dropped: a cl_mem from twin_device_begin is "
          "borrowed and must not be retained past the array's life. The memory is freed when "
          "that reference is released; twin_context_stats no longer counts it. (Said once per "
          "context.)\n",
          twin__site_file(b->site), b->site.line);
}

/* A shared buffer's host block belongs to its device handle, which frees it once the runtime
 * is done with it. */
void twin__buffer_release_side(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  void *mem = b->mem[which];
  if (!mem)
    return;
  if (which == TWIN__HOST) {
    if (b->layout != TWIN__SHARED && !twin__is_external(b, TWIN__HOST))
      twin__free_block(mem, twin__alloc_size(b));
    /* Its released pages were counted off already. */
    twin__budget_give(ctx, TWIN__HOST, b->nbytes - twin__reach_forget(b));
  } else {
    /* Waits for the buffer's commands and the memory's destruction: counted off after. */
    if (!ctx->ops->dev_free(ctx, mem, &b->track))
      warn_retained(b);
    if (b->layout == TWIN__TWO_COPIES)
      twin__budget_give(ctx, TWIN__DEVICE, b->nbytes);
  }
  b->mem[which] = NULL;
}

/* ---- Trim and evict ---- */

/* With b->lock held: side x of a two-copy buffer holds nothing the other side lacks where live
 * views reach (bytes no view reaches are garbage), is not lent memory and is not in use:
 * freeing it loses nothing. */
static bool redundant(twin__buffer *b, twin__side_id x) {
  return b->layout == TWIN__TWO_COPIES && !twin__is_external(b, x) && b->mem[x] && b->mem[!x] &&
         !twin__accesses_open(b, x, TWIN_READ_WRITE) && !twin__reach_newer(b, x);
}

/* With b->lock held, on a buffer with two copies: can side `x` be freed without losing data?
 * Explains why not. */
static twin_status evictable(const char *fn, twin__buffer *b, twin__side_id x) {
  if (twin__is_external(b, x))
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: the %s side is memory the application lent "
                      "twin (wrapped or imported); twin never frees it",
                      fn, twin__side_name(x));
  if (!b->mem[x] || redundant(b, x))
    return TWIN_OK; /* nothing to free, or a redundant copy */
  if (twin__accesses_open(b, x, TWIN_READ_WRITE)) {
    twin__fail(TWIN_ERR_BUSY, "%s: ", fn);
    twin__append_accesses(b, x, TWIN_READ_WRITE);
    return TWIN_ERR_BUSY;
  }
  return twin__fail(TWIN_ERR_BAD_STATE,
                    "%s: the %s copy holds data the %s does not have; "
                    "bring it over first (twin_array_prefetch)",
                    fn, twin__side_name(x), twin__side_name(!x));
}

/* With b->lock held and evictable(): frees side x; the other side now holds everything. Returns
 * the bytes that were held (host pages released already are not). */
static size_t evict(twin__buffer *b, twin__side_id x) {
  if (!b->mem[x])
    return 0;
  size_t held = x == TWIN__HOST ? b->nbytes - b->released : b->nbytes;
  twin__buffer_release_side(b, x);
  twin__dirty_mark(&b->dirty, 0, b->nbytes, !x);
  return held;
}

twin_status twin__buffer_evict(twin__buffer *b, twin__side_id x, const char *fn) {
  if (twin__one_copy(b))
    return TWIN_OK; /* the one copy is all there is: nothing is redundant */
  pthread_mutex_lock(&b->lock);
  twin_status s = evictable(fn, b, x);
  if (s == TWIN_OK)
    evict(b, x);
  pthread_mutex_unlock(&b->lock);
  return s;
}

/* Frees what is redundant in b on the sides in `what`, unless b's lock is busy (it may be the
 * caller's own buffer, mid-allocation). */
static size_t trim_buffer(twin__buffer *b, unsigned what) {
  if (pthread_mutex_trylock(&b->lock) != 0)
    return 0;
  size_t freed = 0;
  twin__side_id sides[] = {TWIN__HOST, TWIN__DEVICE};
  unsigned flags[] = {TWIN_TRIM_HOST, TWIN_TRIM_DEVICE};
  for (int i = 0; i < 2; i++)
    if ((what & flags[i]) && redundant(b, sides[i]))
      freed += evict(b, sides[i]);
  pthread_mutex_unlock(&b->lock);
  return freed;
}

size_t twin__trim(twin_context *ctx, unsigned what) {
  /* No allocation here: trim is what runs when memory is short. Buffer locks are only tried
   * under the context lock, so the lock order (a buffer's, then the context's) holds. */
  size_t freed = 0;
  pthread_mutex_lock(&ctx->lock);
  for (twin__buffer *b = twin__buffers_first(ctx); b; b = b->next)
    freed += trim_buffer(b, what);
  pthread_mutex_unlock(&ctx->lock);
  return freed;
}

size_t twin__release_unreachable(twin_context *ctx, size_t *pages_bytes) {
  /* As trim: buffer locks only tried, under the context lock. The bitmaps this allocates are a
   * bit per page, 1/32768 of what they may give back. */
  size_t freed = 0;
  /* On a zero-copy device a queued command (an unmap, a kernel on a view dropped since) may
   * still touch a block's pages: what is queued so far completes first, and a block busy again
   * by then is skipped (see twin__reach_release). */
  if (ctx->layout == TWIN__SHARED && ctx->ops->finish)
    ctx->ops->finish(ctx);
  pthread_mutex_lock(&ctx->lock);
  for (twin__buffer *b = twin__buffers_first(ctx); b; b = b->next)
    if (pthread_mutex_trylock(&b->lock) == 0) {
      freed += twin__reach_release(b);
      pthread_mutex_unlock(&b->lock);
    }
  pthread_mutex_unlock(&ctx->lock);
  if (pages_bytes)
    *pages_bytes = freed;
  return freed;
}

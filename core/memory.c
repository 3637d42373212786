/* The memory of buffers: allocating a side within the budgets and the device's limit, freeing
 * redundant copies elsewhere and retrying once when memory runs out, explaining what holds
 * memory when even that fails; freeing a side; and trim and evict, which free the copies that
 * lose no data. */
#include <stdio.h>
#include <string.h>

#include "storage.h"

/* A side's allocation is at least 1 byte (a device handle needs one), while the statistics
 * and budgets count nbytes: an empty buffer counts 0 bytes everywhere. */
static size_t alloc_size(const twin__buffer *b) {
  return b->nbytes ? b->nbytes : 1;
}

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
  size_t n = alloc_size(b);
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
  size_t n = alloc_size(b);
  b->mem[TWIN__HOST] = twin__alloc_block(n);
  if (!b->mem[TWIN__HOST])
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "the host allocator returned NULL");
  if (b->zero_init)
    memset(b->mem[TWIN__HOST], 0, n);
  return TWIN_OK;
}

static twin_status allocate_device(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  size_t n = alloc_size(b);
  void *dev;
  twin_status s = ctx->ops->dev_alloc(ctx, n, &dev, &b->track);
  if (s == TWIN_OK && b->zero_init &&
      (s = ctx->ops->dev_zero(ctx, dev, 0, n, &b->track)) != TWIN_OK)
    ctx->ops->dev_free(ctx, dev, &b->track);
  if (s == TWIN_OK)
    b->mem[TWIN__DEVICE] = dev;
  return s;
}

/* Allocates one side (both, shared), zeroed when the initial content is zero. On failure
 * nothing is allocated, the budget is untouched, and the message says what failed. */
static twin_status allocate(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  twin__side_id counted = b->layout == TWIN__SHARED ? TWIN__HOST : which;
  if (!twin__budget_take(ctx, counted, b->nbytes))
    return twin__fail(out_of(counted), "the %s memory budget is reached", twin__side_name(counted));
  twin_status s = b->layout == TWIN__SHARED ? allocate_shared(b)
                  : which == TWIN__HOST     ? allocate_host(b)
                                            : allocate_device(b);
  if (s != TWIN_OK)
    twin__budget_give(ctx, counted, b->nbytes);
  return s;
}

/* ---- Explaining an allocation that failed ---- */

/* Bytes of `side` memory buffer x holds now (shared memory is host memory); 0 when its lock is
 * busy, since the caller holds another buffer's lock and may only try. */
static size_t held_on(twin__buffer *x, twin__side_id side) {
  if (pthread_mutex_trylock(&x->lock) != 0)
    return 0;
  bool held = x->mem[side] && !(side == TWIN__DEVICE && x->layout == TWIN__SHARED);
  pthread_mutex_unlock(&x->lock);
  return held ? x->nbytes : 0;
}

/* Appends the buffers holding the most memory of `side`, and where they were made, to the
 * current message; `self` (the one that failed to allocate) holds none of it. */
static void append_largest(twin_context *ctx, const twin__buffer *self, twin__side_id side) {
  enum { TOP = 3 };
  const twin__buffer *top[TOP + 1] = {NULL};
  size_t held[TOP + 1] = {0};
  pthread_mutex_lock(&ctx->lock);
  for (twin__buffer *x = ctx->buffers; x; x = x->next) {
    size_t n = x == self ? 0 : held_on(x, side);
    for (int i = 0; i < TOP && n; i++)
      if (!top[i] || n > held[i]) {
        memmove(&top[i + 1], &top[i], (TOP - 1 - i) * sizeof top[0]);
        memmove(&held[i + 1], &held[i], (TOP - 1 - i) * sizeof held[0]);
        top[i] = x;
        held[i] = n;
        break;
      }
  }
  twin__fail_append("; largest holders:");
  for (int i = 0; i < TOP && top[i]; i++)
    twin__fail_append(" %zu bytes made at %s:%d;", held[i], twin__site_file(top[i]->site),
                      top[i]->site.line);
  if (!top[0])
    twin__fail_append(" none");
  pthread_mutex_unlock(&ctx->lock);
}

/* Explains an allocation that failed even after trimming: the cause (the current message),
 * the budget, what the side holds now and the largest holders. */
static twin_status out_of_memory(twin__buffer *b, twin__side_id side) {
  twin_context *ctx = b->ctx;
  const char *name = twin__side_name(side);
  size_t limit = side == TWIN__HOST ? ctx->host_limit : ctx->device_limit;
  twin__fail_prefix(out_of(side),
                    "cannot allocate %zu bytes of %s memory even after freeing redundant "
                    "copies (",
                    alloc_size(b), name);
  twin__fail_append("); %s budget %zu bytes%s; %s memory held now %zu bytes", name, limit,
                    limit ? "" : " (none)", name, twin__live_bytes(ctx, side));
  append_largest(ctx, b, side);
  return out_of(side);
}

static bool is_out_of_memory(twin_status s) {
  return s == TWIN_ERR_OUT_OF_HOST_MEMORY || s == TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}

/* Allocates a side; when memory or the budget runs out, frees redundant copies of that kind
 * of memory elsewhere and retries once, then explains what holds memory. */
static twin_status materialise(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  twin_status s;
  if (which == TWIN__DEVICE || b->layout == TWIN__SHARED) {
    if ((s = twin__device_limit(ctx, alloc_size(b))) != TWIN_OK)
      return s; /* no trim can make this fit */
  }
  s = allocate(b, which);
  if (!is_out_of_memory(s))
    return s;
  /* The kind of memory that ran out (for a shared buffer, either) is what trim frees. */
  twin__side_id side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
  if (twin__trim(ctx, side == TWIN__HOST ? TWIN_TRIM_HOST : TWIN_TRIM_DEVICE) > 0) {
    s = allocate(b, which);
    if (!is_out_of_memory(s))
      return s;
    side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
  }
  return out_of_memory(b, side);
}

twin_status twin__buffer_ensure(twin__buffer *b, twin__side_id which) {
  return b->mem[which] ? TWIN_OK : materialise(b, which);
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
      twin__free_block(mem, alloc_size(b));
    twin__budget_give(ctx, TWIN__HOST, b->nbytes);
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

/* With b->lock held: side x of a two-copy buffer holds nothing the other side lacks, is not
 * lent memory and is not in use: freeing it loses nothing. */
static bool redundant(const twin__buffer *b, twin__side_id x) {
  return b->layout == TWIN__TWO_COPIES && !twin__is_external(b, x) && b->mem[x] && b->mem[!x] &&
         !twin__dirty_bytes(&b->dirty, 0, b->nbytes, x) &&
         !twin__accesses_open(b, x, TWIN_READ_WRITE);
}

/* With b->lock held, on a buffer with two copies: can side `x` be freed without losing data?
 * Explains why not. */
static twin_status evictable(const char *fn, const twin__buffer *b, twin__side_id x) {
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

/* With b->lock held and evictable(): frees side x; the other side now holds everything. */
static size_t evict(twin__buffer *b, twin__side_id x) {
  if (!b->mem[x])
    return 0;
  twin__buffer_release_side(b, x);
  twin__dirty_mark(&b->dirty, 0, b->nbytes, !x);
  return b->nbytes;
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
  for (twin__buffer *b = ctx->buffers; b; b = b->next)
    freed += trim_buffer(b, what);
  pthread_mutex_unlock(&ctx->lock);
  return freed;
}

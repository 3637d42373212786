/* Per-array residency, eviction and prefetch, and the context-wide trim of redundant copies. */
#include "../backends/backend.h"
#include "internal.h"

static const char *side_name(twin__side_id side) {
  return side == TWIN__HOST ? "host" : "device";
}

static twin_status to_side_id(const char *fn, twin_side side, twin__side_id *out) {
  if (side != TWIN_HOST && side != TWIN_DEVICE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: side is %d, not TWIN_HOST or TWIN_DEVICE", fn,
                      (int)side);
  *out = side == TWIN_HOST ? TWIN__HOST : TWIN__DEVICE;
  return TWIN_OK;
}

bool twin__one_copy(const twin__buffer *b) {
  return b->zero_copy || !b->ctx->ops->dev_alloc;
}

/* With b->lock held, on a buffer with two copies: can side `x` be freed without losing data?
 * Explains why not. */
static twin_status evictable(const char *fn, const twin__buffer *b, twin__side_id x) {
  if (twin__is_external(b, x))
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: the %s side is memory the application lent "
                      "twin (wrapped or imported); twin never frees it",
                      fn, side_name(x));
  if (!b->mem[x] || twin__evictable_quiet(b, x))
    return TWIN_OK; /* nothing to free, or a redundant copy */
  if (twin__accesses_open(b, x, TWIN_READ_WRITE)) {
    twin__fail(TWIN_ERR_BUSY, "%s: ", fn);
    twin__append_accesses(b, x, TWIN_READ_WRITE);
    return TWIN_ERR_BUSY;
  }
  return twin__fail(TWIN_ERR_BAD_STATE,
                    "%s: the %s copy holds data the %s does not have; "
                    "bring it over first (twin_array_prefetch)",
                    fn, side_name(x), side_name(!x));
}

/* With b->lock held and evictable(): frees side x; the other side now holds everything. */
static size_t evict(twin__buffer *b, twin__side_id x) {
  if (!b->mem[x])
    return 0;
  twin__buffer_release_side(b, x);
  twin__dirty_mark(&b->dirty, 0, b->nbytes, !x);
  return b->nbytes;
}

/* Checks the arguments of the per-array side calls. */
static twin_status check_side(const char *fn, const twin_array *a, twin_side side,
                              twin__side_id *x) {
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: a is NULL", fn);
  return to_side_id(fn, side, x);
}

twin_status twin_array_evict(twin_array *a, twin_side side) {
  static const char fn[] = "twin_array_evict";
  twin__side_id x = TWIN__HOST;
  twin__debug_check(a, fn);
  twin_status s = check_side(fn, a, side, &x);
  if (s != TWIN_OK)
    return s;
  twin__buffer *b = a->buf;
  if (twin__one_copy(b))
    return TWIN_OK; /* the one copy is all there is: nothing is redundant */
  pthread_mutex_lock(&b->lock);
  s = evictable(fn, b, x);
  if (s == TWIN_OK)
    evict(b, x);
  pthread_mutex_unlock(&b->lock);
  return s;
}

twin_status twin_array_prefetch(twin_array *a, twin_side side) {
  static const char fn[] = "twin_array_prefetch";
  twin__side_id x = TWIN__HOST;
  twin__debug_check(a, fn);
  twin_status s = check_side(fn, a, side, &x);
  if (s != TWIN_OK)
    return s;
  twin__buffer *b = a->buf;
  if (x == TWIN__DEVICE && !b->ctx->ops->dev_alloc)
    x = TWIN__HOST; /* a backend without device memory computes on its one host copy */
  size_t lo, hi;
  twin__array_extent(a, &lo, &hi);
  pthread_mutex_lock(&b->lock);
  if (twin__accesses_open(b, !x, TWIN_WRITE)) {
    s = twin__fail(TWIN_ERR_BUSY, "%s: ", fn);
    twin__append_accesses(b, !x, TWIN_WRITE);
  }
  if (s == TWIN_OK)
    s = twin__buffer_reserve(b);
  if (s == TWIN_OK)
    s = twin__buffer_sync(b, x, lo, hi);
  pthread_mutex_unlock(&b->lock);
  return s;
}

/* Where side x stands for the bytes [lo, hi). */
static twin_residency side_residency(const twin__buffer *b, twin__side_id x, size_t lo, size_t hi) {
  if (!b->mem[x])
    return TWIN_RESIDENT_NONE;
  if (b->zero_copy)
    return TWIN_RESIDENT_SHARED;
  return twin__dirty_bytes(&b->dirty, lo, hi, !x) ? TWIN_RESIDENT_STALE : TWIN_RESIDENT_VALID;
}

twin_status twin_array_residency(twin_array *a, twin_residency *host, twin_residency *device) {
  twin__debug_check(a, "twin_array_residency");
  if (!a || !host || !device)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_array_residency: %s is NULL",
                      !a      ? "a"
                      : !host ? "host"
                              : "device");
  size_t lo, hi;
  twin__array_extent(a, &lo, &hi);
  pthread_mutex_lock(&a->buf->lock);
  *host = side_residency(a->buf, TWIN__HOST, lo, hi);
  *device = side_residency(a->buf, TWIN__DEVICE, lo, hi);
  pthread_mutex_unlock(&a->buf->lock);
  return TWIN_OK;
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
    if ((what & flags[i]) && twin__evictable_quiet(b, sides[i]))
      freed += evict(b, sides[i]);
  pthread_mutex_unlock(&b->lock);
  return freed;
}

bool twin__evictable_quiet(const twin__buffer *b, twin__side_id x) {
  return !b->zero_copy && !twin__is_external(b, x) && b->ctx->ops->dev_alloc && b->mem[x] &&
         b->mem[!x] && !twin__dirty_bytes(&b->dirty, 0, b->nbytes, x) &&
         !twin__accesses_open(b, x, TWIN_READ_WRITE);
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

twin_status twin_context_trim(twin_context *ctx, unsigned what, size_t *freed_bytes) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_trim: ctx is NULL");
  if (!what || (what & ~(unsigned)(TWIN_TRIM_HOST | TWIN_TRIM_DEVICE)))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "twin_context_trim: what is 0x%x; use "
                      "TWIN_TRIM_HOST, TWIN_TRIM_DEVICE or both",
                      what);
  size_t freed = twin__trim(ctx, what);
  if (freed_bytes)
    *freed_bytes = freed;
  return TWIN_OK;
}

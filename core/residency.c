/* The public residency calls: evict and prefetch one array's extent, where its sides stand,
 * and the context-wide trim of redundant copies. They check their arguments and wrap the
 * storage layer, which frees and moves the memory (memory.c, coherence.c). */
#include "objects.h"

static twin_status to_side_id(const char *fn, twin_side side, twin__side_id *out) {
  if (side != TWIN_HOST && side != TWIN_DEVICE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: side is %d, not TWIN_HOST or TWIN_DEVICE", fn,
                      (int)side);
  *out = side == TWIN_HOST ? TWIN__HOST : TWIN__DEVICE;
  return TWIN_OK;
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
  return s == TWIN_OK ? twin__buffer_evict(a->buf, x, fn) : s;
}

twin_status twin_array_prefetch(twin_array *a, twin_side side) {
  static const char fn[] = "twin_array_prefetch";
  twin__side_id x = TWIN__HOST;
  twin__debug_check(a, fn);
  twin_status s = check_side(fn, a, side, &x);
  if (s != TWIN_OK)
    return s;
  size_t lo, hi;
  twin__array_extent(a, &lo, &hi);
  return twin__buffer_prefetch(a->buf, x, lo, hi, fn);
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
  twin__buffer_residency(a->buf, lo, hi, host, device);
  return TWIN_OK;
}

twin_status twin_context_trim(twin_context *ctx, unsigned what, size_t *freed_bytes) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_trim: ctx is NULL");
  const unsigned known = TWIN_TRIM_HOST | TWIN_TRIM_DEVICE | TWIN_TRIM_UNREACHABLE;
  if (!what || (what & ~known))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "twin_context_trim: what is 0x%x; use TWIN_TRIM_HOST, TWIN_TRIM_DEVICE, "
                      "TWIN_TRIM_UNREACHABLE or several of them",
                      what);
  size_t freed = what & ~TWIN_TRIM_UNREACHABLE ? twin__trim(ctx, what) : 0;
  if (what & TWIN_TRIM_UNREACHABLE)
    freed += twin__release_unreachable(ctx, NULL);
  if (freed_bytes)
    *freed_bytes = freed;
  return TWIN_OK;
}

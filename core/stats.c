/* Memory and transfer counters. Kept with relaxed atomics as events happen, so reading them
 * costs a snapshot and the hot paths never lock. */
#include "internal.h"

static void raise_peak(atomic_size_t *peak, size_t now) {
  size_t seen = atomic_load_explicit(peak, memory_order_relaxed);
  while (now > seen &&
         !atomic_compare_exchange_weak_explicit(peak, &seen, now, memory_order_relaxed,
                                                memory_order_relaxed))
    ;
}

static void add_live(atomic_size_t *live, atomic_size_t *peak, size_t nbytes) {
  size_t now = atomic_fetch_add_explicit(live, nbytes, memory_order_relaxed) + nbytes;
  raise_peak(peak, now);
}

void twin__count_host_alloc(twin_context *ctx, size_t nbytes) {
  add_live(&ctx->counters.host_bytes, &ctx->counters.peak_host_bytes, nbytes);
}

void twin__count_host_free(twin_context *ctx, size_t nbytes) {
  atomic_fetch_sub_explicit(&ctx->counters.host_bytes, nbytes, memory_order_relaxed);
}

void twin__count_device_alloc(twin_context *ctx, size_t nbytes) {
  add_live(&ctx->counters.device_bytes, &ctx->counters.peak_device_bytes, nbytes);
}

void twin__count_device_free(twin_context *ctx, size_t nbytes) {
  atomic_fetch_sub_explicit(&ctx->counters.device_bytes, nbytes, memory_order_relaxed);
}

void twin__count_transfer(twin_context *ctx, bool to_device, size_t nbytes) {
  twin__counters *c = &ctx->counters;
  atomic_fetch_add_explicit(to_device ? &c->bytes_to_device : &c->bytes_to_host, nbytes,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(to_device ? &c->transfers_to_device : &c->transfers_to_host, 1,
                            memory_order_relaxed);
}

#define LOAD(field) atomic_load_explicit(&c->field, memory_order_relaxed)

twin_status twin_context_stats(twin_context *ctx, twin_stats *out) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_stats: ctx is NULL");
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_stats: out is NULL");
  const twin__counters *c = &ctx->counters;
  *out = (twin_stats){
      .host_bytes = LOAD(host_bytes),
      .device_bytes = LOAD(device_bytes),
      .peak_host_bytes = LOAD(peak_host_bytes),
      .peak_device_bytes = LOAD(peak_device_bytes),
      .buffers = LOAD(buffers),
      .arrays = LOAD(arrays),
      .zero_copy_buffers = LOAD(zero_copy_buffers),
      .held_by_views_bytes = twin__held_by_views(ctx),
      .bytes_to_device = LOAD(bytes_to_device),
      .bytes_to_host = LOAD(bytes_to_host),
      .transfers_to_device = LOAD(transfers_to_device),
      .transfers_to_host = LOAD(transfers_to_host),
  };
  return TWIN_OK;
}

/* Memory and transfer counters, and the budgets. Kept with relaxed atomics as events happen
 * (the storage layer keeps the held-by-views bytes as views attach and detach), so reading
 * them costs a snapshot, never a walk over the buffers, and the hot paths never lock. */
#include "context.h"

static void raise_peak(atomic_size_t *peak, size_t now) {
  size_t seen = atomic_load_explicit(peak, memory_order_relaxed);
  while (now > seen && !atomic_compare_exchange_weak_explicit(
                           peak, &seen, now, memory_order_relaxed, memory_order_relaxed))
    ;
}

/* The live counter and peak of one side. Zero-copy memory is host memory. */
static atomic_size_t *live_of(twin_context *ctx, twin__side_id side) {
  return side == TWIN__HOST ? &ctx->counters.host_bytes : &ctx->counters.device_bytes;
}

bool twin__budget_take(twin_context *ctx, twin__side_id side, size_t n) {
  atomic_size_t *live = live_of(ctx, side);
  size_t limit = side == TWIN__HOST ? ctx->host_limit : ctx->device_limit;
  size_t now = atomic_load_explicit(live, memory_order_relaxed), next;
  do {
    if (twin__add_overflows(now, n, &next) || (limit && next > limit))
      return false;
  } while (!atomic_compare_exchange_weak_explicit(live, &now, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  raise_peak(side == TWIN__HOST ? &ctx->counters.peak_host_bytes : &ctx->counters.peak_device_bytes,
             next);
  return true;
}

void twin__budget_count(twin_context *ctx, twin__side_id side, size_t n) {
  size_t now = twin__count_add(live_of(ctx, side), n);
  raise_peak(side == TWIN__HOST ? &ctx->counters.peak_host_bytes : &ctx->counters.peak_device_bytes,
             now);
}

void twin__budget_give(twin_context *ctx, twin__side_id side, size_t n) {
  twin__count_sub(live_of(ctx, side), n);
}

void twin__count_transfer(twin_context *ctx, bool to_device, size_t nbytes) {
  twin__counters *c = &ctx->counters;
  atomic_fetch_add_explicit(to_device ? &c->bytes_to_device : &c->bytes_to_host, nbytes,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(to_device ? &c->transfers_to_device : &c->transfers_to_host, 1,
                            memory_order_relaxed);
}

void twin__count_pressure(atomic_uint_least64_t *counter, uint64_t n) {
  atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

#define LOAD(field) atomic_load_explicit(&c->field, memory_order_relaxed)

size_t twin__live_bytes(const twin_context *ctx, twin__side_id side) {
  const twin__counters *c = &ctx->counters;
  return side == TWIN__HOST ? LOAD(host_bytes) : LOAD(device_bytes);
}

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
      /* One copy: every buffer when the backend has no device memory, else the shared ones. */
      .zero_copy_buffers = ctx->layout == TWIN__HOST_ONLY ? LOAD(buffers) : LOAD(shared_buffers),
      .held_by_views_bytes = LOAD(held_by_views_bytes),
      .bytes_to_device = LOAD(bytes_to_device),
      .bytes_to_host = LOAD(bytes_to_host),
      .transfers_to_device = LOAD(transfers_to_device),
      .transfers_to_host = LOAD(transfers_to_host),
      .spilled_bytes = LOAD(spilled_bytes),
      .spill_count = LOAD(spill_count),
      .spill_freed_bytes = LOAD(spill_freed_bytes),
      .pressure_events = LOAD(pressure_events),
      .pressure_failures = LOAD(pressure_failures),
      .pressure_trimmed_bytes = LOAD(pressure_trimmed_bytes),
      .pressure_released_bytes = LOAD(pressure_released_bytes),
  };
  return TWIN_OK;
}

twin_status twin_context_stats_reset(twin_context *ctx) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_stats_reset: ctx is NULL");
  twin__counters *c = &ctx->counters;
  atomic_store_explicit(&c->peak_host_bytes, LOAD(host_bytes), memory_order_relaxed);
  atomic_store_explicit(&c->peak_device_bytes, LOAD(device_bytes), memory_order_relaxed);
  atomic_store_explicit(&c->bytes_to_device, 0, memory_order_relaxed);
  atomic_store_explicit(&c->bytes_to_host, 0, memory_order_relaxed);
  atomic_store_explicit(&c->transfers_to_device, 0, memory_order_relaxed);
  atomic_store_explicit(&c->transfers_to_host, 0, memory_order_relaxed);
  atomic_uint_least64_t *pressure[] = {
      &c->spilled_bytes,           &c->spill_count,       &c->spill_freed_bytes,
      &c->pressure_events,         &c->pressure_failures, &c->pressure_trimmed_bytes,
      &c->pressure_released_bytes,
  };
  for (size_t i = 0; i < sizeof pressure / sizeof pressure[0]; i++)
    atomic_store_explicit(pressure[i], 0, memory_order_relaxed);
  return TWIN_OK;
}

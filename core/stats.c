/* Memory and transfer counters, and the budgets. Kept with relaxed atomics as events happen
 * (the storage layer keeps the held-by-views bytes as views attach and detach, and the live
 * objects in the slot of the thread that made each), so reading them costs a snapshot, never
 * a walk over the buffers, and the hot paths never lock. */
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

typedef struct live {
  size_t buffers, arrays, two_copy_buffers;
} live;

/* The live objects counted in every slot of threads, summed. */
static live live_sum(const twin_context *ctx) {
  live sum = {0, 0, 0};
  for (int i = 0; i < TWIN__SLOTS; i++) {
    const twin__live_counts *c = &ctx->counters.live[i];
    sum.buffers += LOAD(buffers);
    sum.arrays += LOAD(arrays);
    sum.two_copy_buffers += LOAD(two_copy_buffers);
  }
  return sum;
}

size_t twin__live_buffers(const twin_context *ctx) {
  return live_sum(ctx).buffers;
}

twin_status twin_context_stats(twin_context *ctx, twin_stats *out) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_stats: ctx is NULL");
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_stats: out is NULL");
  const twin__counters *c = &ctx->counters;
  live n = live_sum(ctx);
  *out = (twin_stats){
      .host_bytes = LOAD(host_bytes),
      .device_bytes = LOAD(device_bytes),
      .peak_host_bytes = LOAD(peak_host_bytes),
      .peak_device_bytes = LOAD(peak_device_bytes),
      .buffers = n.buffers,
      .arrays = n.arrays,
      /* One copy: every buffer but the two-copy ones (while other threads make and drop
       * buffers, the two sums may mix instants: never below 0). */
      .zero_copy_buffers = n.buffers > n.two_copy_buffers ? n.buffers - n.two_copy_buffers : 0,
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

/* Spilling, the second step of the pressure order: when device memory runs out, device copies
 * of other buffers go to the host, least recently used first. A spill writes back exactly the
 * ranges the dirty map says are newer on the device, frees the device copy, and leaves the map
 * saying the host is newer wherever the device copy, made again at the buffer's next device
 * use, must be brought up to date. Also here: what pins a device copy (an open device access, a
 * DLPack kDLOpenCL export, lent memory) and the command in flight that makes a copy the last
 * choice, which the out-of-memory explanation and the report both tell.
 *
 * Like trim, the step holds the context's lock (so no buffer leaves the list under it) and only
 * tries each buffer's lock, since the caller holds its own buffer's, mid-allocation; buffers
 * are made and released by other threads only after it. Each run of the step tries a buffer
 * once (spill_epoch), so a buffer that cannot take its write-back is not chosen again in the
 * same run. */
#include "storage.h"

/* ---- What pins a device copy ---- */

twin_pin twin__buffer_pin(twin__buffer *b, const twin__access **by) {
  twin_context *ctx = b->ctx;
  *by = NULL;
  if (b->layout != TWIN__TWO_COPIES || !b->mem[TWIN__DEVICE])
    return TWIN_PIN_NONE;
  if (twin__is_external(b, TWIN__DEVICE))
    return TWIN_PIN_LENT;
  for (const twin__access *x = b->accesses; x; x = x->next)
    if (x->side == TWIN__DEVICE) {
      *by = x;
      return x->unowned ? TWIN_PIN_EXPORT : TWIN_PIN_ACCESS;
    }
  if (ctx->ops->dev_busy && ctx->ops->dev_busy(ctx, &b->track))
    return TWIN_PIN_IN_FLIGHT;
  return TWIN_PIN_NONE;
}

void twin__pin_text(char *buf, size_t cap, twin_pin pin, const twin__access *by) {
  switch (pin) {
  case TWIN_PIN_LENT:
    twin__snappend(buf, cap, "its device memory is the application's (lent); twin never frees it");
    break;
  case TWIN_PIN_EXPORT:
  case TWIN_PIN_ACCESS:
    twin__record_blocker(buf, cap, by, NULL);
    break;
  case TWIN_PIN_IN_FLIGHT:
    twin__snappend(buf, cap, "a command queued on it has not finished");
    break;
  case TWIN_PIN_NONE:
    break;
  }
}

void twin__buffer_spill_state(twin__buffer *b, twin_spill_state *state, twin_pin *pin,
                              twin__site *where, const char **call) {
  const twin__access *by;
  pthread_mutex_lock(&b->lock);
  bool present = b->layout == TWIN__TWO_COPIES && b->mem[TWIN__DEVICE];
  *state = present      ? TWIN_SPILL_STATE_PRESENT
           : b->spilled ? TWIN_SPILL_STATE_SPILLED
                        : TWIN_SPILL_STATE_NONE;
  *pin = twin__buffer_pin(b, &by);
  *where = by ? by->site : *pin == TWIN_PIN_LENT ? b->site : (twin__site){NULL, 0};
  *call = by ? by->fn : NULL;
  pthread_mutex_unlock(&b->lock);
}

/* ---- Choosing ---- */

void twin__spill_begin(twin_context *ctx, twin__spill_run *run) {
  *run = (twin__spill_run){0};
  run->epoch = atomic_fetch_add_explicit(&ctx->spill_epoch, 1, memory_order_relaxed) + 1;
}

/* With x->lock held: can this run spill x, and has it a command in flight? A buffer whose last
 * reference went waits for the context's lock to leave the list: not worth a write-back. */
static bool spillable(twin__buffer *x, uint64_t epoch, bool *in_flight) {
  const twin__access *by;
  if (x->layout != TWIN__TWO_COPIES || !x->mem[TWIN__DEVICE] || !x->nbytes ||
      x->spill_epoch == epoch || atomic_load_explicit(&x->refs, memory_order_relaxed) == 0)
    return false;
  twin_pin pin = twin__buffer_pin(x, &by);
  *in_flight = pin == TWIN_PIN_IN_FLIGHT;
  return pin == TWIN_PIN_NONE || pin == TWIN_PIN_IN_FLIGHT;
}

/* Is x (in flight or not) a better choice than the best so far? Idle copies come first, since
 * spilling one with a command in flight waits for that command; then the least recently used. */
static bool better(const twin__buffer *x, bool x_busy, const twin__buffer *best, bool best_busy) {
  if (!best)
    return true;
  if (x_busy != best_busy)
    return !x_busy;
  return x->used < best->used;
}

/* With ctx->lock held: the device copy this run spills next, locked; NULL when none is left. */
static twin__buffer *choose(twin_context *ctx, const twin__buffer *self, uint64_t epoch) {
  twin__buffer *best = NULL;
  bool best_busy = false, busy = false;
  for (twin__buffer *x = twin__buffers_first(ctx); x; x = x->next) {
    if (x == self || pthread_mutex_trylock(&x->lock) != 0)
      continue; /* the caller's own, or one another thread works on now */
    if (spillable(x, epoch, &busy) && better(x, busy, best, best_busy)) {
      if (best)
        pthread_mutex_unlock(&best->lock);
      best = x;
      best_busy = busy;
    } else {
      pthread_mutex_unlock(&x->lock);
    }
  }
  return best;
}

/* ---- Spilling one buffer ---- */

/* With x->lock held: copies the ranges newer on the device to the host, allocating the host
 * copy when there is none (within the host budget), and marks them clean. *map gets the map as
 * it was. On failure the buffer is as it was, but for ranges already copied, which are clean:
 * both sides hold them. */
static twin_status write_back(twin__buffer *x, twin__dirty *map, size_t *written) {
  twin_status s = TWIN_OK;
  bool had_host = x->mem[TWIN__HOST] != NULL;
  twin__dirty_copy(map, &x->dirty);
  if (!had_host && twin__dirty_bytes(map, 0, x->nbytes, TWIN__DEVICE))
    s = twin__buffer_allocate(x, TWIN__HOST);
  for (unsigned i = 0; i < x->dirty.count && s == TWIN_OK;) {
    twin__segment seg = x->dirty.s[i];
    if (seg.newer != TWIN__DEVICE) {
      i++;
      continue;
    }
    s = twin__buffer_move_pattern(x, TWIN__HOST, &seg.p);
    if (s == TWIN_OK) {
      twin__dirty_remove(&x->dirty, i); /* both sides agree there now */
      *written += twin__pattern_bytes(&seg.p);
    }
  }
  if (s != TWIN_OK && !had_host && !*written)
    twin__buffer_release_side(x, TWIN__HOST); /* made for nothing */
  return s;
}

/* With x->lock held, its device copy gone: the host copy is newer wherever a device copy made
 * again must be brought up to date. A host copy that existed holds data everywhere (the device
 * copy's initial content no longer matches it anywhere it was written), so all of it; a host
 * copy made for the write-back holds the initial content but for the ranges written back,
 * which no segment holds now (they were newer on the device), so each fits as it was. */
static void mark_spilled(twin__buffer *x, const twin__dirty *map, bool had_host) {
  if (had_host) {
    twin__dirty_mark(&x->dirty, 0, x->nbytes, TWIN__HOST);
    return;
  }
  for (unsigned i = 0; i < map->count; i++)
    if (map->s[i].newer == TWIN__DEVICE)
      twin__dirty_add(&x->dirty, &map->s[i].p, TWIN__HOST);
}

/* Bytes written back count even when the spill then stops (both sides hold them now). */
static void count_spill(twin_context *ctx, size_t written, unsigned copies, size_t freed) {
  twin__counters *c = &ctx->counters;
  twin__count_pressure(&c->spilled_bytes, written);
  twin__count_pressure(&c->spill_count, copies);
  twin__count_pressure(&c->spill_freed_bytes, freed);
}

/* With x->lock held: spills x; returns the device bytes freed (0 when x keeps its copy, its
 * reason in spill_refused). Freeing the device copy waits for a command still in flight. */
static size_t spill_one(twin__buffer *x, twin__spill_run *run) {
  twin__dirty map;
  size_t written = 0;
  bool had_host = x->mem[TWIN__HOST] != NULL;
  x->spill_epoch = run->epoch;
  x->spill_refused = write_back(x, &map, &written);
  run->written += written;
  if (x->spill_refused != TWIN_OK) {
    count_spill(x->ctx, written, 0, 0);
    return 0;
  }
  twin__buffer_release_side(x, TWIN__DEVICE);
  mark_spilled(x, &map, had_host);
  x->spilled = true;
  count_spill(x->ctx, written, 1, x->nbytes);
  run->copies++;
  run->freed += x->nbytes;
  return x->nbytes;
}

size_t twin__spill(twin_context *ctx, const twin__buffer *self, size_t want, twin__spill_run *run) {
  size_t freed = 0;
  twin__buffer *x;
  pthread_mutex_lock(&ctx->lock);
  while (freed < want && (x = choose(ctx, self, run->epoch)) != NULL) {
    freed += spill_one(x, run);
    pthread_mutex_unlock(&x->lock);
  }
  pthread_mutex_unlock(&ctx->lock);
  return freed;
}

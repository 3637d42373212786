/* Allocation under memory pressure: the one order twin runs before any out-of-memory error.
 * When an allocation finds its budget reached, or the device or the host allocator refuses it:
 *   1. trim: free the redundant copies of the kind of memory that ran out (memory.c);
 *   2. spill: for the device copy of a two-copy buffer, unless spilling is off, write other
 *      buffers' device copies back to the host and free them, least recently used first, until
 *      the allocation fits (spill.c);
 *   3. release the host pages no live view can reach (memory.c);
 *   4. retry: after each step that freed something, the allocation is tried again, and the
 *      first success ends the order.
 * Each step is counted in the statistics. When the allocation still fails, the message names
 * the size asked and the cause, what each step freed, the budget, what is held, and the largest
 * holders with where each was made and why it could not move. */
#include <string.h>

#include "storage.h"

static twin_status out_of(twin__side_id side) {
  return side == TWIN__HOST ? TWIN_ERR_OUT_OF_HOST_MEMORY : TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}

/* One run of the order for one allocation: the kind of memory that ran out at the last try,
 * that try's message, and what each step freed. */
typedef struct pressure {
  twin__buffer *b;
  twin__side_id which; /* the side being allocated */
  twin__side_id side;  /* the memory that ran out (shared buffers: host memory) */
  twin__kept_error cause;
  size_t trimmed, released;
  bool spilled; /* the spill step ran */
  twin__spill_run spill;
} pressure;

/* Tries the allocation again; a failure becomes the cause the message gives. */
static twin_status retry(pressure *p) {
  twin_status s = twin__buffer_allocate(p->b, p->which);
  if (twin__is_out_of_memory(s)) {
    p->side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
    twin__error_keep(s, &p->cause);
  }
  return s;
}

/* Step 1: the redundant copies of the memory that ran out. */
static twin_status trim_step(pressure *p) {
  twin_context *ctx = p->b->ctx;
  p->trimmed = twin__trim(ctx, p->side == TWIN__HOST ? TWIN_TRIM_HOST : TWIN_TRIM_DEVICE);
  twin__count_pressure(&ctx->counters.pressure_trimmed_bytes, p->trimmed);
  return p->trimmed ? retry(p) : p->cause.status;
}

/* Does step 2 apply? Only device copies of two-copy buffers are spilled, to make room for one;
 * a shared buffer's one allocation is host memory, which spilling would not free. */
static bool spills(const pressure *p) {
  const twin__buffer *b = p->b;
  return b->ctx->spill && p->which == TWIN__DEVICE && b->layout == TWIN__TWO_COPIES;
}

/* The device memory to free for the allocation to fit: what the budget lacks, else (the device
 * or the host allocator refused) the allocation's size, and again after each retry. */
static size_t room_needed(const pressure *p) {
  const twin_context *ctx = p->b->ctx;
  size_t live = twin__live_bytes(ctx, TWIN__DEVICE), n = p->b->nbytes, after;
  if (ctx->device_limit && !twin__add_overflows(live, n, &after) && after > ctx->device_limit)
    return after - ctx->device_limit;
  return twin__alloc_size(p->b);
}

/* Step 2: spills until the allocation fits or nothing is left to spill. */
static twin_status spill_step(pressure *p) {
  twin_context *ctx = p->b->ctx;
  twin_status s = p->cause.status;
  p->spilled = true;
  twin__spill_begin(ctx, &p->spill);
  while (twin__is_out_of_memory(s) && twin__spill(ctx, p->b, room_needed(p), &p->spill) > 0)
    s = retry(p);
  return s;
}

/* Step 3: host pages no live view reaches. */
static twin_status release_step(pressure *p) {
  twin_context *ctx = p->b->ctx;
  p->released = twin__release_unreachable(ctx, NULL);
  twin__count_pressure(&ctx->counters.pressure_released_bytes, p->released);
  return p->released ? retry(p) : p->cause.status;
}

/* ---- Explaining an allocation that still failed ---- */

/* With x->lock held: why x's memory of `side` stays, appended to why (cap bytes); nothing when
 * no reason is known. */
static void why_device_stays(twin__buffer *x, const pressure *p, char *why, size_t cap) {
  const twin__access *by;
  twin_pin pin = twin__buffer_pin(x, &by);
  if (pin != TWIN_PIN_NONE && pin != TWIN_PIN_IN_FLIGHT)
    twin__pin_text(why, cap, pin, by);
  else if (!x->ctx->spill)
    twin__snappend(why, cap, "spilling is off: TWIN_SPILL=off or twin_context_options.spill");
  else if (p->spilled && x->spill_epoch == p->spill.epoch &&
           x->spill_refused == TWIN_ERR_OUT_OF_HOST_MEMORY)
    twin__snappend(why, cap, "the host cannot take its %zu-byte write-back",
                   twin__dirty_bytes(&x->dirty, 0, x->nbytes, TWIN__DEVICE));
  else if (p->spilled && x->spill_epoch == p->spill.epoch && x->spill_refused != TWIN_OK)
    twin__snappend(why, cap, "its write-back failed (%s)", twin_status_name(x->spill_refused));
  else
    twin__pin_text(why, cap, pin, by);
}

static void why_host_stays(twin__buffer *x, char *why, size_t cap) {
  if (twin__is_external(x, TWIN__HOST))
    twin__snappend(why, cap, "its host memory is the application's (lent); twin never frees it");
  else if (twin__accesses_open(x, TWIN__HOST, TWIN_READ_WRITE))
    for (const twin__access *a = x->accesses; a; a = a->next)
      if (a->side == TWIN__HOST) {
        twin__record_blocker(why, cap, a, NULL);
        break;
      }
  if (why[0])
    return;
  if (x->layout != TWIN__TWO_COPIES || !x->mem[TWIN__DEVICE])
    twin__snappend(why, cap, "its only copy");
  else if (twin__dirty_bytes(&x->dirty, 0, x->nbytes, TWIN__HOST))
    twin__snappend(why, cap, "holds data its device copy lacks");
}

/* Bytes of `side` memory buffer x holds now (shared memory is host memory); 0 when its lock is
 * busy, since the caller holds another buffer's lock and may only try. With ctx->lock held. */
static size_t held_on(twin__buffer *x, twin__side_id side) {
  if (pthread_mutex_trylock(&x->lock) != 0)
    return 0;
  bool held = x->mem[side] && !(side == TWIN__DEVICE && x->layout == TWIN__SHARED);
  pthread_mutex_unlock(&x->lock);
  return held ? x->nbytes : 0;
}

/* With ctx->lock held: appends " N bytes made at FILE:LINE (why);" for holder x. */
static void append_holder(twin__buffer *x, size_t held, const pressure *p) {
  char why[TWIN__CAUSE_MAX] = "";
  if (pthread_mutex_trylock(&x->lock) == 0) {
    if (p->side == TWIN__DEVICE)
      why_device_stays(x, p, why, sizeof why);
    else
      why_host_stays(x, why, sizeof why);
    pthread_mutex_unlock(&x->lock);
  } else {
    twin__snappend(why, sizeof why, "another thread is working on it");
  }
  twin__fail_append(" %zu bytes made at %s:%d%s%s%s;", held, twin__site_file(x->site), x->site.line,
                    why[0] ? " (" : "", why, why[0] ? ")" : "");
}

/* Appends the buffers holding the most memory of the side that ran out, where they were made
 * and why each stays; p->b (the one that failed to allocate) holds none of it. */
static void append_largest(twin_context *ctx, const pressure *p) {
  enum { TOP = 3 };
  twin__buffer *top[TOP + 1] = {NULL};
  size_t held[TOP + 1] = {0};
  pthread_mutex_lock(&ctx->lock);
  for (twin__buffer *x = twin__buffers_first(ctx); x; x = x->next) {
    size_t n = x == p->b ? 0 : held_on(x, p->side);
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
    append_holder(top[i], held[i], p);
  if (!top[0])
    twin__fail_append(" none");
  pthread_mutex_unlock(&ctx->lock);
}

/* What step 2 did, or why it did not run. */
static void append_spill(const pressure *p) {
  if (p->spilled)
    twin__fail_append("spilled %u device copies (%zu bytes freed, %zu bytes written back)",
                      p->spill.copies, p->spill.freed, p->spill.written);
  else if (p->b->layout != TWIN__TWO_COPIES)
    twin__fail_append("spilled nothing (buffers here are one copy)");
  else if (p->which == TWIN__HOST)
    twin__fail_append("spilled nothing (spilling frees device memory only)");
  else
    twin__fail_append("spilled nothing (spilling is off)");
}

/* Explains the allocation that failed after the whole order: the cause (the last try's
 * message), what each step freed, the budget, what is held now and the largest holders. */
static twin_status out_of_memory(pressure *p) {
  twin_context *ctx = p->b->ctx;
  const char *name = twin__side_name(p->side);
  size_t limit = p->side == TWIN__HOST ? ctx->host_limit : ctx->device_limit;
  twin__count_pressure(&ctx->counters.pressure_failures, 1);
  twin__error_restore(&p->cause);
  twin__fail_prefix(out_of(p->side), "cannot allocate %zu bytes of %s memory (",
                    twin__alloc_size(p->b), name);
  twin__fail_append("); under pressure twin trimmed redundant copies (%zu bytes freed), ",
                    p->trimmed);
  append_spill(p);
  twin__fail_append(", released unreachable host pages (%zu bytes) and retried", p->released);
  twin__fail_append("; %s budget %zu bytes%s; %s memory held now %zu bytes", name, limit,
                    limit ? "" : " (none)", name, twin__live_bytes(ctx, p->side));
  append_largest(ctx, p);
  return out_of(p->side);
}

/* ---- The order ---- */

static twin_status under_pressure(twin__buffer *b, twin__side_id which, twin_status s) {
  pressure p = {.b = b, .which = which};
  p.side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
  twin__error_keep(s, &p.cause);
  twin__count_pressure(&b->ctx->counters.pressure_events, 1);
  s = trim_step(&p);
  if (twin__is_out_of_memory(s) && spills(&p))
    s = spill_step(&p);
  if (twin__is_out_of_memory(s))
    s = release_step(&p);
  return twin__is_out_of_memory(s) ? out_of_memory(&p) : s;
}

/* Allocates a side; when memory or the budget runs out, runs the pressure order. */
static twin_status materialise(twin__buffer *b, twin__side_id which) {
  twin_status s;
  if (which == TWIN__DEVICE || b->layout == TWIN__SHARED) {
    if ((s = twin__device_limit(b->ctx, twin__alloc_size(b))) != TWIN_OK)
      return s; /* nothing freed could make this fit */
  }
  s = twin__buffer_allocate(b, which);
  return twin__is_out_of_memory(s) ? under_pressure(b, which, s) : s;
}

twin_status twin__buffer_ensure(twin__buffer *b, twin__side_id which) {
  return b->mem[which] ? TWIN_OK : materialise(b, which);
}

/* Buffers: the storage behind arrays, released with both of its memories in the call that
 * drops the last array viewing it, and the coherence between its host and device sides. */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

/* A side's allocation is at least 1 byte (a device handle needs one), while the statistics
 * and budgets count nbytes: an empty buffer counts 0 bytes everywhere. */
static size_t alloc_size(const twin__buffer *b) {
  return b->nbytes ? b->nbytes : 1;
}

static bool has_device(const twin__buffer *b) {
  return b->ctx->ops->dev_alloc != NULL;
}

/* Links b into its context's list of live buffers, which the report and trim walk. */
static void link_buffer(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  pthread_mutex_lock(&ctx->lock);
  b->next = ctx->buffers;
  if (ctx->buffers)
    ctx->buffers->prev = b;
  ctx->buffers = b;
  pthread_mutex_unlock(&ctx->lock);
}

static void unlink_buffer(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  pthread_mutex_lock(&ctx->lock);
  if (b->prev)
    b->prev->next = b->next;
  else
    ctx->buffers = b->next;
  if (b->next)
    b->next->prev = b->prev;
  pthread_mutex_unlock(&ctx->lock);
}

static twin_status create(twin_context *ctx, size_t nbytes, bool zero_init, bool zero_copy,
                          twin__site site, twin__buffer **out) {
  twin__buffer *b = twin__malloc(sizeof *b);
  if (b)
    memset(b, 0, offsetof(twin__buffer, dirty.s));
  if (!b)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for a buffer object");
  if (pthread_mutex_init(&b->lock, NULL) != 0) {
    twin__free(b);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a buffer");
  }
  if (pthread_cond_init(&b->access_ended, NULL) != 0) {
    pthread_mutex_destroy(&b->lock);
    twin__free(b);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_cond_init failed for a buffer");
  }
  atomic_flag_clear(&b->views_lock);
  atomic_init(&b->refs, 1);
  b->ctx = twin__context_hold(ctx);
  b->nbytes = nbytes;
  b->zero_init = zero_init;
  b->zero_copy = zero_copy;
  b->site = site;
  link_buffer(b);
  atomic_fetch_add_explicit(&ctx->counters.buffers, 1, memory_order_relaxed);
  if (b->zero_copy)
    atomic_fetch_add_explicit(&ctx->counters.zero_copy_buffers, 1, memory_order_relaxed);
  *out = b;
  return TWIN_OK;
}

twin_status twin__buffer_new(twin_context *ctx, size_t nbytes, bool zero_init, twin__site site,
                             twin__buffer **out) {
  return create(ctx, nbytes, zero_init, ctx->zero_copy, site, out);
}

twin_status twin__buffer_new_external(twin_context *ctx, size_t nbytes, twin__side_id side,
                                      void *mem, void (*release)(void *), void *user,
                                      twin__site site, twin__buffer **out) {
  /* Adopted host memory is the shared block where the device can use it in place; an empty
   * block is not wrapped, since a device handle needs at least one byte. */
  bool shared = side == TWIN__HOST && ctx->zero_copy && ctx->ops->dev_wrap_external && nbytes;
  twin__buffer *b;
  twin_status s = create(ctx, nbytes, false, shared, site, &b);
  if (s != TWIN_OK)
    return s;
  /* The device handle over a shared block gives the memory back itself (release runs once the
   * runtime is done with it, see dev_wrap_external); otherwise the last unref does. */
  if (shared) {
    s = ctx->ops->dev_wrap_external(ctx, mem, nbytes, release, user, &b->mem[TWIN__DEVICE],
                                    &b->track);
    if (s != TWIN_OK) {
      twin__buffer_unref(b); /* holds nothing yet */
      return s;
    }
  }
  b->mem[side] = mem;
  b->external = (unsigned char)(1u << side);
  b->external_release = shared ? NULL : release;
  b->external_user = user;
  twin__budget_count(ctx, shared ? TWIN__HOST : side, nbytes);
  /* The lent side holds the data; the other side, made later, must fetch it. */
  if (!shared && has_device(b))
    twin__dirty_mark(&b->dirty, 0, nbytes, side);
  *out = b;
  return TWIN_OK;
}

/* Before the sides of a buffer with lent memory are released: brings the array's final
 * contents into the lent side (a failure there cannot be reported; the side then keeps what
 * it had). A zero-copy block is mapped once, since a device may cache a CL_MEM_USE_HOST_PTR
 * block and a map makes the block current. */
static void give_back(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  void *dev = b->mem[TWIN__DEVICE], *p;
  if (!b->external || !dev)
    return;
  if (b->zero_copy) {
    if (ctx->ops->map(ctx, dev, 0, b->nbytes, TWIN_READ, false, &p) == TWIN_OK)
      ctx->ops->unmap(ctx, dev, p, &b->track);
    return;
  }
  twin__side_id x = twin__is_external(b, TWIN__HOST) ? TWIN__HOST : TWIN__DEVICE;
  pthread_mutex_lock(&b->lock);
  if (b->mem[!x] && twin__dirty_bytes(&b->dirty, 0, b->nbytes, !x))
    twin__buffer_sync(b, x, 0, b->nbytes);
  pthread_mutex_unlock(&b->lock);
}

/* After both sides of a buffer are released, and so after the device is done with them: gives
 * adopted memory back to the application. (Host memory a zero-copy handle wrapped went back
 * already, as the handle was destroyed.) */
static void release_external(twin__buffer *b) {
  if (b->external_release)
    b->external_release(b->external_user);
}

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

twin__buffer *twin__buffer_ref(twin__buffer *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

/* Frees one side's memory, if any. A zero-copy buffer's host block belongs to its device
 * handle, which frees it once the runtime is done with it. */
void twin__buffer_release_side(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  void *mem = b->mem[which];
  if (!mem)
    return;
  if (which == TWIN__HOST) {
    if (!b->zero_copy && !twin__is_external(b, TWIN__HOST))
      twin__free(mem);
    twin__budget_give(ctx, TWIN__HOST, b->nbytes);
  } else {
    /* Waits for the buffer's commands and the memory's destruction: counted off after. */
    if (!ctx->ops->dev_free(ctx, mem, &b->track))
      warn_retained(b);
    if (!b->zero_copy)
      twin__budget_give(ctx, TWIN__DEVICE, b->nbytes);
  }
  b->mem[which] = NULL;
}

void twin__buffer_fence_locked(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  bool open = twin__accesses_open(b, TWIN__DEVICE, TWIN_READ_WRITE) > 0;
  if (ctx->ops->mark && b->mem[TWIN__DEVICE] && open)
    ctx->ops->mark(ctx, &b->track);
}

void twin__buffer_fence(twin__buffer *b) {
  pthread_mutex_lock(&b->lock);
  twin__buffer_fence_locked(b);
  pthread_mutex_unlock(&b->lock);
}

void twin__buffer_unref(twin__buffer *b) {
  if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  twin_context *ctx = b->ctx;
  unlink_buffer(b);
  give_back(b);
  twin__buffer_release_side(b, TWIN__DEVICE); /* first: a zero-copy handle owns the host block */
  twin__buffer_release_side(b, TWIN__HOST);
  release_external(b);
  pthread_cond_destroy(&b->access_ended);
  pthread_mutex_destroy(&b->lock);
  atomic_fetch_sub_explicit(&ctx->counters.buffers, 1, memory_order_relaxed);
  if (b->zero_copy)
    atomic_fetch_sub_explicit(&ctx->counters.zero_copy_buffers, 1, memory_order_relaxed);
  twin__free(b);
  twin__context_release(ctx);
}

/* The one allocation of a zero-copy buffer: a host block the device uses in place. It counts
 * as host memory. */
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
    twin__free(host);
    return s;
  }
  b->mem[TWIN__HOST] = host;
  return TWIN_OK;
}

/* Allocates one side (both, zero-copy), zeroed when the initial content is zero. On failure
 * nothing is allocated, the budget is untouched, and the message says what failed. */
static twin_status allocate(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  size_t n = alloc_size(b);
  twin__side_id counted = b->zero_copy ? TWIN__HOST : which;
  if (!twin__budget_take(ctx, counted, b->nbytes))
    return twin__fail(counted == TWIN__HOST ? TWIN_ERR_OUT_OF_HOST_MEMORY
                                            : TWIN_ERR_OUT_OF_DEVICE_MEMORY,
                      "the %s memory budget is reached", counted == TWIN__HOST ? "host" : "device");
  twin_status s = TWIN_OK;
  if (b->zero_copy) {
    s = allocate_shared(b);
  } else if (which == TWIN__HOST) {
    b->mem[TWIN__HOST] = twin__alloc_block(n);
    if (!b->mem[TWIN__HOST])
      s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "the host allocator returned NULL");
    else if (b->zero_init)
      memset(b->mem[TWIN__HOST], 0, n);
  } else {
    void *dev;
    s = ctx->ops->dev_alloc(ctx, n, &dev, &b->track);
    if (s == TWIN_OK && b->zero_init &&
        (s = ctx->ops->dev_zero(ctx, dev, 0, n, &b->track)) != TWIN_OK)
      ctx->ops->dev_free(ctx, dev, &b->track);
    if (s == TWIN_OK)
      b->mem[TWIN__DEVICE] = dev;
  }
  if (s != TWIN_OK)
    twin__budget_give(ctx, counted, b->nbytes);
  return s;
}

/* Bytes of `side` memory buffer x holds now (zero-copy memory is host memory); 0 when its
 * lock is busy, since the caller holds another buffer's lock and may only try. */
static size_t held_on(twin__buffer *x, twin__side_id side) {
  if (pthread_mutex_trylock(&x->lock) != 0)
    return 0;
  bool held = x->mem[side] && !(side == TWIN__DEVICE && x->zero_copy);
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
    twin__fail_append(" %zu bytes made at %s:%d;", held[i],
                      top[i]->site.file ? top[i]->site.file : "(unknown)", top[i]->site.line);
  if (!top[0])
    twin__fail_append(" none");
  pthread_mutex_unlock(&ctx->lock);
}

/* Explains an allocation that failed even after trimming. */
static twin_status out_of_memory(twin__buffer *b, twin__side_id side) {
  twin_context *ctx = b->ctx;
  char cause[TWIN__CAUSE_MAX];
  snprintf(cause, sizeof cause, "%s", twin_last_error());
  size_t limit = side == TWIN__HOST ? ctx->host_limit : ctx->device_limit;
  twin_stats st;
  twin_context_stats(ctx, &st);
  twin__fail(side == TWIN__HOST ? TWIN_ERR_OUT_OF_HOST_MEMORY : TWIN_ERR_OUT_OF_DEVICE_MEMORY,
             "cannot allocate %zu bytes of %s memory even after freeing redundant copies (%s); "
             "%s budget %zu bytes%s; %s memory held now %zu bytes",
             alloc_size(b), side == TWIN__HOST ? "host" : "device", cause,
             side == TWIN__HOST ? "host" : "device", limit, limit ? "" : " (none)",
             side == TWIN__HOST ? "host" : "device",
             side == TWIN__HOST ? st.host_bytes : st.device_bytes);
  append_largest(ctx, b, side);
  return side == TWIN__HOST ? TWIN_ERR_OUT_OF_HOST_MEMORY : TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}

static bool is_out_of_memory(twin_status s) {
  return s == TWIN_ERR_OUT_OF_HOST_MEMORY || s == TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}

/* Allocates a side; when memory or the budget runs out, frees redundant copies of that kind
 * of memory elsewhere and retries once, then explains what holds memory. */
static twin_status materialise(twin__buffer *b, twin__side_id which) {
  twin_context *ctx = b->ctx;
  if (which == TWIN__DEVICE || b->zero_copy) {
    /* No trim can make this fit: refuse up front, saying why. */
    if (alloc_size(b) > ctx->device.max_alloc_bytes)
      return twin__fail(TWIN_ERR_OUT_OF_DEVICE_MEMORY,
                        "%zu bytes exceed the device's largest "
                        "allocation, CL_DEVICE_MAX_MEM_ALLOC_SIZE = %llu bytes",
                        alloc_size(b), (unsigned long long)ctx->device.max_alloc_bytes);
  }
  twin_status s = allocate(b, which);
  if (!is_out_of_memory(s))
    return s;
  /* The kind of memory that ran out (for a zero-copy buffer, either) is what trim frees. */
  twin__side_id side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
  if (twin__trim(ctx, side == TWIN__HOST ? TWIN_TRIM_HOST : TWIN_TRIM_DEVICE) > 0) {
    s = allocate(b, which);
    if (!is_out_of_memory(s))
      return s;
    side = s == TWIN_ERR_OUT_OF_HOST_MEMORY ? TWIN__HOST : TWIN__DEVICE;
  }
  return out_of_memory(b, side);
}

/* Copies bytes [lo, hi) from the other side into `to`; both sides are allocated. */
static twin_status move(twin__buffer *b, twin__side_id to, size_t lo, size_t hi) {
  twin_context *ctx = b->ctx;
  char *host = b->mem[TWIN__HOST];
  void *dev = b->mem[TWIN__DEVICE];
  twin_status s = to == TWIN__DEVICE ? ctx->ops->to_device(ctx, dev, lo, hi - lo, host + lo)
                                     : ctx->ops->to_host(ctx, dev, lo, hi - lo, host + lo);
  if (s == TWIN_OK)
    twin__count_transfer(ctx, to == TWIN__DEVICE, hi - lo);
  return s;
}

static twin_status ensure(twin__buffer *b, twin__side_id which) {
  return b->mem[which] ? TWIN_OK : materialise(b, which);
}

twin_status twin__buffer_sync(twin__buffer *b, twin__side_id which, size_t lo, size_t hi) {
  bool was_missing = b->mem[which] == NULL;
  twin_status s = ensure(b, which);
  if (s != TWIN_OK || b->zero_copy)
    return s;
  /* Move each part of [lo, hi) where the other side is newer, then mark it clean. Walking a
   * copy keeps the loop simple while the map changes under it. */
  twin__dirty d;
  twin__dirty_copy(&d, &b->dirty);
  bool moved = false;
  for (unsigned i = 0; i < d.count && s == TWIN_OK; i++) {
    size_t a = d.s[i].lo > lo ? d.s[i].lo : lo, z = d.s[i].hi < hi ? d.s[i].hi : hi;
    if (a >= z || d.s[i].newer == which)
      continue;
    assert(b->mem[!which]); /* a side is newer only after it was written, so it exists */
    s = move(b, which, a, z);
    if (s == TWIN_OK) {
      twin__dirty_clear(&b->dirty, a, z);
      moved = true;
    }
  }
  if (s != TWIN_OK && was_missing && !moved)
    twin__buffer_release_side(b, which); /* nothing moved yet: leave the buffer as it was */
  return s;
}

twin_status twin__buffer_reserve(twin__buffer *b) {
  while (b->dirty.count > TWIN__DIRTY_CAP) {
    /* Too fragmented: make the smallest dirty segment agree on both sides and forget it. */
    twin__segment seg = b->dirty.s[twin__dirty_smallest(&b->dirty)];
    twin_status s = ensure(b, !seg.newer);
    if (s == TWIN_OK)
      s = move(b, !seg.newer, seg.lo, seg.hi);
    if (s != TWIN_OK)
      return s;
    twin__dirty_clear(&b->dirty, seg.lo, seg.hi);
  }
  return TWIN_OK;
}

void twin__buffer_wrote(twin__buffer *b, twin__side_id which, size_t lo, size_t hi) {
  if (!b->zero_copy && has_device(b))
    twin__dirty_mark(&b->dirty, lo, hi, which);
}

/* Buffers: the storage behind arrays, released with both of its memories in the call that
 * drops the last array viewing it. Here: a buffer's life, the context's list of live buffers
 * (which trim, the out-of-memory explanation and the report walk), the views attached to a
 * buffer with the counters they move, and memory the application lends (a host block or a
 * device handle that becomes one side of a buffer twin never frees). */
#include <stddef.h>
#include <string.h>

#include "storage.h"

/* Makes b one of its context's live buffers: it joins the fresh stack of this thread's slot,
 * which takes it without the context's lock (the next walk moves it into the list). */
static void link_buffer(twin__buffer *b) {
  _Atomic(twin__buffer *) *top = &b->ctx->fresh[b->thread_slot].top;
  b->fresh_next = atomic_load_explicit(top, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(top, &b->fresh_next, b, memory_order_acq_rel,
                                                memory_order_relaxed))
    ;
}

/* A buffer made and dropped with no walk in between, the usual short-lived one, is still on
 * top of its fresh stack and leaves it without the lock. Only the top leaves that way, and
 * only through its owner, the last reference's holder: the entries below the top stay while
 * it is there, so its fresh_next is current, and no other thread can push it again. Anywhere
 * else, b leaves the list under the lock. */
static void unlink_buffer(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  twin__buffer *top = b;
  if (atomic_compare_exchange_strong_explicit(&ctx->fresh[b->thread_slot].top, &top, b->fresh_next,
                                              memory_order_acq_rel, memory_order_relaxed))
    return;
  pthread_mutex_lock(&ctx->lock);
  twin__buffers_first(ctx); /* b may still wait below the top */
  if (b->prev)
    b->prev->next = b->next;
  else
    ctx->listed = b->next;
  if (b->next)
    b->next->prev = b->prev;
  pthread_mutex_unlock(&ctx->lock);
}

/* Counts b in its context, or counts it off. (It has no views either way, so its views hold
 * none of it.) */
static void count_buffer(twin__buffer *b, bool live) {
  twin__live_counts *c = &b->ctx->counters.live[b->thread_slot];
  bool two = b->layout == TWIN__TWO_COPIES;
  if (live) { /* direct calls: the inline counters, not a pointer to an outlined copy */
    twin__count_add(&c->buffers, 1);
    if (two)
      twin__count_add(&c->two_copy_buffers, 1);
  } else {
    twin__count_sub(&c->buffers, 1);
    if (two)
      twin__count_sub(&c->two_copy_buffers, 1);
  }
}

/* memset through a call the compiler cannot see the size of: with the size known GCC inlines
 * `rep stos`, whose start-up cost (measured: three quarters of a new buffer's making) is well
 * above the C library's vector loop for a few hundred bytes. (noipa is GCC's; clang knows only
 * noinline, and calls memset for such sizes anyway.) */
#if defined(__clang__)
#define OPAQUE __attribute__((noinline))
#else
#define OPAQUE __attribute__((noipa))
#endif
OPAQUE static void zero(void *p, size_t n) {
  memset(p, 0, n);
}

/* Views covering fewer bytes than this hold b (twin__held_by_views): the quotient rounded up,
 * kept in the buffer, since every view compares its cover with it twice. */
static size_t held_below(size_t nbytes) {
  size_t share = TWIN__HELD_BY_VIEWS_SHARE;
  return nbytes / share + (nbytes % share != 0);
}

static twin_status create(twin_context *ctx, size_t nbytes, bool zero_init, twin__layout layout,
                          twin__site site, twin__buffer **out) {
  /* A one-copy buffer has no dirty map: its object stops before the segments (storage.h). */
  twin__keep_kind kind = layout == TWIN__TWO_COPIES ? TWIN__KEEP_BUFFER_FULL : TWIN__KEEP_BUFFER;
  twin__buffer *b = twin__take(kind, kind == TWIN__KEEP_BUFFER ? TWIN__ONE_COPY_BYTES : sizeof *b);
  if (!b)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for a buffer object");
  zero(b, TWIN__ONE_COPY_BYTES);
  /* The initialisers with default attributes, as POSIX.1-2008 allows for any mutex and
   * condition: pthread_*_init would cost more than the rest of an empty buffer's making, and
   * cannot fail here. */
  b->lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
  b->access_ended = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
  twin__ref_init(&b->refs);
  b->ctx = twin__context_hold(ctx);
  b->nbytes = nbytes;
  b->held_below = held_below(nbytes);
  b->zero_init = zero_init;
  b->layout = layout;
  b->site = site;
  b->thread_slot = twin__thread_slot();
  link_buffer(b);
  count_buffer(b, true);
  *out = b;
  return TWIN_OK;
}

twin_status twin__buffer_new(twin_context *ctx, size_t nbytes, bool zero_init, twin__site site,
                             twin__buffer **out) {
  return create(ctx, nbytes, zero_init, ctx->layout, site, out);
}

/* Before the sides of a buffer with lent memory are released: brings the array's final
 * contents into the lent side (a failure there cannot be reported; the side then keeps what
 * it had). A shared block is mapped once, since a device may cache a CL_MEM_USE_HOST_PTR
 * block and a map makes the block current. */
static void give_back(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  void *dev = b->mem[TWIN__DEVICE], *p;
  if (!b->external || !dev)
    return;
  if (b->layout == TWIN__SHARED) {
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
 * adopted memory back to the application. (Host memory a shared handle wrapped went back
 * already, as the handle was destroyed.) */
static void release_external(twin__buffer *b) {
  if (b->external_release)
    b->external_release(b->external_user);
}

twin__buffer *twin__buffer_ref(twin__buffer *b) {
  twin__ref_get(&b->refs);
  return b;
}

void twin__buffer_unref(twin__buffer *b) {
  if (!b || !twin__ref_put(&b->refs))
    return;
  twin_context *ctx = b->ctx;
  unlink_buffer(b);
  give_back(b);
  /* The device side first: a shared handle owns the host block. (An array dropped before any
   * use has neither side.) */
  if (b->mem[TWIN__DEVICE])
    twin__buffer_release_side(b, TWIN__DEVICE);
  if (b->mem[TWIN__HOST])
    twin__buffer_release_side(b, TWIN__HOST);
  release_external(b);
  pthread_cond_destroy(&b->access_ended);
  pthread_mutex_destroy(&b->lock);
  count_buffer(b, false);
  twin__give(b->layout == TWIN__TWO_COPIES ? TWIN__KEEP_BUFFER_FULL : TWIN__KEEP_BUFFER, b);
  twin__context_release(ctx);
}

/* ---- The views of a buffer ---- */

/* With b->views_lock held: b's views covered `before` bytes while `was` told whether they held
 * it (twin__held_by_views) and now cover `after` bytes, holding it when `is`; the context's
 * figure counts the buffer while its views hold it. */
static inline void covered(twin__buffer *b, bool was, size_t after, bool is) {
  atomic_store_explicit(&b->view_bytes, after, memory_order_relaxed);
  if (was != is)
    (is ? twin__count_add : twin__count_sub)(&b->ctx->counters.held_by_views_bytes, b->nbytes);
}

void twin__buffer_attach(twin_array *a, bool adopt) {
  twin__buffer *b = a->buf;
  size_t bytes = a->size << twin__item_shift(a->dtype);
  a->thread_slot = twin__thread_slot();
  twin_array **list = &b->views[a->thread_slot % TWIN__VIEW_LISTS];
  twin__spin_lock(&b->views_lock);
  bool had = b->nviews++ > 0;
  a->prev = NULL;
  a->next = *list;
  if (*list)
    (*list)->prev = a;
  *list = a;
  if (!had && !adopt)
    twin__buffer_ref(b); /* the views' reference, which the caller's keeps above 0 */
  size_t before = atomic_load_explicit(&b->view_bytes, memory_order_relaxed),
         after = before + bytes;
  covered(b, had && before < b->held_below, after, after < b->held_below);
  twin__spin_unlock(&b->views_lock);
  twin__count_add(&b->ctx->counters.live[a->thread_slot].arrays, 1);
  if (had && adopt)
    twin__buffer_unref(b); /* never the last: the views hold one */
}

bool twin__buffer_detach(twin_array *a) {
  twin__buffer *b = a->buf;
  size_t bytes = a->size << twin__item_shift(a->dtype);
  twin__spin_lock(&b->views_lock);
  if (a->prev)
    a->prev->next = a->next;
  else
    b->views[a->thread_slot % TWIN__VIEW_LISTS] = a->next;
  if (a->next)
    a->next->prev = a->prev;
  bool has = --b->nviews > 0;
  size_t before = atomic_load_explicit(&b->view_bytes, memory_order_relaxed),
         after = before - bytes;
  assert(before >= bytes && "a buffer's view bytes dropped below 0");
  covered(b, before < b->held_below, after, has && after < b->held_below);
  twin__spin_unlock(&b->views_lock);
  twin__count_sub(&b->ctx->counters.live[a->thread_slot].arrays, 1);
  return !has;
}

/* ---- The list of live buffers ---- */

twin_status twin__hold_buffers(twin_context *ctx, twin__buffer ***out, size_t *count) {
  pthread_mutex_lock(&ctx->lock);
  size_t n = 0;
  twin__buffer *first = twin__buffers_first(ctx);
  for (twin__buffer *b = first; b; b = b->next)
    n++;
  twin__buffer **list = twin__calloc(n ? n : 1, sizeof *list);
  size_t k = 0;
  for (twin__buffer *b = list ? first : NULL; b; b = b->next)
    if (twin__ref_try_get(&b->refs)) /* not one being destroyed */
      list[k++] = b;
  pthread_mutex_unlock(&ctx->lock);
  if (!list)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to list %zu buffers", n);
  *out = list;
  *count = k;
  return TWIN_OK;
}

void twin__drop_buffers(twin__buffer **list, size_t n) {
  for (size_t i = 0; i < n; i++)
    twin__buffer_unref(list[i]);
  twin__free(list);
}

/* ---- Memory the application lends ---- */

/* The layout of a buffer over lent memory: lent host memory is the shared block where the
 * device can use it in place (an empty block is not wrapped, since a device handle needs at
 * least one byte); anything else has two copies, or one on a backend without device memory. */
static twin__layout lent_layout(const twin_context *ctx, twin__side_id side, size_t nbytes) {
  if (!ctx->has_device)
    return TWIN__HOST_ONLY;
  bool shared =
      side == TWIN__HOST && ctx->layout == TWIN__SHARED && ctx->ops->dev_wrap_external && nbytes;
  return shared ? TWIN__SHARED : TWIN__TWO_COPIES;
}

twin_status twin__buffer_new_external(twin_context *ctx, size_t nbytes, twin__side_id side,
                                      void *mem, void (*release)(void *), void *user,
                                      twin__site site, twin__buffer **out) {
  twin__layout layout = lent_layout(ctx, side, nbytes);
  bool shared = layout == TWIN__SHARED;
  twin__buffer *b = NULL;
  twin_status s = shared ? twin__device_limit(ctx, nbytes) : TWIN_OK;
  if (s == TWIN_OK)
    s = create(ctx, nbytes, false, layout, site, &b);
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
  if (layout == TWIN__TWO_COPIES)
    twin__dirty_mark(&b->dirty, 0, nbytes, side);
  *out = b;
  return TWIN_OK;
}

twin_status twin__adopt_device(const char *fn, twin_context *ctx, void *handle, size_t *nbytes) {
  if (!ctx->ops->dev_adopt)
    return twin__fail(TWIN_ERR_UNSUPPORTED, "%s: the %s backend cannot adopt device memory", fn,
                      ctx->ops->name);
  twin_status s = ctx->ops->dev_adopt(ctx, handle, nbytes);
  return s == TWIN_OK ? TWIN_OK : twin__fail_prefix(s, "%s: ", fn);
}

void twin__adopt_undo(twin_context *ctx, void *handle) {
  twin__track none = {NULL, NULL};
  ctx->ops->dev_free(ctx, handle, &none); /* drops only the reference dev_adopt took */
}

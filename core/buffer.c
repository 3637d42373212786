/* Buffers: the storage behind arrays, released with both of its memories in the call that
 * drops the last array viewing it. Here: a buffer's life, the context's list of live buffers
 * (which trim, the out-of-memory explanation and the report walk), the views attached to a
 * buffer with the counters they move, and memory the application lends (a host block or a
 * device handle that becomes one side of a buffer twin never frees). */
#include <stddef.h>
#include <string.h>

#include "storage.h"

/* Links b into its context's list of live buffers. */
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

/* Counts b in its context, or counts it off. (It has no views either way, so its views hold
 * none of it.) */
static void count_buffer(twin__buffer *b, bool live) {
  twin__counters *c = &b->ctx->counters;
  size_t (*step)(atomic_size_t *, size_t) = live ? twin__count_add : twin__count_sub;
  step(&c->buffers, 1);
  if (b->layout == TWIN__SHARED)
    step(&c->shared_buffers, 1);
}

static twin_status create(twin_context *ctx, size_t nbytes, bool zero_init, twin__layout layout,
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
  twin__ref_init(&b->refs);
  b->ctx = twin__context_hold(ctx);
  b->nbytes = nbytes;
  b->zero_init = zero_init;
  b->layout = layout;
  b->site = site;
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
  twin__buffer_release_side(b, TWIN__DEVICE); /* first: a shared handle owns the host block */
  twin__buffer_release_side(b, TWIN__HOST);
  release_external(b);
  pthread_cond_destroy(&b->access_ended);
  pthread_mutex_destroy(&b->lock);
  count_buffer(b, false);
  twin__free(b);
  twin__context_release(ctx);
}

/* ---- The views of a buffer ---- */

/* With b->views_lock held: b's views, which covered `before` bytes (none: had is false), now
 * cover `after` bytes (none left: has is false). A buffer is held by its views while it has
 * some and they cover less than a quarter of it; it then counts in the context's figure. */
static void covered(twin__buffer *b, bool had, size_t before, bool has, size_t after) {
  atomic_store_explicit(&b->view_bytes, after, memory_order_relaxed);
  bool was = had && twin__held_by_views(before, b->nbytes);
  bool is = has && twin__held_by_views(after, b->nbytes);
  if (was != is)
    (is ? twin__count_add : twin__count_sub)(&b->ctx->counters.held_by_views_bytes, b->nbytes);
}

static size_t view_bytes_of(const twin_array *a) {
  return a->size * twin_dtype_size(a->dtype);
}

void twin__buffer_attach(twin_array *a) {
  twin__buffer *b = a->buf;
  twin__spin_lock(&b->views_lock);
  bool had = b->views != NULL;
  a->next = b->views;
  if (had)
    b->views->prev = a;
  b->views = a;
  size_t before = atomic_load_explicit(&b->view_bytes, memory_order_relaxed);
  covered(b, had, before, true, before + view_bytes_of(a));
  twin__spin_unlock(&b->views_lock);
  twin__count_add(&b->ctx->counters.arrays, 1);
}

void twin__buffer_detach(twin_array *a) {
  twin__buffer *b = a->buf;
  size_t bytes = view_bytes_of(a);
  twin__spin_lock(&b->views_lock);
  if (a->prev)
    a->prev->next = a->next;
  else
    b->views = a->next;
  if (a->next)
    a->next->prev = a->prev;
  size_t before = atomic_load_explicit(&b->view_bytes, memory_order_relaxed);
  assert(before >= bytes && "a buffer's view bytes dropped below 0");
  covered(b, true, before, b->views != NULL, before - bytes);
  twin__spin_unlock(&b->views_lock);
  twin__count_sub(&b->ctx->counters.arrays, 1);
}

/* ---- The list of live buffers ---- */

twin_status twin__hold_buffers(twin_context *ctx, twin__buffer ***out, size_t *count) {
  pthread_mutex_lock(&ctx->lock);
  size_t n = 0;
  for (twin__buffer *b = ctx->buffers; b; b = b->next)
    n++;
  twin__buffer **list = twin__calloc(n ? n : 1, sizeof *list);
  size_t k = 0;
  for (twin__buffer *b = list ? ctx->buffers : NULL; b; b = b->next)
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

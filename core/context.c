/* Contexts: one device, its backend state and its counters. */
#include <stdlib.h>
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

static const struct twin_backend_ops *backend_for(const twin_device_info *dev) {
#ifdef TWIN_HAVE_OPENCL
  if (dev->type != TWIN_DEVICE_HOST)
    return &twin__opencl_ops;
#endif
  (void)dev;
  return &twin__host_ops;
}

/* The coherence the options and TWIN_COHERENCE ask for. */
static twin_status coherence_of(const twin_context_options *opt, twin_coherence *out) {
  *out = opt ? opt->coherence : TWIN_COHERENCE_AUTO;
  if (*out == TWIN_COHERENCE_COPY)
    return TWIN_OK;
  if (*out != TWIN_COHERENCE_AUTO)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_new: coherence %d is not a "
                      "twin_coherence", (int)*out);
  const char *env = getenv("TWIN_COHERENCE");
  if (!env || !*env || strcmp(env, "auto") == 0)
    return TWIN_OK;
  if (strcmp(env, "copy") == 0) {
    *out = TWIN_COHERENCE_COPY;
    return TWIN_OK;
  }
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "TWIN_COHERENCE is \"%s\"; use \"auto\" or "
                    "\"copy\"", env);
}

twin_status twin_context_new_with(const twin_context_options *options, twin_context **out) {
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_new: out is NULL");
  twin_coherence coherence;
  twin_status s = coherence_of(options, &coherence);
  twin_device_info dev;
  if (s == TWIN_OK)
    s = twin_device_resolve(options ? options->device : NULL, &dev);
  if (s != TWIN_OK)
    return s;
  twin_context *ctx = twin__calloc(1, sizeof *ctx);
  if (!ctx)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_context_new: no memory for a context");
  atomic_init(&ctx->refs, 1);
  atomic_init(&ctx->user_refs, 1);
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    twin__free(ctx);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a context");
  }
  ctx->device = dev;
  ctx->ops = backend_for(&dev);
  ctx->zero_copy = coherence == TWIN_COHERENCE_AUTO && dev.host_unified_memory &&
                   ctx->ops->dev_wrap != NULL;
  s = ctx->ops->open(ctx);
  if (s != TWIN_OK) {
    pthread_mutex_destroy(&ctx->lock);
    twin__free(ctx);
    return s;
  }
  *out = ctx;
  return TWIN_OK;
}

twin_status twin_context_new(const char *spec, twin_context **out) {
  twin_context_options options = {.device = spec};
  return twin_context_new_with(&options, out);
}

bool twin_context_is_zero_copy(const twin_context *ctx) {
  return ctx && ctx->zero_copy;
}

twin_context *twin__context_hold(twin_context *ctx) {
  atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
  return ctx;
}

void twin__context_release(twin_context *ctx) {
  /* Release ordering publishes this thread's writes; the acquire fence makes every other
   * thread's writes visible to the one that tears down. */
  if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_release) != 1)
    return;
  atomic_thread_fence(memory_order_acquire);
  ctx->ops->close(ctx);
  pthread_mutex_destroy(&ctx->lock);
  twin__free(ctx);
}

twin_context *twin_context_ref(twin_context *ctx) {
  if (ctx) {
    atomic_fetch_add_explicit(&ctx->user_refs, 1, memory_order_relaxed);
    twin__context_hold(ctx);
  }
  return ctx;
}

void twin_context_unref(twin_context *ctx) {
  if (!ctx)
    return;
  /* The application lets go while arrays still hold memory: say what, once. The context
   * itself lives on until the last of those buffers is gone. */
  if (atomic_fetch_sub_explicit(&ctx->user_refs, 1, memory_order_acq_rel) == 1 &&
      atomic_load_explicit(&ctx->counters.buffers, memory_order_relaxed) > 0 &&
      !atomic_exchange(&ctx->leak_reported, true))
    twin__report_leak(ctx);
  twin__context_release(ctx);
}

twin_status twin_context_finish(twin_context *ctx) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_finish: ctx is NULL");
  return ctx->ops->finish ? ctx->ops->finish(ctx) : TWIN_OK;
}

const twin_device_info *twin_context_device(const twin_context *ctx) {
  return ctx ? &ctx->device : NULL;
}

/* Contexts: one device, its backend state and its counters; the checks of what the device can
 * do. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../backends/backend.h"
#include "context.h"

static const struct twin_backend_ops *backend_for(const twin_device_info *dev) {
  if (strcmp(dev->spec, "fake") == 0)
    return &twin__fake_ops;
#ifdef TWIN_HAVE_OPENCL
  if (dev->type != TWIN_DEVICE_HOST)
    return &twin__opencl_ops;
#endif
  (void)dev;
  return &twin__host_ops;
}

/* The coherence the options and TWIN_COHERENCE (any case, like TWIN_DEVICE) ask for. */
static twin_status coherence_of(const twin_context_options *opt, twin_coherence *out) {
  *out = opt ? opt->coherence : TWIN_COHERENCE_AUTO;
  if (*out == TWIN_COHERENCE_COPY)
    return TWIN_OK;
  if (*out != TWIN_COHERENCE_AUTO)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "twin_context_new: coherence %d is not a "
                      "twin_coherence",
                      (int)*out);
  const char *env = getenv("TWIN_COHERENCE");
  if (!env || !*env || strcasecmp(env, "auto") == 0)
    return TWIN_OK;
  if (strcasecmp(env, "copy") == 0) {
    *out = TWIN_COHERENCE_COPY;
    return TWIN_OK;
  }
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                    "TWIN_COHERENCE is \"%s\"; use \"auto\" or "
                    "\"copy\"",
                    env);
}

/* Whether to spill, from the options and TWIN_SPILL (any case, like TWIN_COHERENCE). */
static twin_status spill_of(const twin_context_options *opt, bool *out) {
  twin_spill asked = opt ? opt->spill : TWIN_SPILL_AUTO;
  *out = asked == TWIN_SPILL_AUTO;
  if (asked == TWIN_SPILL_OFF)
    return TWIN_OK;
  if (asked != TWIN_SPILL_AUTO)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_new: spill %d is not a twin_spill",
                      (int)asked);
  const char *env = getenv("TWIN_SPILL");
  if (!env || !*env || strcasecmp(env, "auto") == 0)
    return TWIN_OK;
  if (strcasecmp(env, "off") == 0) {
    *out = false;
    return TWIN_OK;
  }
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "TWIN_SPILL is \"%s\"; use \"auto\" or \"off\"",
                    env);
}

/* A byte count with an optional K, M or G suffix (powers of 1024), from the environment. */
static twin_status env_bytes(const char *name, size_t *out) {
  const char *v = getenv(name);
  *out = 0;
  if (!v || !*v)
    return TWIN_OK;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  unsigned shift = 0;
  if (*end == 'K' || *end == 'k')
    shift = 10;
  else if (*end == 'M' || *end == 'm')
    shift = 20;
  else if (*end == 'G' || *end == 'g')
    shift = 30;
  if (shift)
    end++;
  /* strtoull also takes spaces, signs and out-of-range values (as ULLONG_MAX): refused. */
  if (end == v || *end || v[0] < '0' || v[0] > '9' || errno == ERANGE || n > (SIZE_MAX >> shift))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s is \"%s\"; use a byte count with an "
                      "optional K, M or G suffix, e.g. 512M",
                      name, v);
  *out = (size_t)n << shift;
  return TWIN_OK;
}

/* The budgets: the options', else the environment's, else none. */
static twin_status limits_of(const twin_context_options *opt, size_t *host, size_t *device) {
  twin_status s = env_bytes("TWIN_HOST_MEMORY_LIMIT", host);
  if (s == TWIN_OK)
    s = env_bytes("TWIN_DEVICE_MEMORY_LIMIT", device);
  if (opt && opt->host_memory_limit)
    *host = opt->host_memory_limit;
  if (opt && opt->device_memory_limit)
    *device = opt->device_memory_limit;
  return s;
}

/* The layout of the buffers twin allocates: shared where the device uses host memory in place
 * and the application did not ask for copies. */
static twin__layout layout_of(const twin_context *ctx, twin_coherence coherence) {
  if (!ctx->has_device)
    return TWIN__HOST_ONLY;
  bool shared = coherence == TWIN_COHERENCE_AUTO && ctx->device.host_unified_memory &&
                ctx->ops->dev_wrap != NULL;
  return shared ? TWIN__SHARED : TWIN__TWO_COPIES;
}

twin_status twin_context_new_with(const twin_context_options *options, twin_context **out) {
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_new: out is NULL");
  twin__debug_init();
  if (options && options->debug)
    twin__debug_enable();
  twin_coherence coherence;
  size_t host_limit, device_limit;
  bool spill;
  twin_status s = coherence_of(options, &coherence);
  if (s == TWIN_OK)
    s = spill_of(options, &spill);
  if (s == TWIN_OK)
    s = limits_of(options, &host_limit, &device_limit);
  twin_device_info dev;
  if (s == TWIN_OK)
    s = twin_device_resolve(options ? options->device : NULL, &dev);
  if (s != TWIN_OK)
    return s;
  twin_context *ctx = twin__calloc(1, sizeof *ctx);
  if (!ctx)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_context_new: no memory for a context");
  twin__ref_init(&ctx->refs);
  atomic_init(&ctx->user_refs, 1);
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    twin__free(ctx);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_mutex_init failed for a context");
  }
  ctx->device = dev;
  ctx->host_limit = host_limit;
  ctx->device_limit = device_limit;
  ctx->spill = spill;
  ctx->ops = backend_for(&dev);
  ctx->has_device = ctx->ops->device_memory;
  assert(ctx->has_device == (ctx->ops->dev_alloc != NULL) && "backend.h: device_memory");
  ctx->layout = layout_of(ctx, coherence);
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
  /* One copy per buffer: shared with the device, or the host backend's only one. */
  return ctx && ctx->layout != TWIN__TWO_COPIES;
}

twin_status twin__check_device(const twin_context *ctx, const char *who) {
  if (ctx->has_device)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_UNSUPPORTED, "%s: the %s backend has no device memory", who,
                    ctx->ops->name);
}

twin_status twin__check_fp64(const twin_context *ctx, twin_dtype dtype, const char *who) {
  if (dtype != TWIN_F64 || ctx->device.fp64)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_UNSUPPORTED, "%s: device \"%s\" has no fp64 support for an f64 array",
                    who, ctx->device.name);
}

twin_context *twin__context_hold(twin_context *ctx) {
  twin__ref_get(&ctx->refs);
  return ctx;
}

void twin__context_release(twin_context *ctx) {
  if (!twin__ref_put(&ctx->refs))
    return;
  twin__programs_release(ctx); /* cached user programs, before the backend closes */
  ctx->ops->close(ctx);
  pthread_mutex_destroy(&ctx->lock);
  twin__free(ctx);
}

twin_context *twin_context_ref(twin_context *ctx) {
  if (ctx) {
    twin__count_add(&ctx->user_refs, 1);
    twin__context_hold(ctx);
  }
  return ctx;
}

void twin_context_unref(twin_context *ctx) {
  if (!ctx)
    return;
  /* The application lets go while arrays still hold memory: say what, once. The context
   * itself lives on until the last of those buffers is gone. */
  if (twin__count_sub(&ctx->user_refs, 1) == 0 && twin__live_buffers(ctx) > 0 &&
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

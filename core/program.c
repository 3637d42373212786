/* User programs and the per-context program cache. A program is built once per context for
 * each (source, options) pair: the cache holds a reference of its own on every program it
 * lists, released when the context closes, so building the same pair again is a lookup even
 * after the application dropped the program. Every other reference (the application's, each
 * kernel's) also holds the context, which therefore closes only once they are gone: the
 * cache's reference is then the last, and the program goes with it. A program's count never
 * comes back from 0. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../backends/backend.h"
#include "objects.h"

struct twin_program {
  atomic_size_t refs;        /* the cache's, plus one per application reference and kernel */
  twin_context *ctx;         /* held once by every reference but the cache's */
  struct twin_program *next; /* in ctx->programs, under ctx->programs_lock */
  char *source, *options;    /* the cache key; options "" for none */
  void *handle;              /* the backend's program */
};

/* One reference for a holder other than the cache: it holds the context too. */
static twin_program *take(twin_program *p) {
  twin__ref_get(&p->refs);
  twin__context_hold(p->ctx);
  return p;
}

/* With ctx->programs_lock held: the cached program for the key, with one more reference. */
static twin_program *lookup_locked(twin_context *ctx, const char *source, const char *options) {
  for (twin_program *p = ctx->programs; p; p = p->next)
    if (strcmp(p->source, source) == 0 && strcmp(p->options, options) == 0)
      return take(p);
  return NULL;
}

static twin_program *lookup(twin_context *ctx, const char *source, const char *options) {
  twin__spin_lock(&ctx->programs_lock);
  twin_program *p = lookup_locked(ctx, source, options);
  twin__spin_unlock(&ctx->programs_lock);
  return p;
}

/* Frees a program nobody refers to: never cached, or the cache's reference was the last. */
static void free_program(twin_context *ctx, twin_program *p) {
  if (p->handle)
    ctx->ops->program_free(ctx, p->handle);
  twin__free(p->source);
  twin__free(p->options);
  twin__free(p);
}

/* Caches p (built, its count the cache's reference) and returns it with the caller's
 * reference; unless another thread cached the same key meanwhile: then p goes and the cached
 * one comes back with the caller's reference. */
static twin_program *insert(twin_context *ctx, twin_program *p) {
  twin__spin_lock(&ctx->programs_lock);
  twin_program *cached = lookup_locked(ctx, p->source, p->options);
  if (!cached) {
    p->next = ctx->programs;
    ctx->programs = p;
    cached = take(p);
  }
  twin__spin_unlock(&ctx->programs_lock);
  if (cached != p)
    free_program(ctx, p);
  return cached;
}

/* A program object with its key, not built yet; NULL without memory. */
static twin_program *program_object(twin_context *ctx, const char *source, const char *options) {
  twin_program *p = twin__calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->ctx = ctx;
  twin__ref_init(&p->refs); /* the cache's, once it is inserted */
  p->source = twin__strdup(source);
  p->options = twin__strdup(options);
  if (p->source && p->options)
    return p;
  free_program(ctx, p);
  return NULL;
}

static twin_status program_new(const char *fn, twin_context *ctx, const char *source,
                               const char *options, const char *label, twin_program **out) {
  if (!options)
    options = "";
  twin_program *p = lookup(ctx, source, options);
  if (p) {
    *out = p;
    return TWIN_OK;
  }
  p = program_object(ctx, source, options);
  if (!p)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a program", fn);
  twin_status s = ctx->ops->program_build(ctx, source, label, options, &p->handle);
  if (s != TWIN_OK) {
    free_program(ctx, p);
    return s;
  }
  *out = insert(ctx, p);
  return TWIN_OK;
}

static twin_status check_program_args(const char *fn, twin_context *ctx, const void *source,
                                      twin_program **out) {
  if (!ctx || !source || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !ctx      ? "ctx"
                      : !source ? "the source"
                                : "out");
  if (!ctx->ops->program_build)
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: the %s backend runs no OpenCL C; run a C "
                      "function on twin arrays with twin_kernel_new_host instead",
                      fn, ctx->ops->name);
  return TWIN_OK;
}

twin_status twin_program_new(twin_context *ctx, const char *source, const char *build_options,
                             twin_program **out) {
  static const char fn[] = "twin_program_new";
  twin_status s = check_program_args(fn, ctx, source, out);
  return s == TWIN_OK ? program_new(fn, ctx, source, build_options, "source", out) : s;
}

/* Reads f to its end into a NUL-terminated string from twin__malloc; NULL without memory. */
static char *read_all(FILE *f, size_t *n) {
  size_t cap = 4096;
  char *text = twin__malloc(cap);
  *n = 0;
  while (text) {
    *n += fread(text + *n, 1, cap - 1 - *n, f);
    if (*n < cap - 1)
      break;
    char *bigger = twin__malloc(cap * 2);
    if (bigger)
      memcpy(bigger, text, *n);
    twin__free(text);
    text = bigger;
    cap *= 2;
  }
  if (text)
    text[*n] = '\0';
  return text;
}

/* Reads a whole file into a NUL-terminated string from twin__malloc. */
static twin_status read_file(const char *fn, const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: cannot open \"%s\": %s", fn, path,
                      strerror(errno));
  size_t n;
  char *text = read_all(f, &n);
  bool failed = ferror(f);
  fclose(f);
  if (!text)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory to read \"%s\"", fn, path);
  if (failed) {
    twin__free(text);
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: cannot read \"%s\"", fn, path);
  }
  *out = text;
  return TWIN_OK;
}

twin_status twin_program_new_from_file(twin_context *ctx, const char *path,
                                       const char *build_options, twin_program **out) {
  static const char fn[] = "twin_program_new_from_file";
  char *source = NULL;
  twin_status s = check_program_args(fn, ctx, path, out);
  if (s == TWIN_OK)
    s = read_file(fn, path, &source);
  if (s == TWIN_OK)
    s = program_new(fn, ctx, source, build_options, path, out);
  twin__free(source);
  return s;
}

twin_program *twin_program_ref(twin_program *prog) {
  return prog ? take(prog) : NULL;
}

void twin_program_unref(twin_program *prog) {
  if (!prog)
    return;
  twin_context *ctx = prog->ctx;
  /* The cache's reference outlives this one: it goes only when the context closes. */
  bool last = twin__ref_put(&prog->refs);
  assert(!last && "a program's last reference is its cache's");
  (void)last;
  twin__context_release(ctx);
}

void twin__programs_release(twin_context *ctx) {
  twin_program *p = ctx->programs;
  ctx->programs = NULL;
  while (p) {
    twin_program *next = p->next;
    /* Every other reference holds the context, which is closing: the cache's is the last. */
    bool last = twin__ref_put(&p->refs);
    assert(last && "a program outlives its context");
    if (last)
      free_program(ctx, p);
    p = next;
  }
}

twin_context *twin__program_context(const twin_program *prog) {
  return prog->ctx;
}

void *twin__program_handle(const twin_program *prog) {
  return prog ? prog->handle : NULL;
}

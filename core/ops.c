/* The built-in operations: twin_copy, twin_fill, twin_array_contiguous and twin_array_copy,
 * and twin_array_from_host, a new array written through the access protocol. Core validates,
 * broadcasts, detects overlap and opens the arrays' accesses on the side where the work runs
 * (the device when the context has one, else the host); the backend's copy and fill members
 * do the mechanics on the views they are given. */
#include <stdio.h>
#include <string.h>

#include "objects.h"

/* Room for "(" + 8 numbers of up to 20 digits joined by ", " + ",)". */
#define SHAPE_TEXT_CAP (TWIN_MAX_DIMS * 22 + 4)

/* A shape as NumPy prints it: "(3, 4)", "(5,)", "()". */
static const char *shape_text(const twin_array *a, char *buf) {
  size_t used = (size_t)snprintf(buf, SHAPE_TEXT_CAP, "(");
  for (int i = 0; i < a->ndim; i++)
    used += (size_t)snprintf(buf + used, SHAPE_TEXT_CAP - used, i ? ", %zu" : "%zu", a->shape[i]);
  snprintf(buf + used, SHAPE_TEXT_CAP - used, a->ndim == 1 ? ",)" : ")");
  return buf;
}

/* src's strides broadcast to dst's shape, by NumPy's rules: trailing axes line up; a source
 * axis of size 1, or a missing one, repeats (stride 0); extra leading source axes of size 1
 * are dropped (as np.copyto does). */
static twin_status broadcast_strides(const char *fn, const twin_array *dst, const twin_array *src,
                                     ptrdiff_t *strides) {
  int extra = src->ndim - dst->ndim;
  bool ok = true;
  for (int j = 0; j < extra; j++)
    ok = ok && src->shape[j] == 1;
  for (int i = 0; i < dst->ndim && ok; i++) {
    int j = i + extra;
    if (j < 0 || src->shape[j] == 1)
      strides[i] = 0;
    else if (src->shape[j] == dst->shape[i])
      strides[i] = src->strides[j];
    else
      ok = false;
  }
  if (ok)
    return TWIN_OK;
  char a[SHAPE_TEXT_CAP], b[SHAPE_TEXT_CAP];
  return twin__fail(TWIN_ERR_SHAPE_MISMATCH,
                    "%s: the source's shape %s cannot be broadcast to "
                    "the destination's shape %s",
                    fn, shape_text(src, a), shape_text(dst, b));
}

static bool overlap(const twin_array *a, const twin_array *b) {
  if (a->buf != b->buf)
    return false;
  size_t alo, ahi, blo, bhi;
  twin__array_extent(a, &alo, &ahi);
  twin__array_extent(b, &blo, &bhi);
  return alo < bhi && blo < ahi;
}

/* Where an operation runs: on the device, through the backend's member, when the context has
 * device memory and the backend implements it; else on the host through the C version. */
typedef struct placement {
  bool device;
  twin_status (*copy)(twin_context *ctx, const twin__view *dst, const twin__view *src);
  twin_status (*fill)(twin_context *ctx, const twin__view *dst, const void *value);
} placement;

static placement place(const twin_context *ctx) {
  const struct twin_backend_ops *ops = ctx->ops;
  placement p = {ctx->has_device, ops->copy, ops->fill};
  if (!p.copy || !p.fill) {
    p.device = false;
    p.copy = twin__host_copy;
    p.fill = twin__host_fill;
  }
  return p;
}

/* Refuses f64 work on a device without fp64 before anything is opened or built. */
static twin_status check_fp64(const char *fn, const twin_context *ctx, placement p, twin_dtype a,
                              twin_dtype b) {
  if (!p.device)
    return TWIN_OK; /* the host computes in f64 */
  twin_status s = twin__check_fp64(ctx, a, fn);
  return s == TWIN_OK ? twin__check_fp64(ctx, b, fn) : s;
}

/* Readies the backend's operations (building its kernels at first use). */
static twin_status prepare(const char *fn, twin_context *ctx, placement p) {
  if (!p.device || !ctx->ops->prepare_ops)
    return TWIN_OK;
  twin_status s = ctx->ops->prepare_ops(ctx);
  return s == TWIN_OK ? TWIN_OK : twin__fail_prefix(s, "%s: ", fn);
}

static twin__side_id side_of(placement p) {
  return p.device ? TWIN__DEVICE : TWIN__HOST;
}

/* Opens `access` on a on the operation's side and returns that side's memory (the device
 * handle, or the host buffer's start). */
static twin_status open_access(twin_array *a, twin_access access, placement p,
                               const twin__opener *who, void **mem, twin__dirty *before) {
  return twin__open_for_op(a, side_of(p), access, who, before, mem);
}

/* Closes an access open_access opened; after a failed operation, undoes a write's marking. */
static void close_access(twin_array *a, placement p, const twin__dirty *failed_before) {
  twin__close_for_op(a, side_of(p), failed_before);
}

/* A view of a with dst's shape and the given strides (a's own, or broadcast ones). */
static void make_view(twin__view *v, void *mem, const twin_array *a, const twin_array *shape_of,
                      const ptrdiff_t *strides) {
  memset(v, 0, sizeof *v);
  v->mem = mem;
  v->track = &a->buf->track;
  v->dtype = a->dtype;
  v->ndim = shape_of->ndim;
  v->offset = a->offset;
  for (int i = 0; i < v->ndim; i++) {
    v->shape[i] = shape_of->shape[i];
    v->strides[i] = strides[i];
  }
}

/* The public call a copy runs for, the names of its destination and source arguments, and the
 * user's file and line: what its messages and its open accesses are named by. */
typedef struct copy_call {
  const char *fn, *dst, *src;
  twin__site site;
} copy_call;

/* The backend's failure, under the public call's name. */
static twin_status backend_failed(const char *fn, twin_status s) {
  return s == TWIN_OK ? TWIN_OK : twin__fail_prefix(s, "%s: ", fn);
}

/* Copies between two arrays that do not overlap. src's access is opened first: a read of one
 * view and a write of another view of the same buffer may be open together on one side.
 * Should the backend fail, dst's write is undone in the coherence state, so data newer on the
 * other side is not lost. */
static twin_status run_copy(const copy_call *c, twin_array *dst, twin_array *src,
                            const ptrdiff_t *src_strides) {
  twin_context *ctx = dst->buf->ctx;
  placement p = place(ctx);
  twin_status s = prepare(c->fn, ctx, p);
  void *smem, *dmem;
  if (s != TWIN_OK)
    return s;
  twin__opener src_who = {c->fn, c->src, c->site}, dst_who = {c->fn, c->dst, c->site};
  s = open_access(src, TWIN_READ, p, &src_who, &smem, NULL);
  if (s != TWIN_OK)
    return s;
  twin__dirty *before = twin__malloc(sizeof *before);
  if (!before) {
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for bookkeeping", c->fn);
    goto fail_before;
  }
  s = open_access(dst, TWIN_WRITE, p, &dst_who, &dmem, before);
  if (s != TWIN_OK)
    goto fail_dst;
  twin__view dv, sv;
  make_view(&dv, dmem, dst, dst, dst->strides);
  make_view(&sv, smem, src, dst, src_strides);
  s = backend_failed(c->fn, p.copy(ctx, &dv, &sv));
  close_access(dst, p, s == TWIN_OK ? NULL : before);
fail_dst:
  twin__free(before);
fail_before:
  close_access(src, p, NULL);
  return s;
}

static twin_status copy_new(const copy_call *c, twin_array *a, twin_array **out);

/* twin_copy's work, for any call that copies (c names it). */
static twin_status copy(const copy_call *c, twin_array *dst, twin_array *src) {
  const char *fn = c->fn;
  twin_context *ctx = dst->buf->ctx;
  if (src->buf->ctx != ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: %s and %s belong to different contexts "
                      "(%s and %s); move data between contexts through host memory",
                      fn, c->dst, c->src, ctx->device.spec, src->buf->ctx->device.spec);
  ptrdiff_t strides[TWIN_MAX_DIMS];
  twin_status s = twin__check_writable(dst, fn, c->dst);
  if (s == TWIN_OK)
    s = broadcast_strides(fn, dst, src, strides);
  if (s == TWIN_OK)
    s = check_fp64(fn, ctx, place(ctx), dst->dtype, src->dtype);
  if (s != TWIN_OK || dst->size == 0 || dst == src)
    return s; /* an array copied onto itself is unchanged */
  if (!overlap(dst, src))
    return run_copy(c, dst, src, strides);
  /* Overlapping views of one buffer: the result must be that of copying through a temporary,
   * whatever order the backend visits elements in; so make the temporary. */
  twin_array *tmp;
  copy_call to_tmp = {fn, "a temporary copy of src", c->src, c->site};
  s = copy_new(&to_tmp, src, &tmp);
  if (s != TWIN_OK)
    return s;
  s = copy(c, dst, tmp);
  twin_array_unref(tmp);
  return s;
}

/* A new compact array holding a's elements, for any call that copies (c names it). */
static twin_status copy_new(const copy_call *c, twin_array *a, twin_array **out) {
  twin_array *n;
  twin_status s =
      twin_array_new_at(a->buf->ctx, a->dtype, a->ndim, a->shape, &n, c->site.file, c->site.line);
  if (s != TWIN_OK)
    return twin__fail_prefix(s, "%s: ", c->fn); /* no memory for the array object */
  memcpy(n->owner, a->owner, sizeof n->owner);
  s = copy(c, n, a);
  if (s != TWIN_OK) {
    twin_array_unref(n);
    return s;
  }
  *out = n;
  return TWIN_OK;
}

twin_status twin_copy_at(twin_array *dst, twin_array *src, const char *file, int line) {
  static const char fn[] = "twin_copy";
  twin__debug_check(dst, fn);
  twin__debug_check(src, fn);
  if (!dst || !src)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !dst ? "dst" : "src");
  return copy(&(copy_call){fn, "dst", "src", {file, line}}, dst, src);
}

twin_status(twin_copy)(twin_array *dst, twin_array *src) {
  return twin_copy_at(dst, src, NULL, 0);
}

twin_status twin_fill_at(twin_array *dst, const void *value, const char *file, int line) {
  static const char fn[] = "twin_fill";
  twin__opener who = {fn, "dst", {file, line}};
  twin__debug_check(dst, fn);
  if (!dst || !value)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !dst ? "dst" : "value");
  twin_context *ctx = dst->buf->ctx;
  placement p = place(ctx);
  twin_status s = twin__check_writable(dst, fn, "dst");
  if (s == TWIN_OK)
    s = check_fp64(fn, ctx, p, dst->dtype, dst->dtype);
  if (s != TWIN_OK || dst->size == 0)
    return s;
  void *mem;
  twin__dirty *before = NULL;
  s = prepare(fn, ctx, p);
  if (s == TWIN_OK && !(before = twin__malloc(sizeof *before)))
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for bookkeeping", fn);
  if (s == TWIN_OK)
    s = open_access(dst, TWIN_WRITE, p, &who, &mem, before);
  if (s == TWIN_OK) {
    twin__view v;
    make_view(&v, mem, dst, dst, dst->strides);
    s = backend_failed(fn, p.fill(ctx, &v, value));
    close_access(dst, p, s == TWIN_OK ? NULL : before);
  }
  twin__free(before);
  return s;
}

twin_status(twin_fill)(twin_array *dst, const void *value) {
  return twin_fill_at(dst, value, NULL, 0);
}

twin_status twin_array_copy_at(twin_array *a, twin_array **out, const char *file, int line) {
  static const char fn[] = "twin_array_copy";
  twin__debug_check(a, fn);
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  return copy_new(&(copy_call){fn, "the copy", "a", {file, line}}, a, out);
}

twin_status(twin_array_copy)(twin_array *a, twin_array **out) {
  return twin_array_copy_at(a, out, NULL, 0);
}

twin_status twin_array_contiguous_at(twin_array *a, twin_array **out, const char *file, int line) {
  static const char fn[] = "twin_array_contiguous";
  twin__debug_check(a, fn);
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  if (!twin__is_contiguous(a))
    return copy_new(&(copy_call){fn, "the copy", "a", {file, line}}, a, out);
  *out = twin_array_ref(a);
  return TWIN_OK;
}

twin_status(twin_array_contiguous)(twin_array *a, twin_array **out) {
  return twin_array_contiguous_at(a, out, NULL, 0);
}

twin_status twin_array_from_host_at(twin_context *ctx, twin_dtype dtype, int ndim,
                                    const size_t *shape, const void *data, twin_array **out,
                                    const char *file, int line) {
  static const char fn[] = "twin_array_from_host";
  size_t size = 0;
  twin_status s = twin__check_geometry(fn, ctx, dtype, ndim, shape);
  if (s == TWIN_OK)
    s = twin__check_shape(fn, dtype, ndim, shape, &size);
  if (s != TWIN_OK)
    return s;
  size_t nbytes = size * twin_dtype_size(dtype);
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  if (!data && nbytes)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: data is NULL for %zu bytes", fn, nbytes);
  twin_array *a;
  s = twin__array_new(fn, ctx, dtype, ndim, shape, false, (twin__site){file, line}, &a);
  if (s == TWIN_OK && (s = twin_array_write(a, data, nbytes)) != TWIN_OK)
    twin_array_unref(a);
  if (s == TWIN_OK)
    *out = a;
  return s;
}

twin_status(twin_array_from_host)(twin_context *ctx, twin_dtype dtype, int ndim,
                                  const size_t *shape, const void *data, twin_array **out) {
  return twin_array_from_host_at(ctx, dtype, ndim, shape, data, out, NULL, 0);
}

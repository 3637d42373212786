/* Memory the application lends twin: a host block (twin_array_wrap_host, DLPack kDLCPU) or a
 * device handle (twin_array_wrap_cl_mem, DLPack kDLOpenCL) becomes one side of a buffer that
 * twin never frees, viewed by an ordinary array. Here: the checks of the lent memory's
 * geometry. The storage layer (buffer.c) adopts the memory: which side is lent, the release
 * callback, the shared wrapping of a lent host block, the backend's adoption of a device
 * handle. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "objects.h"

/* The lent memory's geometry: C-order strides when none are given, the element count, and
 * the lowest and highest element relative to element 0 (lo <= 0 <= hi; both 0 when empty),
 * all with overflow checks. */
typedef struct geometry {
  ptrdiff_t strides[TWIN_MAX_DIMS];
  size_t size;
  ptrdiff_t lo, hi;
} geometry;

static twin_status c_order(const char *fn, int ndim, const size_t *shape, ptrdiff_t *strides) {
  ptrdiff_t stride = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = stride;
    size_t len = shape[i] ? shape[i] : 1;
    if (len > PTRDIFF_MAX || __builtin_mul_overflow(stride, (ptrdiff_t)len, &stride))
      return twin__fail(TWIN_ERR_OVERFLOW, "%s: the C-order strides overflow at axis %d", fn, i);
  }
  return TWIN_OK;
}

static twin_status measure(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                           const ptrdiff_t *strides, geometry *g) {
  twin_status s = twin__check_shape(fn, dtype, ndim, shape, &g->size);
  if (s == TWIN_OK && !strides)
    s = c_order(fn, ndim, shape, g->strides);
  if (s != TWIN_OK)
    return s;
  if (strides)
    memcpy(g->strides, strides, (size_t)ndim * sizeof *strides);
  s = twin__check_extent(fn, dtype, ndim, shape, g->strides, &g->lo, &g->hi);
  if (s != TWIN_OK)
    return s;
  if (!g->size)
    g->lo = g->hi = 0; /* no element: nothing below or above element 0 */
  size_t bytes;
  if (g->size &&
      (twin__mul_overflows((size_t)g->hi - (size_t)g->lo + 1, twin_dtype_size(dtype), &bytes) ||
       bytes > PTRDIFF_MAX))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: the memory the elements span overflows", fn);
  return TWIN_OK;
}

/* Checks what every lent array needs: a context, a dtype, a shape and an out-parameter. */
static twin_status check_lent(const char *fn, twin_context *ctx, twin_dtype dtype, int ndim,
                              const size_t *shape, twin_array **out) {
  if (ctx && !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  return twin__check_geometry(fn, ctx, dtype, ndim, shape);
}

/* A new array object (not yet attached) with the given geometry. */
static twin_array *new_view(twin_dtype dtype, int ndim, const size_t *shape, const geometry *g,
                            twin__site site) {
  twin_array *a = twin__calloc(1, sizeof *a);
  if (!a)
    return NULL;
  a->dtype = dtype;
  a->ndim = ndim;
  a->size = g->size;
  a->site = site;
  for (int i = 0; i < ndim; i++) {
    a->shape[i] = shape[i];
    a->strides[i] = g->strides[i];
  }
  return a;
}

/* Attaches view a, whose element 0 is `offset` elements into buffer b (a takes over the
 * caller's reference on b). */
static void attach(twin_array *a, twin__buffer *b, size_t offset, twin_array **out) {
  a->buf = b;
  a->offset = offset;
  twin__array_attach(a, true);
  *out = a;
}

twin_status twin__array_wrap_host(const char *fn, twin_context *ctx, void *ptr, twin_dtype dtype,
                                  int ndim, const size_t *shape, const ptrdiff_t *strides,
                                  void (*release)(void *), void *user, twin__site site,
                                  twin_array **out) {
  geometry g;
  twin_status s = check_lent(fn, ctx, dtype, ndim, shape, out);
  if (s == TWIN_OK)
    s = measure(fn, dtype, ndim, shape, strides, &g);
  if (s != TWIN_OK)
    return s;
  size_t item = twin_dtype_size(dtype);
  if (!ptr && g.size)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ptr is NULL for %zu elements", fn, g.size);
  if ((uintptr_t)ptr % item)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: ptr %p is not aligned for %s elements "
                      "(%zu bytes)",
                      fn, ptr, twin_dtype_name(dtype), item);
  twin_array *a = new_view(dtype, ndim, shape, &g, site);
  if (!a)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for an array object", fn);
  /* An empty array lends no bytes; its side still needs an address, or twin would allocate
   * one there (and then never free it, the side being lent). */
  static char no_bytes;
  size_t nbytes = g.size ? (size_t)(g.hi - g.lo + 1) * item : 0;
  char *base = g.size ? (char *)ptr + g.lo * (ptrdiff_t)item : ptr ? ptr : &no_bytes;
  twin__buffer *b;
  s = twin__buffer_new_external(ctx, nbytes, TWIN__HOST, base, release, user, site, &b);
  if (s != TWIN_OK) {
    twin__free(a);
    return s;
  }
  attach(a, b, (size_t)-g.lo, out);
  return TWIN_OK;
}

twin_status twin_array_wrap_host_at(twin_context *ctx, void *ptr, twin_dtype dtype, int ndim,
                                    const size_t *shape, const ptrdiff_t *strides,
                                    twin_release_fn release_fn, void *user_data, twin_array **out,
                                    const char *file, int line) {
  return twin__array_wrap_host("twin_array_wrap_host", ctx, ptr, dtype, ndim, shape, strides,
                               release_fn, user_data, (twin__site){file, line}, out);
}

twin_status(twin_array_wrap_host)(twin_context *ctx, void *ptr, twin_dtype dtype, int ndim,
                                  const size_t *shape, const ptrdiff_t *strides,
                                  twin_release_fn release_fn, void *user_data, twin_array **out) {
  return twin_array_wrap_host_at(ctx, ptr, dtype, ndim, shape, strides, release_fn, user_data, out,
                                 NULL, 0);
}

/* Checks that elements lo..hi from element `first` lie inside a handle of nbytes. first comes
 * from a byte offset the application gave, so it is compared before any signed arithmetic. */
static twin_status check_inside(const char *fn, const geometry *g, size_t first, size_t item,
                                size_t nbytes) {
  size_t elements = nbytes / item;
  ptrdiff_t lo, hi;
  if (first > elements || first > PTRDIFF_MAX || (g->size && first == elements))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: byte_offset %zu is beyond the %zu-byte buffer", fn, first * item,
                      nbytes);
  if (!g->size)
    return TWIN_OK;
  /* first <= elements <= PTRDIFF_MAX / item, and lo..hi span at most that many elements. */
  if (__builtin_add_overflow((ptrdiff_t)first, g->lo, &lo) ||
      __builtin_add_overflow((ptrdiff_t)first, g->hi, &hi) || lo < 0 || (size_t)hi >= elements)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: the elements reach elements %td..%td (of %zu bytes) from byte_offset "
                      "%zu, outside the %zu-byte buffer",
                      fn, g->lo, g->hi, item, first * item, nbytes);
  return TWIN_OK;
}

twin_status twin__array_wrap_device(const char *fn, twin_context *ctx, void *handle,
                                    size_t byte_offset, twin_dtype dtype, int ndim,
                                    const size_t *shape, const ptrdiff_t *strides,
                                    void (*release)(void *), void *user, twin__site site,
                                    twin_array **out) {
  geometry g;
  twin_status s = check_lent(fn, ctx, dtype, ndim, shape, out);
  if (s == TWIN_OK)
    s = measure(fn, dtype, ndim, shape, strides, &g);
  if (s != TWIN_OK)
    return s;
  size_t item = twin_dtype_size(dtype), nbytes = 0;
  if ((s = twin__check_device(ctx, fn)) != TWIN_OK)
    return s;
  if (!handle)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the device buffer is NULL", fn);
  if (byte_offset % item)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: byte_offset %zu is not a multiple of the "
                      "%s element size, %zu bytes",
                      fn, byte_offset, twin_dtype_name(dtype), item);
  if ((s = twin__check_fp64(ctx, dtype, fn)) != TWIN_OK ||
      (s = twin__adopt_device(fn, ctx, handle, &nbytes)) != TWIN_OK)
    return s;
  twin_array *a = NULL;
  s = check_inside(fn, &g, byte_offset / item, item, nbytes);
  if (s == TWIN_OK && !(a = new_view(dtype, ndim, shape, &g, site)))
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for an array object", fn);
  twin__buffer *b;
  if (s == TWIN_OK)
    s = twin__buffer_new_external(ctx, nbytes, TWIN__DEVICE, handle, release, user, site, &b);
  if (s != TWIN_OK) {
    twin__free(a);
    twin__adopt_undo(ctx, handle);
    return s;
  }
  attach(a, b, byte_offset / item, out);
  return TWIN_OK;
}

/* Arrays: immutable views (dtype, shape, strides, offset) onto a refcounted buffer, the checks
 * every array constructor shares, and the lifetime checks of array objects under TWIN_DEBUG. */
#include <stdio.h>
#include <string.h>

#include "objects.h"

/* Checks the arguments every constructor shares and computes the element count and byte
 * size with overflow checks. */
twin_status twin__check_geometry(const char *fn, const twin_context *ctx, twin_dtype dtype,
                                 int ndim, const size_t *shape) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!twin__dtype_valid(dtype))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: dtype %d is not a twin_dtype", fn,
                      (int)dtype);
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ndim is %d, outside 0..%d", fn, ndim,
                      TWIN_MAX_DIMS);
  if (ndim > 0 && !shape)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: shape is NULL with ndim %d", fn, ndim);
  return TWIN_OK;
}

twin_status twin__check_shape(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                              size_t *size) {
  size_t n = 1, span = twin__item_size(dtype);
  for (int i = 0; i < ndim; i++)
    if (twin__mul_overflows(n, shape[i], &n))
      return twin__fail(TWIN_ERR_OVERFLOW, "%s: element count overflows at shape[%d] = %zu", fn, i,
                        shape[i]);
  /* Byte offsets are also used as ptrdiff_t, so the limit is PTRDIFF_MAX (the element size is a
   * power of 2: n elements fit exactly when n is at most the limit shifted down). */
  if (n > (size_t)PTRDIFF_MAX >> twin__item_shift(dtype))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: %zu elements of %s overflow the byte size", fn, n,
                      twin_dtype_name(dtype));
  /* With elements, span is nbytes; an empty shape must fit as if it had them. */
  for (int i = 0; i < ndim && n == 0; i++)
    if (twin__mul_overflows(span, shape[i] ? shape[i] : 1, &span) || span > PTRDIFF_MAX)
      return twin__fail(TWIN_ERR_OVERFLOW,
                        "%s: shape[%d] = %zu overflows the strides of this empty %s array: its "
                        "axis lengths, zero-length ones counted as 1, times the element size "
                        "must fit in ptrdiff_t",
                        fn, i, shape[i], twin_dtype_name(dtype));
  *size = n;
  return TWIN_OK;
}

twin_status twin__check_extent(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                               const ptrdiff_t *strides, ptrdiff_t *lo, ptrdiff_t *hi) {
  ptrdiff_t item = (ptrdiff_t)twin__item_size(dtype), low = 0, high = 0, step, span;
  *lo = *hi = 0; /* in elements: the byte sums fit, so these do too */
  for (int i = 0; i < ndim; i++) {
    if (__builtin_mul_overflow(strides[i], item, &step))
      return twin__fail(TWIN_ERR_OVERFLOW,
                        "%s: stride %td of axis %d overflows in bytes (%td-byte elements)", fn,
                        strides[i], i, item);
    if (shape[i] == 0)
      continue;
    if (__builtin_mul_overflow(step, (ptrdiff_t)(shape[i] - 1), &span) ||
        __builtin_add_overflow(span < 0 ? low : high, span, span < 0 ? &low : &high))
      return twin__fail(TWIN_ERR_OVERFLOW,
                        "%s: the extent overflows at axis %d (shape %zu, stride %td)", fn, i,
                        shape[i], strides[i]);
    *(span < 0 ? lo : hi) += strides[i] * (ptrdiff_t)(shape[i] - 1);
  }
  return TWIN_OK;
}

bool twin__scaled_stride(ptrdiff_t stride, ptrdiff_t factor, size_t len, twin_dtype dtype,
                         ptrdiff_t *out) {
  ptrdiff_t bytes;
  if (!__builtin_mul_overflow(stride, factor, out) &&
      !__builtin_mul_overflow(*out, (ptrdiff_t)twin__item_size(dtype), &bytes))
    return true;
  *out = 0;
  return len <= 1;
}

static twin_status check_new(const char *fn, twin_context *ctx, twin_dtype dtype, int ndim,
                             const size_t *shape, size_t *size, size_t *nbytes) {
  twin_status s = twin__check_geometry(fn, ctx, dtype, ndim, shape);
  if (s == TWIN_OK)
    s = twin__check_shape(fn, dtype, ndim, shape, size);
  if (s == TWIN_OK)
    *nbytes = *size * twin__item_size(dtype);
  return s;
}

/* A new array object covering buffer b contiguously; takes over the caller's reference on b. */
static twin_status wrap_buffer(twin__buffer *b, twin_dtype dtype, int ndim, const size_t *shape,
                               size_t size, twin__site site, twin_array **out) {
  twin_array *a = twin__array_alloc();
  if (!a) {
    twin__buffer_unref(b);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for an array object");
  }
  /* The products fit: twin__check_shape bounds them, zero-length axes counted as 1. */
  ptrdiff_t strides[TWIN_MAX_DIMS], stride = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= (ptrdiff_t)(shape[i] ? shape[i] : 1);
  }
  twin__array_init(a, b, dtype, ndim, shape, strides, size, 0, site);
  memset(a->owner, 0, sizeof a->owner);
  twin__array_attach(a, true);
  *out = a;
  return TWIN_OK;
}

/* A new array on a new buffer, for arguments check_new has passed. */
static twin_status make_checked(twin_context *ctx, twin_dtype dtype, int ndim, const size_t *shape,
                                size_t size, size_t nbytes, bool zero, twin__site site,
                                twin_array **out) {
  twin__buffer *b;
  twin_status s = twin__buffer_new(ctx, nbytes, zero, site, &b);
  if (s != TWIN_OK)
    return s;
  return wrap_buffer(b, dtype, ndim, shape, size, site, out);
}

twin_status twin__array_new(const char *fn, twin_context *ctx, twin_dtype dtype, int ndim,
                            const size_t *shape, bool zero, twin__site site, twin_array **out) {
  size_t size, nbytes;
  twin_status s = check_new(fn, ctx, dtype, ndim, shape, &size, &nbytes);
  if (s == TWIN_OK && !out)
    s = twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  if (s != TWIN_OK)
    return s;
  return make_checked(ctx, dtype, ndim, shape, size, nbytes, zero, site, out);
}

twin_status twin_array_new_at(twin_context *ctx, twin_dtype dtype, int ndim, const size_t *shape,
                              twin_array **out, const char *file, int line) {
  return twin__array_new("twin_array_new", ctx, dtype, ndim, shape, false, (twin__site){file, line},
                         out);
}

twin_status(twin_array_new)(twin_context *ctx, twin_dtype dtype, int ndim, const size_t *shape,
                            twin_array **out) {
  return twin_array_new_at(ctx, dtype, ndim, shape, out, NULL, 0);
}

twin_status twin_array_zeros_at(twin_context *ctx, twin_dtype dtype, int ndim, const size_t *shape,
                                twin_array **out, const char *file, int line) {
  return twin__array_new("twin_array_zeros", ctx, dtype, ndim, shape, true,
                         (twin__site){file, line}, out);
}

twin_status(twin_array_zeros)(twin_context *ctx, twin_dtype dtype, int ndim, const size_t *shape,
                              twin_array **out) {
  return twin_array_zeros_at(ctx, dtype, ndim, shape, out, NULL, 0);
}

twin_array *twin_array_ref(twin_array *a) {
  twin__debug_check(a, "twin_array_ref");
  if (a)
    twin__ref_get(&a->refs);
  return a;
}

/* Ends the accesses still open through a, whose last reference is going (what a write access
 * wrote counts: it was marked when the access began). Under TWIN_DEBUG it reports them as a
 * misuse, naming where each began, and returns true: the caller then calls twin__debug_fatal
 * once a is released. The count is read without the buffer's lock: no other thread holds a
 * reference that could open or end one now. */
static bool end_open_accesses(twin_array *a) {
  bool report = atomic_load_explicit(&twin__debug, memory_order_relaxed);
  char what[1024];
  twin__records_drop(a, what, sizeof what);
  if (report)
    twin__debug_report_open(a, what);
  return report;
}

/* Keeps a released object, marked dead, so that a later use is reported. */
static void poison(twin_array *a) {
  a->magic = TWIN__ARRAY_POISONED;
  a->buf = NULL; /* gone: an unchecked use faults at once rather than touching freed memory */
  twin__debug_keep(a);
}

/* Drops one reference to a; true for the last. An array object is reached only through the
 * references to it (the report reads the views of a buffer under its lock and takes none), so
 * a holder that sees a count of 1 holds the only reference, which no other thread can copy:
 * it goes without an atomic read-modify-write. The acquire pairs with the drops of other
 * threads (twin__ref_put), so their writes are seen before a is torn down. */
static bool drop_ref(twin_array *a) {
  if (atomic_load_explicit(&a->refs, memory_order_acquire) != 1)
    return twin__ref_put(&a->refs);
  atomic_store_explicit(&a->refs, 0, memory_order_relaxed);
  return true;
}

void twin_array_unref(twin_array *a) {
  twin__debug_check(a, "twin_array_unref");
  if (!a || !drop_ref(a))
    return;
  twin__buffer *b = a->buf;
  bool misuse = a->opens && end_open_accesses(a);
  bool last = twin__buffer_detach(a);
  if (atomic_load_explicit(&twin__debug, memory_order_relaxed))
    poison(a);
  else
    twin__give(TWIN__KEEP_ARRAY, a); /* not poisoned: debugging is off */
  if (last)
    twin__buffer_unref(b); /* the views' reference */
  if (misuse)
    twin__debug_fatal();
}

twin_dtype twin_array_dtype(const twin_array *a) {
  twin__debug_check(a, "twin_array_dtype");
  return a->dtype;
}

int twin_array_ndim(const twin_array *a) {
  twin__debug_check(a, "twin_array_ndim");
  return a->ndim;
}

const size_t *twin_array_shape(const twin_array *a) {
  twin__debug_check(a, "twin_array_shape");
  return a->shape;
}

const ptrdiff_t *twin_array_strides(const twin_array *a) {
  twin__debug_check(a, "twin_array_strides");
  return a->strides;
}

size_t twin_array_size(const twin_array *a) {
  twin__debug_check(a, "twin_array_size");
  return a->size;
}

size_t twin_array_nbytes(const twin_array *a) {
  twin__debug_check(a, "twin_array_nbytes");
  return a->size * twin_dtype_size(a->dtype);
}

twin_context *twin_array_context(const twin_array *a) {
  twin__debug_check(a, "twin_array_context");
  return a->buf->ctx;
}

bool twin_array_is_zero_copy(const twin_array *a) {
  twin__debug_check(a, "twin_array_is_zero_copy");
  return twin__one_copy(a->buf);
}

bool twin_array_is_contiguous(const twin_array *a) {
  twin__debug_check(a, "twin_array_is_contiguous");
  return twin__is_contiguous(a);
}

twin_status twin__check_writable(const twin_array *a, const char *who, const char *what) {
  if (!a->read_only)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_READ_ONLY,
                    "%s: %s is a broadcast view (some elements alias each other) and cannot be "
                    "written; copy it first",
                    who, what);
}

bool twin__is_contiguous(const twin_array *a) {
  if (a->size == 0)
    return true; /* and the products below stay within the element count */
  ptrdiff_t expect = 1;
  for (int i = a->ndim - 1; i >= 0; i--) {
    if (a->shape[i] != 1 && a->strides[i] != expect)
      return false;
    expect *= (ptrdiff_t)a->shape[i];
  }
  return true;
}

void twin__array_extent(const twin_array *a, size_t *lo, size_t *hi) {
  size_t item = twin_dtype_size(a->dtype);
  if (a->size == 0) {
    *lo = *hi = a->offset * item;
    return;
  }
  /* Views are proven inside their buffer when made, so this cannot overflow. */
  ptrdiff_t first = (ptrdiff_t)a->offset, last = (ptrdiff_t)a->offset;
  for (int i = 0; i < a->ndim; i++) {
    ptrdiff_t span = a->strides[i] * (ptrdiff_t)(a->shape[i] - 1);
    if (span < 0)
      first += span;
    else
      last += span;
  }
  *lo = (size_t)first * item;
  *hi = ((size_t)last + 1) * item;
}

twin_status twin_array_set_owner(twin_array *a, const char *owner) {
  twin__debug_check(a, "twin_array_set_owner");
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_array_set_owner: a is NULL");
  size_t n = owner ? strlen(owner) : 0;
  if (n >= TWIN__OWNER_MAX)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "twin_array_set_owner: owner \"%s\" is %zu "
                      "characters; at most %d fit",
                      owner, n, TWIN__OWNER_MAX - 1);
  memset(a->owner, 0, sizeof a->owner);
  if (n)
    memcpy(a->owner, owner, n);
  return TWIN_OK;
}

const char *twin_array_owner(const twin_array *a) {
  twin__debug_check(a, "twin_array_owner");
  return a->owner;
}

/* ---- Lifetime checks under TWIN_DEBUG ---- */

static void describe(const twin_array *a) {
  if (a->site.file)
    fprintf(stderr, "made at %s:%d", a->site.file, a->site.line);
  else
    fprintf(stderr, "made by a call that recorded no file and line (use the twin.h macros)");
  const char *dtype = twin_dtype_name(a->dtype);
  fprintf(stderr, " as %s[", dtype ? dtype : "?");
  for (int i = 0; i < a->ndim && i < TWIN_MAX_DIMS; i++)
    fprintf(stderr, i ? "x%zu" : "%zu", a->shape[i]);
  fprintf(stderr, "]");
  if (a->owner[0] && memchr(a->owner, '\0', sizeof a->owner))
    fprintf(stderr, ", owner \"%s\"", a->owner);
}

void twin__debug_report_open(const twin_array *a, const char *what) {
  fprintf(stderr,
          "twin: TWIN_DEBUG: twin_array_unref(%p): the last reference to this array went while "
          "it had accesses open, never ended (%s); twin ended them; the array was ",
          (const void *)a, what);
  describe(a);
  fprintf(stderr, "\n");
  fflush(stderr);
}

void twin__debug_check_slow(const twin_array *a, const char *fn) {
  if (!a || a->magic == TWIN__ARRAY_ALIVE)
    return;
  if (a->magic == TWIN__ARRAY_POISONED) {
    fprintf(stderr,
            "twin: TWIN_DEBUG: %s(%p): this array was already released (a use after "
            "its last twin_array_unref, or a double unref); it was ",
            fn, (const void *)a);
    describe(a);
  } else {
    fprintf(stderr,
            "twin: TWIN_DEBUG: %s(%p): not a live twin array (never made by twin, or "
            "released before the last %d releases twin keeps poisoned)",
            fn, (const void *)a, TWIN__DEBUG_RING);
  }
  fprintf(stderr, "\n");
  fflush(stderr);
  twin__debug_fatal();
}

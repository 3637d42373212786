/* Views: new array objects on the same buffer, with their geometry proven inside it. */
#include <string.h>

#include "internal.h"

/* Checks that every element of the geometry lies in [0, elements) of the buffer, with
 * overflow-checked arithmetic, and returns the element count in *size. */
static twin_status check_inside(const char *fn, int ndim, const size_t *shape,
                                const ptrdiff_t *strides, ptrdiff_t offset, size_t elements,
                                size_t *size) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    if (twin__mul_overflows(n, shape[i], &n))
      return twin__fail(TWIN_ERR_OVERFLOW, "%s: element count overflows at shape[%d] = %zu", fn,
                        i, shape[i]);
  *size = n;
  if (n == 0) {
    if (offset < 0 || (size_t)offset > elements)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: offset %td is outside the buffer of "
                        "%zu elements", fn, offset, elements);
    return TWIN_OK;
  }
  ptrdiff_t lo = offset, hi = offset;
  for (int i = 0; i < ndim; i++) {
    ptrdiff_t span;
    if (shape[i] - 1 > PTRDIFF_MAX ||
        __builtin_mul_overflow(strides[i], (ptrdiff_t)(shape[i] - 1), &span) ||
        __builtin_add_overflow(span < 0 ? lo : hi, span, span < 0 ? &lo : &hi))
      return twin__fail(TWIN_ERR_OVERFLOW, "%s: the extent overflows at axis %d (shape %zu, "
                        "stride %td)", fn, i, shape[i], strides[i]);
  }
  if (lo < 0 || (size_t)hi >= elements)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the view reaches elements %td..%td, "
                      "outside its buffer of %zu elements", fn, lo, hi, elements);
  return TWIN_OK;
}

twin_status twin__array_view(const char *fn, twin_array *a, int ndim, const size_t *shape,
                             const ptrdiff_t *strides, ptrdiff_t offset, twin_array **out) {
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ndim is %d, outside 0..%d", fn, ndim,
                      TWIN_MAX_DIMS);
  size_t size = 0, elements = a->buf->nbytes / twin_dtype_size(a->dtype);
  twin_status s = check_inside(fn, ndim, shape, strides, offset, elements, &size);
  if (s != TWIN_OK)
    return s;
  twin_array *v = twin__malloc(sizeof *v);
  if (!v)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a view", fn);
  memset(v, 0, sizeof *v);
  atomic_init(&v->refs, 1);
  v->buf = twin__buffer_ref(a->buf);
  v->dtype = a->dtype;
  v->ndim = ndim;
  v->size = size;
  v->offset = (size_t)offset;
  v->read_only = a->read_only;
  for (int i = 0; i < ndim; i++) {
    v->shape[i] = shape[i];
    v->strides[i] = strides[i];
  }
  atomic_fetch_add_explicit(&a->buf->ctx->counters.arrays, 1, memory_order_relaxed);
  *out = v;
  return TWIN_OK;
}

twin_status twin_array_as_strided(twin_array *a, int ndim, const size_t *shape,
                                  const ptrdiff_t *strides, ptrdiff_t offset, twin_array **out) {
  static const char fn[] = "twin_array_as_strided";
  if (!a || !out || (ndim > 0 && (!shape || !strides)))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !a ? "a" : !out ? "out" : !shape ? "shape" : "strides");
  ptrdiff_t start;
  if (__builtin_add_overflow((ptrdiff_t)a->offset, offset, &start))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: offset %td overflows", fn, offset);
  return twin__array_view(fn, a, ndim, shape, strides, start, out);
}

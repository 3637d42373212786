/* Views with new axes: reshape (a view when NumPy would make one, by NumPy's no-copy rule) and
 * broadcast_to (a read-only view whose repeated axes have stride 0). Both go through the
 * checked constructor of view.c. */
#include <string.h>

#include "objects.h"

/* The axis holding TWIN_INFER in a new shape (-1 for none); a second one is refused first, as
 * NumPy does, whatever else is wrong with the shape. */
static twin_status find_infer(const char *fn, int ndim, const size_t *in, int *infer) {
  *infer = -1;
  for (int i = 0; i < ndim; i++) {
    if (in[i] != TWIN_INFER)
      continue;
    if (*infer >= 0)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: TWIN_INFER appears twice (axes %d and %d)",
                        fn, *infer, i);
    *infer = i;
  }
  return TWIN_OK;
}

/* The product of the known lengths; a zero length makes it zero, whatever the others are. */
static twin_status known_count(const char *fn, int ndim, const size_t *in, int infer,
                               size_t *known) {
  *known = 1;
  for (int i = 0; i < ndim; i++)
    if (i != infer && in[i] == 0)
      return *known = 0, TWIN_OK;
  for (int i = 0; i < ndim; i++)
    if (i != infer && twin__mul_overflows(*known, in[i], known))
      return twin__fail(TWIN_ERR_OVERFLOW, "%s: the new shape's element count overflows", fn);
  return TWIN_OK;
}

static twin_status reshape_shape(const char *fn, const twin_array *a, int ndim, const size_t *in,
                                 size_t *shape) {
  int infer;
  size_t known;
  twin_status s = find_infer(fn, ndim, in, &infer);
  if (s == TWIN_OK)
    s = known_count(fn, ndim, in, infer, &known);
  if (s != TWIN_OK)
    return s;
  memcpy(shape, in, (size_t)ndim * sizeof *shape);
  if (infer >= 0) {
    if (known == 0 || a->size % known != 0)
      return twin__fail(TWIN_ERR_SHAPE_MISMATCH,
                        "%s: cannot infer axis %d: %zu elements do not divide by %zu", fn, infer,
                        a->size, known);
    shape[infer] = a->size / known;
    known = a->size;
  }
  if (known != a->size)
    return twin__fail(TWIN_ERR_SHAPE_MISMATCH, "%s: the new shape has %zu elements, the array %zu",
                      fn, known, a->size);
  return TWIN_OK;
}

/* NumPy's _attempt_nocopy_reshape (C order): groups old and new axes whose products match;
 * each group of old axes must be contiguous among themselves. False when no view exists. */
static bool nocopy_strides(const twin_array *a, int ndim, const size_t *shape, ptrdiff_t *strides) {
  size_t old_shape[TWIN_MAX_DIMS];
  ptrdiff_t old_strides[TWIN_MAX_DIMS];
  int old_nd = 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != 1) {
      old_shape[old_nd] = a->shape[i];
      old_strides[old_nd++] = a->strides[i];
    }
  int ni = 0, oi = 0, nj = 1, oj = 1;
  while (ni < ndim && oi < old_nd) {
    size_t np = shape[ni], op = old_shape[oi];
    while (np != op) {
      if (np < op)
        np *= shape[nj++];
      else
        op *= old_shape[oj++];
    }
    ptrdiff_t joined;
    for (int k = oi; k < oj - 1; k++)
      if (__builtin_mul_overflow((ptrdiff_t)old_shape[k + 1], old_strides[k + 1], &joined) ||
          old_strides[k] != joined)
        return false;
    /* Only a length-1 axis can get a stride that overflows (the others stay within the
     * group's extent): it becomes 0 there (twin__scaled_stride). */
    strides[nj - 1] = old_strides[oj - 1];
    for (int k = nj - 1; k > ni; k--)
      if (!twin__scaled_stride(strides[k], (ptrdiff_t)shape[k], shape[k - 1], a->dtype,
                               &strides[k - 1]))
        return false;
    ni = nj++;
    oi = oj++;
  }
  ptrdiff_t last = ni >= 1 ? strides[ni - 1] : 1;
  for (int k = ni; k < ndim; k++)
    strides[k] = last;
  return true;
}

twin_status twin_array_reshape_at(twin_array *a, int ndim, const size_t *shape, twin_array **out,
                                  const char *file, int line) {
  static const char fn[] = "twin_array_reshape";
  if (!a || !out || (ndim > 0 && !shape))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !a     ? "a"
                      : !out ? "out"
                             : "shape");
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ndim is %d, outside 0..%d", fn, ndim,
                      TWIN_MAX_DIMS);
  size_t new_shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  twin_status s = reshape_shape(fn, a, ndim, shape, new_shape);
  if (s != TWIN_OK)
    return s;
  if (a->size == 0 || !nocopy_strides(a, ndim, new_shape, strides)) {
    if (a->size != 0)
      return twin__fail(TWIN_ERR_NOT_VIEWABLE,
                        "%s: the array's strides do not allow this shape "
                        "as a view; make it contiguous first (twin_array_contiguous)",
                        fn);
    /* No elements: C-order strides where they fit, 0 where they would overflow (a shape
     * whose strides overflow is then refused by twin__array_view). */
    ptrdiff_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
      strides[i] = stride;
      size_t len = new_shape[i] ? new_shape[i] : 1;
      if (len > PTRDIFF_MAX || __builtin_mul_overflow(stride, (ptrdiff_t)len, &stride))
        stride = 0;
    }
  }
  return twin__array_view(fn, a, ndim, new_shape, strides, (ptrdiff_t)a->offset,
                          (twin__site){file, line}, out);
}

twin_status(twin_array_reshape)(twin_array *a, int ndim, const size_t *shape, twin_array **out) {
  return twin_array_reshape_at(a, ndim, shape, out, NULL, 0);
}

twin_status twin_array_broadcast_to_at(twin_array *a, int ndim, const size_t *shape,
                                       twin_array **out, const char *file, int line) {
  static const char fn[] = "twin_array_broadcast_to";
  if (!a || !out || (ndim > 0 && !shape))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !a     ? "a"
                      : !out ? "out"
                             : "shape");
  if (ndim < a->ndim || ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ndim %d is outside %d..%d", fn, ndim, a->ndim,
                      TWIN_MAX_DIMS);
  ptrdiff_t strides[TWIN_MAX_DIMS];
  int lead = ndim - a->ndim;
  for (int i = 0; i < ndim; i++) {
    int k = i - lead; /* the matching axis of a, aligned at the trailing end */
    if (k < 0 || (a->shape[k] == 1 && shape[i] != 1))
      strides[i] = 0;
    else if (a->shape[k] == shape[i])
      strides[i] = a->strides[k];
    else
      return twin__fail(TWIN_ERR_SHAPE_MISMATCH,
                        "%s: axis %d of length %zu cannot broadcast "
                        "to %zu",
                        fn, k, a->shape[k], shape[i]);
  }
  twin_array *v;
  twin_status s = twin__array_view(fn, a, ndim, shape, strides, (ptrdiff_t)a->offset,
                                   (twin__site){file, line}, &v);
  if (s == TWIN_OK) {
    v->read_only = true; /* elements alias each other, as in NumPy */
    *out = v;
  }
  return s;
}

twin_status(twin_array_broadcast_to)(twin_array *a, int ndim, const size_t *shape,
                                     twin_array **out) {
  return twin_array_broadcast_to_at(a, ndim, shape, out, NULL, 0);
}

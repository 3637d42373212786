/* A view's layout as MPI needs it: the fewest axes that address the same bytes in the same
 * (C) order, with byte strides. Datatypes are built from it, and the send and receive paths
 * choose between a datatype and packing by its innermost run. */
#include <stdlib.h>

#include "internal.h"

/* Axes of length 1 address one element whatever their stride; an axis of length 0 empties
 * the view. */
static void drop_unit_axes(const twin_array *a, twin_mpi__layout *l) {
  const size_t *shape = twin_array_shape(a);
  const ptrdiff_t *strides = twin_array_strides(a);
  for (int k = 0; k < twin_array_ndim(a); k++) {
    if (shape[k] == 0)
      l->empty = true;
    if (shape[k] == 1)
      continue;
    l->shape[l->n] = shape[k];
    l->stride[l->n] = strides[k] * (ptrdiff_t)l->elem;
    l->n++;
  }
}

/* Axis k and k+1 merge when stepping k is the same as running through all of k+1: then they
 * are one axis of shape[k] * shape[k+1] with k+1's stride, in the same element order. Zero
 * strides merge too (0 == n * 0): a repeated run of repeats is one longer repeat. */
static void merge_axes(twin_mpi__layout *l) {
  int out = 0;
  for (int k = 1; k < l->n; k++) {
    if (l->stride[out] == (ptrdiff_t)l->shape[k] * l->stride[k]) {
      l->shape[out] *= l->shape[k];
      l->stride[out] = l->stride[k];
    } else {
      out++;
      l->shape[out] = l->shape[k];
      l->stride[out] = l->stride[k];
    }
  }
  if (l->n > 0)
    l->n = out + 1;
}

void twin_mpi__layout_of(const twin_array *a, twin_mpi__layout *l) {
  l->n = 0;
  l->empty = false;
  l->elem = twin_dtype_size(twin_array_dtype(a));
  drop_unit_axes(a, l);
  if (l->empty)
    l->n = 0;
  else
    merge_axes(l);
}

size_t twin_mpi__run_bytes(const twin_mpi__layout *l) {
  if (l->n > 0 && l->stride[l->n - 1] == (ptrdiff_t)l->elem)
    return l->shape[l->n - 1] * l->elem;
  return l->elem;
}

static int by_abs_stride(const void *x, const void *y) {
  size_t a = (size_t)llabs((long long)((const ptrdiff_t *)x)[0]);
  size_t b = (size_t)llabs((long long)((const ptrdiff_t *)y)[0]);
  return (a > b) - (a < b);
}

bool twin_mpi__may_alias(const twin_mpi__layout *l) {
  ptrdiff_t axis[TWIN_MAX_DIMS][2]; /* |stride|, shape */
  for (int k = 0; k < l->n; k++) {
    axis[k][0] = l->stride[k] < 0 ? -l->stride[k] : l->stride[k];
    axis[k][1] = (ptrdiff_t)l->shape[k];
  }
  qsort(axis, (size_t)l->n, sizeof axis[0], by_abs_stride);
  /* inner: bytes from the first byte of an element to the last byte the inner axes reach. */
  ptrdiff_t inner = (ptrdiff_t)l->elem;
  for (int k = 0; k < l->n; k++) {
    if (axis[k][0] < inner)
      return true;
    inner += axis[k][0] * (axis[k][1] - 1);
  }
  return false;
}

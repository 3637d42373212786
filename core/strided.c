/* Element-wise copies between strided host layouts, used by the host backend and by the
 * packed read/write helpers. The innermost axis is a memcpy when both sides are unit-stride. */
#include <string.h>

#include "internal.h"

static void copy_row(char *dst, ptrdiff_t ds, const char *src, ptrdiff_t ss, size_t n,
                     size_t item) {
  if (ds == 1 && ss == 1) {
    memcpy(dst, src, n * item);
    return;
  }
  ptrdiff_t db = ds * (ptrdiff_t)item, sb = ss * (ptrdiff_t)item;
  for (size_t i = 1;; i++, dst += db, src += sb) {
    memcpy(dst, src, item);
    if (i == n)
      break; /* no step past the last element */
  }
}

void twin__strided_copy(void *dst, const ptrdiff_t *dst_strides, const void *src,
                        const ptrdiff_t *src_strides, const size_t *shape, int ndim, size_t item) {
  size_t total = 1;
  for (int i = 0; i < ndim; i++)
    total *= shape[i];
  if (total == 0)
    return;
  if (ndim == 0) {
    memcpy(dst, src, item);
    return;
  }
  /* Walk every index of the outer axes like an odometer; the last axis is one row. */
  size_t index[TWIN_MAX_DIMS] = {0};
  char *d = dst;
  const char *s = src;
  size_t rows = total / shape[ndim - 1];
  for (size_t r = 0; r < rows; r++) {
    copy_row(d, dst_strides[ndim - 1], s, src_strides[ndim - 1], shape[ndim - 1], item);
    /* Carry without stepping past an axis's last element, so every byte offset stays within
     * the view's extent (a stride times the item size fits in ptrdiff_t, see
     * twin__check_extent; a stride times the axis length need not). */
    for (int ax = ndim - 2; ax >= 0; ax--) {
      if (++index[ax] < shape[ax]) {
        d += dst_strides[ax] * (ptrdiff_t)item;
        s += src_strides[ax] * (ptrdiff_t)item;
        break;
      }
      d -= dst_strides[ax] * (ptrdiff_t)item * (ptrdiff_t)(shape[ax] - 1);
      s -= src_strides[ax] * (ptrdiff_t)item * (ptrdiff_t)(shape[ax] - 1);
      index[ax] = 0;
    }
  }
}

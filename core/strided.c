/* Strided element loops: copies between strided host layouts (used by the host copy and by the
 * packed read/write helpers; the innermost axis is a memcpy when both sides are unit-stride),
 * and the simplification of a copy's or fill's views to the fewest axes, which the OpenCL
 * kernels rely on. */
#include <string.h>

#include "ground.h"

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

/* ---- Reducing the iteration space ---- */

typedef struct axis {
  size_t n;
  ptrdiff_t d, s; /* dst and src strides */
} axis;

static void flip_axis(axis *x, twin__view *dst, twin__view *src) {
  ptrdiff_t last = (ptrdiff_t)x->n - 1;
  dst->offset = (size_t)((ptrdiff_t)dst->offset + last * x->d);
  x->d = -x->d;
  if (src) {
    src->offset = (size_t)((ptrdiff_t)src->offset + last * x->s);
    x->s = -x->s;
  }
}

static ptrdiff_t magnitude(ptrdiff_t v) {
  return v < 0 ? -v : v;
}

/* Orders by dst stride, largest first; ties by the source's stride magnitude. */
static bool goes_before(const axis *a, const axis *b) {
  return a->d > b->d || (a->d == b->d && magnitude(a->s) > magnitude(b->s));
}

void twin__view_simplify(twin__view *dst, twin__view *src) {
  axis ax[TWIN_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < dst->ndim; i++) {
    if (dst->shape[i] == 0)
      return; /* no elements: nothing to walk */
    if (dst->shape[i] == 1)
      continue;
    ax[n] = (axis){dst->shape[i], dst->strides[i], src ? src->strides[i] : 0};
    if (ax[n].d < 0)
      flip_axis(&ax[n], dst, src);
    n++;
  }
  for (int i = 1; i < n; i++) /* insertion sort: stable, and n <= 8 */
    for (int j = i; j > 0 && goes_before(&ax[j], &ax[j - 1]); j--) {
      axis t = ax[j];
      ax[j] = ax[j - 1];
      ax[j - 1] = t;
    }
  int m = 0;
  for (int i = 0; i < n; i++) {
    axis *o = m ? &ax[m - 1] : NULL;
    if (o && o->d == (ptrdiff_t)ax[i].n * ax[i].d && o->s == (ptrdiff_t)ax[i].n * ax[i].s) {
      o->n *= ax[i].n; /* outer axis o continues where axis i ends, in both views */
      o->d = ax[i].d;
      o->s = ax[i].s;
    } else {
      ax[m++] = ax[i];
    }
  }
  dst->ndim = m;
  if (src)
    src->ndim = m;
  for (int i = 0; i < m; i++) {
    dst->shape[i] = ax[i].n;
    dst->strides[i] = ax[i].d;
    if (src) {
      src->shape[i] = ax[i].n;
      src->strides[i] = ax[i].s;
    }
  }
}

twin__view twin__view_packed(const twin__view *v, void *packed) {
  twin__view p = *v;
  p.mem = packed;
  p.track = NULL;
  p.offset = 0;
  ptrdiff_t stride = 1;
  for (int i = v->ndim - 1; i >= 0; i--) {
    p.strides[i] = stride;
    stride *= (ptrdiff_t)v->shape[i];
  }
  return p;
}

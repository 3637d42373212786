/* Regions: the bytes of a view (its elements, at a byte offset in its buffer) as at most a few
 * strided patterns (ground.h), which the dirty map marks and coherence moves; a view whose
 * layout fits none is described by its extent (exact false). */
#include <stdlib.h>
#include <string.h>

#include "ground.h"

/* TWIN_MOVE=extent: every view moves and is marked by its extent, as before element-exact
 * moves (for comparisons in twin-bench). Read once. */
bool twin__move_extent(void) {
  static atomic_int mode = -1;
  int m = atomic_load_explicit(&mode, memory_order_relaxed);
  if (m < 0) {
    const char *e = getenv("TWIN_MOVE");
    m = e && strcmp(e, "extent") == 0;
    atomic_store_explicit(&mode, m, memory_order_relaxed);
  }
  return m == 1;
}

void twin__region_range(size_t lo, size_t hi, twin__region *r) {
  r->n = lo < hi;
  r->exact = true;
  r->lo = lo;
  r->hi = hi;
  if (lo < hi)
    r->p[0] = twin__pattern_range(lo, hi);
}

size_t twin__region_bytes(const twin__region *r) {
  size_t total = 0;
  for (unsigned i = 0; i < r->n; i++)
    total += twin__pattern_bytes(&r->p[i]);
  return total;
}

typedef struct axis {
  size_t n, stride; /* stride in bytes, > 0 */
} axis;

static int by_stride(const void *x, const void *y) {
  const axis *a = x, *b = y;
  return (a->stride > b->stride) - (a->stride < b->stride);
}

/* The view's axes that matter, in bytes, innermost first, with axes that continue each other
 * merged; *first gets the byte of its lowest element. Returns the number of axes. */
static int axes_of(size_t item, size_t offset, int ndim, const size_t *shape,
                   const ptrdiff_t *strides, axis *ax, size_t *first) {
  ptrdiff_t lo = (ptrdiff_t)offset;
  int n = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] == 1 || strides[i] == 0)
      continue; /* one element, or a broadcast axis: the same bytes */
    if (strides[i] < 0)
      lo += strides[i] * (ptrdiff_t)(shape[i] - 1);
    ax[n++] = (axis){shape[i], (size_t)(strides[i] < 0 ? -strides[i] : strides[i]) * item};
  }
  *first = (size_t)lo * item;
  qsort(ax, (size_t)n, sizeof ax[0], by_stride);
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (m > 0 && ax[i].stride == ax[m - 1].stride * ax[m - 1].n)
      ax[m - 1].n *= ax[i].n;
    else
      ax[m++] = ax[i];
  }
  return m;
}

/* Fills r with the view's patterns; false when they do not fit. */
static bool patterns_of(size_t item, int n, const axis *ax, size_t first, twin__region *r) {
  size_t run = item;
  int k = 0;
  if (n > 0 && ax[0].stride == item)
    run = ax[k++].n * item;
  size_t span = run;
  for (int i = k; i < n; i++) {
    if (ax[i].stride < span)
      return false; /* axes that interleave: not runs in groups */
    span = (ax[i].n - 1) * ax[i].stride + span;
  }
  size_t levels = (size_t)(n - k), outer = levels > 2 ? ax[n - 1].n : 1;
  if (levels > 3 || outer > TWIN__REGION_MAX)
    return false;
  twin__pattern p = {first, run, {0, 0}, {1, 1}};
  for (size_t l = 0; l < levels && l < 2; l++) {
    p.stride[l] = ax[k + l].stride;
    p.count[l] = ax[k + l].n;
  }
  twin__pattern_normal(&p);
  r->n = (unsigned)outer;
  for (size_t j = 0; j < outer; j++) {
    r->p[j] = p;
    r->p[j].lo = first + j * (levels > 2 ? ax[n - 1].stride : 0);
  }
  return true;
}

void twin__region_of(size_t item, size_t offset, int ndim, const size_t *shape,
                     const ptrdiff_t *strides, twin__region *r) {
  axis ax[TWIN_MAX_DIMS];
  size_t first, size = 1;
  for (int i = 0; i < ndim; i++)
    size *= shape[i];
  if (size == 0) {
    twin__region_range(offset * item, offset * item, r);
    return;
  }
  int n = axes_of(item, offset, ndim, shape, strides, ax, &first);
  size_t span = item;
  for (int i = 0; i < n; i++)
    span += (ax[i].n - 1) * ax[i].stride;
  r->lo = first;
  r->hi = first + span;
  bool contiguous = n == 0 || (n == 1 && ax[0].stride == item);
  if (!contiguous && !twin__move_extent() && patterns_of(item, n, ax, first, r)) {
    r->exact = true;
    return;
  }
  r->n = 1;
  r->exact = contiguous;
  r->p[0] = twin__pattern_range(r->lo, r->hi);
}

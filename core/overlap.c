/* Whether two array objects share an element, for the region reservations (access.c) and
 * twin_array_overlaps. Exact
 * in O(ndim) for views of one element size and the same strides whose index boxes sit in one
 * lattice: slices with step 1 of one parent (a field, its faces, ghosts and interior) are the
 * case that matters. Every other pair is compared by byte extents, which may see an overlap
 * where there is none but never misses one. */
#include "objects.h"

/* A view on the lattice of its strides: all positive, axes ordered largest stride first, the
 * offset of its lowest element. */
typedef struct lattice {
  int ndim;
  size_t offset;
  size_t shape[TWIN_MAX_DIMS];
  size_t stride[TWIN_MAX_DIMS];
} lattice;

static size_t magnitude(ptrdiff_t s) {
  return s < 0 ? (size_t)0 - (size_t)s : (size_t)s;
}

/* a's axes in the order of `order`, each reversed where its stride is negative (which moves
 * the offset to the axis's last element and keeps the elements). */
static void lattice_of(const twin_array *a, const int *order, lattice *out) {
  out->ndim = a->ndim;
  out->offset = a->offset;
  for (int p = 0; p < a->ndim; p++) {
    int k = order[p];
    out->shape[p] = a->shape[k];
    out->stride[p] = magnitude(a->strides[k]);
    if (a->strides[k] < 0)
      out->offset -= out->stride[p] * (a->shape[k] - 1);
  }
}

/* The axes of a by |stride|, largest first; false when two are equal or one is 0, or a
 * stride does not divide the next larger one: no lattice to place boxes on. */
static bool lattice_order(const twin_array *a, int *order) {
  for (int k = 0; k < a->ndim; k++) {
    int p = k;
    for (; p > 0 && magnitude(a->strides[order[p - 1]]) < magnitude(a->strides[k]); p--)
      order[p] = order[p - 1];
    order[p] = k;
  }
  for (int p = 0; p < a->ndim; p++) {
    size_t s = magnitude(a->strides[order[p]]);
    size_t larger = p > 0 ? magnitude(a->strides[order[p - 1]]) : 0;
    if (s == 0 || (p > 0 && (larger == s || larger % s != 0)))
      return false;
  }
  return true;
}

/* The first index of v on each axis of the lattice: its offset in mixed radix, the radix of
 * axis p being stride[p - 1] / stride[p] (axis 0 unbounded). False when v does not fit the
 * radix (its box would wrap into the next row), so indices would not name elements uniquely. */
static bool lattice_start(const lattice *v, size_t *start) {
  size_t base = v->stride[v->ndim - 1], u = v->offset / base;
  for (int p = 0; p < v->ndim; p++) {
    size_t t = v->stride[p] / base;
    start[p] = p == 0 ? u / t : u % (v->stride[p - 1] / base) / t;
    if (p > 0 && start[p] + v->shape[p] > v->stride[p - 1] / v->stride[p])
      return false;
  }
  return true;
}

/* The exact test; false in *decided when a and b are not on one lattice. */
static bool boxes_overlap(const twin_array *a, const twin_array *b, bool *decided) {
  int order[TWIN_MAX_DIMS];
  lattice la, lb;
  size_t sa[TWIN_MAX_DIMS], sb[TWIN_MAX_DIMS];
  *decided = false;
  if (a->ndim != b->ndim || twin_dtype_size(a->dtype) != twin_dtype_size(b->dtype))
    return true;
  for (int k = 0; k < a->ndim; k++)
    if (a->strides[k] != b->strides[k])
      return true;
  if (a->ndim == 0) {
    *decided = true;
    return a->offset == b->offset;
  }
  if (!lattice_order(a, order))
    return true;
  lattice_of(a, order, &la);
  lattice_of(b, order, &lb);
  size_t base = la.stride[a->ndim - 1];
  *decided = la.offset % base != lb.offset % base; /* apart between the lattice's points */
  if (*decided)
    return false;
  if (!lattice_start(&la, sa) || !lattice_start(&lb, sb))
    return true;
  *decided = true;
  for (int p = 0; p < a->ndim; p++)
    if (sa[p] >= sb[p] + lb.shape[p] || sb[p] >= sa[p] + la.shape[p])
      return false;
  return true;
}

bool twin__arrays_overlap(const twin_array *a, const twin_array *b) {
  if (a->buf != b->buf || a->size == 0 || b->size == 0)
    return false;
  bool decided;
  bool overlap = boxes_overlap(a, b, &decided);
  if (decided)
    return overlap;
  size_t alo, ahi, blo, bhi;
  twin__array_extent(a, &alo, &ahi);
  twin__array_extent(b, &blo, &bhi);
  return alo < bhi && blo < ahi;
}

bool twin_array_overlaps(const twin_array *a, const twin_array *b) {
  twin__debug_check(a, "twin_array_overlaps");
  twin__debug_check(b, "twin_array_overlaps");
  return a && b && twin__arrays_overlap(a, b);
}

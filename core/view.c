/* Views: new array objects on the same buffer, with their geometry proven inside it: the one
 * checked constructor every view goes through, and the views that select or reorder axes
 * (as_strided, slice, index, transpose, squeeze, expand_dims). Reshape and broadcast_to,
 * which make new axes, are in reshape.c. */
#include <string.h>

#include "objects.h"

/* Checks that the geometry keeps the array invariants (twin__check_shape, twin__check_extent)
 * and that every element lies in [0, elements) of the buffer, and returns the element count in
 * *size. An empty view's offset must lie in [0, elements]. */
static twin_status check_inside(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                                const ptrdiff_t *strides, ptrdiff_t offset, size_t elements,
                                size_t *size) {
  ptrdiff_t lo, hi;
  twin_status s = twin__check_shape(fn, dtype, ndim, shape, size);
  if (s == TWIN_OK)
    s = twin__check_extent(fn, dtype, ndim, shape, strides, &lo, &hi);
  if (s != TWIN_OK)
    return s;
  if (*size == 0 && (offset < 0 || (size_t)offset > elements))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: offset %td is outside the buffer of "
                      "%zu elements",
                      fn, offset, elements);
  if (*size == 0)
    return TWIN_OK;
  if (__builtin_add_overflow(offset, lo, &lo) || __builtin_add_overflow(offset, hi, &hi))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: offset %td plus the extent overflows", fn, offset);
  if (lo < 0 || (size_t)hi >= elements)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: the view reaches elements %td..%td, "
                      "outside its buffer of %zu elements",
                      fn, lo, hi, elements);
  return TWIN_OK;
}

/* The usual view in one pass: true only for a geometry with elements that check_inside passes
 * (twin__check_shape's and twin__check_extent's invariants, every element inside the buffer),
 * storing its element count in *size. Anything else, an empty view or one in doubt, goes
 * through check_inside, which names what is wrong. In elements, with the element size a power
 * of 2: a count, stride or extent in [-limit, limit] fits in ptrdiff_t as bytes, and an extent
 * summed from spans of one sign bounds each of its partial sums. In two parts, so that a slice
 * runs the axes' part in its own loop over the axes: a quick gate (quick_start), each axis
 * added (quick_axis: false when it has no element or may overflow), then the whole view's
 * count and extent against the buffer (quick_end). */
typedef struct quick_gate {
  ptrdiff_t limit, lo, hi;
  size_t n;
} quick_gate;

static inline quick_gate quick_start(twin_dtype dtype) {
  return (quick_gate){PTRDIFF_MAX >> twin__item_shift(dtype), 0, 0, 1};
}

static inline bool quick_axis(quick_gate *g, size_t len, ptrdiff_t stride) {
  ptrdiff_t span;
  /* len in [1, limit] and stride in [-limit, limit], one unsigned comparison each. */
  if (len - 1 >= (size_t)g->limit || (size_t)stride + (size_t)g->limit > 2 * (size_t)g->limit ||
      __builtin_mul_overflow(g->n, len, &g->n) ||
      __builtin_mul_overflow(stride, (ptrdiff_t)len - 1, &span))
    return false;
  /* Two branches rather than one sum through a pointer to lo or hi, which would keep both in
   * memory (a store-to-load stall per axis, measured). */
  return span < 0 ? !__builtin_add_overflow(g->lo, span, &g->lo)
                  : !__builtin_add_overflow(g->hi, span, &g->hi);
}

static inline bool quick_end(const quick_gate *g, ptrdiff_t offset, size_t elements) {
  return g->n <= (size_t)g->limit && g->lo >= -g->limit && g->hi <= g->limit && offset >= -g->lo &&
         offset <= (ptrdiff_t)elements - 1 - g->hi;
}

static bool quick_inside(twin_dtype dtype, int ndim, const size_t *shape, const ptrdiff_t *strides,
                         ptrdiff_t offset, size_t elements, size_t *size) {
  quick_gate g = quick_start(dtype);
  for (int i = 0; i < ndim; i++)
    if (!quick_axis(&g, shape[i], strides[i]))
      return false;
  *size = g.n;
  return quick_end(&g, offset, elements);
}

/* The elements of a's buffer, in a's dtype. */
static inline size_t buffer_elements(const twin_array *a) {
  return a->buf->nbytes >> twin__item_shift(a->dtype);
}

/* A new view on a's buffer whose geometry passed the gate, of size elements. */
__attribute__((always_inline)) static inline twin_status
make_view(const char *fn, twin_array *a, int ndim, const size_t *shape, const ptrdiff_t *strides,
          size_t size, ptrdiff_t offset, twin__site site, twin_array **out) {
  twin_array *v = twin__array_alloc();
  if (!v)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a view", fn);
  twin__array_init(v, a->buf, a->dtype, ndim, shape, strides, size, (size_t)offset, site);
  v->read_only = a->read_only;
  memcpy(v->owner, a->owner, sizeof v->owner);
  twin__array_attach(v, false); /* a keeps the buffer alive meanwhile */
  *out = v;
  return TWIN_OK;
}

twin_status twin__array_view(const char *fn, twin_array *a, int ndim, const size_t *shape,
                             const ptrdiff_t *strides, ptrdiff_t offset, twin__site site,
                             twin_array **out) {
  twin__debug_check(a, fn);
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: ndim is %d, outside 0..%d", fn, ndim,
                      TWIN_MAX_DIMS);
  size_t size = 0, elements = buffer_elements(a);
  if (!quick_inside(a->dtype, ndim, shape, strides, offset, elements, &size)) {
    twin_status s = check_inside(fn, a->dtype, ndim, shape, strides, offset, elements, &size);
    if (s != TWIN_OK)
      return s;
  }
  return make_view(fn, a, ndim, shape, strides, size, offset, site, out);
}

twin_status twin_array_as_strided_at(twin_array *a, int ndim, const size_t *shape,
                                     const ptrdiff_t *strides, ptrdiff_t offset, twin_array **out,
                                     const char *file, int line) {
  static const char fn[] = "twin_array_as_strided";
  if (!a || !out || (ndim > 0 && (!shape || !strides)))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !a       ? "a"
                      : !out   ? "out"
                      : !shape ? "shape"
                               : "strides");
  ptrdiff_t start;
  if (__builtin_add_overflow((ptrdiff_t)a->offset, offset, &start))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: offset %td overflows", fn, offset);
  twin_status s =
      twin__array_view(fn, a, ndim, shape, strides, start, (twin__site){file, line}, out);
  if (s == TWIN_OK) /* the one view that may reach past its parent: into released pages, too */
    twin__reach_restore(*out);
  return s;
}

twin_status(twin_array_as_strided)(twin_array *a, int ndim, const size_t *shape,
                                   const ptrdiff_t *strides, ptrdiff_t offset, twin_array **out) {
  return twin_array_as_strided_at(a, ndim, shape, strides, offset, out, NULL, 0);
}

static ptrdiff_t clamp(ptrdiff_t x, ptrdiff_t lo, ptrdiff_t hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

/* NumPy's PySlice_AdjustIndices: clamps start and stop into the axis and returns the number
 * of elements the slice selects. A negative bound counts from the end; what still falls
 * outside clamps to [0, len] for a positive step and to [-1, len - 1] for a negative one,
 * where an omitted bound is the first or the last of that range. */
__attribute__((always_inline)) static inline size_t adjust_slice(size_t len_u, ptrdiff_t *start,
                                                                 ptrdiff_t *stop, ptrdiff_t step) {
  ptrdiff_t len = (ptrdiff_t)len_u, lo = step < 0 ? -1 : 0, hi = step < 0 ? len - 1 : len;
  /* len fits ptrdiff_t (twin__check_shape) and TWIN_NONE is the only bound that cannot take
   * it added, so neither sum overflows. */
  *start = *start == TWIN_NONE ? (step < 0 ? hi : lo)
                               : clamp(*start < 0 ? *start + len : *start, lo, hi);
  *stop =
      *stop == TWIN_NONE ? (step < 0 ? lo : hi) : clamp(*stop < 0 ? *stop + len : *stop, lo, hi);
  if (step == 1) /* the usual step, without a division */
    return *start < *stop ? (size_t)(*stop - *start) : 0;
  if (step < 0)
    return *stop < *start ? (size_t)((*start - *stop - 1) / (-step) + 1) : 0;
  return *start < *stop ? (size_t)((*stop - *start - 1) / step + 1) : 0;
}

/* True when some axis has length 0: the view has no element. */
static bool is_empty(int ndim, const size_t *shape) {
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0)
      return true;
  return false;
}

/* What can be wrong with one axis of a slice. */
typedef enum { AXIS_OK, AXIS_STEP_ZERO, AXIS_STRIDE, AXIS_OFFSET } axis_fault;

/* One axis of a slice: its length and stride, and the offset its start adds to *offset; sl's
 * bounds are clamped in place (so that a message can quote them). */
static axis_fault slice_axis(const twin_array *a, int i, twin_slice *sl, size_t *shape,
                             ptrdiff_t *stride, ptrdiff_t *offset) {
  ptrdiff_t step = sl->step == TWIN_NONE ? 1 : sl->step, move;
  if (step == 0)
    return AXIS_STEP_ZERO;
  /* The usual step apart: adjust_slice specialised for it, without the sign tests. */
  *shape = step == 1 ? adjust_slice(a->shape[i], &sl->start, &sl->stop, 1)
                     : adjust_slice(a->shape[i], &sl->start, &sl->stop, step);
  *stride = a->strides[i];
  if (step != 1 && !twin__scaled_stride(a->strides[i], step, *shape, a->dtype, stride))
    return AXIS_STRIDE;
  if (*shape > 0 && (__builtin_mul_overflow(a->strides[i], sl->start, &move) ||
                     __builtin_add_overflow(*offset, move, offset)))
    return AXIS_OFFSET;
  return AXIS_OK;
}

/* The message for a fault of axis i, sl as slice_axis left it. Apart, so that the loop over the
 * axes keeps its registers for the usual case. */
__attribute__((cold, noinline)) static twin_status
slice_fault(const char *fn, const twin_array *a, int i, twin_slice sl, axis_fault fault) {
  if (fault == AXIS_STEP_ZERO)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: step is 0 on axis %d", fn, i);
  if (fault == AXIS_STRIDE)
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: axis %d: stride %td times step %td overflows", fn, i,
                      a->strides[i], sl.step);
  return twin__fail(TWIN_ERR_OVERFLOW, "%s: axis %d: start %td at stride %td overflows the offset",
                    fn, i, sl.start, a->strides[i]);
}

twin_status twin_array_slice_at(twin_array *a, const twin_slice *per_axis, twin_array **out,
                                const char *file, int line) {
  static const char fn[] = "twin_array_slice";
  if (!a || !out || (a->ndim > 0 && !per_axis))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !a     ? "a"
                      : !out ? "out"
                             : "per_axis");
  twin__debug_check(a, fn);
  int ndim = a->ndim;
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS], offset = (ptrdiff_t)a->offset;
  bool empty = false, quick = true;
  quick_gate g = quick_start(a->dtype); /* the view gate's axes, in this loop */
  for (int i = 0; i < ndim; i++) {
    twin_slice sl = per_axis[i];
    size_t len;
    ptrdiff_t stride, at = offset; /* in registers: no store-to-load stall per axis */
    axis_fault fault = slice_axis(a, i, &sl, &len, &stride, &at);
    if (fault != AXIS_OK)
      return slice_fault(fn, a, i, sl, fault);
    shape[i] = len;
    strides[i] = stride;
    offset = at;
    empty |= len == 0;
    quick = quick && quick_axis(&g, len, stride);
  }
  twin__site site = {file, line};
  if (quick && quick_end(&g, offset, buffer_elements(a)))
    return make_view(fn, a, ndim, shape, strides, g.n, offset, site, out);
  /* An empty slice keeps its base's offset, which is inside the buffer (NumPy: any slice of an
   * empty array is empty). */
  if (empty)
    offset = (ptrdiff_t)a->offset;
  return twin__array_view(fn, a, ndim, shape, strides, offset, site, out);
}

twin_status(twin_array_slice)(twin_array *a, const twin_slice *per_axis, twin_array **out) {
  return twin_array_slice_at(a, per_axis, out, NULL, 0);
}

/* Resolves a NumPy axis (negative counts from the end) of an array of ndim axes. */
static bool resolve_axis(int axis, int ndim, int *out) {
  *out = axis < 0 ? axis + ndim : axis;
  return *out >= 0 && *out < ndim;
}

/* a's shape and strides without axis `drop`, in shape and strides (ndim - 1 entries). */
static void drop_axis(const twin_array *a, int drop, size_t *shape, ptrdiff_t *strides) {
  for (int k = 0, j = 0; k < a->ndim; k++)
    if (k != drop) {
      shape[j] = a->shape[k];
      strides[j++] = a->strides[k];
    }
}

twin_status twin_array_index_at(twin_array *a, int axis, ptrdiff_t index, twin_array **out,
                                const char *file, int line) {
  static const char fn[] = "twin_array_index";
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  int ax;
  if (!resolve_axis(axis, a->ndim, &ax))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: axis %d is outside %d..%d", fn, axis,
                      -a->ndim, a->ndim - 1);
  /* The length fits ptrdiff_t (twin__check_shape), so index + len cannot overflow. */
  ptrdiff_t len = (ptrdiff_t)a->shape[ax], i = index < 0 ? index + len : index, move;
  if (i < 0 || i >= len)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: index %td is out of range for axis %d "
                      "of length %td",
                      fn, index, axis, len);
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS], offset = (ptrdiff_t)a->offset;
  drop_axis(a, ax, shape, strides);
  /* With no element left (another axis is empty) the base's offset stays, as for a slice. */
  if (!is_empty(a->ndim - 1, shape) && (__builtin_mul_overflow(i, a->strides[ax], &move) ||
                                        __builtin_add_overflow(offset, move, &offset)))
    return twin__fail(TWIN_ERR_OVERFLOW, "%s: index %td at stride %td overflows the offset", fn,
                      index, a->strides[ax]);
  return twin__array_view(fn, a, a->ndim - 1, shape, strides, offset, (twin__site){file, line},
                          out);
}

twin_status(twin_array_index)(twin_array *a, int axis, ptrdiff_t index, twin_array **out) {
  return twin_array_index_at(a, axis, index, out, NULL, 0);
}

twin_status twin_array_transpose_at(twin_array *a, const int *perm, twin_array **out,
                                    const char *file, int line) {
  static const char fn[] = "twin_array_transpose";
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  bool seen[TWIN_MAX_DIMS] = {false};
  for (int i = 0; i < a->ndim; i++) {
    int given = perm ? perm[i] : a->ndim - 1 - i, p;
    bool in_range = resolve_axis(given, a->ndim, &p);
    if (!in_range || seen[p])
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "%s: perm[%d] = %d is %s; perm must order "
                        "the axes 0..%d (or -%d..-1) once each",
                        fn, i, given, in_range ? "repeated" : "out of range", a->ndim - 1, a->ndim);
    seen[p] = true;
    shape[i] = a->shape[p];
    strides[i] = a->strides[p];
  }
  return twin__array_view(fn, a, a->ndim, shape, strides, (ptrdiff_t)a->offset,
                          (twin__site){file, line}, out);
}

twin_status(twin_array_transpose)(twin_array *a, const int *perm, twin_array **out) {
  return twin_array_transpose_at(a, perm, out, NULL, 0);
}

twin_status twin_array_squeeze_at(twin_array *a, twin_array **out, const char *file, int line) {
  static const char fn[] = "twin_array_squeeze";
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  int n = 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != 1) {
      shape[n] = a->shape[i];
      strides[n++] = a->strides[i];
    }
  return twin__array_view(fn, a, n, shape, strides, (ptrdiff_t)a->offset, (twin__site){file, line},
                          out);
}

twin_status(twin_array_squeeze)(twin_array *a, twin_array **out) {
  return twin_array_squeeze_at(a, out, NULL, 0);
}

twin_status twin_array_squeeze_axis_at(twin_array *a, int axis, twin_array **out, const char *file,
                                       int line) {
  static const char fn[] = "twin_array_squeeze_axis";
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  int ax;
  if (!resolve_axis(axis, a->ndim, &ax))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: axis %d is outside %d..%d", fn, axis,
                      -a->ndim, a->ndim - 1);
  if (a->shape[ax] != 1)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: axis %d has length %zu; only an axis of length 1 can be squeezed", fn,
                      axis, a->shape[ax]);
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  drop_axis(a, ax, shape, strides);
  return twin__array_view(fn, a, a->ndim - 1, shape, strides, (ptrdiff_t)a->offset,
                          (twin__site){file, line}, out);
}

twin_status(twin_array_squeeze_axis)(twin_array *a, int axis, twin_array **out) {
  return twin_array_squeeze_axis_at(a, axis, out, NULL, 0);
}

twin_status twin_array_expand_dims_at(twin_array *a, int axis, twin_array **out, const char *file,
                                      int line) {
  static const char fn[] = "twin_array_expand_dims";
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  if (a->ndim == TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the array already has %d axes", fn,
                      TWIN_MAX_DIMS);
  int at = axis < 0 ? axis + a->ndim + 1 : axis;
  if (at < 0 || at > a->ndim)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: axis %d is outside %d..%d", fn, axis,
                      -a->ndim - 1, a->ndim);
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  for (int i = 0, k = 0; i <= a->ndim; i++) {
    if (i == at) {
      shape[i] = 1;
      strides[i] = 0; /* a length-1 axis's stride addresses nothing more */
      continue;
    }
    shape[i] = a->shape[k];
    strides[i] = a->strides[k++];
  }
  return twin__array_view(fn, a, a->ndim + 1, shape, strides, (ptrdiff_t)a->offset,
                          (twin__site){file, line}, out);
}

twin_status(twin_array_expand_dims)(twin_array *a, int axis, twin_array **out) {
  return twin_array_expand_dims_at(a, axis, out, NULL, 0);
}

/* The fuzz target's model of twin arrays: geometry rules from NumPy and twin.h, contents as
 * plain byte arrays. See model.h. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M_CAP ((m_int)1 << 100)

static size_t item_of(twin_dtype d) {
  return twin_dtype_size(d);
}

static bool fits_ptrdiff(m_int x) {
  return x >= PTRDIFF_MIN && x <= PTRDIFF_MAX;
}

m_int m_count(int ndim, const size_t *shape) {
  m_int n = 1;
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0)
      return 0;
  for (int i = 0; i < ndim; i++)
    n = n > M_CAP / shape[i] ? M_CAP : n * shape[i];
  return n;
}

/* The product of the non-zero axes, saturating. */
static m_int nonzero_count(int ndim, const size_t *shape) {
  m_int n = 1;
  for (int i = 0; i < ndim; i++)
    if (shape[i] != 0)
      n = n > M_CAP / shape[i] ? M_CAP : n * shape[i];
  return n;
}

bool m_zero_but_huge(int ndim, const size_t *shape, size_t item) {
  return m_count(ndim, shape) == 0 && nonzero_count(ndim, shape) * item > PTRDIFF_MAX;
}

unsigned m_size_rule(int ndim, const size_t *shape, size_t item) {
  m_int n = m_count(ndim, shape);
  if (n == 0)
    return m_zero_but_huge(ndim, shape, item) ? M_OK | M_ERR(TWIN_ERR_OVERFLOW) : M_OK;
  /* A view of more than PTRDIFF_MAX bytes (a broadcast) may be refused; if it is made, its
   * size and byte size must still be exact (m_view_adopt checks the getters). */
  if (n * item > PTRDIFF_MAX)
    return M_OK | M_ERR(TWIN_ERR_OVERFLOW);
  return M_OK;
}

size_t m_element_at(const m_view *v, const size_t *index) {
  m_int at = v->offset;
  for (int i = 0; i < v->ndim; i++)
    at += (m_int)index[i] * v->strides[i];
  if (at < 0 || at >= (m_int)v->buf->elements) {
    fprintf(stderr, "model: element outside its buffer (a model bug)\n");
    abort();
  }
  return (size_t)at;
}

size_t m_element(const m_view *v, size_t flat) {
  size_t index[TWIN_MAX_DIMS] = {0};
  for (int i = v->ndim - 1; i >= 0; i--) {
    index[i] = flat % v->shape[i];
    flat /= v->shape[i];
  }
  return m_element_at(v, index);
}

bool m_aliases(const m_view *v) {
  static bool seen[M_MAX_ELEMENTS];
  if (v->count > M_MAX_ELEMENTS)
    return true;
  memset(seen, 0, sizeof seen);
  for (size_t i = 0; i < (size_t)v->count; i++) {
    size_t e = m_element(v, i);
    if (seen[e])
      return true;
    seen[e] = true;
  }
  return false;
}

m_buffer *m_buffer_new(twin_dtype dtype, size_t elements, bool zero) {
  m_buffer *b = calloc(1, sizeof *b);
  b->dtype = dtype;
  b->elements = elements;
  b->bytes = calloc(elements ? elements : 1, item_of(dtype));
  b->known = calloc(elements ? elements : 1, sizeof *b->known);
  for (size_t i = 0; i < elements; i++)
    b->known[i] = zero;
  return b;
}

void m_buffer_drop(m_buffer *b) {
  if (--b->views > 0)
    return;
  free(b->bytes);
  free(b->known);
  free(b);
}

/* NumPy's C-contiguity: no elements, or every axis longer than 1 has the packed stride. */
bool m_contiguous(const m_view *v) {
  if (v->count == 0)
    return true;
  m_int expect = 1;
  for (int i = v->ndim - 1; i >= 0; i--) {
    if (v->shape[i] != 1 && v->strides[i] != expect)
      return false;
    expect *= v->shape[i];
  }
  return true;
}

static bool adopt_strides(m_view *v, const m_geom *g, const ptrdiff_t *lib, char *why, size_t cap) {
  for (int i = 0; i < g->ndim; i++) {
    bool relevant = v->count > 0 && g->shape[i] > 1;
    if (!relevant) {
      v->strides[i] = lib[i];
      continue;
    }
    if (!fits_ptrdiff(g->strides[i]) || g->strides[i] != lib[i]) {
      snprintf(why, cap, "stride of axis %d is %td, the model says %lld", i, lib[i],
               (long long)g->strides[i]);
      return false;
    }
    v->strides[i] = lib[i];
  }
  return true;
}

static bool check_getters(const m_view *v, twin_array *a, char *why, size_t cap) {
  m_int nbytes = v->count * item_of(v->dtype);
  if (v->count > SIZE_MAX || (m_int)twin_array_size(a) != v->count)
    snprintf(why, cap, "twin_array_size is %zu, the view has %.0Lf elements", twin_array_size(a),
             (long double)v->count);
  else if (nbytes > SIZE_MAX || (m_int)twin_array_nbytes(a) != nbytes)
    snprintf(why, cap, "twin_array_nbytes is %zu, the view has %.0Lf bytes", twin_array_nbytes(a),
             (long double)nbytes);
  else if (twin_array_is_contiguous(a) != m_contiguous(v))
    snprintf(why, cap, "twin_array_is_contiguous is %d, NumPy's rule says %d",
             twin_array_is_contiguous(a), m_contiguous(v));
  else
    return true;
  return false;
}

bool m_view_adopt(m_view *v, m_buffer *b, twin_dtype dtype, const m_geom *g, twin_array *a,
                  char *why, size_t cap) {
  memset(v, 0, sizeof *v);
  v->a = a;
  v->buf = b;
  v->dtype = dtype;
  v->ndim = g->ndim;
  v->read_only = g->read_only;
  v->count = m_count(g->ndim, g->shape);
  v->offset_known = g->offset_known;
  v->offset = g->offset_known ? (ptrdiff_t)g->offset : 0;
  memcpy(v->shape, g->shape, sizeof v->shape);
  if (twin_array_dtype(a) != dtype || twin_array_ndim(a) != g->ndim) {
    snprintf(why, cap, "dtype %d ndim %d, the model says dtype %d ndim %d", twin_array_dtype(a),
             twin_array_ndim(a), dtype, g->ndim);
    return false;
  }
  for (int i = 0; i < g->ndim; i++)
    if (twin_array_shape(a)[i] != g->shape[i]) {
      snprintf(why, cap, "shape[%d] is %zu, the model says %zu", i, twin_array_shape(a)[i],
               g->shape[i]);
      return false;
    }
  if (!adopt_strides(v, g, twin_array_strides(a), why, cap))
    return false;
  return check_getters(v, a, why, cap);
}

/* ---- Conversions ---- */

static bool is_float(twin_dtype d) {
  return d == TWIN_F32 || d == TWIN_F64;
}

static bool is_signed(twin_dtype d) {
  return d == TWIN_I8 || d == TWIN_I16 || d == TWIN_I32 || d == TWIN_I64;
}

/* An integer element as the 64 bits of its value (sign-extended for signed types). */
static uint64_t int_bits(twin_dtype d, const void *p) {
  switch (d) {
  case TWIN_I8:
    return (uint64_t)(int64_t) * (const int8_t *)p;
  case TWIN_U8:
    return *(const uint8_t *)p;
  case TWIN_I16:
    return (uint64_t)(int64_t) * (const int16_t *)p;
  case TWIN_U16:
    return *(const uint16_t *)p;
  case TWIN_I32:
    return (uint64_t)(int64_t) * (const int32_t *)p;
  case TWIN_U32:
    return *(const uint32_t *)p;
  default: {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
  }
  }
}

/* Float to integer: truncation toward zero, saturation at the type's limits, NaN to 0. */
static void from_double(twin_dtype to, void *dst, double x) {
  size_t bits = 8 * item_of(to);
  double hi = is_signed(to) ? ldexp(1, (int)bits - 1) : ldexp(1, (int)bits);
  double lo = is_signed(to) ? -hi : 0;
  uint64_t v;
  if (isnan(x))
    v = 0;
  else if (x >= hi)
    v = is_signed(to) ? (UINT64_MAX >> (65 - bits)) : (UINT64_MAX >> (64 - bits));
  else if (trunc(x) < lo)
    v = is_signed(to) ? (uint64_t)(-(int64_t)(UINT64_MAX >> (65 - bits)) - 1) : 0;
  else
    v = is_signed(to) ? (uint64_t)(int64_t)trunc(x) : (uint64_t)trunc(x);
  memcpy(dst, &v, item_of(to)); /* little-endian: the low bytes */
}

void m_convert(twin_dtype to, void *dst, twin_dtype from, const void *src) {
  if (to == from) {
    memcpy(dst, src, item_of(to));
    return;
  }
  if (!is_float(from) && !is_float(to)) {
    uint64_t v = int_bits(from, src);
    memcpy(dst, &v, item_of(to)); /* wraps modulo 2^bits: the low bytes */
    return;
  }
  if (is_float(from) && !is_float(to)) {
    double x = from == TWIN_F32 ? *(const float *)src : *(const double *)src;
    from_double(to, dst, x); /* f32 -> f64 is exact, so one path serves both */
    return;
  }
  /* To float: one rounding, to nearest even (C's conversions on IEEE hardware). */
  if (to == TWIN_F32) {
    float f = from == TWIN_F64  ? (float)*(const double *)src
              : is_signed(from) ? (float)(int64_t)int_bits(from, src)
                                : (float)int_bits(from, src);
    memcpy(dst, &f, 4);
  } else {
    double x = from == TWIN_F32  ? (double)*(const float *)src
               : is_signed(from) ? (double)(int64_t)int_bits(from, src)
                                 : (double)int_bits(from, src);
    memcpy(dst, &x, 8);
  }
}

/* ---- Geometry rules ---- */

static void geom_of(const m_view *v, m_geom *g) {
  memset(g, 0, sizeof *g);
  g->ndim = v->ndim;
  g->offset = v->offset;
  g->offset_known = v->offset_known;
  g->read_only = v->read_only;
  for (int i = 0; i < v->ndim; i++) {
    g->shape[i] = v->shape[i];
    g->strides[i] = v->strides[i];
  }
}

/* Python's slice.indices(len): clamps start and stop, returns the element count. */
static m_int slice_indices(m_int len, ptrdiff_t start_in, ptrdiff_t stop_in, m_int step,
                           m_int *start) {
  m_int s, e;
  if (start_in == TWIN_NONE)
    s = step < 0 ? len - 1 : 0;
  else if ((s = start_in) < 0 && (s += len) < 0)
    s = step < 0 ? -1 : 0;
  else if (s >= len)
    s = step < 0 ? len - 1 : len;
  if (stop_in == TWIN_NONE)
    e = step < 0 ? -1 : len;
  else if ((e = stop_in) < 0 && (e += len) < 0)
    e = step < 0 ? -1 : 0;
  else if (e >= len)
    e = step < 0 ? len - 1 : len;
  *start = s;
  if (step < 0)
    return e < s ? (s - e - 1) / -step + 1 : 0;
  return s < e ? (e - s - 1) / step + 1 : 0;
}

unsigned m_slice(const m_view *v, const twin_slice *per_axis, m_geom *out) {
  unsigned allowed = M_OK;
  m_geom g;
  geom_of(v, &g);
  m_int starts[TWIN_MAX_DIMS];
  for (int i = 0; i < v->ndim; i++) {
    m_int step = per_axis[i].step == TWIN_NONE ? 1 : per_axis[i].step;
    if (step == 0)
      return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
    m_int n = slice_indices(v->shape[i], per_axis[i].start, per_axis[i].stop, step, &starts[i]);
    g.shape[i] = (size_t)n;
    g.strides[i] = v->strides[i] * step;
  }
  m_int count = m_count(g.ndim, g.shape);
  g.offset_known = count > 0; /* NumPy moves an empty slice's start; twin need not */
  for (int i = 0; i < v->ndim; i++) {
    if (count > 0)
      g.offset += starts[i] * v->strides[i];
    /* A stride that addresses nothing may overflow; refusing it is as fair as wrapping it. */
    if (!fits_ptrdiff(g.strides[i]))
      allowed |= M_ERR(TWIN_ERR_OVERFLOW);
  }
  *out = g;
  return allowed;
}

unsigned m_index(const m_view *v, int axis, ptrdiff_t index, m_geom *out) {
  unsigned allowed = M_OK;
  if (axis < -v->ndim || axis >= v->ndim)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  if (axis < 0) { /* NumPy counts negative axes from the end; twin is learning to */
    axis += v->ndim;
    allowed |= M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  }
  m_int len = v->shape[axis], i = index < 0 ? (m_int)index + len : (m_int)index;
  if (i < 0 || i >= len)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  m_geom g;
  geom_of(v, &g);
  g.offset += i * v->strides[axis];
  g.ndim = v->ndim - 1;
  for (int k = axis; k < g.ndim; k++) {
    g.shape[k] = v->shape[k + 1];
    g.strides[k] = v->strides[k + 1];
  }
  g.offset_known = m_count(g.ndim, g.shape) > 0;
  *out = g;
  return allowed;
}

unsigned m_transpose(const m_view *v, const int *perm, m_geom *out) {
  unsigned allowed = M_OK;
  bool seen[TWIN_MAX_DIMS] = {false};
  m_geom g;
  geom_of(v, &g);
  for (int i = 0; i < v->ndim; i++) {
    int p = perm ? perm[i] : v->ndim - 1 - i;
    if (p < -v->ndim || p >= v->ndim)
      return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
    if (p < 0) {
      p += v->ndim;
      allowed |= M_ERR(TWIN_ERR_INVALID_ARGUMENT);
    }
    if (seen[p])
      return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
    seen[p] = true;
    g.shape[i] = v->shape[p];
    g.strides[i] = v->strides[p];
  }
  *out = g;
  return allowed;
}

/* NumPy's _attempt_nocopy_reshape in C order: old axes of length 1 drop out; groups of old
 * and new axes with equal products pair up; each old group must be contiguous in itself. */
static bool nocopy(const m_view *v, int ndim, const size_t *shape, m_int *strides) {
  size_t od[TWIN_MAX_DIMS];
  m_int os[TWIN_MAX_DIMS];
  int on = 0;
  for (int i = 0; i < v->ndim; i++)
    if (v->shape[i] != 1) {
      od[on] = v->shape[i];
      os[on++] = v->strides[i];
    }
  int ni = 0, nj = 1, oi = 0, oj = 1;
  while (ni < ndim && oi < on) {
    m_int np = shape[ni], op = od[oi];
    while (np != op) {
      if (np < op)
        np *= shape[nj++];
      else
        op *= od[oj++];
    }
    for (int k = oi; k < oj - 1; k++)
      if (os[k] != (m_int)od[k + 1] * os[k + 1])
        return false;
    strides[nj - 1] = os[oj - 1];
    for (int k = nj - 1; k > ni; k--)
      strides[k - 1] = strides[k] * shape[k];
    ni = nj++;
    oi = oj++;
  }
  m_int last = ni >= 1 ? strides[ni - 1] : 1;
  for (int k = ni; k < ndim; k++)
    strides[k] = last;
  return true;
}

unsigned m_reshape(const m_view *v, int ndim, const size_t *shape, m_geom *out) {
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  m_geom g;
  geom_of(v, &g);
  g.ndim = ndim;
  int infer = -1;
  size_t known_shape[TWIN_MAX_DIMS];
  int nk = 0;
  for (int i = 0; i < ndim; i++) {
    g.shape[i] = shape[i];
    if (shape[i] != TWIN_INFER)
      known_shape[nk++] = shape[i];
    else if (infer >= 0)
      return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
    else
      infer = i;
  }
  size_t item = item_of(v->dtype);
  /* A requested shape whose non-zero axes overflow may be refused as such. */
  unsigned extra =
      nonzero_count(nk, known_shape) * item > PTRDIFF_MAX ? M_ERR(TWIN_ERR_OVERFLOW) : 0;
  m_int known = m_count(nk, known_shape);
  if (infer >= 0) {
    if (known == 0 || v->count % known != 0)
      return M_ERR(TWIN_ERR_SHAPE_MISMATCH) | extra;
    g.shape[infer] = (size_t)(v->count / known);
  } else if (known != v->count) {
    return M_ERR(TWIN_ERR_SHAPE_MISMATCH) | extra;
  }
  if (v->count > 0 && !nocopy(v, ndim, g.shape, g.strides))
    return M_ERR(TWIN_ERR_NOT_VIEWABLE) | extra;
  *out = g;
  return (m_size_rule(ndim, g.shape, item) | extra);
}

unsigned m_broadcast(const m_view *v, int ndim, const size_t *shape, m_geom *out) {
  if (ndim < v->ndim || ndim > TWIN_MAX_DIMS)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  m_geom g;
  geom_of(v, &g);
  g.ndim = ndim;
  g.read_only = true;
  int lead = ndim - v->ndim;
  for (int i = 0; i < ndim; i++) {
    int k = i - lead;
    g.shape[i] = shape[i];
    if (k >= 0 && v->shape[k] == shape[i])
      g.strides[i] = v->strides[k];
    else if (k < 0 || v->shape[k] == 1)
      g.strides[i] = 0;
    else
      return M_ERR(TWIN_ERR_SHAPE_MISMATCH);
  }
  *out = g;
  return m_size_rule(ndim, shape, item_of(v->dtype));
}

unsigned m_as_strided(const m_view *v, int ndim, const size_t *shape, const ptrdiff_t *strides,
                      ptrdiff_t offset, m_geom *out) {
  const unsigned refused = M_ERR(TWIN_ERR_INVALID_ARGUMENT) | M_ERR(TWIN_ERR_OVERFLOW);
  if (ndim < 0 || ndim > TWIN_MAX_DIMS)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  m_geom g;
  geom_of(v, &g);
  g.ndim = ndim;
  g.offset = (m_int)v->offset + offset;
  for (int i = 0; i < ndim; i++) {
    g.shape[i] = shape[i];
    g.strides[i] = strides[i];
  }
  *out = g;
  /* Documented: every stride times the element size, and the byte extent of the axes that
   * have elements, must fit in ptrdiff_t, even in a view that addresses nothing. */
  m_int item = (m_int)item_of(v->dtype), low = 0, high = 0;
  for (int i = 0; i < ndim; i++) {
    if (!fits_ptrdiff((m_int)strides[i] * item))
      return refused;
    m_int span = shape[i] ? (m_int)strides[i] * item * (m_int)(shape[i] - 1) : 0;
    if (!fits_ptrdiff(span) || !fits_ptrdiff(span < 0 ? (low += span) : (high += span)))
      return refused;
  }
  m_int count = m_count(ndim, shape), elements = v->buf->elements;
  unsigned size_rule = m_size_rule(ndim, shape, item_of(v->dtype));
  if (count == 0) { /* addresses nothing; where its offset may point is not documented */
    bool inside = v->offset_known && g.offset >= 0 && g.offset <= elements;
    return inside ? size_rule : M_OK | refused;
  }
  if (elements == 0)
    return refused;
  if (!v->offset_known)
    return 0; /* the model cannot tell which elements it would address: not called */
  m_int lo = g.offset, hi = g.offset;
  for (int i = 0; i < ndim; i++) {
    m_int span = (m_int)strides[i] * (m_int)(shape[i] - 1);
    span = span > M_CAP ? M_CAP : span < -M_CAP ? -M_CAP : span;
    if (span < 0)
      lo += span;
    else
      hi += span;
  }
  return lo >= 0 && hi < elements ? size_rule : refused;
}

unsigned m_expand_dims(const m_view *v, int axis, m_geom *out) {
  if (v->ndim == TWIN_MAX_DIMS || axis < -v->ndim - 1 || axis > v->ndim)
    return M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  int at = axis < 0 ? axis + v->ndim + 1 : axis;
  m_geom g;
  geom_of(v, &g);
  g.ndim = v->ndim + 1;
  for (int i = 0, k = 0; i < g.ndim; i++) {
    g.shape[i] = i == at ? 1 : v->shape[k];
    g.strides[i] = i == at ? 0 : v->strides[k++];
  }
  *out = g;
  return M_OK;
}

bool m_copy_broadcast(const m_view *dst, const m_view *src, ptrdiff_t *strides) {
  int extra = src->ndim - dst->ndim;
  for (int j = 0; j < extra; j++)
    if (src->shape[j] != 1)
      return false;
  for (int i = 0; i < dst->ndim; i++) {
    int j = i + extra;
    if (j >= 0 && src->shape[j] == dst->shape[i])
      strides[i] = src->strides[j];
    else if (j < 0 || src->shape[j] == 1)
      strides[i] = 0;
    else
      return false;
  }
  return true;
}

/* A plain-C model of twin arrays for the fuzz target: per buffer a byte array (and which
 * elements hold a known value), per view its dtype, shape, strides and offset; and the rules
 * that say which statuses a call may return and what it does to the contents. It uses only
 * twin's public header and is written from its documentation and NumPy's rules, not from the
 * library's code, so a disagreement is a finding in one or the other. */
#ifndef TWIN_FUZZ_MODEL_H
#define TWIN_FUZZ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twin.h"

/* Arrays the model holds byte for byte, and views it walks element by element. Larger views
 * (broadcasts, stride-0 views of huge shapes) are made and checked by geometry only. */
#define M_MAX_ELEMENTS 4096

typedef __int128 m_int;

/* A status set: M_OK | M_ERR(TWIN_ERR_OVERFLOW) ... */
#define M_ERR(s) (1u << (s))
#define M_OK M_ERR(TWIN_OK)

typedef struct m_buffer {
  twin_dtype dtype;
  size_t elements;      /* the size of the array that made it */
  unsigned char *bytes; /* elements * item bytes */
  bool *known;          /* per element: the model knows its value (false after twin_array_new) */
  int views;            /* live view objects on it */
} m_buffer;

/* A view's geometry as the model derives it. Strides of axes of length <= 1, and all strides
 * of views without elements, address nothing: `relevant` is false there and the library's own
 * value is adopted after the call. The offset (of element 0, in buffer elements) is known for
 * views with elements; where the view has none, twin's documentation does not fix it. */
typedef struct m_geom {
  int ndim;
  size_t shape[TWIN_MAX_DIMS];
  m_int strides[TWIN_MAX_DIMS];
  m_int offset;
  bool offset_known;
  bool read_only;
} m_geom;

typedef struct m_view {
  twin_array *a; /* the library's object */
  m_buffer *buf;
  twin_dtype dtype;
  int ndim;
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  ptrdiff_t offset;
  bool offset_known;
  bool read_only;
  m_int count;  /* elements, exact (saturates far above SIZE_MAX) */
  int refs;     /* references the harness holds (slots) */
  int accesses; /* open host accesses of this object */
  bool writing; /* the open access is a write (then accesses is 1) */
  void *ptr;    /* from twin_host_begin while accesses > 0 */
} m_view;

/* Exact element count of a shape, saturating at 2^100 (8 axes of 2^64 would overflow). */
m_int m_count(int ndim, const size_t *shape);
/* True when the shape has a zero-length axis while its other axes multiply past what a
 * byte count of item-size elements can hold: twin may make such a shape or refuse it. */
bool m_zero_but_huge(int ndim, const size_t *shape, size_t item);
/* The statuses a call making or viewing `shape` of `item`-byte elements may return for the
 * element count alone: M_OK, M_ERR(TWIN_ERR_OVERFLOW) or both. */
unsigned m_size_rule(int ndim, const size_t *shape, size_t item);

/* The buffer element behind element `flat` (C order) of a view. */
size_t m_element(const m_view *v, size_t flat);
/* Same, from an index vector. */
size_t m_element_at(const m_view *v, const size_t *index);
/* NumPy's C-contiguity: no elements, or every axis longer than 1 has the packed stride. */
bool m_contiguous(const m_view *v);
/* True when the view has elements that share an address (stride 0 on an axis of length > 1,
 * or strides that collide). */
bool m_aliases(const m_view *v);

m_buffer *m_buffer_new(twin_dtype dtype, size_t elements, bool zero);
void m_buffer_drop(m_buffer *b);

/* Makes a model view of buffer b with a geometry the library accepted, adopting the library's
 * strides where the model's are irrelevant, and checks the library's getters agree with the
 * model's; false (and a message in *why) where they do not. */
bool m_view_adopt(m_view *v, m_buffer *b, twin_dtype dtype, const m_geom *g, twin_array *a,
                  char *why, size_t why_cap);

/* Converts one element by twin's documented rules (twin_copy's comment in twin.h). */
void m_convert(twin_dtype to, void *dst, twin_dtype from, const void *src);

/* NumPy's rules, on the model's geometry. Each returns the statuses the call may return and,
 * when it may succeed, the resulting geometry in *out. */
unsigned m_slice(const m_view *v, const twin_slice *per_axis, m_geom *out);
unsigned m_index(const m_view *v, int axis, ptrdiff_t index, m_geom *out);
unsigned m_transpose(const m_view *v, const int *perm, m_geom *out);
unsigned m_reshape(const m_view *v, int ndim, const size_t *shape, m_geom *out);
unsigned m_broadcast(const m_view *v, int ndim, const size_t *shape, m_geom *out);
unsigned m_as_strided(const m_view *v, int ndim, const size_t *shape, const ptrdiff_t *strides,
                      ptrdiff_t offset, m_geom *out);
unsigned m_squeeze(const m_view *v, m_geom *out);
unsigned m_expand_dims(const m_view *v, int axis, m_geom *out);
/* twin_copy's source strides broadcast to dst's shape; false when the shapes do not
 * broadcast. */
bool m_copy_broadcast(const m_view *dst, const m_view *src, ptrdiff_t *strides);

#endif

/* twin_array_read and twin_array_write: a whole array to or from the caller's packed C-order
 * host memory, through one host access (access.c) and a strided copy. */
#include "objects.h"

/* Packed C-order strides of a's shape, for copying between a and a caller's buffer. */
static void packed_strides(const twin_array *a, ptrdiff_t *strides) {
  ptrdiff_t stride = 1;
  for (int i = a->ndim - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= (ptrdiff_t)a->shape[i];
  }
}

static twin_status check_packed(const char *fn, const twin_array *a, const void *p, size_t n) {
  twin__debug_check(a, fn);
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  if (n != twin_array_nbytes(a))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: the host buffer has %zu bytes, the array "
                      "%zu",
                      fn, n, twin_array_nbytes(a));
  if (!p && n)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the host pointer is NULL", fn);
  return TWIN_OK;
}

twin_status twin_array_read(twin_array *a, void *dst, size_t dst_bytes) {
  static const twin__opener who = {"twin_array_read", NULL, {NULL, 0}};
  twin_status s = check_packed(who.fn, a, dst, dst_bytes);
  void *src;
  if (s == TWIN_OK)
    s = twin__host_begin(&who, false, a, TWIN_READ, &src);
  if (s != TWIN_OK)
    return s;
  ptrdiff_t packed[TWIN_MAX_DIMS];
  packed_strides(a, packed);
  twin__strided_copy(dst, packed, src, a->strides, a->shape, a->ndim, twin_dtype_size(a->dtype));
  return twin__host_end(who.fn, a);
}

twin_status twin_array_write(twin_array *a, const void *src, size_t src_bytes) {
  static const twin__opener who = {"twin_array_write", NULL, {NULL, 0}};
  twin_status s = check_packed(who.fn, a, src, src_bytes);
  void *dst;
  if (s == TWIN_OK)
    s = twin__host_begin(&who, false, a, TWIN_WRITE, &dst);
  if (s != TWIN_OK)
    return s;
  ptrdiff_t packed[TWIN_MAX_DIMS];
  packed_strides(a, packed);
  twin__strided_copy(dst, a->strides, src, packed, a->shape, a->ndim, twin_dtype_size(a->dtype));
  return twin__host_end(who.fn, a);
}

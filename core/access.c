/* The access protocol: begin makes an array's data valid on one side, end records a write.
 * Coherence is whole-buffer for now: a side is valid or stale as a whole. */
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

static const char *side_name(twin__side_id side) {
  return side == TWIN__HOST ? "host" : "device";
}

/* True when the array's elements are exactly its whole buffer, so a write-only access
 * overwrites everything and the stale side need not be brought up to date first. */
static bool covers_buffer(const twin_array *a) {
  return a->offset == 0 && twin_array_nbytes(a) == a->buf->nbytes && twin_array_is_contiguous(a);
}

static twin_status check_begin(const char *fn, twin_array *a, twin_access access,
                               const void *out) {
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  if (access != TWIN_READ && access != TWIN_WRITE && access != TWIN_READ_WRITE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: access is %d, not TWIN_READ, TWIN_WRITE "
                      "or TWIN_READ_WRITE", fn, (int)access);
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the pointer out-parameter is NULL", fn);
  if ((access & TWIN_WRITE) && a->read_only)
    return twin__fail(TWIN_ERR_READ_ONLY, "%s: the array is a broadcast view (some elements "
                      "alias each other) and cannot be written; copy it first", fn);
  return TWIN_OK;
}

/* With the buffer locked: may this array object open `access` on `side` now? */
static twin_status check_open_state(const char *fn, const twin_array *a, twin__side_id side,
                                    twin_access access) {
  const twin__buffer *b = a->buf;
  if (a->access_side) {
    bool both_reads = a->access_side == side + 1 && a->access_mode == TWIN_READ &&
                      access == TWIN_READ;
    if (!both_reads)
      return twin__fail(TWIN_ERR_BUSY, "%s: this array already has a %s %s access open; end it "
                        "first (only read accesses on one side may overlap)", fn,
                        side_name(a->access_side - 1),
                        a->access_mode == TWIN_READ ? "read" : "write");
  }
  twin__side_id other = !side;
  if (b->open_writes[other])
    return twin__fail(TWIN_ERR_BUSY, "%s: a %s write access to this buffer is open", fn,
                      side_name(other));
  if ((access & TWIN_WRITE) && b->open_reads[other])
    return twin__fail(TWIN_ERR_BUSY, "%s: cannot write while a %s read access to this buffer "
                      "is open", fn, side_name(other));
  return TWIN_OK;
}

/* Opens `access` on `side` for array a, preparing the data; on success the buffer's memory
 * for that side is in b->side[side].mem. */
static twin_status begin(const char *fn, twin_array *a, twin__side_id side, twin_access access) {
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  twin_status s = check_open_state(fn, a, side, access);
  if (s == TWIN_OK)
    s = twin__buffer_prepare(b, side, (access & TWIN_READ) || !covers_buffer(a));
  if (s == TWIN_OK) {
    if (access & TWIN_WRITE) {
      /* The other side cannot be in use (checked above), so it is stale from now on. */
      b->side[side].valid = true;
      b->side[!side].valid = false;
      b->open_writes[side]++;
    } else {
      b->open_reads[side]++;
    }
    a->access_side = (unsigned char)(side + 1);
    a->access_mode = (unsigned char)access;
    a->access_count++;
  }
  pthread_mutex_unlock(&b->lock);
  return s;
}

static twin_status end(const char *fn, twin_array *a, twin__side_id side) {
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  twin__buffer *b = a->buf;
  twin_status s = TWIN_OK;
  pthread_mutex_lock(&b->lock);
  if (a->access_side != side + 1) {
    s = twin__fail(TWIN_ERR_BAD_STATE, "%s: this array has no %s access open", fn,
                   side_name(side));
  } else {
    if (a->access_mode & TWIN_WRITE)
      b->open_writes[side]--;
    else
      b->open_reads[side]--;
    if (--a->access_count == 0)
      a->access_side = 0;
  }
  pthread_mutex_unlock(&b->lock);
  return s;
}

twin_status twin_host_begin(twin_array *a, twin_access access, void **ptr) {
  twin_status s = check_begin("twin_host_begin", a, access, ptr);
  if (s == TWIN_OK)
    s = begin("twin_host_begin", a, TWIN__HOST, access);
  if (s == TWIN_OK)
    *ptr = (char *)a->buf->side[TWIN__HOST].mem + a->offset * twin_dtype_size(a->dtype);
  return s;
}

twin_status twin_host_end(twin_array *a) {
  return end("twin_host_end", a, TWIN__HOST);
}

twin_status twin__device_begin(twin_array *a, twin_access access, void **handle,
                               size_t *byte_offset) {
  static const char fn[] = "twin_device_begin";
  twin_status s = check_begin(fn, a, access, handle);
  if (s != TWIN_OK)
    return s;
  if (!byte_offset)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: byte_offset is NULL", fn);
  const twin_context *ctx = a->buf->ctx;
  if (!ctx->ops->dev_alloc)
    return twin__fail(TWIN_ERR_UNSUPPORTED, "%s: the %s backend has no device memory", fn,
                      ctx->ops->name);
  if (a->dtype == TWIN_F64 && !ctx->device.fp64)
    return twin__fail(TWIN_ERR_UNSUPPORTED, "%s: device \"%s\" has no fp64 support for an f64 "
                      "array", fn, ctx->device.name);
  s = begin(fn, a, TWIN__DEVICE, access);
  if (s == TWIN_OK) {
    *handle = a->buf->side[TWIN__DEVICE].mem;
    *byte_offset = a->offset * twin_dtype_size(a->dtype);
  }
  return s;
}

twin_status twin__device_end(twin_array *a) {
  return end("twin_device_end", a, TWIN__DEVICE);
}

/* Packed C-order strides of a's shape, for copying between a and a caller's buffer. */
static void packed_strides(const twin_array *a, ptrdiff_t *strides) {
  ptrdiff_t stride = 1;
  for (int i = a->ndim - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= (ptrdiff_t)a->shape[i];
  }
}

static twin_status check_packed(const char *fn, const twin_array *a, const void *p, size_t n) {
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  if (n != twin_array_nbytes(a))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the host buffer has %zu bytes, the array "
                      "%zu", fn, n, twin_array_nbytes(a));
  if (!p && n)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the host pointer is NULL", fn);
  return TWIN_OK;
}

twin_status twin_array_read(twin_array *a, void *dst, size_t dst_bytes) {
  twin_status s = check_packed("twin_array_read", a, dst, dst_bytes);
  void *src;
  if (s == TWIN_OK)
    s = twin_host_begin(a, TWIN_READ, &src);
  if (s != TWIN_OK)
    return s;
  ptrdiff_t packed[TWIN_MAX_DIMS];
  packed_strides(a, packed);
  twin__strided_copy(dst, packed, src, a->strides, a->shape, a->ndim, twin_dtype_size(a->dtype));
  return twin_host_end(a);
}

twin_status twin_array_write(twin_array *a, const void *src, size_t src_bytes) {
  twin_status s = check_packed("twin_array_write", a, src, src_bytes);
  void *dst;
  if (s == TWIN_OK)
    s = twin_host_begin(a, TWIN_WRITE, &dst);
  if (s != TWIN_OK)
    return s;
  ptrdiff_t packed[TWIN_MAX_DIMS];
  packed_strides(a, packed);
  twin__strided_copy(dst, a->strides, src, packed, a->shape, a->ndim, twin_dtype_size(a->dtype));
  return twin_host_end(a);
}

/* The access protocol: begin brings an array's byte extent up to date on one side (moving
 * only the parts the other side holds newer) and, for a write, marks that extent newer on
 * this side; end closes it. On a zero-copy buffer a host access maps the extent instead. */
#include <stdio.h>
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

static const char *side_name(twin__side_id side) {
  return side == TWIN__HOST ? "host" : "device";
}

/* True when a write-only access overwrites every byte of the array's extent, so the extent
 * need not be brought up to date first (a strided view has gaps it would not overwrite). */
static bool covers_extent(const twin_array *a) {
  return twin_array_is_contiguous(a);
}

static twin_status check_begin(const char *fn, twin_array *a, twin_access access, const void *out) {
  twin__debug_check(a, fn);
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  if (access != TWIN_READ && access != TWIN_WRITE && access != TWIN_READ_WRITE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: access is %d, not TWIN_READ, TWIN_WRITE "
                      "or TWIN_READ_WRITE",
                      fn, (int)access);
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the pointer out-parameter is NULL", fn);
  if ((access & TWIN_WRITE) && a->read_only)
    return twin__fail(TWIN_ERR_READ_ONLY,
                      "%s: the array is a broadcast view (some elements "
                      "alias each other) and cannot be written; copy it first",
                      fn);
  return TWIN_OK;
}

/* "fn" or "fn: arg", the start of a message about an access `who` opens. */
static const char *who_text(const twin__opener *who, char *buf, size_t cap) {
  if (!who->arg)
    return who->fn;
  snprintf(buf, cap, "%s: %s", who->fn, who->arg);
  return buf;
}

/* With the buffer locked: may this array object open `access` on `side` now? */
static twin_status check_open_state(const twin__opener *who, const twin_array *a,
                                    twin__side_id side, twin_access access) {
  const twin__buffer *b = a->buf;
  char w[128];
  if (a->access_side) {
    bool both_reads =
        a->access_side == side + 1 && a->access_mode == TWIN_READ && access == TWIN_READ;
    if (!both_reads)
      return twin__fail(TWIN_ERR_BUSY,
                        "%s: this array already has a %s %s access open; end it "
                        "first (only read accesses on one side may overlap)",
                        who_text(who, w, sizeof w), side_name(a->access_side - 1),
                        a->access_mode == TWIN_READ ? "read" : "write");
  }
  twin__side_id other = !side;
  if (b->open_writes[other])
    return twin__fail(TWIN_ERR_BUSY,
                      "%s: a %s write access to this buffer is still open, "
                      "begun at %s:%d",
                      who_text(who, w, sizeof w), side_name(other),
                      twin__site_file(b->write_site[other]), b->write_site[other].line);
  if ((access & TWIN_WRITE) && b->open_reads[other])
    return twin__fail(TWIN_ERR_BUSY,
                      "%s: cannot write while a %s read access to this buffer "
                      "is open",
                      who_text(who, w, sizeof w), side_name(other));
  return TWIN_OK;
}

/* Maps a zero-copy buffer's bytes [lo, hi) for host access by array a. */
static twin_status map_extent(twin_array *a, twin_access access, size_t lo, size_t hi) {
  twin__buffer *b = a->buf;
  twin_context *ctx = b->ctx;
  if (lo == hi) {
    a->mapped = (char *)b->mem[TWIN__HOST] + lo; /* nothing to map for no elements */
    return TWIN_OK;
  }
  bool invalidate = access == TWIN_WRITE && covers_extent(a);
  return ctx->ops->map(ctx, b->mem[TWIN__DEVICE], lo, hi - lo, access, invalidate, &a->mapped);
}

/* Opens `access` on `side` for array a with the buffer locked: brings the extent up to date,
 * maps it on a zero-copy host access, and records the access. */
static twin_status open_locked(const twin__opener *who, twin_array *a, twin__side_id side,
                               twin_access access, twin__dirty *before) {
  twin__buffer *b = a->buf;
  twin_status s = check_open_state(who, a, side, access);
  if (s != TWIN_OK)
    return s;
  s = twin__buffer_reserve(b);
  size_t lo, hi;
  twin__array_extent(a, &lo, &hi);
  bool need_data = (access & TWIN_READ) || !covers_extent(a);
  if (s == TWIN_OK)
    s = twin__buffer_sync(b, side, lo, need_data ? hi : lo);
  if (s == TWIN_OK && side == TWIN__HOST && b->zero_copy && a->access_count == 0)
    s = map_extent(a, access, lo, hi);
  if (s != TWIN_OK) {
    char w[128];
    return twin__fail_prefix(s, "%s: ", who_text(who, w, sizeof w)); /* allocation, move, map */
  }
  if (access & TWIN_WRITE) {
    /* The other side has no open access (checked above), so it is older from now on. */
    if (before)
      twin__dirty_copy(before, &b->dirty);
    twin__buffer_wrote(b, side, lo, hi);
    b->open_writes[side]++;
    b->write_site[side] = who->site;
  } else {
    b->open_reads[side]++;
  }
  a->access_side = (unsigned char)(side + 1);
  a->access_mode = (unsigned char)access;
  a->access_count++;
  return TWIN_OK;
}

static twin_status begin(const char *fn, twin_array *a, twin__side_id side, twin_access access,
                         twin__site site) {
  twin__opener who = {fn, NULL, site};
  pthread_mutex_lock(&a->buf->lock);
  twin_status s = open_locked(&who, a, side, access, NULL);
  pthread_mutex_unlock(&a->buf->lock);
  return s;
}

/* Closes the access with the buffer locked; the last close of a zero-copy host access
 * unmaps it. */
static twin_status close_locked(const char *fn, twin_array *a, twin__side_id side) {
  twin__buffer *b = a->buf;
  if (a->access_side != side + 1)
    return twin__fail(TWIN_ERR_BAD_STATE, "%s: this array has no %s access open", fn,
                      side_name(side));
  twin_status s = TWIN_OK;
  if (side == TWIN__HOST && b->zero_copy && a->access_count == 1 && a->size > 0) {
    /* A failed unmap still closes the access: the caller gives the pointer up either way,
     * and an access that can never be closed would wedge the array. */
    twin_context *ctx = b->ctx;
    s = ctx->ops->unmap(ctx, b->mem[TWIN__DEVICE], a->mapped, &b->track);
  }
  if (a->access_mode & TWIN_WRITE)
    b->open_writes[side]--;
  else
    b->open_reads[side]--;
  if (--a->access_count == 0) {
    a->access_side = 0;
    a->mapped = NULL;
  }
  return s;
}

static twin_status end(const char *fn, twin_array *a, twin__side_id side) {
  twin__debug_check(a, fn);
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  pthread_mutex_lock(&a->buf->lock);
  twin_status s = close_locked(fn, a, side);
  pthread_mutex_unlock(&a->buf->lock);
  return s;
}

twin_status twin_host_begin_at(twin_array *a, twin_access access, void **ptr, const char *file,
                               int line) {
  static const char fn[] = "twin_host_begin";
  twin_status s = check_begin(fn, a, access, ptr);
  if (s == TWIN_OK)
    s = begin(fn, a, TWIN__HOST, access, (twin__site){file, line});
  if (s != TWIN_OK)
    return s;
  size_t first = a->offset * twin_dtype_size(a->dtype), lo, hi;
  if (a->buf->zero_copy) {
    twin__array_extent(a, &lo, &hi);
    *ptr = (char *)a->mapped + (first - lo);
  } else {
    *ptr = (char *)a->buf->mem[TWIN__HOST] + first;
  }
  return TWIN_OK;
}

twin_status(twin_host_begin)(twin_array *a, twin_access access, void **ptr) {
  return twin_host_begin_at(a, access, ptr, "(unknown)", 0);
}

twin_status twin_host_end(twin_array *a) {
  return end("twin_host_end", a, TWIN__HOST);
}

twin_status twin__device_begin(twin_array *a, twin_access access, void **handle,
                               size_t *byte_offset, const char *file, int line) {
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
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: device \"%s\" has no fp64 support for an f64 "
                      "array",
                      fn, ctx->device.name);
  s = begin(fn, a, TWIN__DEVICE, access, (twin__site){file, line});
  if (s == TWIN_OK) {
    *handle = a->buf->mem[TWIN__DEVICE];
    *byte_offset = a->offset * twin_dtype_size(a->dtype);
  }
  return s;
}

twin_status twin__device_end(twin_array *a) {
  twin__debug_check(a, "twin_device_end");
  if (a)
    twin__buffer_fence(a->buf); /* the application's own commands on the memory */
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
  twin_status s = check_packed("twin_array_read", a, dst, dst_bytes);
  void *src;
  if (s == TWIN_OK)
    s = twin_host_begin_at(a, TWIN_READ, &src, "twin_array_read", 0);
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
    s = twin_host_begin_at(a, TWIN_WRITE, &dst, "twin_array_write", 0);
  if (s != TWIN_OK)
    return s;
  ptrdiff_t packed[TWIN_MAX_DIMS];
  packed_strides(a, packed);
  twin__strided_copy(dst, a->strides, src, packed, a->shape, a->ndim, twin_dtype_size(a->dtype));
  return twin_host_end(a);
}

twin_status twin__open_for_op(twin_array *a, twin__side_id side, twin_access access,
                              const twin__opener *who, twin__dirty *before, void **mem) {
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  twin_status s = open_locked(who, a, side, access, before);
  if (s == TWIN_OK)
    *mem = b->mem[side];
  pthread_mutex_unlock(&b->lock);
  return s;
}

/* Undoes a write's marking where the other side was newer before it: the write never
 * happened there, so the other side still holds the newest data. */
static void unmark(twin__buffer *b, twin__side_id side, const twin__dirty *before, size_t lo,
                   size_t hi) {
  for (unsigned i = 0; i < before->count; i++) {
    size_t a = before->s[i].lo > lo ? before->s[i].lo : lo;
    size_t z = before->s[i].hi < hi ? before->s[i].hi : hi;
    if (a >= z || before->s[i].newer == side)
      continue;
    /* Room first; if moving a segment fails, keeping the marking loses that range's newer
     * data, so stop rather than overflow the map. */
    if (b->dirty.count > TWIN__DIRTY_CAP && twin__buffer_reserve(b) != TWIN_OK)
      return;
    twin__dirty_mark(&b->dirty, a, z, !side);
  }
}

void twin__close_for_op(twin_array *a, twin__side_id side, const twin__dirty *failed_before) {
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  if (failed_before && (a->access_mode & TWIN_WRITE)) {
    size_t lo, hi;
    twin__array_extent(a, &lo, &hi);
    unmark(b, side, failed_before, lo, hi);
  }
  close_locked("twin operation end", a, side);
  pthread_mutex_unlock(&b->lock);
}

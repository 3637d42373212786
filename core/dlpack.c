/* DLPack 0.6 both ways. An export is a private view of the array with an access open on one
 * side, handed out as a DLManagedTensor whose deleter closes the access and drops the view
 * (and with it the reference on the buffer). An import adopts the tensor's memory as lent
 * memory (external.c) whose release calls the producer's deleter. */
#include <dlpack/dlpack.h>
#include <stdio.h>
#include <string.h>

#include "objects.h"

/* An exported tensor and what keeps its memory valid; the deleter gets &t, the first member. */
typedef struct exported {
  DLManagedTensor t;
  twin_array *view; /* holds the open access and the buffer */
  twin__side_id side;
  int64_t shape[TWIN_MAX_DIMS], strides[TWIN_MAX_DIMS];
} exported;

static DLDataType dl_dtype(twin_dtype dtype) {
  DLDataType t;
  t.code = dtype == TWIN_F32 || dtype == TWIN_F64 ? kDLFloat
           : dtype == TWIN_I8 || dtype == TWIN_I16 || dtype == TWIN_I32 || dtype == TWIN_I64
               ? kDLInt
               : kDLUInt;
  t.bits = (uint8_t)(twin_dtype_size(dtype) * 8);
  t.lanes = 1;
  return t;
}

static void deleter(DLManagedTensor *t) {
  exported *e = (exported *)t;
  if (e->side == TWIN__HOST)
    twin__host_end("a DLPack tensor's deleter", e->view);
  else
    twin__device_end(e->view);
  twin_array_unref(e->view);
  twin__free(e);
}

/* Opens the export's access on its private view and points the tensor at the data. The access
 * belongs to no thread: the consumer ends it, from any thread, through the deleter. */
static twin_status open_export(const char *fn, exported *e, twin_access access, twin__site site) {
  twin_array *v = e->view;
  DLTensor *dl = &e->t.dl_tensor;
  twin__opener who = {fn, NULL, site};
  twin_status s;
  if (e->side == TWIN__HOST) {
    s = twin__host_begin(&who, true, v, access, &dl->data);
    dl->device = (DLDevice){kDLCPU, 0};
    dl->byte_offset = 0;
  } else {
    size_t offset = 0;
    s = twin__device_begin(&who, true, v, access, &dl->data, &offset);
    dl->device = (DLDevice){kDLOpenCL, v->buf->ctx->device.device_index};
    dl->byte_offset = offset;
  }
  return s;
}

twin_status twin__array_to_dlpack(const char *fn, twin_array *a, twin__side_id side,
                                  twin_access access, twin__site site, DLManagedTensor **out) {
  if (!a || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, !a ? "a" : "out");
  exported *e = twin__calloc(1, sizeof *e);
  if (!e)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a tensor", fn);
  twin_status s = twin__array_view(fn, a, a->ndim, a->shape, a->strides, (ptrdiff_t)a->offset,
                                   a->site, &e->view);
  if (s != TWIN_OK) {
    twin__free(e);
    return s;
  }
  e->side = side;
  s = open_export(fn, e, access, site);
  if (s != TWIN_OK) {
    twin_array_unref(e->view);
    twin__free(e);
    return s;
  }
  for (int i = 0; i < a->ndim; i++) {
    e->shape[i] = (int64_t)a->shape[i];
    e->strides[i] = (int64_t)a->strides[i];
  }
  DLTensor *dl = &e->t.dl_tensor;
  dl->ndim = a->ndim;
  dl->dtype = dl_dtype(a->dtype);
  dl->shape = e->shape;
  dl->strides = e->strides;
  e->t.manager_ctx = e;
  e->t.deleter = deleter;
  *out = &e->t;
  return TWIN_OK;
}

twin_status twin_array_to_dlpack_at(twin_array *a, twin_access access, DLManagedTensor **out,
                                    const char *file, int line) {
  return twin__array_to_dlpack("twin_array_to_dlpack", a, TWIN__HOST, access,
                               (twin__site){file, line}, out);
}

twin_status(twin_array_to_dlpack)(twin_array *a, twin_access access, DLManagedTensor **out) {
  return twin_array_to_dlpack_at(a, access, out, NULL, 0);
}

/* ---- Import ---- */

static twin_status twin_dtype_of(const char *fn, DLDataType t, twin_dtype *out) {
  static const twin_dtype ints[] = {TWIN_I8, TWIN_I16, TWIN_I32, TWIN_I64};
  static const twin_dtype uints[] = {TWIN_U8, TWIN_U16, TWIN_U32, TWIN_U64};
  int log2 = t.bits == 8 ? 0 : t.bits == 16 ? 1 : t.bits == 32 ? 2 : t.bits == 64 ? 3 : -1;
  bool ok = t.lanes == 1 && log2 >= 0;
  if (ok && t.code == kDLInt)
    *out = ints[log2];
  else if (ok && t.code == kDLUInt)
    *out = uints[log2];
  else if (ok && t.code == kDLFloat && (t.bits == 32 || t.bits == 64))
    *out = t.bits == 32 ? TWIN_F32 : TWIN_F64;
  else
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: DLPack dtype {code %u, bits %u, lanes %u} has "
                      "no twin dtype (int and uint of 8-64 bits, float of 32 and 64, lanes 1)",
                      fn, (unsigned)t.code, (unsigned)t.bits, (unsigned)t.lanes);
  return TWIN_OK;
}

/* The tensor's shape and strides as twin's types (strides NULL when the tensor has none). */
static twin_status geometry_of(const char *fn, const DLTensor *dl, size_t *shape,
                               ptrdiff_t *strides, bool *has_strides) {
  if (dl->ndim < 0 || dl->ndim > TWIN_MAX_DIMS)
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: the tensor has %d dimensions; twin has at most "
                      "%d",
                      fn, dl->ndim, TWIN_MAX_DIMS);
  if (dl->ndim > 0 && !dl->shape)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the tensor's shape is NULL", fn);
  for (int i = 0; i < dl->ndim; i++) {
    if (dl->shape[i] < 0 || (uint64_t)dl->shape[i] > SIZE_MAX)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: the tensor's shape[%d] is %lld", fn, i,
                        (long long)dl->shape[i]);
    shape[i] = (size_t)dl->shape[i];
    strides[i] = dl->strides ? (ptrdiff_t)dl->strides[i] : 0;
  }
  *has_strides = dl->strides != NULL;
  return TWIN_OK;
}

static void call_deleter(void *user) {
  DLManagedTensor *t = user;
  if (t->deleter)
    t->deleter(t);
}

twin_status twin_array_from_dlpack_at(twin_context *ctx, DLManagedTensor *tensor, twin_array **out,
                                      const char *file, int line) {
  static const char fn[] = "twin_array_from_dlpack";
  if (!ctx || !tensor || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !ctx      ? "ctx"
                      : !tensor ? "tensor"
                                : "out");
  const DLTensor *dl = &tensor->dl_tensor;
  twin_dtype dtype = TWIN_U8;
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  bool has_strides = false;
  twin_status s = twin_dtype_of(fn, dl->dtype, &dtype);
  if (s == TWIN_OK)
    s = geometry_of(fn, dl, shape, strides, &has_strides);
  if (s != TWIN_OK)
    return s;
  twin__site site = {file, line};
  if (dl->device.device_type == kDLCPU)
    return twin__array_wrap_host(fn, ctx, dl->data ? (char *)dl->data + dl->byte_offset : NULL,
                                 dtype, dl->ndim, shape, has_strides ? strides : NULL, call_deleter,
                                 tensor, site, out);
  if (dl->device.device_type == kDLOpenCL)
    return twin__array_wrap_device(fn, ctx, dl->data, dl->byte_offset, dtype, dl->ndim, shape,
                                   has_strides ? strides : NULL, call_deleter, tensor, site, out);
  return twin__fail(TWIN_ERR_UNSUPPORTED,
                    "%s: the tensor is on DLPack device type %d; twin "
                    "imports kDLCPU (%d) and kDLOpenCL (%d)",
                    fn, (int)dl->device.device_type, (int)kDLCPU, (int)kDLOpenCL);
}

twin_status(twin_array_from_dlpack)(twin_context *ctx, DLManagedTensor *tensor, twin_array **out) {
  return twin_array_from_dlpack_at(ctx, tensor, out, NULL, 0);
}

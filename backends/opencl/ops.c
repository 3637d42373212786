/* The built-in copy and fill on an OpenCL device: reduce the views to the fewest axes, pick a
 * kernel of kernels/copy.cl or fill.cl for the shape of the problem, and enqueue it (in order,
 * without waiting). Work-group sizes are fixed, and chosen here rather than left to the
 * runtime: on PoCL 3.1 (2 cores) its own choice runs strided copies 2-3x slower, and each
 * distinct local size costs a separate ~0.1 s compile at first launch, so every kernel has
 * exactly one. */
#include <string.h>

#include "clapi.h"

/* Elements per work item and work-items per group, measured on PoCL 3.1 with 4096 x 4096 f32
 * views (every other column, transpose) against memcpy of the same bytes in the same run:
 * 1-D chunks of 64 reach ~1.0x; the N-d walk, which divides to find its start, needs 256 to
 * reach ~1.0x; 8x8 blocks in groups of 1 x 32 (32 blocks down the destination's rows) give
 * ~0.6-0.75x for a transpose, where 16x16 and 32x8 local-memory tiles give 0.15-0.25x. */
#define CHUNK_1D 64
#define CHUNK_ND 256
#define GROUP_1D 64
#define GROUP_BLOCKS 32
#define BLOCK 8 /* TWIN_TB in kernels/common.cl */

typedef struct arg {
  size_t size;
  const void *value;
} arg;

#define ARG(v)                                                                                     \
  { sizeof(v), &(v) }

static size_t round_up(size_t n, size_t m) {
  return (n + m - 1) / m * m;
}

static size_t min_size(size_t a, size_t b) {
  return a < b ? a : b;
}

/* The largest power of two <= n (n >= 1). */
static size_t floor_pow2(size_t n) {
  size_t p = 1;
  while (p * 2 <= n)
    p *= 2;
  return p;
}

/* The tracks of the buffers an operation uses, where its command is recorded. */
typedef struct uses {
  twin__track *track[2];
} uses;

static uses uses_of(const twin__view *d, const twin__view *s) {
  return (uses){{d->track, s ? s->track : NULL}};
}

/* With ops_lock held: sets the kernel's arguments and enqueues it over `items` work items per
 * dimension, in groups of `group` (shrunk to what the device allows for this kernel). */
static twin_status launch(twin_context *ctx, uses u, int id, const arg *args, int nargs,
                          cl_uint dims, const size_t *items, const size_t *group) {
  const twin__cl_kernel *k;
  twin_status s = twin__cl_kernel_get(ctx, id, &k);
  if (s != TWIN_OK)
    return s;
  size_t local[2], global[2], allowed = k->max_group;
  for (cl_uint d = 0; d < dims; d++) {
    local[d] = floor_pow2(min_size(group[d], allowed));
    allowed /= local[d];
    global[d] = round_up(items[d], local[d]);
  }
  for (int i = 0; i < nargs; i++) {
    cl_int err = twin__cl.clSetKernelArg(k->kernel, (cl_uint)i, args[i].size, args[i].value);
    if (err != CL_SUCCESS)
      return twin__cl_fail("clSetKernelArg", err);
  }
  twin__cl_context *cl = to_cl(ctx);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err = twin__cl.clEnqueueNDRangeKernel(cl->queue, k->kernel, dims, NULL, global, local, 0,
                                               NULL, &ev);
  err = twin__cl_enqueue_end(cl, err, ev, u.track, 2);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueNDRangeKernel", err);
}

static size_t count(const twin__view *v) {
  size_t n = 1;
  for (int i = 0; i < v->ndim; i++)
    n *= v->shape[i];
  return n;
}

/* A copy or fill simplified to no axes is one element: give the kernels one axis. */
static void at_least_1d(twin__view *v) {
  if (v->ndim == 0) {
    v->ndim = 1;
    v->shape[0] = 1;
    v->strides[0] = 1;
  }
}

static cl_long8 long8_of(const twin__view *v, bool strides) {
  cl_long8 out;
  memset(&out, 0, sizeof out);
  for (int i = 0; i < v->ndim; i++)
    out.s[i] = strides ? (cl_long)v->strides[i] : (cl_long)v->shape[i];
  return out;
}

static bool is_integer(twin_dtype t) {
  return t != TWIN_F32 && t != TWIN_F64;
}

/* A copy that moves bits unchanged: the same dtype, or integers of one size (whose conversion
 * wraps modulo 2^n, which keeps every bit). */
static bool moves_bits(twin_dtype dst, twin_dtype src) {
  return dst == src ||
         (is_integer(dst) && is_integer(src) && twin_dtype_size(dst) == twin_dtype_size(src));
}

static twin_status copy_buffer(twin_context *ctx, const twin__view *d, const twin__view *s,
                               size_t n) {
  size_t item = twin_dtype_size(d->dtype);
  twin__cl_context *cl = to_cl(ctx);
  uses u = uses_of(d, s);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err =
      twin__cl.clEnqueueCopyBuffer(cl->queue, (cl_mem)s->mem, (cl_mem)d->mem, s->offset * item,
                                   d->offset * item, n * item, 0, NULL, &ev);
  err = twin__cl_enqueue_end(cl, err, ev, u.track, 2);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueCopyBuffer", err);
}

static twin_status copy_1d(twin_context *ctx, const twin__view *d, const twin__view *s, cl_long n) {
  cl_mem dmem = d->mem, smem = s->mem;
  cl_long doff = (cl_long)d->offset, ds = d->strides[0], soff = (cl_long)s->offset,
          ss = s->strides[0], chunk = CHUNK_1D;
  arg args[] = {ARG(dmem), ARG(doff), ARG(ds), ARG(smem), ARG(soff), ARG(ss), ARG(n), ARG(chunk)};
  size_t items = ((size_t)n + CHUNK_1D - 1) / CHUNK_1D, group = GROUP_1D;
  return launch(ctx, uses_of(d, s), twin__cl_kernel_id(TWIN__CL_COPY1, twin_dtype_size(d->dtype)),
                args, 8, 1, &items, &group);
}

/* A 2-D copy whose source runs fastest along axis 0 while the destination (sorted by its
 * strides) runs fastest along axis 1: a transpose, done in blocks. */
static bool is_transpose(const twin__view *s) {
  ptrdiff_t s0 = s->strides[0], s1 = s->strides[1];
  return s->ndim == 2 && s0 != 0 && (s0 < 0 ? -s0 : s0) < (s1 < 0 ? -s1 : s1);
}

static twin_status copy_blocks(twin_context *ctx, const twin__view *d, const twin__view *s) {
  cl_mem dmem = d->mem, smem = s->mem;
  cl_long doff = (cl_long)d->offset, d0 = d->strides[0], d1 = d->strides[1],
          soff = (cl_long)s->offset, s0 = s->strides[0], s1 = s->strides[1],
          n0 = (cl_long)d->shape[0], n1 = (cl_long)d->shape[1];
  arg args[] = {ARG(dmem), ARG(doff), ARG(d0), ARG(d1), ARG(smem),
                ARG(soff), ARG(s0),   ARG(s1), ARG(n0), ARG(n1)};
  size_t items[2] = {(d->shape[1] + BLOCK - 1) / BLOCK, (d->shape[0] + BLOCK - 1) / BLOCK};
  size_t group[2] = {1, GROUP_BLOCKS};
  return launch(ctx, uses_of(d, s), twin__cl_kernel_id(TWIN__CL_COPYT, twin_dtype_size(d->dtype)),
                args, 10, 2, items, group);
}

/* The N-d walk, moving bits (kernel copyn_*) or converting (convert_*_*). */
static twin_status copy_nd(twin_context *ctx, int id, const twin__view *d, const twin__view *s,
                           cl_long n) {
  cl_mem dmem = d->mem, smem = s->mem;
  cl_long doff = (cl_long)d->offset, soff = (cl_long)s->offset, chunk = CHUNK_ND;
  cl_int ndim = d->ndim;
  cl_long8 shape = long8_of(d, false), dstrides = long8_of(d, true), sstrides = long8_of(s, true);
  arg args[] = {ARG(dmem),  ARG(doff),     ARG(smem),     ARG(soff), ARG(ndim),
                ARG(shape), ARG(dstrides), ARG(sstrides), ARG(n),    ARG(chunk)};
  size_t items = ((size_t)n + CHUNK_ND - 1) / CHUNK_ND, group = GROUP_1D;
  return launch(ctx, uses_of(d, s), id, args, 10, 1, &items, &group);
}

twin_status twin__cl_copy(twin_context *ctx, const twin__view *dst, const twin__view *src) {
  twin__view d = *dst, s = *src;
  twin__view_simplify(&d, &s);
  size_t n = count(&d);
  if (n == 0)
    return TWIN_OK;
  at_least_1d(&d);
  at_least_1d(&s);
  bool bits = moves_bits(d.dtype, s.dtype);
  if (bits && d.ndim == 1 && d.strides[0] == 1 && s.strides[0] == 1)
    return copy_buffer(ctx, &d, &s, n);
  twin__cl_context *cl = to_cl(ctx);
  twin_status st;
  pthread_mutex_lock(&cl->ops_lock);
  if (!bits)
    st = copy_nd(ctx, twin__cl_convert_id(s.dtype, d.dtype), &d, &s, (cl_long)n);
  else if (d.ndim == 1)
    st = copy_1d(ctx, &d, &s, (cl_long)n);
  else if (is_transpose(&s))
    st = copy_blocks(ctx, &d, &s);
  else
    st = copy_nd(ctx, twin__cl_kernel_id(TWIN__CL_COPYN, twin_dtype_size(d.dtype)), &d, &s,
                 (cl_long)n);
  pthread_mutex_unlock(&cl->ops_lock);
  return st;
}

twin_status twin__cl_fill(twin_context *ctx, const twin__view *dst, const void *value) {
  twin__view d = *dst;
  twin__view_simplify(&d, NULL);
  size_t n = count(&d), item = twin_dtype_size(d.dtype);
  if (n == 0)
    return TWIN_OK;
  at_least_1d(&d);
  cl_mem dmem = d.mem;
  cl_long doff = (cl_long)d.offset, ln = (cl_long)n;
  arg value_arg = {item, value}; /* the element's bits, whatever the dtype */
  twin__cl_context *cl = to_cl(ctx);
  twin_status st;
  pthread_mutex_lock(&cl->ops_lock);
  if (d.ndim == 1) {
    cl_long ds = d.strides[0], chunk = CHUNK_1D;
    arg args[] = {ARG(dmem), ARG(doff), ARG(ds), ARG(ln), ARG(chunk), value_arg};
    size_t items = (n + CHUNK_1D - 1) / CHUNK_1D, group = GROUP_1D;
    st = launch(ctx, uses_of(&d, NULL), twin__cl_kernel_id(TWIN__CL_FILL1, item), args, 6, 1,
                &items, &group);
  } else {
    cl_int ndim = d.ndim;
    cl_long chunk = CHUNK_ND;
    cl_long8 shape = long8_of(&d, false), strides = long8_of(&d, true);
    arg args[] = {ARG(dmem),    ARG(doff), ARG(ndim),  ARG(shape),
                  ARG(strides), ARG(ln),   ARG(chunk), value_arg};
    size_t items = (n + CHUNK_ND - 1) / CHUNK_ND, group = GROUP_1D;
    st = launch(ctx, uses_of(&d, NULL), twin__cl_kernel_id(TWIN__CL_FILLN, item), args, 8, 1,
                &items, &group);
  }
  pthread_mutex_unlock(&cl->ops_lock);
  return st;
}

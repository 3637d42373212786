/* libFuzzer target: decodes bytes into a sequence of twin calls on the host backend (make,
 * slice, index, transpose, reshape, broadcast, as_strided, expand_dims, copy with casts, fill,
 * read, write, host access and writes through its pointer, ref, unref, array_copy and
 * contiguous) on up to 8 arrays held in slots, and after every call checks each live array's
 * geometry and contents, and the context's counts, against the plain-C model of model.c.
 * A call must return a status the model allows; a refused call must change nothing.
 * Any disagreement prints the calls so far and aborts, which libFuzzer reports as a crash.
 * Input layout: one opcode byte per call, then that call's argument bytes (see each op_*);
 * bytes past the end read as 0, so every input decodes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define SLOTS 8
#define MAX_CALLS 64
#define LOG_LINES (MAX_CALLS * 2 + 8)

static twin_context *ctx;
static m_view *slot[SLOTS];

/* ---- Input ---- */

static const uint8_t *in_p;
static size_t in_n;

static uint8_t take(void) {
  if (!in_n)
    return 0;
  in_n--;
  return *in_p++;
}

static void take_bytes(void *dst, size_t n) {
  unsigned char *d = dst;
  for (size_t i = 0; i < n; i++)
    d[i] = take();
}

/* Axis lengths: mostly 0..8, sometimes huge ones that overflow element or byte counts. */
static size_t take_dim(void) {
  static const size_t huge[16] = {
      (size_t)1 << 31,
      (size_t)1 << 32,
      (size_t)1 << 61,
      (size_t)1 << 62,
      (size_t)1 << 63,
      PTRDIFF_MAX,
      (size_t)PTRDIFF_MAX + 2,
      SIZE_MAX - 1,
      SIZE_MAX / 3,
      (size_t)3 << 61,
      4097,
      65536,
      1000,
      (size_t)1 << 40,
      (size_t)1 << 20,
      ((size_t)1 << 31) - 1,
  };
  uint8_t b = take();
  if (b >= 0xF0)
    return huge[b & 15];
  if (b >= 0xE8)
    return SIZE_MAX; /* TWIN_INFER in a reshape */
  return b % 9;
}

/* Signed values for bounds, steps, indices, strides and offsets: mostly -16..16, sometimes
 * the edges of ptrdiff_t and powers of two that overflow when multiplied. */
static ptrdiff_t pd_of(uint8_t b) {
  static const ptrdiff_t special[32] = {
      TWIN_NONE,
      PTRDIFF_MIN + 1,
      PTRDIFF_MAX,
      PTRDIFF_MAX - 1,
      PTRDIFF_MAX / 2,
      PTRDIFF_MIN / 2,
      (ptrdiff_t)1 << 62,
      -((ptrdiff_t)1 << 62),
      ((ptrdiff_t)1 << 62) + 1,
      (ptrdiff_t)1 << 61,
      -((ptrdiff_t)1 << 61),
      (ptrdiff_t)1 << 32,
      -((ptrdiff_t)1 << 32),
      (ptrdiff_t)1 << 31,
      -((ptrdiff_t)1 << 31),
      INT32_MAX,
      INT32_MIN,
      4096,
      -4096,
      100,
      -100,
      1000,
      -1000,
      (ptrdiff_t)3 << 61,
      -((ptrdiff_t)3 << 61),
      64,
      -64,
      255,
      PTRDIFF_MAX / 3,
      -(PTRDIFF_MAX / 3),
      1,
      -1,
  };
  if (b >= 0xE0)
    return special[b & 31];
  return (ptrdiff_t)(b % 33) - 16;
}

static ptrdiff_t take_pd(void) {
  return pd_of(take());
}

/* A slice bound: often omitted (TWIN_NONE). */
static ptrdiff_t take_bound(void) {
  uint8_t b = take();
  return b < 0x30 ? TWIN_NONE : pd_of(b);
}

static int take_slot(void) {
  return take() % SLOTS;
}

/* ---- The log of calls, printed with a finding ---- */

static char log_text[LOG_LINES][200];
static int log_count;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...) {
  if (log_count >= LOG_LINES)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(log_text[log_count++], sizeof log_text[0], fmt, ap);
  va_end(ap);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
  fprintf(stderr, "\n==== twin fuzz: the library disagrees with the model ====\ncalls:\n");
  for (int i = 0; i < log_count; i++)
    fprintf(stderr, "  %s\n", log_text[i]);
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "finding: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  abort();
}

static const char *allowed_text(unsigned allowed) {
  static char buf[512];
  size_t used = 0;
  buf[0] = 0;
  for (int s = TWIN_OK; s <= TWIN_ERR_SHAPE_MISMATCH; s++)
    if (allowed & M_ERR(s))
      used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", used ? " or " : "",
                               twin_status_name((twin_status)s));
  return buf;
}

static void expect(twin_status s, unsigned allowed, const char *call) {
  note("  -> %s", twin_status_name(s));
  if (!(allowed & M_ERR(s)))
    fail("%s returned %s (\"%s\"); the model allows %s", call, twin_status_name(s),
         s ? twin_last_error() : "", allowed_text(allowed));
}

/* Appends to a call's text, which is cut where it would overflow. */
static void append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...) {
  size_t used = strlen(buf);
  va_list ap;
  va_start(ap, fmt);
  if (used + 1 < cap)
    vsnprintf(buf + used, cap - used, fmt, ap);
  va_end(ap);
}

static const char *shape_text(int ndim, const size_t *shape, char *buf, size_t cap) {
  snprintf(buf, cap, "(");
  for (int i = 0; i < ndim; i++)
    append(buf, cap, i ? ",%zu" : "%zu", shape[i]);
  append(buf, cap, ")");
  return buf;
}

/* ---- Slots ---- */

static void release(int i) {
  m_view *v = slot[i];
  if (!v)
    return;
  slot[i] = NULL;
  twin_array_unref(v->a);
  if (--v->refs > 0)
    return;
  m_buffer_drop(v->buf);
  free(v);
}

/* Stores a view in slot i, dropping what the slot held (after the view's own reference is
 * counted, so storing a view in its own slot keeps it). */
static void place(int i, m_view *v) {
  release(i);
  slot[i] = v;
}

/* Records a view the library made, checking its geometry against the model's. */
static void adopt(int out, m_buffer *b, twin_dtype dtype, const m_geom *g, twin_array *a,
                  const char *call) {
  char why[256];
  m_view *v = malloc(sizeof *v);
  if (!m_view_adopt(v, b, dtype, g, a, why, sizeof why))
    fail("%s made a view the model disagrees with: %s", call, why);
  v->refs = 1;
  b->views++;
  place(out, v);
}

/* ---- Contents ---- */

static bool known_at(const m_view *v, size_t flat, size_t *e) {
  *e = m_element(v, flat);
  return v->buf->known[*e];
}

static void compare(const m_view *v, const unsigned char *got, const char *how) {
  size_t item = twin_dtype_size(v->dtype), e;
  for (size_t i = 0; i < (size_t)v->count; i++)
    if (known_at(v, i, &e) && memcmp(got + i * item, v->buf->bytes + e * item, item) != 0)
      fail("%s: element %zu (buffer element %zu) differs from the model", how, i, e);
}

/* Reads a view through its open access's pointer into packed order. */
static void read_pointer(const m_view *v, unsigned char *out) {
  size_t item = twin_dtype_size(v->dtype);
  for (size_t i = 0; i < (size_t)v->count; i++) {
    ptrdiff_t rel = (ptrdiff_t)m_element(v, i) - v->offset;
    memcpy(out + i * item, (const char *)v->ptr + rel * (ptrdiff_t)item, item);
  }
}

static void check_view(m_view *v) {
  static unsigned char got[M_MAX_ELEMENTS * 8];
  if (v->count > M_MAX_ELEMENTS)
    return;
  size_t nbytes = (size_t)v->count * twin_dtype_size(v->dtype);
  if (v->accesses > 0) {
    read_pointer(v, got);
    compare(v, got, "reading through the open access's pointer");
  }
  if (v->writing)
    return; /* twin_array_read would be TWIN_ERR_BUSY, tested by op_read */
  twin_status s = twin_array_read(v->a, got, nbytes);
  if (s != TWIN_OK)
    fail("checking: twin_array_read of a live view failed: %s (%s)", twin_status_name(s),
         twin_last_error());
  compare(v, got, "twin_array_read");
}

/* Every live view's contents, then the context's counts of arrays, buffers and bytes. */
static void check_all(void) {
  size_t arrays = 0, buffers = 0, bytes = 0;
  m_view *seen[SLOTS];
  m_buffer *bufs[SLOTS];
  for (int i = 0; i < SLOTS; i++) {
    m_view *v = slot[i];
    bool dup = false;
    for (size_t k = 0; k < arrays && v; k++)
      dup = dup || seen[k] == v;
    if (!v || dup)
      continue;
    seen[arrays++] = v;
    check_view(v);
    bool dup_buf = false;
    for (size_t k = 0; k < buffers; k++)
      dup_buf = dup_buf || bufs[k] == v->buf;
    if (!dup_buf) {
      bufs[buffers++] = v->buf;
      bytes += v->buf->elements * twin_dtype_size(v->buf->dtype);
    }
  }
  twin_stats st;
  if (twin_context_stats(ctx, &st) != TWIN_OK)
    fail("twin_context_stats failed: %s", twin_last_error());
  if (st.arrays != arrays || st.buffers != buffers)
    fail("stats count %zu arrays and %zu buffers; %zu and %zu are alive", st.arrays, st.buffers,
         arrays, buffers);
  if (st.host_bytes > bytes)
    fail("stats count %zu host bytes; the live buffers have %zu", st.host_bytes, bytes);
}

/* Writes one packed value into buffer element e during an operation that may visit an
 * element twice (aliasing views): a second, different value leaves the element unknown. */
static void put(m_buffer *b, size_t e, const void *value, bool known, bool *written) {
  size_t item = twin_dtype_size(b->dtype);
  unsigned char *at = b->bytes + e * item;
  if (!written[e]) {
    memcpy(at, value, item);
    b->known[e] = known;
    written[e] = true;
  } else if (!known || !b->known[e] || memcmp(at, value, item) != 0) {
    b->known[e] = false;
  }
}

/* Writes packed values (with their known flags) into every element of v. */
static void model_write(m_view *v, const unsigned char *values, const bool *known) {
  static bool written[M_MAX_ELEMENTS];
  size_t item = twin_dtype_size(v->dtype);
  memset(written, 0, sizeof written);
  for (size_t i = 0; i < (size_t)v->count; i++)
    put(v->buf, m_element(v, i), values + i * item, known ? known[i] : true, written);
}

/* ---- Calls ---- */

static bool valid_dtype(int d) {
  return d >= 0 && d < TWIN_DTYPE_COUNT;
}

/* new, zeros or from_host, with any dtype (10 is invalid) and 0..9 axes (9 is too many). */
static void op_make(void) {
  static unsigned char data[M_MAX_ELEMENTS * 8];
  static const char *names[3] = {"twin_array_new", "twin_array_zeros", "twin_array_from_host"};
  int kind = take() % 3, dtype = take() % (TWIN_DTYPE_COUNT + 1), ndim = take() % 10,
      out = take_slot();
  size_t shape[9];
  for (int i = 0; i < ndim; i++)
    shape[i] = take_dim();
  unsigned allowed = M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  size_t item = valid_dtype(dtype) ? twin_dtype_size((twin_dtype)dtype) : 0;
  m_int count = ndim <= TWIN_MAX_DIMS ? m_count(ndim, shape) : 0;
  if (valid_dtype(dtype) && ndim <= TWIN_MAX_DIMS) {
    if (count > 0 && count * item > PTRDIFF_MAX)
      allowed = M_ERR(TWIN_ERR_OVERFLOW);
    else if (count > M_MAX_ELEMENTS)
      return; /* valid, but more than the model holds */
    else
      allowed = m_size_rule(ndim, shape, item);
  }
  if (kind == 2 && count <= M_MAX_ELEMENTS)
    take_bytes(data, (size_t)count * item);
  char call[200], sh[160];
  snprintf(call, sizeof call, "%s(dtype %d, shape %s) -> slot %d", names[kind], dtype,
           shape_text(ndim, shape, sh, sizeof sh), out);
  note("%s", call);
  twin_array *a = NULL;
  twin_status s = kind == 0   ? twin_array_new(ctx, (twin_dtype)dtype, ndim, shape, &a)
                  : kind == 1 ? twin_array_zeros(ctx, (twin_dtype)dtype, ndim, shape, &a)
                              : twin_array_from_host(ctx, (twin_dtype)dtype, ndim, shape,
                                                     count ? data : NULL, &a);
  expect(s, allowed, call);
  if (s != TWIN_OK)
    return;
  m_buffer *b = m_buffer_new((twin_dtype)dtype, (size_t)count, kind == 1);
  if (kind == 2)
    memcpy(b->bytes, data, (size_t)count * item);
  for (size_t i = 0; kind == 2 && i < (size_t)count; i++)
    b->known[i] = true;
  m_geom g = {.ndim = ndim, .offset = 0, .offset_known = true};
  m_int stride = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    g.shape[i] = shape[i];
    g.strides[i] = stride;
    stride *= shape[i] ? shape[i] : 1;
  }
  adopt(out, b, (twin_dtype)dtype, &g, a, call);
}

/* The view calls share this tail: check the status, record the view. */
static void finish_view(twin_status s, unsigned allowed, const m_geom *g, const m_view *base,
                        twin_array *a, int out, const char *call) {
  expect(s, allowed, call);
  if (s == TWIN_OK)
    adopt(out, base->buf, base->dtype, g, a, call);
}

static m_view *take_view(void) {
  return slot[take_slot()];
}

static void op_slice(void) {
  m_view *v = take_view();
  int out = take_slot();
  if (!v)
    return;
  twin_slice sl[TWIN_MAX_DIMS];
  char call[200] = "twin_array_slice(";
  for (int i = 0; i < v->ndim; i++) {
    sl[i] = (twin_slice){take_bound(), take_bound(), take_bound()};
    char t[3][24];
    for (int k = 0; k < 3; k++) {
      ptrdiff_t x = k == 0 ? sl[i].start : k == 1 ? sl[i].stop : sl[i].step;
      snprintf(t[k], sizeof t[k], x == TWIN_NONE ? "None" : "%td", x);
    }
    append(call, sizeof call, "%s%s:%s:%s", i ? ", " : "", t[0], t[1], t[2]);
  }
  append(call, sizeof call, ") -> slot %d", out);
  note("%s", call);
  m_geom g;
  unsigned allowed = m_slice(v, sl, &g);
  twin_array *a = NULL;
  finish_view(twin_array_slice(v->a, sl, &a), allowed, &g, v, a, out, call);
}

static void op_index(void) {
  m_view *v = take_view();
  int axis = take() % 21 - 10, out = take_slot();
  ptrdiff_t index = take_pd();
  if (!v)
    return;
  char call[200];
  snprintf(call, sizeof call, "twin_array_index(axis %d, index %td) -> slot %d", axis, index, out);
  note("%s", call);
  m_geom g;
  unsigned allowed = m_index(v, axis, index, &g);
  twin_array *a = NULL;
  finish_view(twin_array_index(v->a, axis, index, &a), allowed, &g, v, a, out, call);
}

static void op_transpose(void) {
  m_view *v = take_view();
  int out = take_slot(), perm[TWIN_MAX_DIMS];
  bool given = take() & 1;
  if (!v)
    return;
  char call[200] = "twin_array_transpose(";
  append(call, sizeof call, "%s", given ? "" : "NULL");
  for (int i = 0; given && i < v->ndim; i++) {
    perm[i] = take() % (2 * v->ndim + 3) - v->ndim - 1;
    append(call, sizeof call, "%s%d", i ? "," : "", perm[i]);
  }
  append(call, sizeof call, ") -> slot %d", out);
  note("%s", call);
  m_geom g;
  unsigned allowed = m_transpose(v, given ? perm : NULL, &g);
  twin_array *a = NULL;
  finish_view(twin_array_transpose(v->a, given ? perm : NULL, &a), allowed, &g, v, a, out, call);
}

/* reshape and broadcast_to: a new shape of 0..9 axes. */
static void op_reshape(bool broadcast) {
  m_view *v = take_view();
  int ndim = take() % 10, out = take_slot();
  size_t shape[9];
  for (int i = 0; i < ndim; i++)
    shape[i] = take_dim();
  if (!v)
    return;
  char call[200], sh[160];
  snprintf(call, sizeof call, "%s(%s) -> slot %d",
           broadcast ? "twin_array_broadcast_to" : "twin_array_reshape",
           shape_text(ndim, shape, sh, sizeof sh), out);
  note("%s", call);
  m_geom g;
  unsigned allowed = broadcast ? m_broadcast(v, ndim, shape, &g) : m_reshape(v, ndim, shape, &g);
  twin_array *a = NULL;
  twin_status s = broadcast ? twin_array_broadcast_to(v->a, ndim, shape, &a)
                            : twin_array_reshape(v->a, ndim, shape, &a);
  finish_view(s, allowed, &g, v, a, out, call);
}

static void op_as_strided(void) {
  m_view *v = take_view();
  int ndim = take() % 10, out = take_slot();
  size_t shape[9];
  ptrdiff_t strides[9];
  for (int i = 0; i < ndim; i++) {
    shape[i] = take_dim();
    strides[i] = take_pd();
  }
  ptrdiff_t offset = take_pd();
  if (!v)
    return;
  m_geom g;
  unsigned allowed = m_as_strided(v, ndim, shape, strides, offset, &g);
  if (!allowed)
    return; /* the base has no elements and no known offset: the model cannot follow */
  char call[240] = "", sh[160];
  append(call, sizeof call, "twin_array_as_strided(%s, strides (",
         shape_text(ndim, shape, sh, sizeof sh));
  for (int i = 0; i < ndim; i++)
    append(call, sizeof call, "%s%td", i ? "," : "", strides[i]);
  append(call, sizeof call, "), offset %td) -> slot %d", offset, out);
  note("%s", call);
  twin_array *a = NULL;
  finish_view(twin_array_as_strided(v->a, ndim, shape, strides, offset, &a), allowed, &g, v, a, out,
              call);
}

static void op_expand_dims(void) {
  m_view *v = take_view();
  int axis = take() % 21 - 10, out = take_slot();
  if (!v)
    return;
  char call[200];
  snprintf(call, sizeof call, "twin_array_expand_dims(axis %d) -> slot %d", axis, out);
  note("%s", call);
  m_geom g;
  unsigned allowed = m_expand_dims(v, axis, &g);
  twin_array *a = NULL;
  finish_view(twin_array_expand_dims(v->a, axis, &a), allowed, &g, v, a, out, call);
}

/* An operation that would proceed on a view of no elements may return early (OK) or still
 * check its accesses (BUSY). */
static unsigned busy_rule(bool conflict, const m_view *dst) {
  if (!conflict)
    return M_OK;
  return dst->count == 0 ? M_OK | M_ERR(TWIN_ERR_BUSY) : M_ERR(TWIN_ERR_BUSY);
}

static void op_copy(void) {
  static unsigned char values[M_MAX_ELEMENTS * 8];
  static bool known[M_MAX_ELEMENTS];
  m_view *dst = take_view(), *src = take_view();
  if (!dst || !src)
    return;
  ptrdiff_t bstrides[TWIN_MAX_DIMS];
  unsigned refused = (dst->read_only ? M_ERR(TWIN_ERR_READ_ONLY) : 0) |
                     (m_copy_broadcast(dst, src, bstrides) ? 0 : M_ERR(TWIN_ERR_SHAPE_MISMATCH));
  bool conflict = dst->accesses > 0 || src->writing;
  unsigned allowed = refused ? refused : busy_rule(conflict && dst != src, dst);
  if (allowed & M_OK && dst->count > M_MAX_ELEMENTS)
    return;
  char call[200], a[160], b[160];
  snprintf(call, sizeof call, "twin_copy(dst %s %s, src %s %s)", twin_dtype_name(dst->dtype),
           shape_text(dst->ndim, dst->shape, a, sizeof a), twin_dtype_name(src->dtype),
           shape_text(src->ndim, src->shape, b, sizeof b));
  note("%s", call);
  twin_status s = twin_copy(dst->a, src->a);
  expect(s, allowed, call);
  if (s != TWIN_OK)
    return;
  m_view bs = *src; /* src seen through dst's shape */
  bs.ndim = dst->ndim;
  memcpy(bs.shape, dst->shape, sizeof bs.shape);
  memcpy(bs.strides, bstrides, sizeof bs.strides);
  size_t sitem = twin_dtype_size(src->dtype), ditem = twin_dtype_size(dst->dtype);
  for (size_t i = 0; i < (size_t)dst->count; i++) { /* all reads first: a temporary */
    size_t e = m_element(&bs, i);
    m_convert(dst->dtype, values + i * ditem, src->dtype, src->buf->bytes + e * sitem);
    known[i] = src->buf->known[e];
  }
  model_write(dst, values, known);
}

static void op_fill(void) {
  static unsigned char values[M_MAX_ELEMENTS * 8];
  m_view *dst = take_view();
  unsigned char value[8];
  take_bytes(value, sizeof value);
  if (!dst)
    return;
  unsigned allowed = dst->read_only ? M_ERR(TWIN_ERR_READ_ONLY) : busy_rule(dst->accesses > 0, dst);
  if (allowed & M_OK && dst->count > M_MAX_ELEMENTS)
    return;
  char call[200], a[160];
  snprintf(call, sizeof call, "twin_fill(dst %s %s)", twin_dtype_name(dst->dtype),
           shape_text(dst->ndim, dst->shape, a, sizeof a));
  note("%s", call);
  twin_status s = twin_fill(dst->a, value);
  expect(s, allowed, call);
  if (s != TWIN_OK)
    return;
  size_t item = twin_dtype_size(dst->dtype);
  for (size_t i = 0; i < (size_t)dst->count; i++)
    memcpy(values + i * item, value, item);
  model_write(dst, values, NULL);
}

static void op_read(void) {
  static unsigned char got[M_MAX_ELEMENTS * 8 + 1];
  m_view *v = take_view();
  bool wrong_size = take() % 5 == 4;
  if (!v || v->count > M_MAX_ELEMENTS)
    return;
  size_t nbytes = (size_t)v->count * twin_dtype_size(v->dtype) + wrong_size;
  unsigned allowed = wrong_size ? M_ERR(TWIN_ERR_INVALID_ARGUMENT) : busy_rule(v->writing, v);
  char call[200];
  snprintf(call, sizeof call, "twin_array_read(%zu bytes)", nbytes);
  note("%s", call);
  twin_status s = twin_array_read(v->a, got, nbytes);
  expect(s, allowed, call);
  if (s == TWIN_OK)
    compare(v, got, "twin_array_read");
}

static void op_write(void) {
  static unsigned char data[M_MAX_ELEMENTS * 8];
  m_view *v = take_view();
  if (!v || v->count > M_MAX_ELEMENTS)
    return;
  size_t nbytes = (size_t)v->count * twin_dtype_size(v->dtype);
  take_bytes(data, nbytes);
  unsigned allowed = busy_rule(v->accesses > 0, v);
  if (v->read_only)
    allowed = M_ERR(TWIN_ERR_READ_ONLY) | (v->accesses > 0 ? M_ERR(TWIN_ERR_BUSY) : 0);
  char call[200];
  snprintf(call, sizeof call, "twin_array_write(%zu bytes)", nbytes);
  note("%s", call);
  twin_status s = twin_array_write(v->a, data, nbytes);
  expect(s, allowed, call);
  if (s == TWIN_OK)
    model_write(v, data, NULL);
}

/* Writes packed values into every element of v through its open access's pointer. */
static void write_pointer(m_view *v, const unsigned char *data) {
  size_t item = twin_dtype_size(v->dtype);
  for (size_t i = 0; i < (size_t)v->count; i++) {
    ptrdiff_t rel = (ptrdiff_t)m_element(v, i) - v->offset;
    memcpy((char *)v->ptr + rel * (ptrdiff_t)item, data + i * item, item);
  }
}

static void op_host_begin(void) {
  static unsigned char data[M_MAX_ELEMENTS * 8];
  m_view *v = take_view();
  int mode = take() % 4;
  if (!v || ((mode & TWIN_WRITE) && v->count > M_MAX_ELEMENTS))
    return;
  unsigned allowed = M_OK;
  if (mode == 0)
    allowed = M_ERR(TWIN_ERR_INVALID_ARGUMENT);
  else if ((mode & TWIN_WRITE) && v->read_only)
    allowed = M_ERR(TWIN_ERR_READ_ONLY) | (v->accesses ? M_ERR(TWIN_ERR_BUSY) : 0);
  else if (v->writing || ((mode & TWIN_WRITE) && v->accesses > 0))
    allowed = M_ERR(TWIN_ERR_BUSY);
  char call[200];
  snprintf(call, sizeof call, "twin_host_begin(access %d)", mode);
  note("%s", call);
  void *ptr = NULL;
  twin_status s = twin_host_begin(v->a, (twin_access)mode, &ptr);
  expect(s, allowed, call);
  if (s != TWIN_OK)
    return;
  v->ptr = ptr;
  v->accesses++;
  v->writing = mode & TWIN_WRITE;
  if (mode == TWIN_WRITE) { /* write-only promises to overwrite every element: do so */
    size_t nbytes = (size_t)v->count * twin_dtype_size(v->dtype);
    take_bytes(data, nbytes);
    write_pointer(v, data);
    model_write(v, data, NULL);
    note("  wrote %zu bytes through the pointer", nbytes);
  }
}

static void op_host_end(void) {
  m_view *v = take_view();
  if (!v)
    return;
  note("twin_host_end");
  expect(twin_host_end(v->a), v->accesses ? M_OK : M_ERR(TWIN_ERR_BAD_STATE), "twin_host_end");
  if (v->accesses > 0 && --v->accesses == 0)
    v->writing = false;
}

/* Writes one element through an open write access's pointer. */
static void op_poke(void) {
  m_view *v = take_view();
  unsigned at = take() | (unsigned)take() << 8;
  unsigned char value[8];
  take_bytes(value, sizeof value);
  if (!v || !v->writing || v->count == 0)
    return;
  static bool written[M_MAX_ELEMENTS];
  size_t flat = at % (size_t)v->count, e = m_element(v, flat), item = twin_dtype_size(v->dtype);
  note("write element %zu through the pointer", flat);
  memcpy((char *)v->ptr + ((ptrdiff_t)e - v->offset) * (ptrdiff_t)item, value, item);
  memset(written, 0, sizeof written);
  put(v->buf, e, value, true, written);
}

static void op_unref(void) {
  int i = take_slot();
  note("twin_array_unref(slot %d)%s", i, slot[i] ? "" : " (empty: NULL)");
  if (!slot[i])
    twin_array_unref(NULL);
  release(i);
}

static void op_ref(void) {
  m_view *v = take_view();
  int out = take_slot();
  if (!v)
    return;
  note("twin_array_ref -> slot %d", out);
  if (twin_array_ref(v->a) != v->a)
    fail("twin_array_ref did not return its argument");
  v->refs++;
  place(out, v);
}

/* twin_array_copy, or twin_array_contiguous (which returns a itself when it is contiguous). */
static void op_array_copy(bool contiguous) {
  m_view *v = take_view();
  int out = take_slot();
  if (!v || v->count > M_MAX_ELEMENTS)
    return;
  bool same = contiguous && m_contiguous(v);
  /* A copy makes a new array of v's shape, then copies (nothing, for no elements). */
  unsigned allowed = same ? M_OK : m_size_rule(v->ndim, v->shape, twin_dtype_size(v->dtype));
  if (!same && v->writing)
    allowed = v->count ? M_ERR(TWIN_ERR_BUSY) : allowed | M_ERR(TWIN_ERR_BUSY);
  char call[200], sh[160];
  snprintf(call, sizeof call, "%s(%s) -> slot %d",
           contiguous ? "twin_array_contiguous" : "twin_array_copy",
           shape_text(v->ndim, v->shape, sh, sizeof sh), out);
  note("%s", call);
  twin_array *a = NULL;
  twin_status s = contiguous ? twin_array_contiguous(v->a, &a) : twin_array_copy(v->a, &a);
  expect(s, allowed, call);
  if (s != TWIN_OK)
    return;
  if (same) {
    if (a != v->a)
      fail("%s of a contiguous array did not return the array itself", call);
    v->refs++;
    place(out, v);
    return;
  }
  static unsigned char values[M_MAX_ELEMENTS * 8];
  size_t item = twin_dtype_size(v->dtype);
  m_buffer *b = m_buffer_new(v->dtype, (size_t)v->count, false);
  for (size_t i = 0; i < (size_t)v->count; i++) {
    size_t e = m_element(v, i);
    memcpy(values + i * item, v->buf->bytes + e * item, item);
    b->known[i] = v->buf->known[e];
  }
  memcpy(b->bytes, values, (size_t)v->count * item);
  m_geom g = {.ndim = v->ndim, .offset = 0, .offset_known = true};
  m_int stride = 1;
  for (int i = v->ndim - 1; i >= 0; i--) {
    g.shape[i] = v->shape[i];
    g.strides[i] = stride;
    stride *= v->shape[i] ? v->shape[i] : 1;
  }
  adopt(out, b, v->dtype, &g, a, call);
}

/* libFuzzer's entry points. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void run_call(uint8_t op) {
  switch (op % 19) {
  case 0:
  case 1:
    op_make();
    break;
  case 2:
    op_slice();
    break;
  case 3:
    op_index();
    break;
  case 4:
    op_transpose();
    break;
  case 5:
    op_reshape(false);
    break;
  case 6:
    op_reshape(true);
    break;
  case 7:
    op_as_strided();
    break;
  case 8:
    op_expand_dims();
    break;
  case 9:
    op_copy();
    break;
  case 10:
    op_fill();
    break;
  case 11:
    op_read();
    break;
  case 12:
    op_write();
    break;
  case 13:
    op_host_begin();
    break;
  case 14:
    op_host_end();
    break;
  case 15:
    op_poke();
    break;
  case 16:
    op_unref();
    break;
  case 17:
    op_ref();
    break;
  default:
    op_array_copy(take() & 1);
    break;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  twin_status s = twin_context_new("host", &ctx);
  if (s != TWIN_OK) {
    fprintf(stderr, "twin_context_new(\"host\"): %s\n", twin_last_error());
    abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  in_p = data;
  in_n = size;
  log_count = 0;
  for (int calls = 0; in_n > 0 && calls < MAX_CALLS; calls++) {
    run_call(take());
    check_all();
  }
  note("unref every slot");
  for (int i = 0; i < SLOTS; i++)
    release(i);
  check_all();                   /* nothing alive: the counts must be 0 */
  if (getenv("TWIN_FUZZ_TRACE")) /* shows what an input does: TWIN_FUZZ_TRACE=1 fuzz_calls FILE */
    for (int i = 0; i < log_count; i++)
      fprintf(stderr, "  %s\n", log_text[i]);
  return 0;
}

/* The access protocol: begin brings an array's elements up to date on one side (moving only
 * those the other side holds newer) and, for a write, marks them newer on this side; end
 * closes it. On a shared (zero-copy) buffer a host access maps the extent instead.
 *
 * Each buffer keeps a record of every open access (array object, side, mode, who opened it
 * where, and the thread holding it). Reads never conflict; a write conflicts with any other
 * access through the same array object and with any access on the other side of the buffer.
 * A conflict with accesses only other threads hold waits until one of them ends (waits.c),
 * unless waiting would close a wait-for cycle; a conflict with an access this thread holds,
 * or one a DLPack export holds, is TWIN_ERR_BUSY at once, since waiting could not end it.
 *
 * Region reservations (twin_array_reserve) claim the elements one array object views, on both
 * sides, for no thread. Every new access through another object whose elements overlap one
 * (overlap.c) conflicts with it when either writes, and is TWIN_ERR_BUSY at once: no end of
 * an access would lift it. A reservation itself is admitted like an access, waiting for other
 * threads' overlapping accesses through other objects and refusing this thread's.
 * The records themselves, the mapping and the moves belong to the storage layer (records.c,
 * coherence.c); this file holds the protocol: who may open what, and when. */
#include <string.h>

#include "objects.h"

static const char *mode_word(twin_access mode) {
  return mode & TWIN_WRITE ? "write" : "read";
}

/* True when a write-only access overwrites every byte of the array's extent, so the extent
 * need not be brought up to date first (a strided view has gaps it would not overwrite). */
static bool covers_extent(const twin_array *a) {
  return twin__is_contiguous(a);
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
  return access & TWIN_WRITE ? twin__check_writable(a, fn, "the array") : TWIN_OK;
}

/* ---- Conflicts ---- */

/* What asks to be admitted: an access of mode `access` on `side` through array object a, or
 * (reserve) a's reservation of that mode, which is on both sides and waits for the open
 * accesses its elements share with other array objects. */
typedef struct request {
  const twin__opener *who;
  twin_array *a;
  twin__side_id side; /* an access's; unused for a reservation */
  twin_access access;
  bool reserve;
} request;

/* Does open access x stand in the way of request r? */
static bool conflicts(const twin__access *x, const request *r) {
  if (!((x->mode | r->access) & TWIN_WRITE))
    return false; /* reads never conflict */
  if (r->reserve)
    return x->array != r->a && twin__arrays_overlap(x->array, r->a);
  return x->array == r->a || x->side != r->side;
}

/* With the buffer locked: a reservation made through another array object whose elements r
 * shares in a mode that conflicts (a write meets any reservation, a read a write one); NULL
 * when there is none. The reserving object's own accesses pass. */
static const twin__reservation *reserved(const request *r) {
  for (const twin__reservation *v = r->a->buf->reservations; v; v = v->next)
    if (v->array != r->a && ((v->mode | r->access) & TWIN_WRITE) &&
        twin__arrays_overlap(v->array, r->a))
      return v;
  return NULL;
}

/* ---- Messages ---- */

/* "fn" or "fn: arg", the start of a message about an access `who` opens. */
static const char *who_text(const twin__opener *who, char *buf, size_t cap) {
  buf[0] = '\0';
  twin__snappend(buf, cap, "%s", who->fn);
  if (who->site.file) /* the caller's line, as every twin_kernel_launch message gives it */
    twin__snappend(buf, cap, " (%s:%d)", who->site.file, who->site.line);
  if (who->arg)
    twin__snappend(buf, cap, ": %s", who->arg);
  return buf;
}

/* With the buffer locked: TWIN_ERR_BUSY naming each of the n open accesses that block r, one
 * of which this thread or a DLPack export holds. */
static twin_status busy(const request *r, size_t n) {
  char w[128], text[512];
  twin__fail(TWIN_ERR_BUSY, "%s: ", who_text(r->who, w, sizeof w));
  size_t i = 0;
  for (const twin__access *x = r->a->buf->accesses; x; x = x->next) {
    if (!conflicts(x, r))
      continue;
    text[0] = '\0';
    twin__record_blocker(text, sizeof text, x, r->a);
    twin__fail_append("%s%s", i++ ? "; and " : "", text);
  }
  twin__fail_append("; end %s first", n > 1 ? "them" : "it");
  return TWIN_ERR_BUSY;
}

/* TWIN_ERR_BUSY for r, whose elements reservation v holds. No thread holds a reservation, so
 * no wait could end it. */
static twin_status busy_reserved(const request *r, const twin__reservation *v) {
  char w[128], text[512] = "";
  twin__reservation_text(text, sizeof text, v);
  return twin__fail(TWIN_ERR_BUSY,
                    "%s: the %s's elements overlap %s, which no thread holds, so this does not "
                    "wait for it",
                    who_text(r->who, w, sizeof w), r->reserve ? "view" : "array", text);
}

/* TWIN_ERR_BUSY for a wait that would never end: `theirs` blocks this request, and its thread
 * waits (directly or through others) for `ours`, an access this thread holds. */
static twin_status deadlock(const twin__opener *who, const twin_array *a,
                            const twin__access *theirs, const twin__access *ours) {
  char w[128], text[1024] = "";
  twin__record_blocker(text, sizeof text, theirs, a);
  twin__snappend(text, sizeof text,
                 ", which waits (directly or through other threads) for this thread's %s %s access",
                 twin__side_name(ours->side), mode_word(ours->mode));
  twin__record_began(text, sizeof text, ours);
  return twin__fail(TWIN_ERR_BUSY, "%s: waiting would deadlock: %s; end one of them first",
                    who_text(who, w, sizeof w), text);
}

/* ---- Admission ---- */

/* With the buffer locked, n open accesses of other threads blocking the request: waits for
 * one of them to end, or refuses when that would close a wait-for cycle. */
static twin_status wait_turn(const request *r, size_t n) {
  const twin__access *stack[8] = {NULL}, **on = stack; /* zeroed: gcc cannot see n are found */
  char w[128];
  if (n > sizeof stack / sizeof stack[0] && !(on = twin__malloc(n * sizeof *on)))
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                      "%s: no memory to wait for %zu accesses of other threads",
                      who_text(r->who, w, sizeof w), n);
  size_t i = 0;
  for (const twin__access *x = r->a->buf->accesses; x; x = x->next)
    if (conflicts(x, r))
      on[i++] = x;
  twin__access theirs, ours;
  twin_status s = twin__wait_for(r->a->buf, on, n, &theirs, &ours);
  if (on != stack)
    twin__free(on);
  return s == TWIN_OK ? TWIN_OK : deadlock(r->who, r->a, &theirs, &ours);
}

/* With the buffer locked: returns once no open access conflicts with r, waiting while only
 * other threads' accesses do; or refuses with TWIN_ERR_BUSY, at once when a reservation
 * stands in the way. */
static twin_status admit(const request *r) {
  for (;;) {
    const twin__reservation *v = reserved(r); /* again after each wait: one may have come */
    if (v)
      return busy_reserved(r, v);
    size_t n = 0;
    bool refuse = false;
    for (const twin__access *x = r->a->buf->accesses; x; x = x->next)
      if (conflicts(x, r)) {
        n++;
        refuse = refuse || x->unowned || twin__held_here(x); /* waiting cannot end those */
      }
    if (n == 0)
      return TWIN_OK;
    if (refuse)
      return busy(r, n);
    twin_status s = wait_turn(r, n);
    if (s != TWIN_OK)
      return s;
  }
}

/* ---- Opening and closing ---- */

/* Brings a's extent up to date on `side` (and maps it on a shared buffer's host access). */
static twin_status prepare_side(twin_array *a, twin__side_id side, twin_access access) {
  twin__buffer *b = a->buf;
  size_t lo, hi;
  twin__array_extent(a, &lo, &hi);
  twin_status s = twin__buffer_sync_view(b, side, a, access);
  bool invalidate = access == TWIN_WRITE && covers_extent(a);
  if (s == TWIN_OK && side == TWIN__HOST && b->layout == TWIN__SHARED && a->host_opens == 0)
    s = twin__buffer_map(b, lo, hi, access, invalidate, &a->mapped);
  return s;
}

/* Opens `access` on `side` for array a with the buffer locked: waits for its turn, brings the
 * extent up to date, maps it on a zero-copy host access, and records the access. */
static twin_status open_locked(const twin__opener *who, bool unowned, twin_array *a,
                               twin__side_id side, twin_access access, twin__dirty *before) {
  twin__buffer *b = a->buf;
  char w[128];
  request r = {who, a, side, access, false};
  twin_status s = admit(&r);
  if (s != TWIN_OK)
    return s;
  twin__access *x = twin__record_new(a);
  if (!x)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for an access record",
                      who_text(who, w, sizeof w));
  s = prepare_side(a, side, access);
  if (s != TWIN_OK) {
    twin__record_free(a, x);
    return twin__fail_prefix(s, "%s: ", who_text(who, w, sizeof w)); /* allocation, move, map */
  }
  if (access & TWIN_WRITE) {
    /* The other side has no open access (admitted above), so it is older from now on. */
    if (before)
      twin__dirty_copy(before, &b->dirty);
    s = twin__buffer_wrote(b, side, a);
    if (s != TWIN_OK) {
      twin__record_free(a, x);
      return twin__fail_prefix(s, "%s: ", who_text(who, w, sizeof w));
    }
  }
  twin__record_link(a, x, who, unowned, side, access);
  return TWIN_OK;
}

/* With the buffer locked: the address of a's element 0 in its open host access. */
static void *host_element0(const twin_array *a) {
  size_t first = a->offset * twin_dtype_size(a->dtype), lo, hi;
  if (a->buf->layout != TWIN__SHARED)
    return (char *)a->buf->mem[TWIN__HOST] + first;
  twin__array_extent(a, &lo, &hi);
  return (char *)a->mapped + (first - lo);
}

static twin_status end(const char *fn, twin_array *a, twin__side_id side) {
  twin__debug_check(a, fn);
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: array is NULL", fn);
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  twin__access *x = twin__record_find(a, side);
  twin_status s = x ? twin__record_close(a, x) : TWIN_ERR_BAD_STATE;
  pthread_mutex_unlock(&b->lock);
  if (!x)
    return twin__fail(s, "%s: this array has no %s access open", fn, twin__side_name(side));
  return s == TWIN_OK ? TWIN_OK : twin__fail_prefix(s, "%s: ", fn);
}

/* ---- The public calls ---- */

twin_status twin__host_begin(const twin__opener *who, bool unowned, twin_array *a,
                             twin_access access, void **ptr) {
  twin_status s = check_begin(who->fn, a, access, ptr);
  if (s != TWIN_OK)
    return s;
  pthread_mutex_lock(&a->buf->lock);
  s = open_locked(who, unowned, a, TWIN__HOST, access, NULL);
  if (s == TWIN_OK)
    *ptr = host_element0(a);
  pthread_mutex_unlock(&a->buf->lock);
  return s;
}

twin_status twin_host_begin_at(twin_array *a, twin_access access, void **ptr, const char *file,
                               int line) {
  twin__opener who = {"twin_host_begin", NULL, {file, line}};
  return twin__host_begin(&who, false, a, access, ptr);
}

twin_status(twin_host_begin)(twin_array *a, twin_access access, void **ptr) {
  return twin_host_begin_at(a, access, ptr, NULL, 0);
}

twin_status twin__host_end(const char *fn, twin_array *a) {
  return end(fn, a, TWIN__HOST);
}

twin_status twin_host_end(twin_array *a) {
  return end("twin_host_end", a, TWIN__HOST);
}

twin_status twin__device_begin(const twin__opener *who, bool unowned, twin_array *a,
                               twin_access access, void **handle, size_t *byte_offset) {
  const char *fn = who->fn;
  twin_status s = check_begin(fn, a, access, handle);
  if (s != TWIN_OK)
    return s;
  if (!byte_offset)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: byte_offset is NULL", fn);
  const twin_context *ctx = a->buf->ctx;
  s = twin__check_device(ctx, fn);
  if (s == TWIN_OK)
    s = twin__check_fp64(ctx, a->dtype, fn);
  if (s != TWIN_OK)
    return s;
  pthread_mutex_lock(&a->buf->lock);
  s = open_locked(who, unowned, a, TWIN__DEVICE, access, NULL);
  if (s == TWIN_OK) {
    *handle = a->buf->mem[TWIN__DEVICE];
    *byte_offset = a->offset * twin_dtype_size(a->dtype);
  }
  pthread_mutex_unlock(&a->buf->lock);
  return s;
}

twin_status twin__device_end(twin_array *a) {
  twin__debug_check(a, "twin_device_end");
  if (a)
    twin__buffer_fence(a->buf); /* the application's own commands on the memory */
  return end("twin_device_end", a, TWIN__DEVICE);
}

/* ---- Reservations ---- */

static twin_status check_reserve(const char *fn, twin_array *view, twin_access mode) {
  twin__debug_check(view, fn);
  if (!view)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: view is NULL", fn);
  if (mode != TWIN_READ && mode != TWIN_WRITE && mode != TWIN_READ_WRITE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "%s: mode is %d, not TWIN_READ, TWIN_WRITE or TWIN_READ_WRITE", fn,
                      (int)mode);
  return mode & TWIN_WRITE ? twin__check_writable(view, fn, "view") : TWIN_OK;
}

/* With the buffer locked: TWIN_ERR_BAD_STATE when view holds a reservation already. */
static twin_status check_unreserved(const char *fn, const twin_array *view) {
  char text[512] = "";
  if (!view->reservation.mode)
    return TWIN_OK;
  twin__reservation_text(text, sizeof text, &view->reservation);
  return twin__fail(TWIN_ERR_BAD_STATE,
                    "%s: this array object holds %s already (one each: reserve through another "
                    "view, or twin_array_unreserve first)",
                    fn, text);
}

twin_status twin_array_reserve_at(twin_array *view, twin_access mode, const char *file, int line) {
  twin__opener who = {"twin_array_reserve", NULL, {file, line}};
  twin_status s = check_reserve(who.fn, view, mode);
  if (s != TWIN_OK)
    return s;
  request r = {&who, view, TWIN__HOST, mode, true};
  pthread_mutex_lock(&view->buf->lock);
  s = check_unreserved(who.fn, view);
  if (s == TWIN_OK)
    s = admit(&r);
  if (s == TWIN_OK) /* again: admit may have waited, with the lock let go */
    s = check_unreserved(who.fn, view);
  if (s == TWIN_OK)
    twin__reservation_link(view, mode, who.site);
  pthread_mutex_unlock(&view->buf->lock);
  return s;
}

twin_status(twin_array_reserve)(twin_array *view, twin_access mode) {
  return twin_array_reserve_at(view, mode, NULL, 0);
}

twin_status twin_array_unreserve(twin_array *view) {
  static const char fn[] = "twin_array_unreserve";
  twin__debug_check(view, fn);
  if (!view)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: view is NULL", fn);
  pthread_mutex_lock(&view->buf->lock);
  bool held = view->reservation.mode != 0;
  if (held)
    twin__reservation_unlink(view);
  pthread_mutex_unlock(&view->buf->lock);
  if (!held)
    return twin__fail(TWIN_ERR_BAD_STATE,
                      "%s: this array object holds no reservation (a reservation belongs to "
                      "the object twin_array_reserve was given, not to its views)",
                      fn);
  return TWIN_OK;
}

twin_status twin__open_for_op(twin_array *a, twin__side_id side, twin_access access,
                              const twin__opener *who, twin__dirty *before, void **mem) {
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  twin_status s = open_locked(who, false, a, side, access, before);
  if (s == TWIN_OK)
    *mem = b->mem[side];
  pthread_mutex_unlock(&b->lock);
  return s;
}

void twin__close_for_op(twin_array *a, twin__side_id side, const twin__dirty *failed_before) {
  twin__buffer *b = a->buf;
  pthread_mutex_lock(&b->lock);
  twin__access *x =
      twin__record_find(a, side); /* this thread's newest there: the operation's own */
  if (failed_before && (x->mode & TWIN_WRITE))
    twin__buffer_unwrote(b, side, failed_before, a);
  twin__record_close(a, x); /* a failed unmap (host kernels on zero-copy) has no one to tell */
  pthread_mutex_unlock(&b->lock);
}

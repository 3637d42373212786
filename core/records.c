/* The records of open accesses: each buffer's list of the accesses open on it, which the access
 * protocol (access.c) adds to and ends, and which trim, evict and prefetch consult; the
 * buffer's list of region reservations (twin_array_reserve), which the protocol checks every
 * new access against; the host
 * mapping of a shared buffer's extent, made by an array object's first host access and undone
 * by its last one's end; and the fence that makes a buffer's release wait for what the
 * application queued during a device access. Everything here runs with the buffer's lock held
 * unless it says otherwise. */
#include <string.h>

#include "storage.h"

static const char *mode_word(twin_access mode) {
  return mode & TWIN_WRITE ? "write" : "read";
}

/* ---- Records ---- */

twin__access *twin__record_new(twin_array *a) {
  if (a->slot_used)
    return twin__malloc(sizeof(twin__access));
  a->slot_used = true;
  return &a->slot;
}

void twin__record_free(twin_array *a, twin__access *x) {
  if (x == &a->slot)
    a->slot_used = false;
  else
    twin__free(x);
}

void twin__record_link(twin_array *a, twin__access *x, const twin__opener *who, bool unowned,
                       twin__side_id side, twin_access access) {
  twin__buffer *b = a->buf;
  *x =
      (twin__access){b->accesses, a, side, access, who->fn, "", who->site, pthread_self(), unowned};
  for (size_t i = 0; who->arg && who->arg[i] && i + 1 < sizeof x->arg; i++)
    x->arg[i] = who->arg[i]; /* a bounded copy: this runs on every launch */
  b->accesses = x;
  a->opens++;
  if (side == TWIN__HOST)
    a->host_opens++;
}

twin__access *twin__record_find(const twin_array *a, twin__side_id side) {
  twin__access *any = NULL;
  for (twin__access *x = a->buf->accesses; x; x = x->next) {
    if (x->array != a || x->side != side)
      continue;
    if (twin__held_here(x))
      return x;
    if (!any)
      any = x;
  }
  return any;
}

twin_status twin__record_close(twin_array *a, twin__access *x) {
  twin__buffer *b = a->buf;
  twin_status s = TWIN_OK;
  if (x->side == TWIN__HOST && --a->host_opens == 0) {
    /* A failed unmap still closes the access: the caller gives the pointer up either way,
     * and an access that can never be closed would wedge the array. */
    if (b->layout == TWIN__SHARED && a->size > 0)
      s = b->ctx->ops->unmap(b->ctx, b->mem[TWIN__DEVICE], a->mapped, &b->track);
    a->mapped = NULL;
  }
  twin__access **p = &b->accesses;
  while (*p != x)
    p = &(*p)->next;
  *p = x->next;
  a->opens--;
  twin__wake(b); /* first: the waiters' entries may name x, which is freed next */
  twin__record_free(a, x);
  return s;
}

void twin__records_drop(twin_array *a, char *what, size_t cap) {
  twin__buffer *b = a->buf;
  what[0] = '\0';
  pthread_mutex_lock(&b->lock);
  if (a->reservation.mode) {
    twin__reservation_text(what, cap, &a->reservation);
    twin__reservation_unlink(a);
  }
  for (twin__access *x = b->accesses, *next; x; x = next) {
    next = x->next;
    if (x->array != a)
      continue;
    if (x->side == TWIN__DEVICE)
      twin__buffer_fence_locked(b); /* the release waits for what the application queued */
    twin__snappend(what, cap, "%sa %s %s access", what[0] ? "; " : "", twin__side_name(x->side),
                   mode_word(x->mode));
    twin__record_began(what, cap, x);
    twin__record_close(a, x); /* an unmap failure cannot be reported to anyone here */
  }
  pthread_mutex_unlock(&b->lock);
}

/* ---- Reservations ---- */

void twin__reservation_link(twin_array *a, twin_access mode, twin__site site) {
  twin__buffer *b = a->buf;
  a->reservation = (twin__reservation){b->reservations, a, mode, site};
  b->reservations = &a->reservation;
  a->opens++;
}

void twin__reservation_unlink(twin_array *a) {
  twin__reservation **p = &a->buf->reservations;
  while (*p != &a->reservation)
    p = &(*p)->next;
  *p = a->reservation.next;
  a->reservation = (twin__reservation){0};
  a->opens--;
}

void twin__reservation_text(char *buf, size_t cap, const twin__reservation *r) {
  const twin_array *a = r->array;
  twin__snappend(buf, cap, "a %s reservation of a view of shape ", mode_word(r->mode));
  for (int k = 0; k < a->ndim; k++)
    twin__snappend(buf, cap, "%s%zu", k ? " x " : "", a->shape[k]);
  twin__snappend(buf, cap, "%s at element %zu of this buffer, ", a->ndim ? "" : "()", a->offset);
  if (r->site.file) /* the caller's line: a library reserving for its caller passes the caller's */
    twin__snappend(buf, cap, "made at %s:%d", r->site.file, r->site.line);
  else
    twin__snappend(buf, cap, "made by twin_array_reserve (at a line it did not record)");
}

/* ---- Queries, and what messages say of a record ---- */

unsigned twin__accesses_open(const twin__buffer *b, twin__side_id side, twin_access modes) {
  unsigned n = 0;
  for (const twin__access *x = b->accesses; x; x = x->next)
    n += x->side == side && (x->mode & modes);
  return n;
}

void twin__record_began(char *buf, size_t cap, const twin__access *x) {
  if (x->site.file)
    twin__snappend(buf, cap, ", begun at %s:%d by %s", x->site.file, x->site.line, x->fn);
  else
    twin__snappend(buf, cap, ", begun by %s (at a line it did not record)", x->fn);
  if (x->arg[0])
    twin__snappend(buf, cap, ": %s", x->arg);
}

void twin__record_blocker(char *buf, size_t cap, const twin__access *x, const twin_array *a) {
  if (x->array == a)
    twin__snappend(buf, cap, "this array already has a %s %s access open", twin__side_name(x->side),
                   mode_word(x->mode));
  else
    twin__snappend(buf, cap, "a %s %s access to this buffer is still open",
                   twin__side_name(x->side), mode_word(x->mode));
  twin__record_began(buf, cap, x);
  if (x->unowned)
    twin__snappend(buf, cap, " for a DLPack export, until its deleter runs");
  else if (!twin__held_here(x))
    twin__snappend(buf, cap, " in another thread");
}

void twin__append_accesses(const twin__buffer *b, twin__side_id side, twin_access modes) {
  char text[512];
  unsigned i = 0;
  for (const twin__access *x = b->accesses; x; x = x->next) {
    if (x->side != side || !(x->mode & modes))
      continue;
    text[0] = '\0';
    twin__record_blocker(text, sizeof text, x, NULL);
    twin__fail_append("%s%s", i++ ? "; and " : "", text);
  }
}

/* ---- Host mappings and fences ---- */

twin_status twin__buffer_map(twin__buffer *b, size_t lo, size_t hi, twin_access access,
                             bool invalidate, void **ptr) {
  twin_context *ctx = b->ctx;
  if (lo == hi) {
    *ptr = (char *)b->mem[TWIN__HOST] + lo; /* nothing to map for no elements */
    return TWIN_OK;
  }
  return ctx->ops->map(ctx, b->mem[TWIN__DEVICE], lo, hi - lo, access, invalidate, ptr);
}

void twin__buffer_fence_locked(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  bool open = twin__accesses_open(b, TWIN__DEVICE, TWIN_READ_WRITE) > 0;
  if (ctx->ops->mark && b->mem[TWIN__DEVICE] && open)
    ctx->ops->mark(ctx, &b->track);
}

void twin__buffer_fence(twin__buffer *b) {
  pthread_mutex_lock(&b->lock);
  twin__buffer_fence_locked(b);
  pthread_mutex_unlock(&b->lock);
}

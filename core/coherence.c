/* Coherence between a two-copy buffer's sides: moving the elements of a view where the other
 * side is newer, keeping the dirty map (marking writes, undoing the marking of a write that
 * failed, simplifying it when it is full), prefetch, and where each side stands. Shared and
 * host-only buffers have one copy and nothing to move.
 *
 * A view is a region (ground.h): a few strided patterns holding exactly its elements. Reading
 * a view moves, for each segment of the map newer on the other side, the segment's bytes
 * inside the view's patterns (each a rectangular transfer), then cuts them from the map. A
 * write marks the view's patterns newer on its side. When the map cannot hold a result (more
 * than TWIN__DIRTY_CAP segments, or a difference it cannot describe), a segment is moved
 * across whole and forgotten (resolve): extra bytes moved, never wrong data. */
#include "storage.h"

/* Intersections of one segment with one pattern of a view, at most, before the segment is
 * moved within the pattern's extent instead. */
#define PIECES_MAX 16

/* Bytes moved beyond what accesses asked for (see twin__coherence_extra_bytes). */
static atomic_size_t extra_bytes;

void twin__count_extra(size_t n) {
  atomic_fetch_add_explicit(&extra_bytes, n, memory_order_relaxed);
}

size_t twin__coherence_extra_bytes(void) {
  return atomic_load_explicit(&extra_bytes, memory_order_relaxed);
}

void twin__array_region(const twin_array *a, twin__region *r) {
  twin__region_of(twin__item_size(a->dtype), a->offset, a->ndim, a->shape, a->strides, r);
}

/* ---- Simplifying a full map ---- */

static bool meets_region(const twin__pattern *p, const twin__region *r) {
  twin__pattern one;
  for (unsigned i = 0; i < r->n; i++)
    if (twin__pattern_intersect(p, &r->p[i], &one, 1) != 0) /* -1: unknown, so maybe */
      return true;
  return false;
}

/* With b->lock held: is a write access open on side x through a view that meets p? */
static bool written_now(const twin__buffer *b, twin__side_id x, const twin__pattern *p) {
  for (const twin__access *a = b->accesses; a; a = a->next) {
    twin__region r;
    if (a->side != x || !(a->mode & TWIN_WRITE))
      continue;
    twin__array_region(a->array, &r);
    if (meets_region(p, &r))
      return true;
  }
  return false;
}

/* With b->lock held: may segment s be moved across and forgotten now? Not when a write access
 * open on its newer side meets it (that write was marked when it began, and later writes
 * there would be lost), nor when it is newer on `keep` and meets `region` (marks being undone
 * there, which hold no data yet). */
static bool movable(const twin__buffer *b, const twin__segment *s, twin__side_id keep,
                    const twin__region *region) {
  if (written_now(b, s->newer, &s->p))
    return false;
  return !(region && s->newer == keep && meets_region(&s->p, region));
}

/* With b->lock held: the smallest movable segment; -1 when none is. */
static int smallest_movable(const twin__buffer *b, twin__side_id keep, const twin__region *region) {
  int pick = -1;
  for (unsigned i = 0; i < b->dirty.count; i++)
    if ((pick < 0 ||
         twin__pattern_bytes(&b->dirty.s[i].p) < twin__pattern_bytes(&b->dirty.s[pick].p)) &&
        movable(b, &b->dirty.s[i], keep, region))
      pick = (int)i;
  return pick;
}

/* With b->lock held, after a map operation failed with r (FULL, or the index of the segment it
 * could not cut): moves a segment across (segment r, else the smallest movable one) so that
 * both sides agree there, and forgets it. */
static twin_status resolve(twin__buffer *b, int r, twin__side_id keep, const twin__region *region) {
  int pick = r >= 0 && movable(b, &b->dirty.s[r], keep, region) ? r : -1;
  if (pick < 0)
    pick = smallest_movable(b, keep, region);
  if (pick < 0)
    return twin__fail(TWIN_ERR_BUSY,
                      "the buffer's dirty map is full and every segment it could move across "
                      "to make room is being written; end the open write accesses first");
  twin__segment seg = b->dirty.s[pick];
  twin_status s = twin__buffer_ensure(b, !seg.newer);
  if (s == TWIN_OK)
    s = twin__buffer_move_pattern(b, !seg.newer, &seg.p);
  if (s != TWIN_OK)
    return s;
  twin__dirty_remove(&b->dirty, (unsigned)pick);
  twin__count_extra(twin__pattern_bytes(&seg.p));
  return TWIN_OK;
}

/* ---- Moving a view's elements ---- */

/* The pieces of segment s inside pattern v; or, when that intersection is not describable in
 * PIECES_MAX patterns, those within v's extent (more bytes, all newer there: *extra true); or
 * s whole (-1 from the extent too). */
static int pieces_of(const twin__pattern *s, const twin__pattern *v, twin__pattern *out,
                     bool *extra) {
  int n = twin__pattern_intersect(s, v, out, PIECES_MAX);
  *extra = n < 0;
  if (n >= 0)
    return n;
  twin__pattern extent = twin__pattern_range(v->lo, twin__pattern_end(v));
  n = twin__pattern_intersect(s, &extent, out, PIECES_MAX);
  if (n < 0) {
    out[0] = *s;
    n = 1;
  }
  return n;
}

/* With b->lock held: moves to `which` the bytes of v that the other side holds newer, then
 * records that both sides agree there. */
static twin_status sync_pattern(twin__buffer *b, twin__side_id which, const twin__pattern *v,
                                bool *moved) {
  twin__dirty d;
  twin__dirty_copy(&d, &b->dirty); /* a copy: the map changes under the loop */
  twin__pattern pieces[PIECES_MAX];
  twin_status s = TWIN_OK;
  for (unsigned i = 0; i < d.count && s == TWIN_OK; i++) {
    if (d.s[i].newer == which)
      continue;
    assert(b->mem[!which]); /* a side is newer only after it was written, so it exists */
    bool extra;
    int n = pieces_of(&d.s[i].p, v, pieces, &extra);
    for (int k = 0; k < n && s == TWIN_OK; k++) {
      s = twin__buffer_move_pattern(b, which, &pieces[k]);
      if (s == TWIN_OK && extra)
        twin__count_extra(twin__pattern_bytes(&pieces[k]));
    }
    *moved = *moved || (s == TWIN_OK && n > 0);
  }
  /* Cut v from the segments newer on the other side; what cannot be cut is moved whole. */
  for (int r; s == TWIN_OK &&
              (r = twin__dirty_clear_pattern(&b->dirty, v, true, !which)) != TWIN__DIRTY_DONE;)
    s = resolve(b, r, which, NULL);
  return s;
}

/* ---- Packed moves ---- */

/* With b->lock held, both sides allocated: does a read of view a (region r, not exact) move
 * its elements packed on the device rather than r's extent? When the backend packs, the view
 * holds at most an eighth of its extent's bytes, no page of the host copy is released,
 * TWIN_MOVE=extent is not set, and no byte of the extent is newer on `which` (the packed move
 * overwrites all of the view's elements there). An eighth: on a discrete device the bus is
 * the cost, so packing pays at any density; on PoCL, where a transfer is a memcpy and the
 * gather walks element by element, it paid below about 1/14 for f32 (a[::2, ::2, ::2, ::2]
 * of a 64^4 array, 1/15 of its extent: 43 ms packed against 48 ms; a[::4]^4: 1.1 against
 * 61 ms); and a packed move leaves the map as it was, so rereading the view moves it again,
 * which eight reads of at most an eighth of the extent still do within one extent move. */
static bool packs(const twin__buffer *b, twin__side_id which, const twin_array *a,
                  const twin__region *r) {
  const struct twin_backend_ops *ops = b->ctx->ops;
  return ops->to_host_packed && !r->exact && r->n > 0 && !b->released && !twin__move_extent() &&
         twin__view_element_bytes(a) <= (r->hi - r->lo) / 8 &&
         twin__dirty_bytes(&b->dirty, r->lo, r->hi, !which) &&
         !twin__dirty_bytes(&b->dirty, r->lo, r->hi, which);
}

/* Brings side `which` up to date for region r (of view a when a is not NULL: a read that may
 * move packed). A packed move changes no segment of the map: the view's elements now agree on
 * both sides while the map still says the other side is newer there, which costs a move
 * again later and never data (the map cannot describe a view no few patterns fit, so it can
 * be cleared exactly only where nothing but whole ranges moved). When packing fails (no
 * device memory for the staging buffer, say), the extent moves instead. */
static twin_status sync(twin__buffer *b, twin__side_id which, const twin__region *r,
                        const twin_array *a) {
  bool was_missing = b->mem[which] == NULL;
  if (which == TWIN__DEVICE)
    twin__buffer_used(b); /* every device access, launch and prefetch comes through here */
  twin_status s = twin__buffer_ensure(b, which);
  if (s != TWIN_OK || b->layout != TWIN__TWO_COPIES)
    return s;
  if (a && packs(b, which, a, r) && twin__buffer_move_packed(b, which, a) == TWIN_OK)
    return TWIN_OK;
  bool moved = false;
  for (unsigned i = 0; i < r->n && s == TWIN_OK; i++)
    if (twin__dirty_bytes(&b->dirty, r->p[i].lo, twin__pattern_end(&r->p[i]), !which))
      s = sync_pattern(b, which, &r->p[i], &moved);
  if (s != TWIN_OK && was_missing && !moved)
    twin__buffer_release_side(b, which); /* nothing moved yet: leave the buffer as it was */
  return s;
}

twin_status twin__buffer_sync_region(twin__buffer *b, twin__side_id which, const twin__region *r) {
  return sync(b, which, r, NULL);
}

twin_status twin__buffer_sync(twin__buffer *b, twin__side_id which, size_t lo, size_t hi) {
  twin__region r;
  twin__region_range(lo, hi, &r);
  return twin__buffer_sync_region(b, which, &r);
}

twin_status twin__buffer_sync_view(twin__buffer *b, twin__side_id which, const twin_array *a,
                                   twin_access access) {
  twin__region r;
  twin__array_region(a, &r);
  if (!(access & TWIN_READ) && r.exact)
    r.n = 0; /* a write of exactly the view's elements needs none of them first */
  /* Only a read may move packed: a write marks the extent of a view that is not exact newer
   * on its side, so the whole extent must be current there first. */
  return sync(b, which, &r, access == TWIN_READ ? a : NULL);
}

/* ---- Marking writes ---- */

/* With b->lock held: marks the patterns of r newer on `newer` as one change, making room by
 * moving segments across (never one newer on `newer` that meets r: it may hold the marks being
 * made or undone). */
static twin_status mark_region(twin__buffer *b, const twin__region *r, twin__side_id newer,
                               const twin__region *keep) {
  for (;;) {
    twin__dirty d;
    twin__dirty_copy(&d, &b->dirty);
    int res = TWIN__DIRTY_DONE;
    for (unsigned i = 0; i < r->n && res == TWIN__DIRTY_DONE; i++)
      res = twin__dirty_mark_pattern(&d, &r->p[i], newer);
    if (res == TWIN__DIRTY_DONE) {
      twin__dirty_copy(&b->dirty, &d);
      return TWIN_OK;
    }
    /* An index in d may not be b's (earlier patterns changed d): choose by size in b. */
    twin_status s = resolve(b, TWIN__DIRTY_FULL, !newer, keep);
    if (s != TWIN_OK)
      return s;
  }
}

twin_status twin__buffer_wrote(twin__buffer *b, twin__side_id which, const twin_array *a) {
  if (b->layout != TWIN__TWO_COPIES)
    return TWIN_OK;
  twin__region r;
  twin__array_region(a, &r);
  return mark_region(b, &r, which, NULL);
}

void twin__buffer_unwrote(twin__buffer *b, twin__side_id side, const twin__dirty *before,
                          const twin_array *a) {
  if (b->layout != TWIN__TWO_COPIES)
    return;
  twin__region view, back = {0};
  twin__array_region(a, &view);
  back.exact = true;
  for (unsigned i = 0; i < before->count; i++) {
    if (before->s[i].newer == side)
      continue;
    for (unsigned k = 0; k < view.n; k++) {
      twin__pattern pieces[PIECES_MAX];
      bool extra;
      int n = pieces_of(&before->s[i].p, &view.p[k], pieces, &extra);
      for (int j = 0; j < n; j++) {
        if (back.n == TWIN__REGION_MAX && mark_region(b, &back, !side, &view) != TWIN_OK)
          return; /* keeping the marking loses that range's newer data: stop, as before */
        if (back.n == TWIN__REGION_MAX)
          back.n = 0;
        back.p[back.n++] = pieces[j];
      }
    }
  }
  if (back.n)
    mark_region(b, &back, !side, &view);
}

/* ---- Prefetch and residency ---- */

twin_status twin__buffer_prefetch(twin__buffer *b, twin__side_id x, size_t lo, size_t hi,
                                  const char *fn) {
  if (x == TWIN__DEVICE && b->layout == TWIN__HOST_ONLY)
    x = TWIN__HOST; /* a backend without device memory computes on its one host copy */
  twin_status s = TWIN_OK;
  pthread_mutex_lock(&b->lock);
  if (twin__accesses_open(b, !x, TWIN_WRITE)) {
    s = twin__fail(TWIN_ERR_BUSY, "%s: ", fn);
    twin__append_accesses(b, !x, TWIN_WRITE);
  }
  if (s == TWIN_OK)
    s = twin__buffer_sync(b, x, lo, hi);
  pthread_mutex_unlock(&b->lock);
  return s;
}

/* With b->lock held: where side x stands for the bytes [lo, hi). */
static twin_residency side_residency(const twin__buffer *b, twin__side_id x, size_t lo, size_t hi) {
  if (!b->mem[x])
    return TWIN_RESIDENT_NONE;
  if (b->layout == TWIN__SHARED)
    return TWIN_RESIDENT_SHARED;
  return twin__dirty_bytes(&b->dirty, lo, hi, !x) ? TWIN_RESIDENT_STALE : TWIN_RESIDENT_VALID;
}

void twin__buffer_residency(twin__buffer *b, size_t lo, size_t hi, twin_residency *host,
                            twin_residency *device) {
  pthread_mutex_lock(&b->lock);
  *host = side_residency(b, TWIN__HOST, lo, hi);
  *device = side_residency(b, TWIN__DEVICE, lo, hi);
  pthread_mutex_unlock(&b->lock);
}

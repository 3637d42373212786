/* Coherence between a two-copy buffer's sides: moving the byte ranges where one side is newer,
 * keeping the dirty map (marking writes, undoing the marking of a write that failed, making
 * room when it is full), prefetch, and where each side stands. Shared and host-only buffers
 * have one copy and nothing to move. */
#include "storage.h"

twin_status twin__buffer_sync(twin__buffer *b, twin__side_id which, size_t lo, size_t hi) {
  bool was_missing = b->mem[which] == NULL;
  if (which == TWIN__DEVICE)
    twin__buffer_used(b); /* every device access, launch and prefetch comes through here */
  twin_status s = twin__buffer_ensure(b, which);
  if (s != TWIN_OK || b->layout != TWIN__TWO_COPIES)
    return s;
  /* Move each part of [lo, hi) where the other side is newer, then mark it clean. Walking a
   * copy keeps the loop simple while the map changes under it. */
  twin__dirty d;
  twin__dirty_copy(&d, &b->dirty);
  bool moved = false;
  for (unsigned i = 0; i < d.count && s == TWIN_OK; i++) {
    size_t a = d.s[i].lo > lo ? d.s[i].lo : lo, z = d.s[i].hi < hi ? d.s[i].hi : hi;
    if (a >= z || d.s[i].newer == which)
      continue;
    assert(b->mem[!which]); /* a side is newer only after it was written, so it exists */
    s = twin__buffer_move(b, which, a, z);
    if (s == TWIN_OK) {
      twin__dirty_clear(&b->dirty, a, z);
      moved = true;
    }
  }
  if (s != TWIN_OK && was_missing && !moved)
    twin__buffer_release_side(b, which); /* nothing moved yet: leave the buffer as it was */
  return s;
}

twin_status twin__buffer_reserve(twin__buffer *b) {
  while (b->dirty.count > TWIN__DIRTY_CAP) {
    /* Too fragmented: make the smallest dirty segment agree on both sides and forget it. */
    twin__segment seg = b->dirty.s[twin__dirty_smallest(&b->dirty)];
    twin_status s = twin__buffer_ensure(b, !seg.newer);
    if (s == TWIN_OK)
      s = twin__buffer_move(b, !seg.newer, seg.lo, seg.hi);
    if (s != TWIN_OK)
      return s;
    twin__dirty_clear(&b->dirty, seg.lo, seg.hi);
  }
  return TWIN_OK;
}

void twin__buffer_wrote(twin__buffer *b, twin__side_id which, size_t lo, size_t hi) {
  if (b->layout == TWIN__TWO_COPIES)
    twin__dirty_mark(&b->dirty, lo, hi, which);
}

void twin__buffer_unwrote(twin__buffer *b, twin__side_id side, const twin__dirty *before, size_t lo,
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
    s = twin__buffer_reserve(b);
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

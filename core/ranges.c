/* A small set of disjoint, sorted byte ranges [lo, hi): the stale parts of one side of a
 * buffer. Neighbours merge. When more than TWIN__RANGES_CAP ranges would be needed, the two
 * ranges with the smallest gap between them merge, so the set degrades gracefully towards
 * one range over the whole buffer and only ever over-estimates what is stale. */
#include <string.h>

#include "internal.h"

static void remove_at(twin__ranges *set, unsigned i) {
  memmove(&set->r[i], &set->r[i + 1], (set->count - i - 1) * sizeof set->r[0]);
  set->count--;
}

/* Merges the adjacent pair separated by the smallest gap. */
static void merge_closest(twin__ranges *set) {
  unsigned best = 0;
  for (unsigned i = 1; i + 1 < set->count; i++)
    if (set->r[i + 1].lo - set->r[i].hi < set->r[best + 1].lo - set->r[best].hi)
      best = i;
  set->r[best].hi = set->r[best + 1].hi;
  remove_at(set, best + 1);
}

void twin__ranges_add(twin__ranges *set, size_t lo, size_t hi) {
  if (lo >= hi)
    return;
  /* Absorb every range that overlaps or touches [lo, hi), then insert it in order. */
  unsigned i = 0;
  while (i < set->count && set->r[i].hi < lo)
    i++;
  while (i < set->count && set->r[i].lo <= hi) {
    if (set->r[i].lo < lo)
      lo = set->r[i].lo;
    if (set->r[i].hi > hi)
      hi = set->r[i].hi;
    remove_at(set, i);
  }
  if (set->count == TWIN__RANGES_CAP) {
    /* Make room; [lo, hi) is not in the set now, so merging cannot touch it. */
    merge_closest(set);
    twin__ranges_add(set, lo, hi);
    return;
  }
  memmove(&set->r[i + 1], &set->r[i], (set->count - i) * sizeof set->r[0]);
  set->r[i].lo = lo;
  set->r[i].hi = hi;
  set->count++;
}

void twin__ranges_remove(twin__ranges *set, size_t lo, size_t hi) {
  if (lo >= hi)
    return;
  for (unsigned i = 0; i < set->count;) {
    twin__range *r = &set->r[i];
    if (r->hi <= lo || r->lo >= hi) {
      i++;
    } else if (r->lo < lo && r->hi > hi) {
      /* Split in two; when the set is full, keep the range whole (over-estimating). */
      if (set->count == TWIN__RANGES_CAP)
        return;
      twin__range right = {hi, r->hi};
      r->hi = lo;
      memmove(&set->r[i + 2], &set->r[i + 1], (set->count - i - 1) * sizeof set->r[0]);
      set->r[i + 1] = right;
      set->count++;
      return;
    } else if (r->lo < lo) {
      r->hi = lo;
      i++;
    } else if (r->hi > hi) {
      r->lo = hi;
      i++;
    } else {
      remove_at(set, i);
    }
  }
}

size_t twin__ranges_overlap(const twin__ranges *set, size_t lo, size_t hi) {
  size_t total = 0;
  for (unsigned i = 0; i < set->count; i++) {
    size_t a = set->r[i].lo > lo ? set->r[i].lo : lo;
    size_t b = set->r[i].hi < hi ? set->r[i].hi : hi;
    if (a < b)
      total += b - a;
  }
  return total;
}

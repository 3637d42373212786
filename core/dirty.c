/* The dirty map of a buffer with two copies: the byte ranges where one side holds newer data
 * than the other, as sorted, disjoint segments tagged with the newer side. Bytes in no segment
 * are the same on both sides. The map is always exact: when it would need more than
 * TWIN__DIRTY_CAP segments, the buffer resolves the smallest segment by moving it (see
 * twin__dirty_smallest), so fragmentation costs extra transfers, never wrong data. */
#include <string.h>

#include "ground.h"

static void remove_at(twin__dirty *d, unsigned i) {
  memmove(&d->s[i], &d->s[i + 1], (d->count - i - 1) * sizeof d->s[0]);
  d->count--;
}

static void insert_at(twin__dirty *d, unsigned i, twin__segment seg) {
  memmove(&d->s[i + 1], &d->s[i], (d->count - i) * sizeof d->s[0]);
  d->s[i] = seg;
  d->count++;
}

/* Removes [lo, hi) from every segment, splitting at most one. Needs one free slot. */
static void cut(twin__dirty *d, size_t lo, size_t hi) {
  for (unsigned i = 0; i < d->count;) {
    twin__segment *s = &d->s[i];
    if (s->hi <= lo || s->lo >= hi) {
      i++;
    } else if (s->lo < lo && s->hi > hi) {
      twin__segment right = {hi, s->hi, s->newer};
      s->hi = lo;
      insert_at(d, i + 1, right);
      return;
    } else if (s->lo < lo) {
      s->hi = lo;
      i++;
    } else if (s->hi > hi) {
      s->lo = hi;
      i++;
    } else {
      remove_at(d, i);
    }
  }
}

void twin__dirty_clear(twin__dirty *d, size_t lo, size_t hi) {
  if (lo < hi)
    cut(d, lo, hi);
}

void twin__dirty_mark(twin__dirty *d, size_t lo, size_t hi, twin__side_id newer) {
  if (lo >= hi)
    return;
  cut(d, lo, hi);
  unsigned i = 0;
  while (i < d->count && d->s[i].hi <= lo)
    i++;
  /* Merge with touching neighbours of the same side. */
  if (i > 0 && d->s[i - 1].hi == lo && d->s[i - 1].newer == newer) {
    lo = d->s[--i].lo;
    remove_at(d, i);
  }
  if (i < d->count && d->s[i].lo == hi && d->s[i].newer == newer) {
    hi = d->s[i].hi;
    remove_at(d, i);
  }
  insert_at(d, i, (twin__segment){lo, hi, newer});
}

unsigned twin__dirty_smallest(const twin__dirty *d) {
  unsigned best = 0;
  for (unsigned i = 1; i < d->count; i++)
    if (d->s[i].hi - d->s[i].lo < d->s[best].hi - d->s[best].lo)
      best = i;
  return best;
}

size_t twin__dirty_bytes(const twin__dirty *d, size_t lo, size_t hi, twin__side_id newer) {
  size_t total = 0;
  for (unsigned i = 0; i < d->count; i++) {
    size_t a = d->s[i].lo > lo ? d->s[i].lo : lo;
    size_t b = d->s[i].hi < hi ? d->s[i].hi : hi;
    if (a < b && d->s[i].newer == newer)
      total += b - a;
  }
  return total;
}

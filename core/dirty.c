/* The dirty map of a buffer with two copies: the bytes where one side holds newer data than the
 * other, as disjoint segments tagged with the newer side. A segment is a strided pattern
 * (ground.h: runs of bytes at a stride, in groups at a second stride), so a view's elements
 * (a column, a block, a sub-box) are one segment and the map stays exact at the precision of
 * elements. Bytes in no segment are the same on both sides.
 *
 * Every operation computes its result aside and either installs it whole or fails, leaving the
 * map as it was: when the result would need more than TWIN__DIRTY_CAP segments, or when a
 * segment's difference with the pattern is not a finite union of patterns this file can find
 * (two strides whose common period holds too many runs). The buffer then moves a segment across
 * to simplify the map (coherence.c), so fragmentation costs extra transfers, never wrong data.
 *
 * The algebra: a pattern is a union of groups, a group a 1-level pattern (l1 below). The
 * intersection of two 1-level patterns with strides s and t repeats with the period
 * lcm(s, t); within one period it is a handful of intervals, each a 1-level pattern of stride
 * lcm, clipped to the bytes both patterns span. A difference is an intersection with the
 * complement (before, the gaps between runs, the gaps between groups, after). The pieces are
 * then put back together: equal 1-level pieces at a constant spacing become one 2-level one. */
#include <stdlib.h>
#include <string.h>

#include "ground.h"

/* Runs of both patterns in one common period, at most: beyond, the intersection is not worth
 * describing (the caller moves the segment instead). */
#define PERIOD_RUNS 16
/* 1-level pieces one operation may produce before they are put back together. */
#define PIECES 512
/* Pairs of groups one intersection may visit. */
#define PAIRS (1u << 16)

static size_t min_sz(size_t a, size_t b) {
  return a < b ? a : b;
}
static size_t max_sz(size_t a, size_t b) {
  return a > b ? a : b;
}

/* ---- Patterns ---- */

void twin__pattern_normal(twin__pattern *p) {
  for (;;) {
    if (p->count[0] > 1 && p->stride[0] == p->run) {
      p->run *= p->count[0]; /* runs that touch are one run */
      p->count[0] = 1;
    }
    if (p->count[0] == 1 && p->count[1] > 1) {
      p->count[0] = p->count[1]; /* groups of one run: a single level */
      p->stride[0] = p->stride[1];
      p->count[1] = 1;
      continue;
    }
    if (p->count[1] > 1 && p->stride[1] == p->count[0] * p->stride[0]) {
      p->count[0] *= p->count[1]; /* groups that continue each other: one group */
      p->count[1] = 1;
      continue;
    }
    break;
  }
  if (p->count[0] == 1)
    p->stride[0] = 0;
  if (p->count[1] == 1)
    p->stride[1] = 0;
}

static size_t group_span(const twin__pattern *p) {
  return (p->count[0] - 1) * p->stride[0] + p->run;
}

/* Bytes of a group (run, stride, count, starting at 0) below offset t. */
static size_t group_below(size_t run, size_t stride, size_t count, size_t t) {
  if (count == 1)
    return min_sz(t, run);
  size_t i = t / stride;
  if (i >= count)
    return count * run;
  return i * run + min_sz(t - i * stride, run);
}

/* Bytes of p below byte x. */
static size_t below(const twin__pattern *p, size_t x) {
  if (x <= p->lo)
    return 0;
  size_t t = x - p->lo;
  if (p->count[1] == 1)
    return group_below(p->run, p->stride[0], p->count[0], t);
  size_t j = t / p->stride[1], g = p->run * p->count[0];
  if (j >= p->count[1])
    return g * p->count[1];
  return j * g + group_below(p->run, p->stride[0], p->count[0], t - j * p->stride[1]);
}

size_t twin__pattern_bytes_in(const twin__pattern *p, size_t lo, size_t hi) {
  return hi > lo ? below(p, hi) - below(p, lo) : 0;
}

/* ---- Lists of pieces ---- */

typedef struct list {
  twin__pattern *p;
  int n, cap;
  bool over; /* a piece did not fit */
} list;

static void push(list *l, twin__pattern p) {
  if (l->n >= l->cap) {
    l->over = true;
    return;
  }
  twin__pattern_normal(&p);
  l->p[l->n++] = p;
}

static void push_range(list *l, size_t lo, size_t hi) {
  if (lo < hi)
    push(l, twin__pattern_range(lo, hi));
}

/* A 1-level pattern: count runs of run bytes, stride apart, from lo (count 1: one run). */
typedef struct l1 {
  size_t lo, run, stride, count;
} l1;

static size_t l1_end(l1 x) {
  return x.lo + (x.count - 1) * x.stride + x.run;
}

static l1 group_of(const twin__pattern *p, size_t j) {
  return (l1){p->lo + j * p->stride[1], p->run, p->stride[0], p->count[0]};
}

/* Pushes the bytes of x in [a, b): the runs inside whole, the ones cut at a or b as ranges. */
static void clip1(l1 x, size_t a, size_t b, list *out) {
  if (x.count == 1 || x.stride == 0) {
    push_range(out, max_sz(x.lo, a), min_sz(x.lo + x.run, b));
    return;
  }
  if (a >= b || b <= x.lo || a >= l1_end(x))
    return;
  size_t k0 = a < x.lo + x.run ? 0 : (a - x.lo - x.run) / x.stride + 1; /* first ending past a */
  size_t k1 = min_sz((b - x.lo - 1) / x.stride, x.count - 1);           /* last starting below b */
  if (k0 > k1)
    return;
  size_t n = k1 - k0 + 1, first = x.lo + k0 * x.stride;
  if (first < a) {
    push_range(out, a, min_sz(first + x.run, b));
    first += x.stride;
    n--;
  }
  if (n > 0 && first + (n - 1) * x.stride + x.run > b) {
    push_range(out, first + (n - 1) * x.stride, b);
    n--;
  }
  if (n > 0)
    push(out, (twin__pattern){first, x.run, {x.stride, 0}, {n, 1}});
}

/* Pushes the bytes of p in [a, b): its whole groups as one piece, the groups cut at a or b
 * clipped. */
static void clip2(const twin__pattern *p, size_t a, size_t b, list *out) {
  if (p->count[1] == 1) {
    clip1(group_of(p, 0), a, b, out);
    return;
  }
  size_t span = group_span(p), s1 = p->stride[1];
  if (a >= b || b <= p->lo || a >= twin__pattern_end(p))
    return;
  size_t j0 = a < p->lo + span ? 0 : (a - p->lo - span) / s1 + 1;
  size_t j1 = min_sz((b - p->lo - 1) / s1, p->count[1] - 1);
  if (j0 > j1)
    return;
  size_t n = j1 - j0 + 1;
  if (p->lo + j0 * s1 < a || p->lo + j0 * s1 + span > b) {
    clip1(group_of(p, j0++), a, b, out);
    n--;
  }
  if (n > 0 && p->lo + (j0 + n - 1) * s1 + span > b) {
    clip1(group_of(p, j0 + n - 1), a, b, out);
    n--;
  }
  if (n > 0)
    push(out, (twin__pattern){p->lo + j0 * s1, p->run, {p->stride[0], s1}, {p->count[0], n}});
}

static size_t gcd(size_t a, size_t b) {
  while (b) {
    size_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

typedef struct interval {
  size_t lo, hi;
} interval;

/* The runs of y within one period [0, period) of x's runs (offsets from x.lo), sorted. */
static int runs_in_period(l1 x, l1 y, size_t period, interval *iv) {
  size_t off =
      y.lo >= x.lo ? (y.lo - x.lo) % y.stride : (y.stride - (x.lo - y.lo) % y.stride) % y.stride;
  int n = 0;
  size_t wrap = 0;
  for (size_t j = 0; j < period / y.stride; j++) {
    size_t s = off + j * y.stride, e = s + y.run;
    iv[n++] = (interval){s, min_sz(e, period)};
    if (e > period)
      wrap = e - period; /* only the last run can cross the period's end */
  }
  if (wrap) {
    memmove(&iv[1], &iv[0], (size_t)n * sizeof iv[0]);
    iv[0] = (interval){0, wrap};
    n++;
  }
  return n;
}

/* Pushes x's run starting at `start` (an offset from base, repeating every period) clipped to
 * [a, b), where base <= a. */
static void push_periodic(size_t base, size_t start, size_t run, size_t period, size_t a, size_t b,
                          list *out) {
  size_t lo = base + start;
  size_t k = lo + run > a ? 0 : (a - lo - run) / period + 1;
  lo += k * period;
  if (lo >= b)
    return;
  size_t count = (b - lo + period - 1) / period;
  clip1((l1){lo, run, period, count}, a, b, out);
}

/* Pushes the bytes common to two 1-level patterns; false when their common period holds too
 * many runs to describe. */
static bool inter1(l1 x, l1 y, list *out) {
  size_t a = max_sz(x.lo, y.lo), b = min_sz(l1_end(x), l1_end(y));
  if (a >= b)
    return true;
  if (x.count == 1 || y.count == 1) {
    clip1(x.count == 1 ? y : x, a, b, out);
    return true;
  }
  size_t g = gcd(x.stride, y.stride), period;
  if (twin__mul_overflows(x.stride / g, y.stride, &period))
    return false;
  if (period / x.stride + period / y.stride > PERIOD_RUNS)
    return false;
  interval xs[PERIOD_RUNS], ys[PERIOD_RUNS + 1];
  int nx = (int)(period / x.stride), ny = runs_in_period(x, y, period, ys);
  for (int i = 0; i < nx; i++)
    xs[i] = (interval){(size_t)i * x.stride, (size_t)i * x.stride + x.run};
  for (int i = 0, j = 0; i < nx && j < ny;) {
    size_t lo = max_sz(xs[i].lo, ys[j].lo), hi = min_sz(xs[i].hi, ys[j].hi);
    if (lo < hi)
      push_periodic(x.lo, lo, hi - lo, period, a, b, out);
    if (xs[i].hi < ys[j].hi)
      i++;
    else
      j++;
  }
  return true;
}

/* The groups of p that may meet bytes [lo, hi): *j0 .. *j1 inclusive (none when *j0 > *j1). */
static void groups_meeting(const twin__pattern *p, size_t lo, size_t hi, size_t *j0, size_t *j1) {
  size_t span = group_span(p), s1 = p->stride[1] ? p->stride[1] : 1;
  *j0 = lo < p->lo + span ? 0 : (lo - p->lo - span) / s1 + 1;
  *j1 = hi <= p->lo ? 0 : min_sz((hi - p->lo - 1) / s1, p->count[1] - 1);
  if (hi <= p->lo)
    *j0 = 1;
}

/* Pushes the bytes common to a and b; false when they cannot be described. */
static bool inter2(const twin__pattern *a, const twin__pattern *b, list *out) {
  size_t lo = max_sz(a->lo, b->lo), hi = min_sz(twin__pattern_end(a), twin__pattern_end(b));
  if (lo >= hi)
    return true;
  if (twin__pattern_contiguous(a) || twin__pattern_contiguous(b)) {
    clip2(twin__pattern_contiguous(a) ? b : a, lo, hi, out);
    return !out->over;
  }
  size_t ja0, ja1, pairs = 0;
  groups_meeting(a, lo, hi, &ja0, &ja1);
  for (size_t ja = ja0; ja <= ja1; ja++) {
    l1 ga = group_of(a, ja);
    size_t jb0, jb1;
    groups_meeting(b, ga.lo, l1_end(ga), &jb0, &jb1);
    for (size_t jb = jb0; jb <= jb1; jb++)
      if (++pairs > PAIRS || !inter1(ga, group_of(b, jb), out) || out->over)
        return false;
  }
  return true;
}

/* ---- Putting pieces back together ---- */

static int by_lo(const void *x, const void *y) {
  const twin__pattern *a = x, *b = y;
  return (a->lo > b->lo) - (a->lo < b->lo);
}

/* Orders 1-level pieces by shape, then by first byte; 2-level ones last. */
static int by_shape(const void *x, const void *y) {
  const twin__pattern *a = x, *b = y;
  size_t ka[] = {a->count[1], a->run, a->stride[0], a->count[0], a->lo};
  size_t kb[] = {b->count[1], b->run, b->stride[0], b->count[0], b->lo};
  for (int i = 0; i < 5; i++)
    if (ka[i] != kb[i])
      return ka[i] < kb[i] ? -1 : 1;
  return 0;
}

static bool same_shape(const twin__pattern *a, const twin__pattern *b) {
  return a->count[1] == 1 && b->count[1] == 1 && a->run == b->run && a->stride[0] == b->stride[0] &&
         a->count[0] == b->count[0];
}

/* Merges touching ranges, then gathers 1-level pieces of one shape at a constant spacing into
 * 2-level ones; rewrites l in place. */
static void compose(list *l) {
  qsort(l->p, (size_t)l->n, sizeof l->p[0], by_lo);
  int n = 0;
  for (int i = 0; i < l->n; i++) {
    twin__pattern *last = n ? &l->p[n - 1] : NULL;
    if (last && twin__pattern_contiguous(last) && twin__pattern_contiguous(&l->p[i]) &&
        last->lo + last->run == l->p[i].lo)
      last->run += l->p[i].run;
    else
      l->p[n++] = l->p[i];
  }
  qsort(l->p, (size_t)n, sizeof l->p[0], by_shape);
  int m = 0;
  for (int i = 0; i < n;) {
    twin__pattern g = l->p[i];
    int j = i + 1;
    if (j < n && same_shape(&g, &l->p[j]) && l->p[j].lo - g.lo >= group_span(&g)) {
      g.stride[1] = l->p[j].lo - g.lo;
      while (j < n && same_shape(&g, &l->p[j]) && l->p[j].lo - l->p[j - 1].lo == g.stride[1]) {
        g.count[1]++;
        j++;
      }
    } else {
      j = i + 1;
    }
    twin__pattern_normal(&g);
    l->p[m++] = g;
    i = j;
  }
  l->n = m;
}

int twin__pattern_intersect(const twin__pattern *a, const twin__pattern *b, twin__pattern *out,
                            int cap) {
  twin__pattern room[PIECES];
  list l = {room, 0, PIECES, false};
  if (!inter2(a, b, &l) || l.over)
    return -1;
  compose(&l);
  if (l.n > cap)
    return -1;
  memcpy(out, l.p, (size_t)l.n * sizeof *out);
  return l.n;
}

/* Pushes the bytes of s outside p (s minus p); false when they cannot be described. */
static bool subtract(const twin__pattern *s, const twin__pattern *p, list *out) {
  twin__pattern before = twin__pattern_range(0, p->lo), after;
  after = twin__pattern_range(twin__pattern_end(p), SIZE_MAX);
  if (p->lo > 0 && !inter2(s, &before, out))
    return false;
  if (p->count[0] > 1) {
    twin__pattern gaps = {p->lo + p->run,
                          p->stride[0] - p->run,
                          {p->stride[0], p->stride[1]},
                          {p->count[0] - 1, p->count[1]}};
    twin__pattern_normal(&gaps);
    if (!inter2(s, &gaps, out))
      return false;
  }
  size_t span = group_span(p);
  if (p->count[1] > 1 && p->stride[1] > span) {
    twin__pattern gaps = {
        p->lo + span, p->stride[1] - span, {p->stride[1], 0}, {p->count[1] - 1, 1}};
    twin__pattern_normal(&gaps);
    if (!inter2(s, &gaps, out))
      return false;
  }
  if (twin__pattern_end(p) < SIZE_MAX && !inter2(s, &after, out))
    return false;
  return !out->over;
}

/* ---- Maps ---- */

/* A map being built aside: room for more segments than a map holds, so that an operation can
 * finish before it is judged. */
#define WORK (2 * TWIN__DIRTY_CAP + 8)
typedef struct work {
  unsigned count;
  twin__segment s[WORK];
} work;

static bool add(work *w, twin__pattern p, twin__side_id newer) {
  if (w->count >= WORK)
    return false;
  w->s[w->count++] = (twin__segment){p, newer};
  return true;
}

/* Does p meet any byte of q? (When that cannot be told, yes: the cut then decides.) */
static bool meets(const twin__pattern *p, const twin__pattern *q) {
  if (twin__pattern_end(p) <= q->lo || twin__pattern_end(q) <= p->lo)
    return false;
  if (twin__pattern_contiguous(q))
    return twin__pattern_bytes_in(p, q->lo, twin__pattern_end(q)) > 0;
  if (twin__pattern_contiguous(p))
    return twin__pattern_bytes_in(q, p->lo, twin__pattern_end(p)) > 0;
  twin__pattern one;
  list l = {&one, 0, 1, false};
  return !inter2(p, q, &l) || l.n > 0 || l.over;
}

/* Builds in w the map d without the bytes of p in the segments selected (all, or those newer
 * on side). Returns DONE, FULL, or the index of a segment it cannot cut. */
static int cut(const twin__dirty *d, const twin__pattern *p, bool only, twin__side_id side,
               work *w) {
  twin__pattern room[PIECES];
  w->count = 0;
  for (unsigned i = 0; i < d->count; i++) {
    const twin__segment *s = &d->s[i];
    if ((only && s->newer != side) || !meets(&s->p, p)) {
      if (!add(w, s->p, s->newer))
        return TWIN__DIRTY_FULL;
      continue;
    }
    list l = {room, 0, PIECES, false};
    if (!subtract(&s->p, p, &l))
      return (int)i;
    compose(&l);
    for (int k = 0; k < l.n; k++)
      if (!add(w, l.p[k], s->newer))
        return TWIN__DIRTY_FULL;
  }
  return TWIN__DIRTY_DONE;
}

/* Tries to make one pattern of a and b (disjoint): runs side by side, touching ranges, runs or
 * groups that continue each other. */
static bool merge(twin__pattern *a, const twin__pattern *b) {
  const twin__pattern *x = a->lo < b->lo ? a : b, *y = a->lo < b->lo ? b : a;
  twin__pattern m = *x;
  size_t hi = max_sz(twin__pattern_end(x), twin__pattern_end(y));
  if (twin__pattern_bytes(x) + twin__pattern_bytes(y) == hi - x->lo) {
    *a = twin__pattern_range(x->lo, hi); /* together they fill their span */
    return true;
  }
  bool same_levels = x->stride[0] == y->stride[0] && x->count[0] == y->count[0] &&
                     x->stride[1] == y->stride[1] && x->count[1] == y->count[1];
  if (same_levels && y->lo == x->lo + x->run &&
      (x->count[0] == 1 || x->run + y->run <= x->stride[0])) {
    m.run = x->run + y->run; /* side by side: one wider run (column 100, then 101) */
  } else if (x->count[1] == 1 && y->count[1] == 1 && x->run == y->run &&
             x->stride[0] == y->stride[0] && x->count[0] > 1 && y->count[0] > 1 &&
             y->lo == x->lo + x->count[0] * x->stride[0]) {
    m.count[0] += y->count[0]; /* runs that continue */
  } else if (x->count[1] > 1 && x->run == y->run && x->stride[0] == y->stride[0] &&
             x->count[0] == y->count[0] && (y->count[1] == 1 || y->stride[1] == x->stride[1]) &&
             y->lo == x->lo + x->count[1] * x->stride[1]) {
    m.count[1] += y->count[1]; /* groups that continue */
  } else {
    return false;
  }
  twin__pattern_normal(&m);
  if (m.count[1] > 1 && group_span(&m) > m.stride[1])
    return false;
  *a = m;
  return true;
}

static int by_segment_lo(const void *x, const void *y) {
  return by_lo(&((const twin__segment *)x)->p, &((const twin__segment *)y)->p);
}

/* Merges what it can of w's segments of one side, sorts them and installs them in d. */
static int install(twin__dirty *d, work *w) {
  for (unsigned i = 0; i < w->count; i++)
    for (unsigned j = i + 1; j < w->count; j++)
      if (w->s[i].newer == w->s[j].newer && merge(&w->s[i].p, &w->s[j].p)) {
        w->s[j] = w->s[--w->count];
        j = i; /* the merged one may now merge with an earlier-rejected one */
      }
  if (w->count > TWIN__DIRTY_CAP)
    return TWIN__DIRTY_FULL;
  qsort(w->s, w->count, sizeof w->s[0], by_segment_lo);
  d->count = w->count;
  memcpy(d->s, w->s, w->count * sizeof w->s[0]);
  return TWIN__DIRTY_DONE;
}

int twin__dirty_clear_pattern(twin__dirty *d, const twin__pattern *p, bool only_side,
                              twin__side_id side) {
  work w;
  int r = cut(d, p, only_side, side, &w);
  return r == TWIN__DIRTY_DONE ? install(d, &w) : r;
}

int twin__dirty_mark_pattern(twin__dirty *d, const twin__pattern *p, twin__side_id newer) {
  work w;
  int r = cut(d, p, false, newer, &w);
  if (r != TWIN__DIRTY_DONE)
    return r;
  twin__pattern q = *p;
  twin__pattern_normal(&q);
  if (!add(&w, q, newer))
    return TWIN__DIRTY_FULL;
  return install(d, &w);
}

int twin__dirty_clear(twin__dirty *d, size_t lo, size_t hi) {
  if (lo >= hi)
    return TWIN__DIRTY_DONE;
  twin__pattern p = twin__pattern_range(lo, hi);
  return twin__dirty_clear_pattern(d, &p, false, TWIN__HOST);
}

int twin__dirty_mark(twin__dirty *d, size_t lo, size_t hi, twin__side_id newer) {
  if (lo >= hi)
    return TWIN__DIRTY_DONE;
  twin__pattern p = twin__pattern_range(lo, hi);
  return twin__dirty_mark_pattern(d, &p, newer);
}

void twin__dirty_remove(twin__dirty *d, unsigned i) {
  memmove(&d->s[i], &d->s[i + 1], (d->count - i - 1) * sizeof d->s[0]);
  d->count--;
}

unsigned twin__dirty_smallest(const twin__dirty *d) {
  unsigned best = 0;
  for (unsigned i = 1; i < d->count; i++)
    if (twin__pattern_bytes(&d->s[i].p) < twin__pattern_bytes(&d->s[best].p))
      best = i;
  return best;
}

size_t twin__dirty_bytes(const twin__dirty *d, size_t lo, size_t hi, twin__side_id newer) {
  size_t total = 0;
  for (unsigned i = 0; i < d->count; i++)
    if (d->s[i].newer == newer)
      total += twin__pattern_bytes_in(&d->s[i].p, lo, hi);
  return total;
}

bool twin__dirty_add(twin__dirty *d, const twin__pattern *p, twin__side_id newer) {
  if (d->count >= TWIN__DIRTY_CAP)
    return false;
  unsigned i = d->count;
  while (i > 0 && d->s[i - 1].p.lo > p->lo) {
    d->s[i] = d->s[i - 1];
    i--;
  }
  d->s[i] = (twin__segment){*p, newer};
  d->count++;
  return true;
}

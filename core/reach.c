/* What live views reach: the bytes of a buffer that some live view's elements occupy, counted in
 * pages, and what follows from the rest being garbage. TWIN_TRIM_UNREACHABLE (and the pressure
 * order's third step) gives the host pages no view reaches back to the OS; trim and evict ask
 * whether a side's newer data lies where views reach (twin__reach_newer); a move skips released
 * pages (twin__reach_kept); the report gives each buffer's reachable share.
 *
 * Can a released page be reached again? A view made from a view (slice, index, transpose,
 * reshape, broadcast, squeeze, expand_dims) holds only elements of its parent, so never through
 * those; twin_array_as_strided may reach any byte of the buffer, as NumPy's does, and takes back
 * the released pages it reaches (twin__reach_restore): they read as zeros, an undefined content
 * like a new array's. Memory the application lent is its own and is never released.
 *
 * Pages are released with madvise(MADV_DONTNEED), not MADV_FREE: the resident size drops in the
 * call, so the statistics, the host budget and the OS agree at once (MADV_FREE leaves the pages
 * counted until the kernel runs short, and a later write keeps them). */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "storage.h"

/* ---- Pages and bitmaps ---- */

static unsigned page_shift(void) {
  static atomic_uint shift;
  unsigned s = atomic_load_explicit(&shift, memory_order_relaxed);
  if (!s) {
    long size = sysconf(_SC_PAGESIZE);
    s = size > 0 ? (unsigned)__builtin_ctzl((unsigned long)size) : 12;
    atomic_store_explicit(&shift, s, memory_order_relaxed);
  }
  return s;
}

size_t twin__page_size(void) {
  return (size_t)1 << page_shift();
}

/* Pages touching bytes [0, n), and the bytes of a bitmap of them. */
static size_t pages_over(size_t n) {
  return (n >> page_shift()) + ((n & (twin__page_size() - 1)) != 0);
}
static size_t map_bytes(size_t pages) {
  return pages / 8 + 1;
}

static bool bit(const unsigned char *map, size_t i) {
  return (map[i >> 3] >> (i & 7)) & 1u;
}

/* Sets bits [first, last] of map; returns how many were clear. Whole bytes at a time in the
 * middle, so a long run costs its pages / 8. */
static size_t set_bits(unsigned char *map, size_t first, size_t last) {
  size_t fresh = 0, i = first;
  for (; i <= last && ((i & 7) || i + 7 > last); i++) {
    fresh += !bit(map, i);
    map[i >> 3] |= (unsigned char)(1u << (i & 7));
  }
  for (; i + 7 <= last; i += 8) {
    fresh += 8 - (size_t)__builtin_popcount(map[i >> 3]);
    map[i >> 3] = 0xff;
  }
  for (; i <= last; i++) {
    fresh += !bit(map, i);
    map[i >> 3] |= (unsigned char)(1u << (i & 7));
  }
  return fresh;
}

/* ---- A view's elements as byte runs ---- */

/* One outer axis of a view's runs: n positions, step bytes apart. */
typedef struct axis {
  size_t n, step;
} axis;

/* The runs of one view: `count` runs of `len` bytes, the first at byte `base`, the others at
 * every combination of positions of the outer axes. */
typedef struct runs {
  size_t base, len, count;
  int n;
  axis ax[TWIN_MAX_DIMS]; /* largest step first */
} runs;

/* Lays a's elements (a has some) out as runs: an axis of one position or of stride 0 adds
 * none, a negative stride is walked forwards from its other end, and from the smallest stride
 * outwards each axis whose runs would lie less than `join` bytes apart joins them (a contiguous
 * view is one run; so are elements less than a page apart, with the bytes between them). The
 * view was proven inside its buffer, so no sum here overflows. */
static void lay_out(const twin_array *a, size_t join, runs *r) {
  ptrdiff_t item = (ptrdiff_t)twin__item_size(a->dtype), base = (ptrdiff_t)a->offset * item;
  r->n = 0;
  for (int i = 0; i < a->ndim; i++) {
    ptrdiff_t step = a->strides[i] * item;
    if (a->shape[i] <= 1 || step == 0)
      continue;
    if (step < 0) {
      base += step * (ptrdiff_t)(a->shape[i] - 1);
      step = -step;
    }
    int k = r->n++;
    for (; k > 0 && r->ax[k - 1].step < (size_t)step; k--)
      r->ax[k] = r->ax[k - 1];
    r->ax[k] = (axis){a->shape[i], (size_t)step};
  }
  r->base = (size_t)base;
  r->len = (size_t)item;
  while (r->n > 0 && r->ax[r->n - 1].step < r->len + join) {
    const axis *x = &r->ax[--r->n];
    r->len += (x->n - 1) * x->step;
  }
  r->count = 1;
  for (int i = 0; i < r->n; i++)
    r->count *= r->ax[i].n;
}

/* Called with each run [lo, hi); returns false to stop the walk. */
typedef bool (*run_fn)(size_t lo, size_t hi, void *user);

/* Calls fn on each run of r until it returns false (then false). More than `most` runs are
 * walked as one, the span from the first byte to the last: more bytes than the elements, never
 * fewer, so what follows stays safe, and the cost stays bounded by the pages. */
static bool walk(const runs *r, size_t most, run_fn fn, void *user) {
  if (r->count > most) {
    size_t span = r->len;
    for (int i = 0; i < r->n; i++)
      span += (r->ax[i].n - 1) * r->ax[i].step;
    return fn(r->base, r->base + span, user);
  }
  size_t at[TWIN_MAX_DIMS] = {0}, pos = r->base;
  for (size_t k = 0; k < r->count; k++) {
    if (!fn(pos, pos + r->len, user))
      return false;
    for (int i = r->n - 1; i >= 0; i--) { /* an odometer that never steps past an axis */
      if (++at[i] < r->ax[i].n) {
        pos += r->ax[i].step;
        break;
      }
      pos -= (r->ax[i].n - 1) * r->ax[i].step;
      at[i] = 0;
    }
  }
  return true;
}

/* With b->views_lock held: walks the runs of every live view of b until fn returns false. */
static bool walk_views(twin__buffer *b, run_fn fn, void *user) {
  size_t most = 4 * pages_over(b->nbytes) + 1024;
  for (int k = 0; k < TWIN__VIEW_LISTS; k++)
    for (const twin_array *a = b->views[k]; a; a = a->next) {
      runs r;
      if (!a->size)
        continue;
      lay_out(a, twin__page_size(), &r);
      if (!walk(&r, most, fn, user))
        return false;
    }
  return true;
}

/* ---- The pages views reach ---- */

typedef struct marks {
  unsigned char *map;
  size_t pages, marked;
} marks;

static bool mark(size_t lo, size_t hi, void *user) {
  marks *m = user;
  m->marked += set_bits(m->map, lo >> page_shift(), (hi - 1) >> page_shift());
  return m->marked < m->pages; /* every page reached: the other runs add nothing */
}

/* With b->views_lock held: sets in map (clear, pages_over(nbytes) bits) the pages live views
 * reach; returns how many. */
static size_t mark_reached(twin__buffer *b, unsigned char *map) {
  marks m = {map, pages_over(b->nbytes), 0};
  walk_views(b, mark, &m);
  return m.marked;
}

/* ---- Newer data where views reach ---- */

typedef struct newer {
  const twin__dirty *map;
  twin__side_id side;
  bool found;
} newer;

static bool none_newer(size_t lo, size_t hi, void *user) {
  newer *n = user;
  n->found = twin__dirty_bytes(n->map, lo, hi, n->side) > 0;
  return !n->found;
}

bool twin__reach_newer(twin__buffer *b, twin__side_id x) {
  if (!twin__dirty_bytes(&b->dirty, 0, b->nbytes, x))
    return false;
  if (b->external)
    return true; /* lent memory: the application may read any byte of it */
  newer n = {&b->dirty, x, false};
  twin__spin_lock(&b->views_lock);
  bool viewed = b->nviews > 0;
  if (viewed)
    walk_views(b, none_newer, &n);
  twin__spin_unlock(&b->views_lock);
  return !viewed || n.found;
}

/* ---- Releasing the pages no view reaches ---- */

/* With b->lock held: can b's host pages be released? Only twin's own page-aligned block, and
 * on a shared block only with no command in flight, which may still write into pages whose
 * last view went. */
static bool releasable(twin__buffer *b) {
  twin_context *ctx = b->ctx;
  uintptr_t host = (uintptr_t)b->mem[TWIN__HOST];
  if (!host || b->external || b->nbytes < twin__page_size() || (host & (twin__page_size() - 1)))
    return false;
  return b->layout != TWIN__SHARED || !ctx->ops->dev_busy || !ctx->ops->dev_busy(ctx, &b->track);
}

/* Does b have a whole page that is neither reached nor released? */
static bool any_fresh(const twin__buffer *b, const unsigned char *reached) {
  size_t whole = b->nbytes >> page_shift();
  for (size_t p = 0; p < whole; p++)
    if (!bit(reached, p) && !(b->released_map && bit(b->released_map, p)))
      return true;
  return false;
}

/* With b->lock held: marks in `reached` the pages b's live views reach; false when b has no view
 * (nothing is known then). *releasing (b is releasable) stays true when some page can go, and
 * then b is flagged as releasing before any view made after this walk can miss the flag (see
 * twin__buffer.has_released). */
static bool look(twin__buffer *b, unsigned char *reached, bool *releasing) {
  twin__spin_lock(&b->views_lock);
  bool viewed = b->nviews > 0;
  if (viewed)
    mark_reached(b, reached);
  *releasing = viewed && *releasing && any_fresh(b, reached);
  if (*releasing)
    atomic_store_explicit(&b->has_released, true, memory_order_relaxed);
  twin__spin_unlock(&b->views_lock);
  return viewed;
}

/* With b->lock held, in a two-copy buffer: the dirty map forgets what it says of bytes outside
 * the pages views reach. Each segment shrinks to the first and the last reached page it
 * touches, or goes: never split, so the map never grows (bytes it keeps between reached pages
 * still move, into released pages never, see twin__reach_kept). */
static void drop_unreached(twin__buffer *b, const unsigned char *reached) {
  unsigned s = page_shift();
  twin__dirty d;
  twin__dirty_copy(&d, &b->dirty);
  for (unsigned i = 0; i < d.count; i++) {
    size_t lo = d.s[i].p.lo, hi = twin__pattern_end(&d.s[i].p), first = lo >> s,
           last = (hi - 1) >> s;
    while (first <= last && !bit(reached, first))
      first++;
    if (first > last) {
      twin__dirty_clear(&b->dirty, lo, hi);
      continue;
    }
    while (!bit(reached, last))
      last--;
    size_t keep_lo = first << s, keep_hi = (last + 1) << s;
    twin__dirty_clear(&b->dirty, lo, keep_lo > lo ? keep_lo : lo);
    twin__dirty_clear(&b->dirty, keep_hi < hi ? keep_hi : hi, hi);
  }
}

/* Transparent huge pages (2 MiB, which twin__alloc_block asks for) shape how pages go back:
 * releasing part of a huge page splits its mapping, and the kernel frees the released part only
 * when memory runs short (its deferred split), while khugepaged may later refill the range into
 * one huge page again. So a block with released pages asks for small pages from then on, and
 * where the reached pages of a huge page are few, and nothing but this call can touch them,
 * they are copied aside, the whole huge page released (the kernel frees it at once) and they
 * are copied back into small pages ("repacked"). */
#define HUGE_PAGE ((size_t)2 << 20)

/* One release of a buffer's pages: what it gave back, whether it advised small pages, and a
 * scratch block for repacking (NULL: none). */
typedef struct release {
  twin__buffer *b;
  const unsigned char *reached;
  size_t freed;
  bool advised;
  char *scratch;
} release;

static void keep_small_pages(release *r) {
  twin__buffer *b = r->b;
  if (r->advised || b->released)
    return;
  r->advised = true;
#ifdef MADV_NOHUGEPAGE
  madvise(b->mem[TWIN__HOST], (b->nbytes >> page_shift()) << page_shift(), MADV_NOHUGEPAGE);
#endif
}

/* Repacking moves the reached pages under their views: only in twin's own memory that no
 * device uses in place (a device may hold a zero-copy block's pages pinned, and would keep the
 * old ones) and with no access open, while b->lock keeps new ones out. */
static bool repackable(const twin__buffer *b) {
  return b->layout != TWIN__SHARED && !b->accesses && b->nbytes >= HUGE_PAGE;
}

/* Releases run [p, q) of pages (none reached, none released); their bytes, or 0 when the OS
 * refused (locked memory, say: then they stay as they were). */
static size_t release_run(release *r, size_t p, size_t q) {
  unsigned s = page_shift();
  if (madvise((char *)r->b->mem[TWIN__HOST] + (p << s), (q - p) << s, MADV_DONTNEED) != 0)
    return 0;
  set_bits(r->b->released_map, p, q - 1);
  return (q - p) << s;
}

/* Releases the pages of [p, q) neither reached nor released, run by run. */
static size_t release_runs(release *r, size_t p, size_t q) {
  const unsigned char *gone = r->b->released_map;
  size_t freed = 0;
  for (size_t end; p < q; p = end) {
    end = p + 1;
    if (bit(r->reached, p) || bit(gone, p))
      continue;
    while (end < q && !bit(r->reached, end) && !bit(gone, end))
      end++;
    freed += release_run(r, p, end);
  }
  return freed;
}

/* Repacks huge page [p, q): copies its reached pages aside, releases it whole, copies them
 * back. Returns the bytes of the pages newly released, or SIZE_MAX when the OS refused (then
 * nothing changed). */
static size_t repack(release *r, size_t p, size_t q) {
  unsigned s = page_shift();
  size_t page = (size_t)1 << s, fresh = 0;
  char *host = r->b->mem[TWIN__HOST], *at = r->scratch;
  for (size_t i = p; i < q; i++)
    if (bit(r->reached, i)) {
      memcpy(at, host + (i << s), page);
      at += page;
    }
  if (madvise(host + (p << s), (q - p) << s, MADV_DONTNEED) != 0)
    return SIZE_MAX;
  at = r->scratch;
  for (size_t i = p; i < q; i++) {
    if (bit(r->reached, i)) {
      memcpy(host + (i << s), at, page);
      at += page;
    } else {
      fresh += !bit(r->b->released_map, i);
      set_bits(r->b->released_map, i, i);
    }
  }
  return fresh << s;
}

/* Releases what can go of pages [p, q), a whole huge page when `huge`. */
static void release_chunk(release *r, size_t p, size_t q, bool huge) {
  size_t fresh = 0, kept = 0, got;
  for (size_t i = p; i < q; i++) {
    kept += bit(r->reached, i);
    fresh += !bit(r->reached, i) && !bit(r->b->released_map, i);
  }
  if (!fresh)
    return;
  keep_small_pages(r);
  if (huge && r->scratch && kept && kept <= (q - p) / 2 && (got = repack(r, p, q)) != SIZE_MAX)
    r->freed += got;
  else
    r->freed += release_runs(r, p, q);
}

/* With b->lock held and b releasable: gives back the whole host pages neither reached nor
 * released yet, huge page by huge page, and counts them off. Returns their bytes. */
static size_t release_pages(twin__buffer *b, const unsigned char *reached) {
  unsigned s = page_shift();
  uintptr_t host = (uintptr_t)b->mem[TWIN__HOST];
  size_t whole = b->nbytes >> s, per = HUGE_PAGE >> s;
  size_t first = ((HUGE_PAGE - host % HUGE_PAGE) % HUGE_PAGE) >> s; /* at a 2 MiB boundary */
  release r = {b, reached, 0, false, NULL};
  if (repackable(b))
    r.scratch = twin__malloc(HUGE_PAGE / 2); /* none: small pages only */
  for (size_t p = 0, q; p < whole; p = q) {
    q = p < first ? first : p + per;
    q = q < whole ? q : whole;
    release_chunk(&r, p, q, p >= first && q - p == per);
  }
  twin__free(r.scratch);
  b->released += r.freed;
  twin__budget_give(b->ctx, TWIN__HOST, r.freed);
  return r.freed;
}

/* Bitmaps of buffers up to 32 MiB (in pages of 4 KiB) live on the stack: the pressure order
 * runs this step when memory is short, and most buffers are small. */
#define STACK_MAP 1024

size_t twin__reach_release(twin__buffer *b) {
  bool releasing = releasable(b), clipping = b->layout == TWIN__TWO_COPIES && b->dirty.count;
  if (b->external || !b->nbytes || (!releasing && !clipping))
    return 0;
  size_t bytes = map_bytes(pages_over(b->nbytes)), freed = 0;
  unsigned char stack[STACK_MAP], *reached = bytes <= sizeof stack ? stack : twin__malloc(bytes);
  if (!reached)
    return 0;
  memset(reached, 0, bytes);
  if (look(b, reached, &releasing)) {
    if (clipping)
      drop_unreached(b, reached);
    if (releasing && !b->released_map)
      b->released_map = twin__calloc(map_bytes(b->nbytes >> page_shift()), 1);
    if (releasing && b->released_map)
      freed = release_pages(b, reached);
  }
  if (!b->released)
    atomic_store_explicit(&b->has_released, false, memory_order_relaxed);
  if (reached != stack)
    twin__free(reached);
  return freed;
}

/* ---- Reached again, moved around, forgotten ---- */

typedef struct back {
  twin__buffer *b;
  size_t bytes;
} back;

/* Takes back the released pages of run [lo, hi). */
static bool take_back(size_t lo, size_t hi, void *user) {
  back *t = user;
  unsigned s = page_shift();
  size_t whole = t->b->nbytes >> s;
  unsigned char *map = t->b->released_map;
  for (size_t p = lo >> s; p <= (hi - 1) >> s && p < whole; p++)
    if (bit(map, p)) {
      map[p >> 3] &= (unsigned char)~(1u << (p & 7));
      t->bytes += (size_t)1 << s;
    }
  return true;
}

void twin__reach_restore(twin_array *a) {
  twin__buffer *b = a->buf;
  /* Read after a was linked: a release that missed a had set the flag first (see look). */
  if (!a->size || !atomic_load_explicit(&b->has_released, memory_order_relaxed))
    return;
  pthread_mutex_lock(&b->lock);
  if (b->released) {
    back t = {b, 0};
    runs r;
    lay_out(a, twin__page_size(), &r);
    walk(&r, 4 * pages_over(b->nbytes) + 1024, take_back, &t);
    b->released -= t.bytes;
    twin__budget_count(b->ctx, TWIN__HOST, t.bytes);
    if (!b->released)
      atomic_store_explicit(&b->has_released, false, memory_order_relaxed);
  }
  pthread_mutex_unlock(&b->lock);
}

bool twin__reach_kept(const twin__buffer *b, size_t *lo, size_t hi, size_t *end) {
  if (!b->released) {
    *end = hi;
    return *lo < hi;
  }
  unsigned s = page_shift();
  size_t whole = b->nbytes >> s, p = *lo >> s;
  for (; *lo < hi && p < whole && bit(b->released_map, p); p++)
    *lo = (p + 1) << s;
  if (*lo >= hi)
    return false;
  size_t q = p + 1;
  while (q < whole && (q << s) < hi && !bit(b->released_map, q))
    q++;
  *end = q < whole && (q << s) < hi ? q << s : hi;
  return true;
}

size_t twin__reach_forget(twin__buffer *b) {
  size_t gone = b->released;
  twin__free(b->released_map);
  b->released_map = NULL;
  b->released = 0;
  atomic_store_explicit(&b->has_released, false, memory_order_relaxed);
  return gone;
}

void twin__buffer_reach(twin__buffer *b, double *reachable, size_t *released) {
  size_t pages = pages_over(b->nbytes), marked = 0;
  unsigned char *map = pages ? twin__calloc(map_bytes(pages), 1) : NULL;
  pthread_mutex_lock(&b->lock);
  *released = b->released;
  pthread_mutex_unlock(&b->lock);
  *reachable = 1.0; /* an empty buffer, or no memory to tell */
  if (!map)
    return;
  twin__spin_lock(&b->views_lock);
  marked = mark_reached(b, map);
  twin__spin_unlock(&b->views_lock);
  /* Bytes of the reached pages, the last one cut at the buffer's end. */
  size_t bytes = marked << page_shift();
  if (bit(map, pages - 1))
    bytes -= (pages << page_shift()) - b->nbytes;
  *reachable = (double)bytes / (double)b->nbytes;
  twin__free(map);
}

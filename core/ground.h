/* The ground layer: what every other part of twin stands on and that calls nothing above it.
 * Errors (error.c), host memory (alloc.c), element types (dtype.c), the debug switch (debug.c),
 * dirty maps (dirty.c), strided host loops and view simplification (strided.c), and host
 * copies and fills with conversions (convert.c). Backends include this (through backend.h), and
 * so does every layer of core. Never installed.
 * Internal non-static functions are named twin__*; static helpers carry no prefix. */
#ifndef TWIN_GROUND_H
#define TWIN_GROUND_H

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "twin.h"

#define TWIN_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ---- Errors (error.c) ---- */

/* Records a message for twin_last_error() on this thread and returns s, so a failure path
 * reads `return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "ndim is %d", ndim);`. */
twin_status twin__fail(twin_status s, const char *fmt, ...) TWIN_PRINTF(2, 3);

/* How many messages twin__fail has recorded on this thread so far: two readings that differ
 * tell that a failure in between (in code twin calls back, say) set a new message. */
unsigned long twin__fail_count(void);

/* Puts "prefix" (formatted) in front of this thread's current message, the cause of a failure
 * reported by a lower layer, and gives the message status s's name: "NAME: prefix cause".
 * Returns s. */
twin_status twin__fail_prefix(twin_status s, const char *fmt, ...) TWIN_PRINTF(2, 3);

/* Room for the cause of a failure quoted inside a longer message. */
#define TWIN__CAUSE_MAX 512

/* This thread's current message and its status, kept to be recorded again after calls that
 * may record others: the cause of a failure, kept across the attempts to recover from it. The
 * text is cut at TWIN__CAUSE_MAX bytes. */
typedef struct twin__kept_error {
  twin_status status;
  char text[TWIN__CAUSE_MAX];
} twin__kept_error;
void twin__error_keep(twin_status s, twin__kept_error *out);
/* Records the kept message again as this thread's current one; returns its status. */
twin_status twin__error_restore(const twin__kept_error *kept);

/* Appends text to this thread's current message (used to add a build log or a device list). */
void twin__fail_append(const char *fmt, ...) TWIN_PRINTF(1, 2);

/* Appends formatted text to buf (cap bytes, NUL-terminated), cutting what does not fit: a
 * message built in pieces before twin__fail records it. */
void twin__snappend(char *buf, size_t cap, const char *fmt, ...) TWIN_PRINTF(3, 4);

/* ---- Host memory (alloc.c) ---- */

/* Every host allocation of the library goes through this table, so tests can make the Nth
 * allocation fail without touching the process-wide malloc that OpenCL runtimes depend on.
 * aligned: alignment is a power of two >= sizeof(void *); memory from malloc and aligned is
 * released by free_fn. map: size (>= 1) bytes of fresh, zeroed pages of their own, at an address
 * aligned to alignment (a power of two, at least the page size), or NULL; unmap gives exactly
 * such a mapping back to the operating system, with the size it was mapped with. */
typedef void *(*twin__malloc_fn)(size_t size);
typedef void *(*twin__aligned_fn)(size_t alignment, size_t size);
typedef void (*twin__free_fn)(void *p);
typedef void *(*twin__map_fn)(size_t alignment, size_t size);
typedef void (*twin__unmap_fn)(void *p, size_t size);

/* The members are atomic because runtime threads free zero-copy blocks (from cl_mem destructor
 * callbacks) while a test may be swapping hooks; a relaxed atomic load is a plain load. Copy
 * whole tables with twin__allocator_copy / twin__allocator_set, never by struct assignment. */
typedef struct twin__allocator {
  _Atomic(twin__malloc_fn) malloc_fn;
  _Atomic(twin__aligned_fn) aligned_fn;
  _Atomic(twin__free_fn) free_fn;
  _Atomic(twin__map_fn) map_fn;
  _Atomic(twin__unmap_fn) unmap_fn;
} twin__allocator;

extern twin__allocator twin__host_alloc;

/* Copies an allocator table member by member, each atomically (twin__allocator_set(&saved)
 * restores a table saved with twin__allocator_copy(&saved, &twin__host_alloc)). */
static inline void twin__allocator_copy(twin__allocator *to, const twin__allocator *from) {
  atomic_store(&to->malloc_fn, atomic_load(&from->malloc_fn));
  atomic_store(&to->aligned_fn, atomic_load(&from->aligned_fn));
  atomic_store(&to->free_fn, atomic_load(&from->free_fn));
  atomic_store(&to->map_fn, atomic_load(&from->map_fn));
  atomic_store(&to->unmap_fn, atomic_load(&from->unmap_fn));
}
static inline void twin__allocator_set(const twin__allocator *from) {
  twin__allocator_copy(&twin__host_alloc, from);
}
/* True when two tables hold the same functions. */
static inline bool twin__allocator_same(const twin__allocator *a, const twin__allocator *b) {
  return atomic_load(&a->malloc_fn) == atomic_load(&b->malloc_fn) &&
         atomic_load(&a->aligned_fn) == atomic_load(&b->aligned_fn) &&
         atomic_load(&a->free_fn) == atomic_load(&b->free_fn) &&
         atomic_load(&a->map_fn) == atomic_load(&b->map_fn) &&
         atomic_load(&a->unmap_fn) == atomic_load(&b->unmap_fn);
}

void *twin__malloc(size_t size);
void *twin__calloc(size_t count, size_t size);
void *twin__aligned(size_t alignment, size_t size);
void twin__free(void *p);
char *twin__strdup(const char *s);

/* Blocks of at least this many bytes are mapped from the operating system and unmapped when
 * freed, so they are back the moment the last view goes; smaller ones come from the C heap,
 * which may keep freed memory for reuse. Below 64 KiB a mapping's two system calls cost about
 * what faulting its pages does, and what the heap keeps is small arrays' memory; from 64 KiB up
 * the price is fresh pages for the next array, where the heap would reuse (README, "Memory you
 * can see and control"). */
#define TWIN__MAP_MIN ((size_t)64 << 10)

/* A buffer's memory block: 128-byte aligned (OpenCL's base address alignment), page-aligned from
 * 4 KiB, mapped on its own pages from TWIN__MAP_MIN, and 2 MiB-aligned and advised for
 * transparent huge pages from 2 MiB, so zero-copy wrapping and first touch are cheap. Released
 * with twin__free_block and the same size: an unmap needs the size, which the buffer (or the
 * device handle that owns a block) knows anyway, so no block carries a header. */
void *twin__alloc_block(size_t size);
void twin__free_block(void *p, size_t size);

/* ---- Objects kept for reuse (alloc.c) ----
 * Each thread keeps the last few objects of each kind it released and hands them out again, so
 * that the objects made and dropped most often (array objects, buffer objects) cost no malloc
 * and free. Only with the default allocator (an object is kept where free would have taken it
 * and handed out where malloc would have made one, so a test's hooks see every allocation and
 * free they could) and not under AddressSanitizer, which must see every object freed to catch
 * a use after. A kept object's bytes are garbage to its next user. The objects a thread keeps
 * go to free when it exits. */
typedef enum twin__keep_kind {
  TWIN__KEEP_ARRAY,       /* array objects */
  TWIN__KEEP_BUFFER,      /* one-copy buffer objects (without the dirty map's segments) */
  TWIN__KEEP_BUFFER_FULL, /* two-copy buffer objects */
  TWIN__KEEP_KINDS
} twin__keep_kind;
#if defined(__SANITIZE_ADDRESS__)
#define TWIN__KEEP_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TWIN__KEEP_MAX 0
#endif
#endif
#ifndef TWIN__KEEP_MAX
#define TWIN__KEEP_MAX 8 /* per kind and thread */
#endif

/* This thread's kept objects, each linking the next through its first pointer. Inline below:
 * the view path takes and gives one each time. initial-exec: one load from the thread pointer
 * instead of a __tls_get_addr call; the few bytes fit the static TLS room glibc keeps for
 * libraries loaded with dlopen. */
typedef struct twin__keep {
  void *top[TWIN__KEEP_KINDS];
  unsigned count[TWIN__KEEP_KINDS];
  bool registered; /* so that the thread's exit frees what it keeps (alloc.c) */
} twin__keep;
extern _Thread_local twin__keep twin__kept __attribute__((tls_model("initial-exec")));
/* Registers this thread's kept objects to be freed when it exits; false if that failed. */
bool twin__keep_register(void);

/* ---- Slots of threads (alloc.c) ----
 * Structures that every thread making arrays would write at one place (the context's counts
 * and new buffers, a buffer's views) have one part per slot, and each thread keeps to its
 * slot: threads number 1, 2, 3, ... in the order they first ask, slot = number % TWIN__SLOTS,
 * so that two threads working at once write apart. */
#define TWIN__SLOTS 8
extern _Thread_local unsigned twin__thread_number __attribute__((tls_model("initial-exec")));
unsigned twin__thread_number_assign(void);
static inline unsigned twin__thread_slot(void) {
  unsigned n = twin__thread_number;
  return (n ? n : twin__thread_number_assign()) % TWIN__SLOTS;
}

/* An object of `kind` (all of one kind have one size, `size`): a kept one, else twin__malloc's;
 * NULL when out of memory. */
static inline void *twin__take(twin__keep_kind kind, size_t size) {
  void *p = twin__kept.top[kind];
  if (!p || atomic_load_explicit(&twin__host_alloc.malloc_fn, memory_order_relaxed) != malloc)
    return twin__malloc(size);
  twin__kept.top[kind] = *(void **)p;
  twin__kept.count[kind]--;
  return p;
}

/* Releases p, an object of `kind` from twin__take: keeps it for reuse, or twin__free. */
static inline void twin__give(twin__keep_kind kind, void *p) {
  if (twin__kept.count[kind] + 1 > TWIN__KEEP_MAX ||
      atomic_load_explicit(&twin__host_alloc.free_fn, memory_order_relaxed) != free ||
      (!twin__kept.registered && !twin__keep_register())) {
    twin__free(p);
    return;
  }
  *(void **)p = twin__kept.top[kind];
  twin__kept.top[kind] = p;
  twin__kept.count[kind]++;
}

/* ---- Reference counts ----
 * Every refcounted object (context, buffer, array, program, kernel) counts with these, after
 * Mesa's pipe_reference: a count starts at 1, and taking a reference on an object whose count
 * is 0 (being destroyed) or dropping one below 0 is a bug caught by an assertion, never a
 * silent wrap. */
static inline void twin__ref_init(atomic_size_t *count) {
  atomic_init(count, 1);
}

/* Takes one more reference. Relaxed: the caller already holds one, which orders everything. */
static inline void twin__ref_get(atomic_size_t *count) {
  size_t old = atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
  assert(old > 0 && "a reference taken on an object whose count is 0");
  (void)old;
}

/* Takes one more reference unless the count is already 0 (the object is being destroyed), for
 * a walk that finds objects through a list rather than through a reference it holds. */
static inline bool twin__ref_try_get(atomic_size_t *count) {
  size_t n = atomic_load_explicit(count, memory_order_relaxed);
  while (n > 0)
    if (atomic_compare_exchange_weak_explicit(count, &n, n + 1, memory_order_acquire,
                                              memory_order_relaxed))
      return true;
  return false;
}

/* Drops one reference; true for the last, whose caller destroys the object. acq_rel: each drop
 * publishes its thread's writes, and the last one sees them all before tearing down (a fence
 * would do, but ThreadSanitizer cannot see fences). */
static inline bool twin__ref_put(atomic_size_t *count) {
  size_t old = atomic_fetch_sub_explicit(count, 1, memory_order_acq_rel);
  assert(old > 0 && "a reference dropped below 0");
  return old == 1;
}

/* ---- Counters: live objects and bytes, kept with relaxed atomics ----
 * A count that goes down must have gone up first; going below 0 is a bug caught by an
 * assertion, never a silent wrap to a huge number in twin_context_stats. */
static inline size_t twin__count_add(atomic_size_t *count, size_t n) {
  return atomic_fetch_add_explicit(count, n, memory_order_relaxed) + n;
}
static inline size_t twin__count_sub(atomic_size_t *count, size_t n) {
  size_t old = atomic_fetch_sub_explicit(count, n, memory_order_relaxed);
  assert(old >= n && "a count dropped below 0");
  return old - n;
}

/* ---- Spinlocks, for a few instructions of list surgery on the view path ---- */

/* A spinlock is an atomic_bool, false (zero-initialised) when free. */
/* The slow path of twin__spin_lock (alloc.c): waits for the holder, spinning on a plain load
 * for a while, then yielding the core (the holder may have been preempted). */
void twin__spin_wait(atomic_bool *lock);
/* Inline, so an uncontended lock costs one atomic exchange and no call. */
static inline void twin__spin_lock(atomic_bool *lock) {
  if (atomic_exchange_explicit(lock, true, memory_order_acquire))
    twin__spin_wait(lock);
}
static inline void twin__spin_unlock(atomic_bool *lock) {
  atomic_store_explicit(lock, false, memory_order_release);
}

/* ---- Checked arithmetic ---- */

static inline bool twin__mul_overflows(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out);
}
static inline bool twin__add_overflows(size_t a, size_t b, size_t *out) {
  return __builtin_add_overflow(a, b, out);
}

typedef enum { TWIN__HOST = 0, TWIN__DEVICE = 1 } twin__side_id;

static inline const char *twin__side_name(twin__side_id side) {
  return side == TWIN__HOST ? "host" : "device";
}

/* A source location: where an object was made or an access begun (file NULL: unknown). */
typedef struct twin__site {
  const char *file;
  int line;
} twin__site;

static inline const char *twin__site_file(twin__site site) {
  return site.file ? site.file : "(unknown)";
}

/* ---- Element types (dtype.c) ---- */

/* Compared as unsigned so a negative value from a cast is rejected too. */
static inline bool twin__dtype_valid(twin_dtype dtype) {
  return (unsigned)dtype < TWIN_DTYPE_COUNT;
}
/* Bytes per element of a valid dtype, 1 << twin__item_shift: twin_dtype_size without the check
 * and the call, for the paths that make and drop array objects (their dtype was checked when
 * the first was made), and a shift where they would otherwise divide. */
static inline unsigned twin__item_shift(twin_dtype dtype) {
  static const unsigned char shift[TWIN_DTYPE_COUNT] = {
      [TWIN_I8] = 0,  [TWIN_U8] = 0,  [TWIN_I16] = 1, [TWIN_U16] = 1, [TWIN_I32] = 2,
      [TWIN_U32] = 2, [TWIN_I64] = 3, [TWIN_U64] = 3, [TWIN_F32] = 2, [TWIN_F64] = 3,
  };
  return shift[dtype];
}
static inline size_t twin__item_size(twin_dtype dtype) {
  return (size_t)1 << twin__item_shift(dtype);
}

/* ---- Dirty maps (dirty.c) ---- */

/* A set of bytes of a buffer, as a view's elements make one: count[1] groups stride[1] bytes
 * apart, each of count[0] runs stride[0] bytes apart, each run `run` contiguous bytes; the
 * first run starts at byte lo. Runs never overlap (run <= stride[0]) nor do groups (a group's
 * span, (count[0] - 1) * stride[0] + run, is <= stride[1]). twin__pattern_normal puts one in
 * its normal form: contiguous runs merged, a level of count 1 has stride 0, a single level is
 * level 0; so a contiguous range [lo, hi) is {lo, hi - lo, {0, 0}, {1, 1}}. */
typedef struct twin__pattern {
  size_t lo;
  size_t run;
  size_t stride[2];
  size_t count[2];
} twin__pattern;

void twin__pattern_normal(twin__pattern *p);
/* The contiguous pattern [lo, hi) (hi > lo). */
static inline twin__pattern twin__pattern_range(size_t lo, size_t hi) {
  return (twin__pattern){lo, hi - lo, {0, 0}, {1, 1}};
}
/* Bytes in p, and one past its last byte. */
static inline size_t twin__pattern_bytes(const twin__pattern *p) {
  return p->run * p->count[0] * p->count[1];
}
static inline size_t twin__pattern_end(const twin__pattern *p) {
  return p->lo + (p->count[1] - 1) * p->stride[1] + (p->count[0] - 1) * p->stride[0] + p->run;
}
static inline bool twin__pattern_contiguous(const twin__pattern *p) {
  return p->count[0] == 1 && p->count[1] == 1;
}
/* Bytes of p in [lo, hi). */
size_t twin__pattern_bytes_in(const twin__pattern *p, size_t lo, size_t hi);

/* Segments a buffer's map may hold. An operation whose result would need more (or a pattern
 * the map cannot describe exactly) fails and leaves the map as it was; the buffer then moves
 * a segment across to make room (coherence.c), so fragmentation costs extra transfers, never
 * wrong data. */
#define TWIN__DIRTY_CAP 32

typedef struct twin__segment {
  twin__pattern p;
  twin__side_id newer; /* the side holding the newer data there */
} twin__segment;

/* Disjoint segments (as sets of bytes: the spans of strided ones may interleave), sorted by
 * first byte. Zero-initialised is clean. */
typedef struct twin__dirty {
  unsigned count;
  twin__segment s[TWIN__DIRTY_CAP];
} twin__dirty;

/* Copies a map: its live segments only (a full copy moves ~2 KiB, mostly unused slots). */
static inline void twin__dirty_copy(twin__dirty *to, const twin__dirty *from) {
  to->count = from->count;
  for (unsigned i = 0; i < from->count; i++)
    to->s[i] = from->s[i];
}

/* What an operation on a map did: TWIN__DIRTY_DONE; TWIN__DIRTY_FULL, the result would need
 * more than TWIN__DIRTY_CAP segments; or the index of a segment whose difference with the
 * pattern the map cannot describe. The map is unchanged unless DONE. */
#define TWIN__DIRTY_DONE (-1)
#define TWIN__DIRTY_FULL (-2)
/* Records that `newer` holds the newer data in the bytes of p. */
int twin__dirty_mark_pattern(twin__dirty *d, const twin__pattern *p, twin__side_id newer);
/* Records that both sides agree in the bytes of p, in the segments newer on `side` alone
 * (only_side true) or in all of them. */
int twin__dirty_clear_pattern(twin__dirty *d, const twin__pattern *p, bool only_side,
                              twin__side_id side);
/* The contiguous forms: [lo, hi). A clear that fails leaves the range marked (safe: it costs
 * a move later); a mark that fails must be resolved by the caller. */
int twin__dirty_mark(twin__dirty *d, size_t lo, size_t hi, twin__side_id newer);
int twin__dirty_clear(twin__dirty *d, size_t lo, size_t hi);
/* Removes segment i. */
void twin__dirty_remove(twin__dirty *d, unsigned i);
/* Index of the smallest segment (count must be > 0). */
unsigned twin__dirty_smallest(const twin__dirty *d);
/* Bytes in [lo, hi) where `newer` holds the newer data. */
size_t twin__dirty_bytes(const twin__dirty *d, size_t lo, size_t hi, twin__side_id newer);
/* The bytes common to a and b as at most `cap` patterns in out; returns how many, or -1 when
 * they need more or cannot be described (then the caller treats a as a whole). */
int twin__pattern_intersect(const twin__pattern *a, const twin__pattern *b, twin__pattern *out,
                            int cap);

/* Appends p (disjoint from every segment of d, newer on `newer`) as a segment of its own;
 * false when the map is full. */
bool twin__dirty_add(twin__dirty *d, const twin__pattern *p, twin__side_id newer);

/* The bytes of a view: patterns that together hold exactly its elements (exact), or, for a
 * view whose layout does not fit (more than TWIN__REGION_MAX patterns of at most two strided
 * levels over a contiguous run, or TWIN_MOVE=extent), its extent as one range (exact false,
 * unless the view is contiguous). An empty view has no pattern. */
#define TWIN__REGION_MAX 8
typedef struct twin__region {
  unsigned n;
  bool exact;
  size_t lo, hi; /* the extent */
  twin__pattern p[TWIN__REGION_MAX];
} twin__region;

/* The region of the view of ndim axes (shape, strides in elements, any sign) whose element 0
 * is element `offset` of the buffer, elements of `item` bytes. */
void twin__region_of(size_t item, size_t offset, int ndim, const size_t *shape,
                     const ptrdiff_t *strides, twin__region *r);
/* The region of bytes [lo, hi). */
void twin__region_range(size_t lo, size_t hi, twin__region *r);
/* TWIN_MOVE=extent is set: every view moves by its extent (also none packed). */
bool twin__move_extent(void);
/* Element bytes of a region's patterns. */
size_t twin__region_bytes(const twin__region *r);

/* ---- The debug switch (debug.c) ---- */

/* On with TWIN_DEBUG=1 or a context's debug option: released array objects are poisoned
 * instead of freed, and public calls check the arrays they are given (objects.h). */
extern atomic_bool twin__debug;
/* Reads TWIN_DEBUG, once per process (called when a context is made). */
void twin__debug_init(void);
void twin__debug_enable(void);
/* Keeps a released object, already marked dead by its owner, in a ring of the last
 * TWIN__DEBUG_RING ones instead of freeing it; the oldest object of a full ring is freed
 * (twin__free), the rest at exit. */
#define TWIN__DEBUG_RING 4096
void twin__debug_keep(void *dead);
/* Released objects the ring holds now, and whether one of them is at address p. */
size_t twin__debug_poisoned(void);
bool twin__debug_holds(const void *p);
/* Called after a misuse report; abort by default. Must not return (tests longjmp out). */
extern void (*twin__debug_fatal)(void);

/* ---- Strided host loops (strided.c) and host copies with conversions (convert.c) ---- */

/* Copies the elements of an ndim-axis block of the given shape between two host layouts
 * (strides in elements, may be negative or zero for the source), element size `item`. */
void twin__strided_copy(void *dst, const ptrdiff_t *dst_strides, const void *src,
                        const ptrdiff_t *src_strides, const size_t *shape, int ndim, size_t item);

/* What a backend follows of one buffer's device memory (defined in backends/backend.h). */
typedef struct twin__track twin__track;

/* What a copy or fill sees of one array: its memory on the side the operation runs on, and its
 * geometry. The two views of a copy have the same ndim and shape (core has already broadcast
 * the source: a broadcast axis has stride 0). */
typedef struct twin__view {
  void *mem;          /* the backend's device handle, or the host buffer's start (host side) */
  twin__track *track; /* the buffer's: a backend records its command there */
  twin_dtype dtype;
  int ndim;      /* 0..TWIN_MAX_DIMS */
  size_t offset; /* of the element at index 0, in elements from mem */
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS]; /* in elements, any sign */
} twin__view;

/* Rewrites a copy (src may be NULL for a fill) into the fewest axes that visit the same
 * (dst, src) element pairs: size-1 axes go, axes where dst's stride is negative are walked
 * backwards in both views, axes are sorted by dst's stride (largest first) and adjacent axes
 * that are contiguous across each other in both views merge. A view of no elements is left
 * alone. The result may have ndim 0 (one element). */
void twin__view_simplify(twin__view *dst, twin__view *src);

/* The view of v's elements packed contiguously in C order of v's shape at `packed` (offset
 * 0, no track): what packed transfers move (backend.h). */
twin__view twin__view_packed(const twin__view *v, void *packed);

/* The host implementations of copy and fill, on host memory (mem is a host pointer), with the
 * conversions twin_copy documents. They are the host backend's members, what core runs when a
 * backend has no copy or fill of its own, and the reference the OpenCL kernels must match bit
 * for bit. ctx is unused (the signature is the backend members'). */
twin_status twin__host_copy(twin_context *ctx, const twin__view *dst, const twin__view *src);
twin_status twin__host_fill(twin_context *ctx, const twin__view *dst, const void *value);

#endif /* TWIN_GROUND_H */

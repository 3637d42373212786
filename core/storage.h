/* The storage layer: buffers, the bytes behind arrays, and everything that allocates, moves,
 * maps or frees them. buffer.c (lifetime, the context's buffer list, lent memory), coherence.c
 * (keeping the two copies coherent, prefetch, residency), pressure.c (allocation under the
 * memory pressure order and the out-of-memory explanation), spill.c (spilling device copies to
 * the host, and what pins one), memory.c (allocating, moving and freeing a side within the
 * budgets, trim and evict), reach.c (the bytes live views reach, and the release of the host
 * pages they do not), records.c (the records of open accesses, which trim, evict and spill
 * consult, and host mappings) and waits.c (threads waiting for other threads' accesses).
 * The only caller of the backend's memory members. Above the context layer; calls nothing of
 * the public objects above it. Never installed. */
#ifndef TWIN_STORAGE_H
#define TWIN_STORAGE_H

#include "../backends/backend.h"
#include "context.h"

/* Who opens an access, for messages and for the site an open access is reported at: the
 * public call ("twin_copy"), the argument within it ("dst", "argument 2"; NULL for none) and
 * the user's file and line (file NULL: unknown). */
typedef struct twin__opener {
  const char *fn;
  const char *arg;
  twin__site site;
} twin__opener;

/* One open access: the array object it was opened through, its side and mode, who opened it
 * (for messages) and the thread holding it. Linked in its buffer's list under the buffer's
 * lock; every field but next is fixed while it is open. */
typedef struct twin__access {
  struct twin__access *next; /* in buf->accesses */
  struct twin_array *array;
  twin__side_id side;
  twin_access mode;
  const char *fn; /* the public call that opened it (static storage) */
  char arg[24];   /* the argument within that call ("dst", "argument 2"); "" for none */
  twin__site site;
  pthread_t thread; /* the thread that began it */
  bool unowned;     /* held for a DLPack consumer, by no thread: a conflict never waits for it */
} twin__access;

/* Lists of views per buffer (twin__buffer.views): a view is in list slot % TWIN__VIEW_LISTS of
 * its maker's slot of threads. */
#define TWIN__VIEW_LISTS 4

/* A region reservation (twin_array_reserve): an array object's claim on the elements it views,
 * held by no thread until twin_array_unreserve or the object's last reference. Embedded in the
 * array object (at most one each: mode 0 is none) and linked in its buffer's list under the
 * buffer's lock; fixed while linked. */
typedef struct twin__reservation {
  struct twin__reservation *next; /* in buf->reservations */
  struct twin_array *array;       /* the reserving array object */
  twin_access mode;               /* TWIN_READ: no one else writes; TWIN_WRITE: no one else
                                     touches; 0: none */
  twin__site site;                /* the caller of twin_array_reserve */
} twin__reservation;

/* The storage behind arrays. Its layout (context.h) is fixed at creation:
 * - TWIN__SHARED: one host block, wrapped as the device memory; host access maps it, nothing
 *   is ever copied;
 * - TWIN__TWO_COPIES: a host mirror and a device allocation, each made at its first use, with
 *   a dirty map of where one side is newer. A side that was never allocated holds the
 *   buffer's initial content (undefined, or zeros with zero_init) wherever the map is clean;
 * - TWIN__HOST_ONLY: the host block alone. */
typedef struct twin__buffer {
  /* Fixed at creation but for refs, and kept apart from the view list below, which threads
   * making views of the buffer write while they read these. */
  atomic_size_t refs;  /* one for its views while it has some (twin__buffer_attach), plus holders */
  twin_context *ctx;   /* holds a reference */
  size_t nbytes;       /* logical size; allocations are at least 1 byte */
  size_t held_below;   /* views covering fewer bytes hold it (twin__held_by_views), from nbytes */
  twin__layout layout; /* fixed at creation */
  struct twin__buffer *prev, *next; /* in ctx->listed, under ctx->lock */
  /* The slot of threads (ground.h) of the thread that made it: its fresh stack and the slot
   * it is counted in. Below it in ctx->fresh[thread_slot] while it waits there (fixed
   * meanwhile). */
  unsigned thread_slot;
  struct twin__buffer *fresh_next;
  twin__site site; /* where the array that made it was made */
  /* Live views: lists of them (for the report), one per view list of threads (a view joins
   * the list of its maker's slot, TWIN__VIEW_LISTS of them, so that threads making views of
   * one buffer at once link and unlink their own objects), their number and their summed
   * element bytes (read without a lock), all changed under views_lock, a spinlock held only
   * to link or unlink one view and count it (twin__buffer_attach), never across a transfer. */
  atomic_bool views_lock;
  size_t nviews;
  atomic_size_t view_bytes;
  struct twin_array *views[TWIN__VIEW_LISTS];
  /* Set under views_lock (and lock) by a release of host pages no view reaches, before the
   * release begins, and cleared under lock once no page is released: a view made later that
   * can reach any byte of the buffer (twin_array_as_strided) reads it after linking itself, and
   * when set takes back the pages it reaches (twin__reach_restore). Read without a lock. */
  atomic_bool has_released;
  pthread_mutex_t lock; /* guards everything below */
  void *mem[2];         /* [TWIN__HOST] host pointer, [TWIN__DEVICE] the backend's handle */
  bool zero_init;       /* initial content is zero: a side is zeroed when it is allocated */
  /* Accesses open through any array object on this buffer, newest first (records.c); the
   * number of threads waiting for one of them to end, and the condition they wait on, which
   * every end broadcasts (waits.c). */
  twin__access *accesses;
  unsigned waiting;
  pthread_cond_t access_ended;
  /* Reservations made through any array object on this buffer (records.c). */
  twin__reservation *reservations;
  twin__track track; /* the device handle's, for the backend */
  /* Spilling (spill.c): the device-use clock's tick at the latest device access or launch
   * (ctx->device_tick), whether the device copy was spilled (until it comes back), and the
   * spill run that last tried this buffer with what stopped it there (TWIN_OK: nothing). */
  uint64_t used;
  bool spilled;
  uint64_t spill_epoch;
  twin_status spill_refused;
  /* Memory twin adopted instead of allocating it (lent by the application: twin_array_wrap_host
   * and DLPack kDLCPU imports lend the host side, twin_array_wrap_cl_mem and kDLOpenCL imports
   * the device side). An adopted side is never freed by trim or evict; it is counted in the
   * statistics like twin's own memory. external_release(external_user), when set, runs
   * exactly once after the device is done with the memory and both sides are released (see
   * twin__buffer_unref). */
  unsigned char external; /* bit 1u << twin__side_id per adopted side; 0: twin owns both */
  void (*external_release)(void *user);
  void *external_user;
  /* Host pages given back to the OS because no live view reaches them (reach.c): their bytes,
   * counted off host_bytes and the host budget, and a bitmap of them, one bit per whole page of
   * the host block (NULL until the first release). A released page reads as zeros and no move
   * writes into it; both are reset when the host side is freed. Lent memory is never released. */
  size_t released;
  unsigned char *released_map;
  /* Two-copy buffers only. Last, so a new buffer zeroes everything before its segment array
   * and leaves the ~800 bytes of segments untouched (count 0 makes them unused); a one-copy
   * buffer's object ends at the segments (twin__buffer_new allocates TWIN__ONE_COPY_BYTES),
   * so its map stays empty: only twin__buffer_wrote marks one, for two-copy buffers alone. */
  twin__dirty dirty;
} twin__buffer;

/* The size of a one-copy buffer object: all but the dirty map's segments. */
#define TWIN__ONE_COPY_BYTES offsetof(twin__buffer, dirty.s)

/* ---- Array objects ----
 * The fields of an array object. Its calls live above (array.c, view.c); the fields are here
 * because the records of open accesses (records.c) keep each object's mapping and record slot,
 * and closing its last host access unmaps what its first one mapped. */

#define TWIN__OWNER_MAX 32
#define TWIN__ARRAY_ALIVE 0x7a11ab1eu
#define TWIN__ARRAY_POISONED 0xdeadab1eu

struct twin_array {
  /* Fixed from creation on (but for an owner the application sets) and read by every thread
   * that makes a view of it, so apart from the fields written while it lives, below. */
  uint32_t magic;    /* TWIN__ARRAY_ALIVE from attach; TWIN__ARRAY_POISONED once released */
  twin__buffer *buf; /* kept alive by the views' reference (twin__buffer_attach) */
  twin_dtype dtype;
  int ndim;
  size_t size;    /* product of shape */
  size_t offset;  /* of the first element, in elements from the buffer's start */
  bool read_only; /* a broadcast view (or a view of one): writes are refused */
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  twin__site site;             /* where it was made */
  char owner[TWIN__OWNER_MAX]; /* the application's label, inherited by views */
  atomic_size_t refs;
  /* In buf->views[thread_slot % TWIN__VIEW_LISTS], under buf->views_lock (threads making and
   * dropping its neighbours there write prev and next); thread_slot is its maker's slot of
   * threads (ground.h), where it is also counted. */
  struct twin_array *prev, *next;
  unsigned thread_slot;
  /* Accesses open through this object (their records are in buf->accesses), guarded by
   * buf->lock. The first host access of a shared buffer maps the object's extent, the last
   * one's end unmaps it. The slot holds one record, so most accesses allocate nothing. opens
   * counts the object's reservation too, so that its last reference releases it
   * (twin__records_drop). */
  unsigned opens, host_opens;
  void *mapped; /* shared buffer's host access: the mapped address of the extent's first byte */
  bool slot_used;
  twin__access slot;
  twin__reservation reservation; /* guarded by buf->lock; mode 0: none */
};

/* ---- Buffers: lifetime, the buffer list, lent memory (buffer.c) ---- */

/* A new buffer of nbytes in the context's layout; nothing is allocated until a side is used. */
twin_status twin__buffer_new(twin_context *ctx, size_t nbytes, bool zero_init, twin__site site,
                             twin__buffer **out);
twin__buffer *twin__buffer_ref(twin__buffer *b);
void twin__buffer_unref(twin__buffer *b);
/* A buffer over memory twin does not own: side `side` is `mem` (a host pointer, or a device
 * handle adopted with twin__adopt_device), holding data newer than the other side's;
 * release(user), may be NULL, runs exactly once when the buffer is gone. A host side becomes
 * the block of a TWIN__SHARED buffer when the context's layout is shared and the backend has
 * dev_wrap_external; otherwise the buffer has two copies (one, on a backend without device
 * memory). On failure nothing is kept, release is not called, and an adopted device handle
 * stays the caller's to give back (twin__adopt_undo). */
twin_status twin__buffer_new_external(twin_context *ctx, size_t nbytes, twin__side_id side,
                                      void *mem, void (*release)(void *), void *user,
                                      twin__site site, twin__buffer **out);
/* Adopts a device handle the application made (the backend's dev_adopt: it checks that the
 * handle belongs to ctx's device context and takes a reference of its own) and stores its size
 * in bytes in *nbytes; fn names the public call for messages. twin__adopt_undo gives the
 * reference back when no buffer came to hold the handle. */
twin_status twin__adopt_device(const char *fn, twin_context *ctx, void *handle, size_t *nbytes);
void twin__adopt_undo(twin_context *ctx, void *handle);
/* True when side x of b is memory twin adopted (never freed by trim or evict). */
static inline bool twin__is_external(const twin__buffer *b, twin__side_id x) {
  return (b->external >> x) & 1u;
}
/* b is one allocation, host and device alike: shared, or host only. What
 * twin_array_is_zero_copy and the statistics call zero-copy. */
static inline bool twin__one_copy(const twin__buffer *b) {
  return b->layout != TWIN__TWO_COPIES;
}
/* Links array object a into its buffer's (a->buf's) list of views, or unlinks it, and counts
 * it: the context's array count, the buffer's view bytes, and the context's held-by-views
 * bytes, which change by the buffer's size when the views' cover crosses a quarter. Each takes
 * the buffer's views_lock for a few instructions, so the counters stay exact without a walk.
 * The views of a buffer hold one reference on it together, not one each: the first to attach
 * takes it, the last to detach gives it back. With `adopt`, the caller's own reference on
 * a->buf becomes theirs (dropped when they hold one already), as for the first array of a new
 * buffer; without, the caller holds a view of the buffer (or a reference on it) throughout. */
void twin__buffer_attach(twin_array *a, bool adopt);
/* True when a was the buffer's last view: the caller then drops the views' reference with
 * twin__buffer_unref, once done with a. */
bool twin__buffer_detach(twin_array *a);
/* covered / nbytes < 1 / 4, exactly (nbytes / 4 would round down and miss a 2-byte view of a
 * 10-byte buffer, which the per-owner figures count): a buffer with views covering `covered`
 * bytes is held alive by views that cover less than a quarter of it. covered < nbytes / 4 is
 * covered < the quotient rounded up, for whole numbers, and needs no overflow check. */
#define TWIN__HELD_BY_VIEWS_SHARE 4
static inline bool twin__held_by_views(size_t covered, size_t nbytes) {
  size_t share = TWIN__HELD_BY_VIEWS_SHARE;
  return covered < nbytes / share + (nbytes % share != 0);
}
/* With ctx->lock held: the first of ctx's live buffers (the rest follow through next), once
 * those made since the last call have moved from ctx->fresh into the list, newest of each
 * stack first. Every walk over the live buffers starts here. */
static inline twin__buffer *twin__buffers_first(twin_context *ctx) {
  for (int i = 0; i < TWIN__SLOTS; i++) {
    twin__buffer *top = atomic_exchange_explicit(&ctx->fresh[i].top, NULL, memory_order_acq_rel);
    if (!top)
      continue;
    twin__buffer *last = top;
    top->prev = NULL;
    for (; last->fresh_next; last = last->fresh_next) {
      last->next = last->fresh_next;
      last->fresh_next->prev = last;
    }
    last->next = ctx->listed;
    if (ctx->listed)
      ctx->listed->prev = last;
    ctx->listed = top;
  }
  return ctx->listed;
}
/* References to every live buffer of ctx, in *out (drop them with twin__drop_buffers). */
twin_status twin__hold_buffers(twin_context *ctx, twin__buffer ***out, size_t *count);
void twin__drop_buffers(twin__buffer **list, size_t n);

/* ---- What live views reach, and the host pages they do not (reach.c) ----
 * Bytes of a buffer that no live view can reach are garbage: nothing needs them moved, kept
 * newer on a side, or resident. Reach is counted in pages of the system's size, each view's
 * elements walked as byte runs (a contiguous view is one run; elements less than a page apart
 * are one run), so the cost follows the pages, not the elements. Memory the application lent
 * (either side) is its own: every byte of a buffer with lent memory counts as reached. */

/* The page size reach counts in (the system's). */
size_t twin__page_size(void);
/* With b->lock held: does some byte that a live view reaches hold newer data on side x? (Any
 * newer byte counts for a buffer with lent memory or without views.) What trim and evict ask
 * before freeing the other side. */
bool twin__reach_newer(twin__buffer *b, twin__side_id x);
/* With b->lock held (the caller also holds ctx->lock): gives the OS back b's host pages that no
 * live view reaches (madvise MADV_DONTNEED: they read as zeros after) and counts them off
 * host_bytes; in a two-copy buffer also drops the dirty map's ranges outside the pages views
 * reach. Returns the bytes released now. Nothing for lent host memory, a block that is not
 * page-aligned, a buffer without views, or a shared block with a command in flight. */
size_t twin__reach_release(twin__buffer *b);
/* After view a of a buffer with released pages was made by a call that can reach any byte of
 * the buffer (twin_array_as_strided): counts the released pages a reaches back into host_bytes
 * (locking a->buf); their content is undefined, as a new array's. Nothing when none is
 * released. */
void twin__reach_restore(twin_array *a);
/* With b->lock held: the next run of bytes [*lo, hi) outside released pages: *lo moves past
 * released pages, *end gets the run's end; false when none is left. A move goes run by run. */
bool twin__reach_kept(const twin__buffer *b, size_t *lo, size_t hi, size_t *end);
/* With b->lock held (or b unreachable by other threads), as its host side is freed: forgets its
 * released pages and returns their bytes, already counted off host_bytes. */
size_t twin__reach_forget(twin__buffer *b);
/* The share of b's bytes in pages some live view reaches (1 for an empty buffer), and the bytes
 * of its host pages released now (locking b). */
void twin__buffer_reach(twin__buffer *b, double *reachable, size_t *released);

/* ---- Allocating, moving and freeing a side; trim and evict (memory.c) ---- */

/* A side's allocation is at least 1 byte (a device handle needs one), while the statistics
 * and budgets count nbytes: an empty buffer counts 0 bytes everywhere. */
static inline size_t twin__alloc_size(const twin__buffer *b) {
  return b->nbytes ? b->nbytes : 1;
}
static inline bool twin__is_out_of_memory(twin_status s) {
  return s == TWIN_ERR_OUT_OF_HOST_MEMORY || s == TWIN_ERR_OUT_OF_DEVICE_MEMORY;
}
/* Refuses a device allocation of n bytes beyond the device's largest one, saying why. The one
 * check of that limit: core makes it before every device allocation or wrap. */
twin_status twin__device_limit(const twin_context *ctx, size_t n);
/* With b->lock held: allocates side `which` (both sides, shared), zeroed when the initial
 * content is zero, within the budget, once: no trim, no spill (twin__buffer_ensure runs those).
 * On failure nothing is allocated, the budget is untouched, and the message says what failed:
 * TWIN_ERR_OUT_OF_HOST_MEMORY or _DEVICE_MEMORY for a budget reached or memory refused. */
twin_status twin__buffer_allocate(twin__buffer *b, twin__side_id which);
/* With b->lock held, both sides allocated: copies bytes [lo, hi) from the other side into
 * `to`, complete on return, and counts the transfer. The caller fixes the dirty map. */
twin_status twin__buffer_move(twin__buffer *b, twin__side_id to, size_t lo, size_t hi);
/* With b->lock held: copies the bytes of pattern p to side `to` from the other side (a
 * rectangular transfer where the backend has one, else run by run), counted in the
 * statistics. */
twin_status twin__buffer_move_pattern(twin__buffer *b, twin__side_id to, const twin__pattern *p);
/* With b->lock held, both sides allocated, the backend's packed transfers set: copies the
 * elements of view a of b to side `to` from the other side, packed on the device into one
 * contiguous transfer (and on the host through a staging block), complete on return, and
 * counts the packed bytes. The caller fixes the dirty map. */
twin_status twin__buffer_move_packed(twin__buffer *b, twin__side_id to, const twin_array *a);
/* Bytes of a's distinct elements (a broadcast axis holds one). */
size_t twin__view_element_bytes(const twin_array *a);
/* With b->lock held: frees one side's memory, if any (the caller fixes the dirty map). Device
 * memory is released before this returns: it waits for the commands queued on it. */
void twin__buffer_release_side(twin__buffer *b, twin__side_id which);
/* Frees side x of b (locking it) when that loses no data; else explains why not under fn's
 * name: lent memory (TWIN_ERR_UNSUPPORTED), an open access (TWIN_ERR_BUSY) or newer data
 * (TWIN_ERR_BAD_STATE). A one-copy buffer has nothing redundant: TWIN_OK. */
twin_status twin__buffer_evict(twin__buffer *b, twin__side_id x, const char *fn);
/* Frees redundant copies on the sides in `what` (TWIN_TRIM_* flags) in every buffer whose lock
 * is free; returns the bytes freed. Allocates nothing; may be called with one buffer lock
 * held. */
size_t twin__trim(twin_context *ctx, unsigned what);
/* The third step of the pressure order, and TWIN_TRIM_UNREACHABLE: returns to the OS the host
 * pages of buffers that no live view can reach (twin__reach_release on every buffer whose lock
 * is free). Returns the bytes counted off host_bytes (and so off the host budget); *pages_bytes
 * (may be NULL) gets the bytes of whole pages given back, the same figure: only whole pages are
 * released. May be called with one buffer lock held (the caller's, mid-allocation): only tries
 * others. */
size_t twin__release_unreachable(twin_context *ctx, size_t *pages_bytes);

/* ---- Spilling device copies to the host (spill.c) ---- */

/* With b->lock held: stamps b as used on the device now (a device access, a launch, a
 * prefetch), for the spill step's least-recently-used choice. */
static inline void twin__buffer_used(twin__buffer *b) {
  b->used = atomic_fetch_add_explicit(&b->ctx->device_tick, 1, memory_order_relaxed) + 1;
}
/* With b->lock held: what keeps b's device copy from being spilled now (TWIN_PIN_NONE: nothing,
 * or no device copy); *by gets the open device access that pins it (ACCESS, EXPORT), else
 * NULL. */
twin_pin twin__buffer_pin(twin__buffer *b, const twin__access **by);
/* Appends to buf (cap bytes) why b's device copy cannot be spilled, for pin (from
 * twin__buffer_pin, with by): "a device write access to this buffer is still open, begun at
 * FILE:LINE by fn", "its device memory is the application's (lent); twin never frees it". */
void twin__pin_text(char *buf, size_t cap, twin_pin pin, const twin__access *by);
/* Where b's device copy stands for spilling and what pins it, with the file:line and public
 * call of the pin (locking b). */
void twin__buffer_spill_state(twin__buffer *b, twin_spill_state *state, twin_pin *pin,
                              twin__site *where, const char **call);
/* One run of the spill step: its number (each buffer is tried once per run) and what it did. */
typedef struct twin__spill_run {
  uint64_t epoch;
  size_t freed;    /* device bytes freed */
  size_t written;  /* bytes written back to the host */
  unsigned copies; /* device copies freed */
} twin__spill_run;
void twin__spill_begin(twin_context *ctx, twin__spill_run *run);
/* With self->lock held (the buffer whose allocation needs room; never spilled itself): spills
 * device copies of ctx, least recently used first, idle ones before those with a command in
 * flight (whose spill waits for that command), until `want` more bytes of device memory are
 * free or no copy is left that this run has not tried. A spill writes back to the host exactly
 * the ranges newer on the device (allocating the host copy if it has none, within the host
 * budget), frees the device copy and counts itself in the statistics. A buffer that cannot
 * take its write-back keeps its device copy, and records why in spill_refused. Returns the
 * bytes this call freed. Other buffers' locks are only tried. */
size_t twin__spill(twin_context *ctx, const twin__buffer *self, size_t want, twin__spill_run *run);

/* ---- Allocation under memory pressure (pressure.c) ---- */

/* With b->lock held: allocates side `which` unless it exists (both sides, shared); when memory
 * or the budget runs out, runs the pressure order (trim redundant copies, spill device copies,
 * release unreachable host pages, retrying after each step that freed something), then
 * explains what holds memory and why it could not move. On failure nothing is allocated. */
twin_status twin__buffer_ensure(twin__buffer *b, twin__side_id which);

/* ---- Coherence between the two copies (coherence.c) ---- */

/* The bytes array object a views, as patterns (ground.h, twin__region_of). */
void twin__array_region(const twin_array *a, twin__region *r);
/* With b->lock held: allocates `which` if needed and brings the bytes of region r up to date
 * there, moving only the view's elements the other side holds newer (each pattern in one
 * rectangular transfer where the backend has them). twin__buffer_sync does it for bytes
 * [lo, hi). */
twin_status twin__buffer_sync_region(twin__buffer *b, twin__side_id which, const twin__region *r);
twin_status twin__buffer_sync(twin__buffer *b, twin__side_id which, size_t lo, size_t hi);
/* With b->lock held: brings what an access of mode `access` through a on `which` needs up to
 * date: a's elements for a read; nothing for a write of exactly its elements; its extent for
 * a write through a view whose elements the map cannot describe (it marks the extent). */
twin_status twin__buffer_sync_view(twin__buffer *b, twin__side_id which, const twin_array *a,
                                   twin_access access);
/* With b->lock held: records that a's elements (its extent, when the map cannot describe
 * them) are being written on `which`. When the map is full it first moves a segment across
 * (never one newer on `which` that meets a's elements, nor one a write access is open on). */
twin_status twin__buffer_wrote(twin__buffer *b, twin__side_id which, const twin_array *a);
/* With b->lock held: undoes a write's marking of a's elements on `side` where the other side
 * was newer in `before` (the map as it was when the write was granted): the write never
 * happened there, so the other side still holds the newest data. */
void twin__buffer_unwrote(twin__buffer *b, twin__side_id side, const twin__dirty *before,
                          const twin_array *a);
/* Bytes moved so far, in every context, beyond the elements accesses asked for: segments
 * moved whole to simplify a full map, and pieces moved within a view's extent where a
 * segment's intersection with the view was not describable. For tests that bound the bytes
 * moved. */
size_t twin__coherence_extra_bytes(void);
void twin__count_extra(size_t n);
/* Brings bytes [lo, hi) of side x up to date (locking b), refusing under fn's name while a
 * write access is open on the other side. A buffer with no device memory prefetches its host
 * side. */
twin_status twin__buffer_prefetch(twin__buffer *b, twin__side_id x, size_t lo, size_t hi,
                                  const char *fn);
/* Where each side stands for bytes [lo, hi) (locking b). */
void twin__buffer_residency(twin__buffer *b, size_t lo, size_t hi, twin_residency *host,
                            twin_residency *device);

/* ---- Records of open accesses, mappings and fences (records.c) ---- */

/* Does this thread hold open access x? (An access held for a DLPack export is no thread's.) */
static inline bool twin__held_here(const twin__access *x) {
  return !x->unowned && pthread_equal(x->thread, pthread_self());
}
/* With the buffer locked: a record for an access through a (its slot when free); NULL when no
 * memory is left. twin__record_link links it, or twin__record_free gives it back. */
twin__access *twin__record_new(twin_array *a);
void twin__record_free(twin_array *a, twin__access *x);
/* With the buffer locked: links record x of a new access through a, as `who` opens it. */
void twin__record_link(twin_array *a, twin__access *x, const twin__opener *who, bool unowned,
                       twin__side_id side, twin_access access);
/* With the buffer locked: the access through a on `side` that an end closes, this thread's
 * newest (any thread's newest when it holds none there; NULL when none is open). */
twin__access *twin__record_find(const twin_array *a, twin__side_id side);
/* With the buffer locked: ends access x through a, unmapping a shared extent after its last
 * host access, and wakes the threads waiting for an access of the buffer. A failed unmap still
 * ends it and is returned. */
twin_status twin__record_close(twin_array *a, twin__access *x);
/* Ends every access still open through array object a, whose last reference is going (what a
 * write access wrote counts: it was marked when the access began), after fencing device ones,
 * and releases its reservation; describes them in what (cap bytes): "a host write access, begun
 * at FILE:LINE by fn; a read reservation ...". */
void twin__records_drop(twin_array *a, char *what, size_t cap);
/* With b->lock held: the number of accesses open on `side` whose mode has a bit of `modes`;
 * and the same accesses appended to the current message, each with where it began. */
unsigned twin__accesses_open(const twin__buffer *b, twin__side_id side, twin_access modes);
void twin__append_accesses(const twin__buffer *b, twin__side_id side, twin_access modes);
/* Appends to buf (cap bytes) a description of open access x as it blocks a request through
 * array object a (NULL: none), "a device write access to this buffer is still open, begun at
 * FILE:LINE by fn: arg in another thread"; and the ", begun at ..." part alone. */
void twin__record_blocker(char *buf, size_t cap, const twin__access *x, const twin_array *a);
void twin__record_began(char *buf, size_t cap, const twin__access *x);
/* With the buffer locked: links a's reservation of `mode` (a holds none), made at site, or
 * unlinks the one it holds. */
void twin__reservation_link(twin_array *a, twin_access mode, twin__site site);
void twin__reservation_unlink(twin_array *a);
/* Appends to buf (cap bytes) a description of reservation r: "a write reservation of a view of
 * shape 2 x 6 at element 8 of this buffer, made at FILE:LINE". */
void twin__reservation_text(char *buf, size_t cap, const twin__reservation *r);
/* With b->lock held: maps bytes [lo, hi) of a shared buffer for host access; *ptr receives
 * the host address of byte lo. invalidate: the caller overwrites all of it. */
twin_status twin__buffer_map(twin__buffer *b, size_t lo, size_t hi, twin_access access,
                             bool invalidate, void **ptr);
/* At the end of an application's device access to b (twin_device_end, a DLPack deleter), while
 * it is still open: the application may have queued its own commands on the device memory, so
 * the buffer's release must wait for everything queued so far. twin__buffer_fence_locked with
 * b->lock held. */
void twin__buffer_fence(twin__buffer *b);
void twin__buffer_fence_locked(twin__buffer *b);

/* ---- Waiting for accesses of other threads (waits.c) ---- */

/* With b->lock held, for a request on b that only accesses of other threads block, the n
 * records in blockers: sleeps until an access of b ends (or a spurious wake-up) and returns
 * TWIN_OK; the caller looks again. When a thread it would wait for waits itself, directly or
 * through others, for an access this thread holds, it does not sleep: it returns
 * TWIN_ERR_BUSY with copies of the blocking record in *theirs and of this thread's in *ours.
 * blockers must stay valid until it returns. */
twin_status twin__wait_for(twin__buffer *b, const twin__access *const *blockers, size_t n,
                           twin__access *theirs, twin__access *ours);
/* With b->lock held, after one of b's accesses ended: wakes the threads waiting on b. */
void twin__wake(twin__buffer *b);
/* Threads waiting for an access now (for tests). */
size_t twin__access_waiting(void);

#endif /* TWIN_STORAGE_H */

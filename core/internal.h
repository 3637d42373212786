/* Private declarations shared by core/ and backends/. Never installed.
 * Internal non-static functions are named twin__*; static helpers carry no prefix. */
#ifndef TWIN_INTERNAL_H
#define TWIN_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

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

/* Appends text to this thread's current message (used to add a build log or a device list). */
void twin__fail_append(const char *fmt, ...) TWIN_PRINTF(1, 2);

/* ---- Host memory (alloc.c) ---- */

/* Every host allocation of the library goes through this table, so tests can make the Nth
 * allocation fail without touching the process-wide malloc that OpenCL runtimes depend on.
 * aligned: alignment is a power of two >= sizeof(void *); memory from both is released by
 * free_fn. */
typedef void *(*twin__malloc_fn)(size_t size);
typedef void *(*twin__aligned_fn)(size_t alignment, size_t size);
typedef void (*twin__free_fn)(void *p);

/* The members are atomic because runtime threads free zero-copy blocks (from cl_mem destructor
 * callbacks) while a test may be swapping hooks; a relaxed atomic load is a plain load. Copy
 * whole tables with twin__allocator_copy / twin__allocator_set, never by struct assignment. */
typedef struct twin__allocator {
  _Atomic(twin__malloc_fn) malloc_fn;
  _Atomic(twin__aligned_fn) aligned_fn;
  _Atomic(twin__free_fn) free_fn;
} twin__allocator;

extern twin__allocator twin__host_alloc;

/* Copies an allocator table member by member, each atomically (twin__allocator_set(&saved)
 * restores a table saved with twin__allocator_copy(&saved, &twin__host_alloc)). */
static inline void twin__allocator_copy(twin__allocator *to, const twin__allocator *from) {
  atomic_store(&to->malloc_fn, atomic_load(&from->malloc_fn));
  atomic_store(&to->aligned_fn, atomic_load(&from->aligned_fn));
  atomic_store(&to->free_fn, atomic_load(&from->free_fn));
}
static inline void twin__allocator_set(const twin__allocator *from) {
  twin__allocator_copy(&twin__host_alloc, from);
}

void *twin__malloc(size_t size);
void *twin__calloc(size_t count, size_t size);
void *twin__aligned(size_t alignment, size_t size);
void twin__free(void *p);
char *twin__strdup(const char *s);
/* A buffer's memory block, released with twin__free: 128-byte aligned (OpenCL's base address
 * alignment), page-aligned from 4 KiB, and 2 MiB-aligned and advised for transparent huge
 * pages from 2 MiB, so zero-copy wrapping and first touch are cheap. */
void *twin__alloc_block(size_t size);

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

/* Drops one reference; true for the last, whose caller destroys the object. acq_rel: each drop
 * publishes its thread's writes, and the last one sees them all before tearing down (a fence
 * would do, but ThreadSanitizer cannot see fences). */
static inline bool twin__ref_put(atomic_size_t *count) {
  size_t old = atomic_fetch_sub_explicit(count, 1, memory_order_acq_rel);
  assert(old > 0 && "a reference dropped below 0");
  return old == 1;
}

/* ---- Spinlocks, for a few instructions of list surgery on the view path ---- */

void twin__spin_lock(atomic_flag *lock);
static inline void twin__spin_unlock(atomic_flag *lock) {
  atomic_flag_clear_explicit(lock, memory_order_release);
}

/* ---- Checked arithmetic ---- */

static inline bool twin__mul_overflows(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out);
}
static inline bool twin__add_overflows(size_t a, size_t b, size_t *out) {
  return __builtin_add_overflow(a, b, out);
}

typedef enum { TWIN__HOST = 0, TWIN__DEVICE = 1 } twin__side_id;

/* A source location: where an object was made or an access begun (file NULL: unknown). */
typedef struct twin__site {
  const char *file;
  int line;
} twin__site;

static inline const char *twin__site_file(twin__site site) {
  return site.file ? site.file : "(unknown)";
}

/* ---- Contexts (context.c, stats.c, device.c) ---- */

struct twin_backend_ops;

/* Counters behind twin_stats. Atomic so the array path never takes a lock for them. */
typedef struct twin__counters {
  atomic_size_t host_bytes, device_bytes, peak_host_bytes, peak_device_bytes;
  atomic_size_t buffers, arrays, zero_copy_buffers;
  atomic_uint_least64_t bytes_to_device, bytes_to_host, transfers_to_device, transfers_to_host;
} twin__counters;

struct twin__buffer;

struct twin_context {
  atomic_size_t refs;              /* the application's references plus one per live buffer */
  atomic_size_t user_refs;         /* the application's references only */
  bool zero_copy;                  /* buffers share one allocation between host and device */
  size_t host_limit, device_limit; /* budgets in bytes; 0: none */
  pthread_mutex_t lock;            /* guards the list of live buffers */
  struct twin__buffer *buffers;    /* live buffers, newest first */
  atomic_bool leak_reported;       /* the live report was printed at the last user unref */
  atomic_bool borrowed_warned;     /* a retained borrowed device handle was reported */
  twin_leak_fn leak_fn;            /* replaces printing the leak report, when set */
  void *leak_user;
  const struct twin_backend_ops *ops;
  void *backend; /* the backend's own state, owned by ops->close */
  twin_device_info device;
  twin__counters counters;
  /* User programs built on this context (kernel.c), kept until the context closes so that
   * building the same source and options again is a lookup. A spinlock held only to walk or
   * link the list, never across a build. */
  atomic_flag programs_lock;
  struct twin_program *programs;
};

/* A buffer's reference on its context, apart from the application's own (user_refs). */
twin_context *twin__context_hold(twin_context *ctx);
void twin__context_release(twin_context *ctx);
/* Frees the context's cached user programs (kernel.c), when the context closes. */
void twin__programs_release(twin_context *ctx);
/* The backend's program and kernel behind twin's objects (kernel.c); NULL for a host kernel. */
void *twin__program_handle(const twin_program *prog);
void *twin__kernel_handle(const twin_kernel *k);

/* The leak report at the application's last context reference (report.c). */
void twin__report_leak(twin_context *ctx);
/* Bytes of live buffers whose live views cover less than a quarter of them (report.c). */
size_t twin__held_by_views(twin_context *ctx);

/* Counts n more live bytes on a side (raising its peak) if that stays within the context's
 * budget for the side; false, counting nothing, if not. twin__budget_give counts them off. */
bool twin__budget_take(twin_context *ctx, twin__side_id side, size_t n);
void twin__budget_give(twin_context *ctx, twin__side_id side, size_t n);
/* Counts n more live bytes on a side whatever the budget: memory the application lent twin,
 * which exists already. twin__budget_give counts them off. */
void twin__budget_count(twin_context *ctx, twin__side_id side, size_t n);
void twin__count_transfer(twin_context *ctx, bool to_device, size_t nbytes);

/* Lists OpenCL devices (backends/opencl); absent from builds without OpenCL. */
twin_status twin__opencl_list(twin_device_info **out, size_t *count);
extern const struct twin_backend_ops twin__opencl_ops;
extern const struct twin_backend_ops twin__host_ops;

/* Fills in the host backend's device entry. */
void twin__host_device_info(twin_device_info *out);
/* The fake device (backends/fake): device memory from the host allocator, for tests; selected
 * only by the spec "fake", never listed. */
extern const struct twin_backend_ops twin__fake_ops;
void twin__fake_device_info(twin_device_info *out);

/* ---- Dirty maps (dirty.c) ---- */

/* Segments a buffer may track before it moves the smallest to make room. */
#define TWIN__DIRTY_CAP 32

typedef struct twin__segment {
  size_t lo, hi;       /* bytes [lo, hi) of the buffer */
  twin__side_id newer; /* the side holding the newer data there */
} twin__segment;

/* Sorted, disjoint segments; touching segments of one side are merged. Zero-initialised is
 * clean. Two slots beyond the cap absorb one operation's splits before the buffer resolves. */
typedef struct twin__dirty {
  unsigned count;
  twin__segment s[TWIN__DIRTY_CAP + 2];
} twin__dirty;

/* Copies a map: its live segments only (a full copy moves ~1 KiB, mostly unused slots). */
static inline void twin__dirty_copy(twin__dirty *to, const twin__dirty *from) {
  to->count = from->count;
  for (unsigned i = 0; i < from->count; i++)
    to->s[i] = from->s[i];
}

/* Records that `newer` holds the newer data in [lo, hi). */
void twin__dirty_mark(twin__dirty *d, size_t lo, size_t hi, twin__side_id newer);
/* Records that both sides agree in [lo, hi). */
void twin__dirty_clear(twin__dirty *d, size_t lo, size_t hi);
/* Index of the smallest segment (count must be > 0). */
unsigned twin__dirty_smallest(const twin__dirty *d);
/* Bytes in [lo, hi) where `newer` holds the newer data. */
size_t twin__dirty_bytes(const twin__dirty *d, size_t lo, size_t hi, twin__side_id newer);

/* ---- Open accesses (access.c, waits.c) ---- */

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

/* ---- Device work on a buffer ---- */

/* What a backend follows of one buffer's device memory: the latest command queued on it, which
 * releasing the memory waits for (that buffer's commands only, never the whole queue), and the
 * backend's record of a handle it made. Core keeps one per buffer, zeroed, and hands it to the
 * backend members that make, use and free the buffer's device handle; only the backend reads
 * or writes it, `last` under its own enqueue lock, so that the recorded command is the latest
 * in queue order even when threads enqueue work on one buffer at once. */
typedef struct twin__track {
  void *last; /* the backend's event of the latest command using the memory (retained), or NULL */
  void *life; /* the backend's record of a handle it made; NULL for none or an adopted handle */
} twin__track;

/* ---- Buffers (buffer.c) ---- */

/* The storage behind arrays. Two kinds, fixed at creation:
 * - zero-copy (the device shares host memory and coherence is automatic): one host block,
 *   wrapped as the device memory; host access maps it, nothing is ever copied;
 * - two copies: a host mirror and a device allocation, each made at its first use, with a
 *   dirty map of where one side is newer. A side that was never allocated holds the buffer's
 *   initial content (undefined, or zeros with zero_init) wherever the map is clean. */
typedef struct twin__buffer {
  atomic_size_t refs;
  twin_context *ctx;                /* holds a reference */
  struct twin__buffer *prev, *next; /* in ctx->buffers, under ctx->lock */
  twin__site site;                  /* where the array that made it was made */
  /* Live views: their summed element bytes, kept atomically, and the list (for the report)
   * under views_lock, a spinlock held only to link or unlink one view, never across a
   * transfer, so making a view costs two uncontended atomic operations more. */
  atomic_size_t view_bytes;
  atomic_flag views_lock;
  struct twin_array *views;
  size_t nbytes;        /* logical size; allocations are at least 1 byte */
  bool zero_copy;       /* fixed at creation */
  pthread_mutex_t lock; /* guards everything below */
  void *mem[2];         /* [TWIN__HOST] host pointer, [TWIN__DEVICE] the backend's handle */
  bool zero_init;       /* initial content is zero: a side is zeroed when it is allocated */
  /* Accesses open through any array object on this buffer, newest first (access.c); the
   * number of threads waiting for one of them to end, and the condition they wait on, which
   * every end broadcasts (waits.c). */
  twin__access *accesses;
  unsigned waiting;
  pthread_cond_t access_ended;
  twin__track track; /* the device handle's, for the backend */
  /* Memory twin adopted instead of allocating it (external.c): twin_array_wrap_host and
   * DLPack kDLCPU imports lend the host side, twin_array_wrap_cl_mem and kDLOpenCL imports
   * the device side. An adopted side is never freed by trim or evict; it is counted in the
   * statistics like twin's own memory. external_release(external_user), when set, runs
   * exactly once after the device is done with the memory and both sides are released (see
   * twin__buffer_unref). */
  unsigned char external; /* bit 1u << twin__side_id per adopted side; 0: twin owns both */
  void (*external_release)(void *user);
  void *external_user;
  /* Two-copy buffers only. Last, so a new buffer zeroes everything before its segment array
   * and leaves the ~800 bytes of segments untouched (count 0 makes them unused). */
  twin__dirty dirty;
} twin__buffer;

twin_status twin__buffer_new(twin_context *ctx, size_t nbytes, bool zero_init, twin__site site,
                             twin__buffer **out);
twin__buffer *twin__buffer_ref(twin__buffer *b);
void twin__buffer_unref(twin__buffer *b);
/* A buffer over memory twin does not own (external.c): side `side` is `mem` (a host pointer,
 * or a device handle already adopted with the backend's dev_adopt), holding data newer than
 * the other side's; release(user), may be NULL, runs exactly once when the buffer is gone.
 * A host side becomes the shared block of a zero-copy buffer when the context is zero-copy
 * and the backend has dev_wrap_external. On failure nothing is kept, release is not called,
 * and an adopted device handle stays the caller's to free. */
twin_status twin__buffer_new_external(twin_context *ctx, size_t nbytes, twin__side_id side,
                                      void *mem, void (*release)(void *), void *user,
                                      twin__site site, twin__buffer **out);
/* True when side x of b is memory twin adopted (never freed by trim or evict). */
static inline bool twin__is_external(const twin__buffer *b, twin__side_id x) {
  return (b->external >> x) & 1u;
}
/* With b->lock held: allocates `which` if needed and brings bytes [lo, hi) of it up to date,
 * moving only the parts where the other side is newer. */
twin_status twin__buffer_sync(twin__buffer *b, twin__side_id which, size_t lo, size_t hi);
/* With b->lock held: makes room in the dirty map for one twin__buffer_wrote (moving the
 * smallest dirty segments when it is full). Call before a write access is granted. */
twin_status twin__buffer_reserve(twin__buffer *b);
/* With b->lock held: records that bytes [lo, hi) are being written on `which`. */
void twin__buffer_wrote(twin__buffer *b, twin__side_id which, size_t lo, size_t hi);

/* With b->lock held: frees one side's memory, if any (the caller fixes the dirty map). Device
 * memory is released before this returns: it waits for the commands queued on it. */
void twin__buffer_release_side(twin__buffer *b, twin__side_id which);
/* At the end of an application's device access to b (twin_device_end, a DLPack deleter), while
 * it is still open: the application may have queued its own commands on the device memory, so
 * the buffer's release must wait for everything queued so far. */
void twin__buffer_fence(twin__buffer *b);
/* twin__buffer_fence with b->lock held. */
void twin__buffer_fence_locked(twin__buffer *b);

/* References to every live buffer of ctx (report.c); drop them with twin__drop_buffers. */
twin_status twin__hold_buffers(twin_context *ctx, twin__buffer ***out, size_t *count);
void twin__drop_buffers(twin__buffer **list, size_t n);

/* Frees redundant copies on the sides in `what` (TWIN_TRIM_* flags) in every buffer whose lock
 * is free; returns the bytes freed (residency.c). Allocates nothing; may be called with one
 * buffer lock held. */
size_t twin__trim(twin_context *ctx, unsigned what);
/* b is one allocation, host and device alike: zero-copy, or on a backend without device
 * memory (the host backend). What twin_array_is_zero_copy and the statistics call zero-copy. */
bool twin__one_copy(const twin__buffer *b);
/* With b->lock held: side x holds nothing the other side lacks and is not in use. */
bool twin__evictable_quiet(const twin__buffer *b, twin__side_id x);

/* ---- Arrays (array.c) ---- */

#define TWIN__OWNER_MAX 32

struct twin_array {
  uint32_t magic; /* TWIN__ARRAY_ALIVE from attach; TWIN__ARRAY_POISONED once released */
  atomic_size_t refs;
  twin__buffer *buf;              /* holds a reference */
  struct twin_array *prev, *next; /* in buf->views, under buf->views_lock */
  twin__site site;                /* where it was made */
  char owner[TWIN__OWNER_MAX];    /* the application's label, inherited by views */
  twin_dtype dtype;
  int ndim;
  size_t size;   /* product of shape */
  size_t offset; /* of the first element, in elements from the buffer's start */
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  bool read_only; /* a broadcast view (or a view of one): writes are refused */
  /* Accesses open through this object (their records are in buf->accesses), guarded by
   * buf->lock. The first host access of a zero-copy buffer maps the object's extent, the last
   * one's end unmaps it. The slot holds one record, so most accesses allocate nothing. */
  unsigned opens, host_opens;
  void *mapped; /* zero-copy host access: the mapped address of the extent's first byte */
  bool slot_used;
  twin__access slot;
};

/* ---- Lifetime checks (debug.c) ---- */

#define TWIN__ARRAY_ALIVE 0x7a11ab1eu
#define TWIN__ARRAY_POISONED 0xdeadab1eu

/* On with TWIN_DEBUG=1 or a context's debug option: released array objects are poisoned
 * instead of freed, and public calls check the arrays they are given. */
extern atomic_bool twin__debug;
/* Reads TWIN_DEBUG, once per process (called when a context is made). */
void twin__debug_init(void);
void twin__debug_enable(void);
/* Keeps a released array object, detached and marked dead, in a bounded ring; the oldest
 * object of a full ring is freed. */
void twin__debug_poison(twin_array *a);
/* Released objects the ring holds now, and whether one of them is at address p. */
size_t twin__debug_poisoned(void);
bool twin__debug_holds(const void *p);
/* Reports a use of a released (or foreign) array object on stderr with its creation site,
 * then calls twin__debug_fatal. */
void twin__debug_check_slow(const twin_array *a, const char *fn);
/* Reports on stderr that the last reference to a went while the accesses `what` describes
 * were open (twin__access_drop ended them); the caller then calls twin__debug_fatal. */
void twin__debug_report_open(const twin_array *a, const char *what);
/* Called after the report; abort by default. Must not return (tests longjmp out of it). */
extern void (*twin__debug_fatal)(void);

/* The check every public call taking an array makes first: one predictable branch while
 * debugging is off. A NULL array passes (the call's own argument check handles it). */
static inline void twin__debug_check(const twin_array *a, const char *fn) {
  if (__builtin_expect(atomic_load_explicit(&twin__debug, memory_order_relaxed), 0))
    twin__debug_check_slow(a, fn);
}

bool twin__dtype_valid(twin_dtype dtype);
/* Checks the arguments every array constructor shares: ctx, dtype, ndim and shape. */
twin_status twin__check_geometry(const char *fn, const twin_context *ctx, twin_dtype dtype,
                                 int ndim, const size_t *shape);
/* The invariant every array's shape keeps, checked by every constructor: the element count and
 * byte size fit, and the axis lengths, zero-length ones counted as 1, times the element size fit
 * in ptrdiff_t, so C-order strides and extents computed in any axis order (transpose, reshape,
 * packed reads) fit too, with elements or not. Stores the element count in *size. */
twin_status twin__check_shape(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                              size_t *size);
/* The extent invariant of every view, for a shape that passed twin__check_shape: each stride
 * times the element size fits in ptrdiff_t (a length-1 axis's too), and so does the byte span
 * of the axes that have elements, summed per sign (also with no element at all, so that views
 * made from an empty one fit). *lo <= 0 <= *hi: the lowest and highest element reached,
 * relative to element 0. */
twin_status twin__check_extent(const char *fn, twin_dtype dtype, int ndim, const size_t *shape,
                               const ptrdiff_t *strides, ptrdiff_t *lo, ptrdiff_t *hi);
/* twin_array_is_contiguous without the debug check, for callers that made it already. */
bool twin__is_contiguous(const twin_array *a);
/* A new view on a's buffer with the given geometry (offset in elements from the buffer's
 * start), proven inside the buffer with overflow-checked arithmetic; it inherits read_only.
 * fn names the public call for messages. */
twin_status twin__array_view(const char *fn, twin_array *a, int ndim, const size_t *shape,
                             const ptrdiff_t *strides, ptrdiff_t offset, twin__site site,
                             twin_array **out);
/* Registers a new array object with its buffer (view list, counters) and sets its refcount. */
void twin__array_attach(twin_array *a);
/* Byte range [*lo, *hi) of the buffer that a's elements occupy; lo == hi when a is empty. */
void twin__array_extent(const twin_array *a, size_t *lo, size_t *hi);

/* ---- Memory the application lends, and DLPack (external.c, dlpack.c) ---- */

/* An array over host memory the application owns (twin_array_wrap_host and DLPack kDLCPU
 * imports): ptr is element 0; strides NULL means C order. release(user) runs once at the end;
 * on failure it is not called. fn names the public call for messages. */
twin_status twin__array_wrap_host(const char *fn, twin_context *ctx, void *ptr, twin_dtype dtype,
                                  int ndim, const size_t *shape, const ptrdiff_t *strides,
                                  void (*release)(void *), void *user, twin__site site,
                                  twin_array **out);
/* An array over a device handle the application made (twin_array_wrap_cl_mem and DLPack
 * kDLOpenCL imports), adopted through the backend's dev_adopt: element 0 is byte_offset bytes
 * into it. release(user), may be NULL, runs once after twin drops its own reference to the
 * handle; on failure twin keeps no reference and release is not called. */
twin_status twin__array_wrap_device(const char *fn, twin_context *ctx, void *handle,
                                    size_t byte_offset, twin_dtype dtype, int ndim,
                                    const size_t *shape, const ptrdiff_t *strides,
                                    void (*release)(void *), void *user, twin__site site,
                                    twin_array **out);
struct DLManagedTensor;
/* A DLPack tensor over a's memory on `side`, holding a private view with an open access of
 * that mode until the tensor's deleter runs; site is the caller's, for messages. */
twin_status twin__array_to_dlpack(const char *fn, twin_array *a, twin__side_id side,
                                  twin_access access, twin__site site,
                                  struct DLManagedTensor **out);

/* ---- Strided host copies (strided.c) ---- */

/* Copies the elements of an ndim-axis block of the given shape between two host layouts
 * (strides in elements, may be negative or zero for the source), element size `item`. */
void twin__strided_copy(void *dst, const ptrdiff_t *dst_strides, const void *src,
                        const ptrdiff_t *src_strides, const size_t *shape, int ndim, size_t item);

/* ---- Access (access.c) ---- */

/* Who opens an access, for messages and for the site an open access is reported at: the
 * public call ("twin_copy"), the argument within it ("dst", "argument 2"; NULL for none) and
 * the user's file and line (file NULL: unknown). */
typedef struct twin__opener {
  const char *fn;
  const char *arg;
  twin__site site;
} twin__opener;

/* For built-in operations, which run on one side's memory: opens `access` on `side` and
 * returns that side's memory (the device handle, or the host block's start; never used for a
 * zero-copy host access). For a write, *before (when not NULL) receives the dirty map as it
 * was, so that twin__close_for_op can undo the marking if the operation then failed. */
twin_status twin__open_for_op(twin_array *a, twin__side_id side, twin_access access,
                              const twin__opener *who, twin__dirty *before, void **mem);
/* Closes it; failed_before is the map from the open when the operation failed, else NULL. */
void twin__close_for_op(twin_array *a, twin__side_id side, const twin__dirty *failed_before);

/* The generic halves of twin_host_begin (storing the address of a's element 0) and
 * twin_device_begin (storing the backend's device handle and the byte offset of element 0),
 * for the call `who` names; unowned: the access is held for a DLPack consumer, by no thread,
 * so no conflict waits for it. And the generic halves of the ends, for the call fn names. */
twin_status twin__host_begin(const twin__opener *who, bool unowned, twin_array *a,
                             twin_access access, void **ptr);
twin_status twin__device_begin(const twin__opener *who, bool unowned, twin_array *a,
                               twin_access access, void **handle, size_t *byte_offset);
twin_status twin__host_end(const char *fn, twin_array *a);
twin_status twin__device_end(twin_array *a);

/* Ends every access still open through array object a, whose last reference is going (what a
 * write access wrote counts: it was marked when the access began). Under TWIN_DEBUG it reports
 * them as a misuse, naming where each began, and returns true: the caller then calls
 * twin__debug_fatal once a is released. */
bool twin__access_drop(twin_array *a);

/* With b->lock held: the number of accesses open on `side` whose mode has a bit of `modes`;
 * and the same accesses appended to the current message, each with where it began. */
unsigned twin__accesses_open(const twin__buffer *b, twin__side_id side, twin_access modes);
void twin__append_accesses(const twin__buffer *b, twin__side_id side, twin_access modes);

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

/* ---- Copies and fills (ops.c, backends/host/ops.c, backends/opencl/ops.c) ---- */

/* What a backend's copy and fill see of one array: its memory on the side the operation runs
 * on, and its geometry. The two views of a copy have the same ndim and shape (core has already
 * broadcast the source: a broadcast axis has stride 0). */
typedef struct twin__view {
  void *mem;          /* the backend's device handle, or the host buffer's start (host side) */
  twin__track *track; /* the buffer's: the backend records its command there */
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

/* The host implementations of copy and fill, on host memory (mem is a host pointer). They are
 * the host backend's members and the reference the OpenCL kernels must match bit for bit. */
twin_status twin__host_copy(twin_context *ctx, const twin__view *dst, const twin__view *src);
twin_status twin__host_fill(twin_context *ctx, const twin__view *dst, const void *value);

#endif /* TWIN_INTERNAL_H */

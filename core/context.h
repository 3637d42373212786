/* The context layer: a context's fields, its counters and budgets (stats.c), its device
 * (device.c) and its life (context.c). Above ground, below storage. Backends include this
 * header (through backend.h) for the fields backend.h documents, and call none of its
 * functions. Never installed. */
#ifndef TWIN_CONTEXT_H
#define TWIN_CONTEXT_H

#include "ground.h"

struct twin_backend_ops;
struct twin__buffer;
struct twin_program;

/* How a buffer keeps its bytes, fixed when it is made (twin__buffer.layout). */
typedef enum twin__layout {
  /* The backend has no device memory (the host backend): the host block is all there is. */
  TWIN__HOST_ONLY,
  /* Zero-copy: one host block that the device uses in place; host access maps it and nothing
   * is ever copied. */
  TWIN__SHARED,
  /* A host mirror and a device allocation, each made at its first use, with a dirty map of
   * where one side is newer. */
  TWIN__TWO_COPIES,
} twin__layout;

/* The live objects counted in one slot of threads (ground.h), a cache line apart from the
 * next slot's: an object is counted in the slot of the thread that made it, and counted off in
 * that same slot whichever thread drops it, so a slot's count never goes below 0. */
typedef struct twin__live_counts {
  atomic_size_t buffers, arrays;
  /* Buffers whose layout is TWIN__TWO_COPIES: the rest are one copy (zero-copy), and in the
   * usual contexts, host-only or zero-copy, no buffer moves this count. */
  atomic_size_t two_copy_buffers;
  char apart[64 - 3 * sizeof(atomic_size_t)];
} twin__live_counts;

/* Counters behind twin_stats. Atomic so the array path never takes a lock for them; each is
 * changed with twin__count_add / twin__count_sub (ground.h), which catch an underflow. */
typedef struct twin__counters {
  atomic_size_t host_bytes, device_bytes, peak_host_bytes, peak_device_bytes;
  twin__live_counts live[TWIN__SLOTS];
  /* Bytes of live buffers that have views, covering less than a quarter of them, kept by the
   * storage layer as views attach and detach (twin__buffer_attach). */
  atomic_size_t held_by_views_bytes;
  atomic_uint_least64_t bytes_to_device, bytes_to_host, transfers_to_device, transfers_to_host;
  /* Memory pressure, per period (twin_stats documents each): spills, and the steps of the
   * order run before an out-of-memory error. */
  atomic_uint_least64_t spilled_bytes, spill_count, spill_freed_bytes;
  atomic_uint_least64_t pressure_events, pressure_failures, pressure_trimmed_bytes,
      pressure_released_bytes;
} twin__counters;

/* A context. A backend reads `device` (resolved before open) and owns `backend`; every other
 * field is core's. */
struct twin_context {
  /* Stored when the context is made: whether the backend has device memory of its own, and
   * the layout of the buffers twin allocates (TWIN__HOST_ONLY exactly when !has_device). */
  bool has_device;
  twin__layout layout;
  size_t host_limit, device_limit; /* budgets in bytes; 0: none */
  bool spill;                      /* spill under device memory pressure (TWIN_SPILL_AUTO) */
  pthread_mutex_t lock;            /* guards the list of live buffers */
  /* The live buffers (storage): `listed`, newest first, under lock, and those made since the
   * last walk, which wait in `fresh`, stacks a new buffer joins without the lock, one per slot
   * of threads (ground.h) and a cache line apart; a walk starts with twin__buffers_first, which
   * moves them into the list. */
  struct twin__buffer *listed;
  struct {
    _Atomic(struct twin__buffer *) top;
    char apart[64 - sizeof(void *)];
  } fresh[TWIN__SLOTS];
  /* Every buffer made and dropped moves refs: apart from the fields above, which those threads
   * read. */
  atomic_size_t refs; /* the application's references plus one per live buffer */
  /* The application's references only: a count, not the context's life (which refs governs),
   * so it may come back from 0 when the application references a context its arrays keep. */
  atomic_size_t user_refs;
  /* Written by threads at work, like refs. The device-use clock: each device access or launch
   * stamps its buffer with the next tick, so spilling finds the least recently used device copies
   * without keeping a list. */
  atomic_uint_least64_t device_tick;
  /* Numbers the runs of the spill step, so one run tries each buffer once. */
  atomic_uint_least64_t spill_epoch;
  atomic_bool leak_reported;   /* the live report was printed at the last user unref */
  atomic_bool borrowed_warned; /* a retained borrowed device handle was reported */
  twin_leak_fn leak_fn;        /* replaces printing the leak report, when set */
  void *leak_user;
  const struct twin_backend_ops *ops;
  void *backend; /* the backend's own state, owned by ops->close */
  twin_device_info device;
  twin__counters counters;
  /* User programs built on this context (the program cache), kept until the context closes so
   * that building the same source and options again is a lookup. A spinlock held only to walk
   * or link the list, never across a build. */
  atomic_bool programs_lock;
  struct twin_program *programs;
};

/* ---- Life (context.c) ---- */

/* A buffer's reference on its context, apart from the application's own (user_refs). */
twin_context *twin__context_hold(twin_context *ctx);
void twin__context_release(twin_context *ctx);

/* The checks of what a context's device can do, with the message every public call gives:
 * "who: the NAME backend has no device memory" (TWIN_ERR_UNSUPPORTED) unless ctx has device
 * memory; "who: device \"NAME\" has no fp64 support for an f64 array" (TWIN_ERR_UNSUPPORTED)
 * for an f64 dtype on a device without fp64. who is the start of the message: the public call,
 * or "argument 2". */
twin_status twin__check_device(const twin_context *ctx, const char *who);
twin_status twin__check_fp64(const twin_context *ctx, twin_dtype dtype, const char *who);

/* The two calls a context makes upward, at its teardown, into the layers that hang objects on
 * it: the leak report at the application's last reference (report.c), and freeing the cached
 * user programs when the last reference of all goes, before the backend closes (the program
 * cache). Each is a teardown hook of an ownership cycle: the context owns the list, and the
 * objects in it hold the context. */
void twin__report_leak(twin_context *ctx);
void twin__programs_release(twin_context *ctx);

/* ---- Counters and budgets (stats.c) ---- */

/* Counts n more live bytes on a side (raising its peak) if that stays within the context's
 * budget for the side; false, counting nothing, if not. twin__budget_give counts them off. */
bool twin__budget_take(twin_context *ctx, twin__side_id side, size_t n);
void twin__budget_give(twin_context *ctx, twin__side_id side, size_t n);
/* Counts n more live bytes on a side whatever the budget: memory the application lent twin,
 * which exists already. twin__budget_give counts them off. */
void twin__budget_count(twin_context *ctx, twin__side_id side, size_t n);
/* Live bytes of a side now (zero-copy memory is host memory). */
size_t twin__live_bytes(const twin_context *ctx, twin__side_id side);
/* Live buffers, summed over the slots: exact when no thread is making or dropping one, never
 * below 0 meanwhile. */
size_t twin__live_buffers(const twin_context *ctx);
void twin__count_transfer(twin_context *ctx, bool to_device, size_t nbytes);
/* Adds n to one of the memory pressure counters of ctx->counters. */
void twin__count_pressure(atomic_uint_least64_t *counter, uint64_t n);

#endif /* TWIN_CONTEXT_H */

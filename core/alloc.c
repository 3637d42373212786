/* The library's host allocator hooks, and the objects each thread keeps for reuse. */
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

#include "ground.h"

static void *aligned_default(size_t alignment, size_t size) {
  void *p = NULL;
  return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

twin__allocator twin__host_alloc = {
    .malloc_fn = malloc,
    .aligned_fn = aligned_default,
    .free_fn = free,
};

void *twin__malloc(size_t size) {
  return atomic_load_explicit(&twin__host_alloc.malloc_fn, memory_order_relaxed)(size ? size : 1);
}

void *twin__calloc(size_t count, size_t size) {
  size_t total;
  if (twin__mul_overflows(count, size, &total))
    return NULL;
  void *p = twin__malloc(total);
  if (p)
    memset(p, 0, total);
  return p;
}

void *twin__aligned(size_t alignment, size_t size) {
  twin__aligned_fn fn = atomic_load_explicit(&twin__host_alloc.aligned_fn, memory_order_relaxed);
  return fn(alignment, size ? size : 1);
}

void twin__free(void *p) {
  if (p)
    atomic_load_explicit(&twin__host_alloc.free_fn, memory_order_relaxed)(p);
}

char *twin__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = twin__malloc(n);
  if (copy)
    memcpy(copy, s, n);
  return copy;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *twin__alloc_block(size_t size) {
  if (size < HUGE_PAGE)
    return twin__aligned(size >= 4096 ? 4096 : 128, size);
  /* First-touching fresh 4 KiB pages costs ~12 us each; transparent huge pages cut that ~40x.
   * The advice is best effort: a kernel without THP keeps ordinary pages. */
  void *p = twin__aligned(HUGE_PAGE, size);
#ifdef MADV_HUGEPAGE
  if (p)
    madvise(p, size & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
  return p;
}

void twin__spin_wait(atomic_flag *lock) {
  do
    sched_yield(); /* held for a few instructions; yield rather than burn the core */
  while (atomic_flag_test_and_set_explicit(lock, memory_order_acquire));
}

/* ---- Objects kept for reuse ---- */

#if defined(__SANITIZE_ADDRESS__)
#define KEEP_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_MAX 0
#endif
#endif
#ifndef KEEP_MAX
#define KEEP_MAX 8 /* per kind and thread */
#endif

typedef struct kept {
  struct kept *next;
} kept;

typedef struct keep {
  kept *top[TWIN__KEEP_KINDS];
  unsigned count[TWIN__KEEP_KINDS];
  bool registered; /* with keep_key, so that the thread's exit frees what it keeps */
} keep;

/* initial-exec: one load from the thread pointer, instead of a __tls_get_addr call per use;
 * the few bytes fit the static TLS room glibc keeps for libraries loaded with dlopen. */
static _Thread_local keep kept_here __attribute__((tls_model("initial-exec")));
static pthread_key_t keep_key;
static pthread_once_t keep_once = PTHREAD_ONCE_INIT;
static bool keep_key_made;

static void free_kept(void *arg) {
  keep *k = arg;
  for (int kind = 0; kind < TWIN__KEEP_KINDS; kind++)
    while (k->top[kind]) {
      kept *p = k->top[kind];
      k->top[kind] = p->next;
      free(p); /* only objects free would have taken are kept */
    }
  memset(k->count, 0, sizeof k->count);
}

static void make_keep_key(void) {
  keep_key_made = pthread_key_create(&keep_key, free_kept) == 0;
}

void *twin__take(twin__keep_kind kind, size_t size) {
  kept *p = kept_here.top[kind];
  if (!p || atomic_load_explicit(&twin__host_alloc.malloc_fn, memory_order_relaxed) != malloc)
    return twin__malloc(size);
  kept_here.top[kind] = p->next;
  kept_here.count[kind]--;
  return p;
}

/* Registers this thread's kept objects to be freed when it exits; false if that failed. */
static bool register_thread(void) {
  pthread_once(&keep_once, make_keep_key);
  kept_here.registered = keep_key_made && pthread_setspecific(keep_key, &kept_here) == 0;
  return kept_here.registered;
}

void twin__give(twin__keep_kind kind, void *p) {
  if (kept_here.count[kind] >= KEEP_MAX ||
      atomic_load_explicit(&twin__host_alloc.free_fn, memory_order_relaxed) != free ||
      (!kept_here.registered && !register_thread())) {
    twin__free(p);
    return;
  }
  kept *k = p;
  k->next = kept_here.top[kind];
  kept_here.top[kind] = k;
  kept_here.count[kind]++;
}

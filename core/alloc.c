/* The library's host allocator hooks, the objects each thread keeps for reuse, and the memory
 * blocks of buffers: small ones from the C heap, large ones mapped from the operating system,
 * so that freeing them gives them back at once (glibc keeps freed heap blocks below its mmap
 * threshold, which rises by itself up to 32 MiB after a large block is freed, so whether heap
 * memory went back would depend on what the program freed before). */
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#include "ground.h"

static void *aligned_default(size_t alignment, size_t size) {
  void *p = NULL;
  return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static size_t page_size(void) {
  return (size_t)sysconf(_SC_PAGESIZE);
}

/* Maps alignment - page more than asked where the kernel's page alignment is not enough, and
 * unmaps the slack before and after the aligned part: one mapping of exactly the pages asked. */
static void *map_default(size_t alignment, size_t size) {
  size_t page = page_size(), len = (size + page - 1) & ~(page - 1);
  size_t slack = alignment > page ? alignment - page : 0;
  if (len < size || len + slack < len)
    return NULL; /* no address space is that large */
  char *p = mmap(NULL, len + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  char *start = (char *)(((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1));
  if (start > p)
    munmap(p, (size_t)(start - p));
  if (p + len + slack > start + len)
    munmap(start + len, (size_t)(p + len + slack - (start + len)));
  return start;
}

static void unmap_default(void *p, size_t size) {
  munmap(p, size);
}

twin__allocator twin__host_alloc = {
    .malloc_fn = malloc,
    .aligned_fn = aligned_default,
    .free_fn = free,
    .map_fn = map_default,
    .unmap_fn = unmap_default,
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
  if (size < TWIN__MAP_MIN)
    return twin__aligned(size >= 4096 ? 4096 : 128, size);
  twin__map_fn map = atomic_load_explicit(&twin__host_alloc.map_fn, memory_order_relaxed);
  if (size < HUGE_PAGE)
    return map(page_size(), size);
  /* First-touching fresh 4 KiB pages costs ~12 us each; transparent huge pages cut that ~40x.
   * The advice is best effort: a kernel without THP keeps ordinary pages. */
  void *p = map(HUGE_PAGE, size);
#ifdef MADV_HUGEPAGE
  if (p)
    madvise(p, size & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
  return p;
}

void twin__free_block(void *p, size_t size) {
  if (!p)
    return;
  if (size < TWIN__MAP_MIN)
    twin__free(p);
  else
    atomic_load_explicit(&twin__host_alloc.unmap_fn, memory_order_relaxed)(p, size);
}

/* A hint to the core that this is a wait loop (it slows the loop down and lets a sibling
 * hardware thread run). */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void twin__spin_wait(atomic_bool *lock) {
  for (unsigned spins = 0;; spins++) {
    /* Test before the exchange: waiting threads read the line, and only the free lock's
     * exchange writes it, so the holder's unlock is not held up. */
    if (!atomic_load_explicit(lock, memory_order_relaxed) &&
        !atomic_exchange_explicit(lock, true, memory_order_acquire))
      return;
    if (spins < 100)
      cpu_relax();
    else
      sched_yield(); /* the holder is likely preempted: let it run */
  }
}

/* ---- Objects kept for reuse (the fast paths are in ground.h) ---- */

_Thread_local twin__keep twin__kept __attribute__((tls_model("initial-exec")));
static pthread_key_t keep_key;
static pthread_once_t keep_once = PTHREAD_ONCE_INIT;
static bool keep_key_made;

static void free_kept(void *arg) {
  twin__keep *k = arg;
  for (int kind = 0; kind < TWIN__KEEP_KINDS; kind++)
    while (k->top[kind]) {
      void *p = k->top[kind];
      k->top[kind] = *(void **)p;
      free(p); /* only objects free would have taken are kept */
    }
  memset(k->count, 0, sizeof k->count);
}

static void make_keep_key(void) {
  keep_key_made = pthread_key_create(&keep_key, free_kept) == 0;
}

/* The thread that ends the program frees what it keeps (the others' went as they exited). */
__attribute__((destructor)) static void free_kept_at_exit(void) {
  free_kept(&twin__kept);
}

bool twin__keep_register(void) {
  pthread_once(&keep_once, make_keep_key);
  twin__kept.registered = keep_key_made && pthread_setspecific(keep_key, &twin__kept) == 0;
  return twin__kept.registered;
}

/* ---- Slots of threads ---- */

_Thread_local unsigned twin__thread_number __attribute__((tls_model("initial-exec")));
static atomic_uint threads_numbered;

unsigned twin__thread_number_assign(void) {
  twin__thread_number = atomic_fetch_add_explicit(&threads_numbered, 1, memory_order_relaxed) + 1;
  if (!twin__thread_number) /* after 2^32 threads: skip 0, which means unassigned */
    twin__thread_number = 1;
  return twin__thread_number;
}

/* The library's host allocator hooks, and the memory blocks of buffers: small ones from the C
 * heap, large ones mapped from the operating system, so that freeing them gives them back at
 * once (glibc keeps freed heap blocks below its mmap threshold, which rises by itself up to
 * 32 MiB after a large block is freed, so whether heap memory went back would depend on what
 * the program freed before). */
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

void twin__spin_lock(atomic_flag *lock) {
  while (atomic_flag_test_and_set_explicit(lock, memory_order_acquire))
    sched_yield(); /* held for a few instructions; yield rather than burn the core */
}

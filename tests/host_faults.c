#include "host_faults.h"

#include <pthread.h>
#include <string.h>

#include "core/internal.h"

atomic_int host_calls;
atomic_long host_live;
atomic_int host_maps;
atomic_long host_maps_live;
atomic_int host_map_failures;

static twin__allocator real;
static bool installed;
static atomic_int fail_at;
static atomic_bool fail_blocks;

/* Guards the lists below: blocks of at least HOST_LARGE, and blocks watched for their free. */
static pthread_mutex_t large_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  void *p;
  size_t n;
} large[64];
static struct {
  void *p;
  atomic_int *freed;
} watched[16];

static void note_large(void *p, size_t n) {
  if (!p || n < HOST_LARGE)
    return;
  pthread_mutex_lock(&large_lock);
  for (size_t i = 0; i < sizeof large / sizeof large[0]; i++)
    if (!large[i].p) {
      large[i].p = p;
      large[i].n = n;
      break;
    }
  pthread_mutex_unlock(&large_lock);
}

static void forget_large(void *p) {
  pthread_mutex_lock(&large_lock);
  for (size_t i = 0; p && i < sizeof large / sizeof large[0]; i++)
    if (large[i].p == p)
      large[i].p = NULL;
  for (size_t i = 0; p && i < sizeof watched / sizeof watched[0]; i++)
    if (watched[i].p == p) {
      atomic_fetch_add(watched[i].freed, 1);
      watched[i].p = NULL;
    }
  pthread_mutex_unlock(&large_lock);
}

static bool should_fail(void) {
  return atomic_fetch_add(&host_calls, 1) + 1 == atomic_load(&fail_at);
}

static void *hooked_malloc(size_t n) {
  if (should_fail())
    return NULL;
  void *p = real.malloc_fn(n);
  if (p)
    atomic_fetch_add(&host_live, 1);
  note_large(p, n);
  return p;
}

static void *hooked_aligned(size_t alignment, size_t n) {
  if (should_fail() || atomic_load(&fail_blocks))
    return NULL;
  void *p = real.aligned_fn(alignment, n);
  if (p)
    atomic_fetch_add(&host_live, 1);
  note_large(p, n);
  return p;
}

/* A mapping is an allocation like any other: counted, failed when its number comes, or when
 * blocks fail. */
static void *hooked_map(size_t alignment, size_t n) {
  if (should_fail() || atomic_load(&fail_blocks)) {
    atomic_fetch_add(&host_map_failures, 1);
    return NULL;
  }
  void *p = real.map_fn(alignment, n);
  if (p) {
    atomic_fetch_add(&host_live, 1);
    atomic_fetch_add(&host_maps, 1);
    atomic_fetch_add(&host_maps_live, 1);
  }
  note_large(p, n);
  return p;
}

static void hooked_unmap(void *p, size_t n) {
  atomic_fetch_sub(&host_live, 1);
  atomic_fetch_sub(&host_maps_live, 1);
  forget_large(p);
  real.unmap_fn(p, n);
}

static void hooked_free(void *p) {
  if (p) {
    atomic_fetch_sub(&host_live, 1);
    forget_large(p);
  }
  real.free_fn(p);
}

void host_inject(int n) {
  if (!installed)
    twin__allocator_copy(&real, &twin__host_alloc);
  installed = true;
  atomic_store(&host_calls, 0);
  atomic_store(&fail_at, n);
  atomic_store(&fail_blocks, false);
  atomic_store(&host_live, 0);
  atomic_store(&host_maps, 0);
  atomic_store(&host_maps_live, 0);
  atomic_store(&host_map_failures, 0);
  pthread_mutex_lock(&large_lock);
  memset(large, 0, sizeof large);
  memset(watched, 0, sizeof watched);
  pthread_mutex_unlock(&large_lock);
  twin__host_alloc.malloc_fn = hooked_malloc;
  twin__host_alloc.aligned_fn = hooked_aligned;
  twin__host_alloc.free_fn = hooked_free;
  twin__host_alloc.map_fn = hooked_map;
  twin__host_alloc.unmap_fn = hooked_unmap;
}

void host_fail_blocks(void) {
  if (!installed)
    host_inject(0);
  atomic_store(&fail_blocks, true);
}

void host_restore(void) {
  if (installed)
    twin__allocator_set(&real);
  installed = false;
}

size_t host_large_live(void) {
  size_t n = 0;
  pthread_mutex_lock(&large_lock);
  for (size_t i = 0; i < sizeof large / sizeof large[0]; i++)
    if (large[i].p)
      n += large[i].n;
  pthread_mutex_unlock(&large_lock);
  return n;
}

void host_watch_free(void *p, atomic_int *freed) {
  pthread_mutex_lock(&large_lock);
  size_t i = 0;
  while (i < sizeof watched / sizeof watched[0] && watched[i].p)
    i++;
  if (i < sizeof watched / sizeof watched[0]) {
    watched[i].p = p;
    watched[i].freed = freed;
  }
  pthread_mutex_unlock(&large_lock);
}

/* Lifetime checks (TWIN_DEBUG=1, or twin_context_options.debug): released array objects are
 * poisoned instead of freed, and the public calls that take an array check it first, so a use
 * after the last twin_array_unref, or a double unref, is reported with the array's creation
 * site and stops the program instead of corrupting memory. So is a last twin_array_unref with
 * an access still open through the array (twin ends it either way), with where it began.
 *
 * Off, the checks cost one predictable branch on a global flag. On, every released array
 * object stays allocated, marked dead, in a ring of the last RING_SIZE released ones; the
 * oldest is really freed when the ring is full, so memory stays bounded (a use of an array
 * released longer ago than that is no longer caught), and the rest at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RING_SIZE 4096

atomic_bool twin__debug;
void (*twin__debug_fatal)(void) = abort;

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static twin_array *ring[RING_SIZE]; /* poisoned objects; ring[next] is the oldest when full */
static size_t ring_next, ring_count;

static void read_env(void) {
  const char *v = getenv("TWIN_DEBUG");
  if (v && *v && strcmp(v, "0") != 0)
    twin__debug_enable();
}

void twin__debug_init(void) {
  pthread_once(&env_once, read_env);
}

void twin__debug_enable(void) {
  atomic_store_explicit(&twin__debug, true, memory_order_relaxed);
}

size_t twin__debug_poisoned(void) {
  pthread_mutex_lock(&ring_lock);
  size_t n = ring_count;
  pthread_mutex_unlock(&ring_lock);
  return n;
}

bool twin__debug_holds(const void *p) {
  bool found = false;
  pthread_mutex_lock(&ring_lock);
  for (size_t i = 0; i < ring_count && !found; i++)
    found = ring[i] == p;
  pthread_mutex_unlock(&ring_lock);
  return found;
}

void twin__debug_poison(twin_array *a) {
  a->magic = TWIN__ARRAY_POISONED;
  a->buf = NULL; /* gone: an unchecked use faults at once rather than touching freed memory */
  twin_array *oldest = NULL;
  pthread_mutex_lock(&ring_lock);
  if (ring_count == RING_SIZE)
    oldest = ring[ring_next];
  else
    ring_count++;
  ring[ring_next] = a;
  ring_next = (ring_next + 1) % RING_SIZE;
  pthread_mutex_unlock(&ring_lock);
  twin__free(oldest);
}

/* Frees what the ring still holds when the program ends. */
__attribute__((destructor)) static void free_ring(void) {
  pthread_mutex_lock(&ring_lock);
  for (size_t i = 0; i < RING_SIZE; i++) {
    twin__free(ring[i]);
    ring[i] = NULL;
  }
  ring_count = ring_next = 0;
  pthread_mutex_unlock(&ring_lock);
}

static void describe(const twin_array *a) {
  if (a->site.file)
    fprintf(stderr, "made at %s:%d", a->site.file, a->site.line);
  else
    fprintf(stderr, "made by a call that recorded no file and line (use the twin.h macros)");
  const char *dtype = twin_dtype_name(a->dtype);
  fprintf(stderr, " as %s[", dtype ? dtype : "?");
  for (int i = 0; i < a->ndim && i < TWIN_MAX_DIMS; i++)
    fprintf(stderr, i ? "x%zu" : "%zu", a->shape[i]);
  fprintf(stderr, "]");
  if (a->owner[0] && memchr(a->owner, '\0', sizeof a->owner))
    fprintf(stderr, ", owner \"%s\"", a->owner);
}

void twin__debug_report_open(const twin_array *a, const char *what) {
  fprintf(stderr,
          "twin: TWIN_DEBUG: twin_array_unref(%p): the last reference to this array went while "
          "it had accesses open, never ended (%s); twin ended them; the array was ",
          (const void *)a, what);
  describe(a);
  fprintf(stderr, "\n");
  fflush(stderr);
}

void twin__debug_check_slow(const twin_array *a, const char *fn) {
  if (!a || a->magic == TWIN__ARRAY_ALIVE)
    return;
  if (a->magic == TWIN__ARRAY_POISONED) {
    fprintf(stderr,
            "twin: TWIN_DEBUG: %s(%p): this array was already released (a use after "
            "its last twin_array_unref, or a double unref); it was ",
            fn, (const void *)a);
    describe(a);
  } else {
    fprintf(stderr,
            "twin: TWIN_DEBUG: %s(%p): not a live twin array (never made by twin, or "
            "released before the last %d releases twin keeps poisoned)",
            fn, (const void *)a, RING_SIZE);
  }
  fprintf(stderr, "\n");
  fflush(stderr);
  twin__debug_fatal();
}

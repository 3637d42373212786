/* The debug switch (TWIN_DEBUG=1, or twin_context_options.debug) and the ring of released
 * objects. With it on, released array objects are poisoned instead of freed and the public
 * calls that take an array check it first (array.c), so a use after the last twin_array_unref,
 * or a double unref, is reported with the array's creation site and stops the program instead
 * of corrupting memory.
 *
 * Off, the checks cost one predictable branch on a global flag. On, every released object
 * stays allocated, marked dead by its owner, in a ring of the last TWIN__DEBUG_RING released ones;
 * the oldest is really freed when the ring is full, so memory stays bounded (a use of an object
 * released longer ago than that is no longer caught), and the rest at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ground.h"

atomic_bool twin__debug;
void (*twin__debug_fatal)(void) = abort;

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ring[TWIN__DEBUG_RING]; /* poisoned objects; ring[next] is the oldest when full */
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

void twin__debug_keep(void *dead) {
  void *oldest = NULL;
  pthread_mutex_lock(&ring_lock);
  if (ring_count == TWIN__DEBUG_RING)
    oldest = ring[ring_next];
  else
    ring_count++;
  ring[ring_next] = dead;
  ring_next = (ring_next + 1) % TWIN__DEBUG_RING;
  pthread_mutex_unlock(&ring_lock);
  twin__free(oldest);
}

/* Frees what the ring still holds when the program ends. */
__attribute__((destructor)) static void free_ring(void) {
  pthread_mutex_lock(&ring_lock);
  for (size_t i = 0; i < TWIN__DEBUG_RING; i++) {
    twin__free(ring[i]);
    ring[i] = NULL;
  }
  ring_count = ring_next = 0;
  pthread_mutex_unlock(&ring_lock);
}

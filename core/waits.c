/* Waiting for accesses that other threads hold, without deadlock. A request that conflicts
 * only with other threads' accesses sleeps on its buffer's condition until one of the
 * buffer's accesses ends, then looks again. Before it sleeps, it looks in a process-wide table
 * of waiting threads for a wait-for cycle: a thread it would wait for that waits (directly or
 * through other threads) for an access this thread holds. Sleeping then would never end, so
 * the request is refused instead.
 *
 * The table holds each waiting thread's entry (on that thread's stack): the buffer it waits on
 * and the records of the accesses blocking it, all of them accesses of that buffer. An entry
 * never names an access that has ended: an end on a buffer empties the entries of the threads
 * waiting on it (under the table's lock, before the record can be freed or reused), and those
 * threads, woken, enter again with a fresh check. So every edge in the table is real, and the
 * thread whose entry closes a cycle finds it: the check and the entry are made under one lock.
 *
 * Lock order: a buffer's lock, then the table's. The table's lock is held for a list walk
 * only, never across a wait or a transfer. */
#include "storage.h"

typedef struct waiter {
  struct waiter *next;
  pthread_t thread;
  const twin__buffer *buf;
  const twin__access *const *on; /* the blocking accesses, all of other threads */
  size_t n;                      /* 0 once an access of buf ended: the thread looks again */
  unsigned long mark;            /* the last search that visited it */
} waiter;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static waiter *table;
static unsigned long search; /* numbers the cycle searches, under table_lock */

/* With table_lock held: the entry of a waiting thread, or NULL when it does not wait. */
static waiter *entry_of(pthread_t t) {
  for (waiter *w = table; w; w = w->next)
    if (pthread_equal(w->thread, t))
      return w;
  return NULL;
}

/* With table_lock held: does thread t wait, directly or through other waiting threads, for an
 * access `me` holds? Stores that access in *ours. Visits each entry once per search. */
static bool reaches(pthread_t t, pthread_t me, const twin__access **ours) {
  waiter *w = entry_of(t);
  if (!w || w->mark == search)
    return false;
  w->mark = search;
  for (size_t i = 0; i < w->n; i++) {
    const twin__access *x = w->on[i];
    if (pthread_equal(x->thread, me)) {
      *ours = x;
      return true;
    }
    if (reaches(x->thread, me, ours))
      return true;
  }
  return false;
}

/* With table_lock held: would `self` close a wait-for cycle? Copies the two ends if so. */
static bool closes_cycle(const waiter *self, twin__access *theirs, twin__access *ours) {
  const twin__access *found = NULL;
  search++;
  for (size_t i = 0; i < self->n; i++)
    if (reaches(self->on[i]->thread, self->thread, &found)) {
      *theirs = *self->on[i];
      *ours = *found;
      return true;
    }
  return false;
}

static void unlink_entry(waiter *self) {
  waiter **p = &table;
  while (*p != self)
    p = &(*p)->next;
  *p = self->next;
}

twin_status twin__wait_for(twin__buffer *b, const twin__access *const *blockers, size_t n,
                           twin__access *theirs, twin__access *ours) {
  waiter self = {NULL, pthread_self(), b, blockers, n, 0};
  pthread_mutex_lock(&table_lock);
  bool cycle = closes_cycle(&self, theirs, ours);
  if (!cycle) {
    self.next = table;
    table = &self;
  }
  pthread_mutex_unlock(&table_lock);
  if (cycle)
    return TWIN_ERR_BUSY;
  b->waiting++;
  pthread_cond_wait(&b->access_ended, &b->lock);
  b->waiting--;
  pthread_mutex_lock(&table_lock);
  unlink_entry(&self);
  pthread_mutex_unlock(&table_lock);
  return TWIN_OK;
}

void twin__wake(twin__buffer *b) {
  if (!b->waiting)
    return;
  pthread_mutex_lock(&table_lock);
  for (waiter *w = table; w; w = w->next)
    if (w->buf == b)
      w->n = 0; /* its records may be gone: it names them again once it runs */
  pthread_mutex_unlock(&table_lock);
  pthread_cond_broadcast(&b->access_ended);
}

size_t twin__access_waiting(void) {
  size_t n = 0;
  pthread_mutex_lock(&table_lock);
  for (waiter *w = table; w; w = w->next)
    n++;
  pthread_mutex_unlock(&table_lock);
  return n;
}

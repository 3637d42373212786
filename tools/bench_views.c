/* View and array creation cost: no device work, one small host object per view (and a buffer
 * object per new array), against a malloc+free of an object the size of an array object in the
 * same run; with one thread, and with two threads at once working on one buffer (the view list
 * and the context's counters are shared) and one context. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "bench.h"
#include "storage.h" /* sizeof(struct twin_array): the size of the reference's allocation */

enum op { SLICE, TRANSPOSE, NEW, MALLOC, OPS };

static const char *const op_names[OPS] = {
    [SLICE] = "slice a[:, 100] + unref",
    [TRANSPOSE] = "transpose + unref",
    [NEW] = "array_new (16 f32, lazy) + unref",
    [MALLOC] = "malloc + free (the reference)",
};

typedef struct job {
  enum op op;
  twin_context *ctx;
  twin_array *base; /* the one buffer every view is made of */
  long iters;
  pthread_barrier_t *start;
} job;

static void run_op(const job *j) {
  const twin_slice col[] = {TWIN_ALL, {100, 101, 1}};
  const size_t small[] = {16};
  void *(*volatile alloc)(size_t) = malloc; /* volatile: the compiler must not elide it */
  twin_array *v;
  for (long i = 0; i < j->iters; i++) {
    switch (j->op) {
    case SLICE:
      twin_array_slice(j->base, col, &v);
      break;
    case TRANSPOSE:
      twin_array_transpose(j->base, NULL, &v);
      break;
    case NEW:
      twin_array_new(j->ctx, TWIN_F32, 1, small, &v);
      break;
    default:
      free(alloc(sizeof(struct twin_array)));
      continue;
    }
    twin_array_unref(v);
  }
}

/* CPU time of the calling thread, in seconds: on a shared machine, wall time would also count
 * the time slices other processes take from it. */
static double thread_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct worker {
  job job;
  double ns; /* per operation */
} worker;

static void *thread_main(void *arg) {
  worker *w = arg;
  if (w->job.start)
    pthread_barrier_wait(w->job.start);
  double t0 = thread_now();
  run_op(&w->job);
  w->ns = (thread_now() - t0) * 1e9 / (double)w->job.iters;
  return NULL;
}

/* CPU ns per operation in each thread, with `threads` threads (1 or 2) doing iters each at
 * once (the mean of the two). */
static double time_op(job j, int threads) {
  worker w[2] = {{j, 0}, {j, 0}};
  if (threads == 1) {
    thread_main(&w[0]);
    return w[0].ns;
  }
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    w[i].job.start = &start;
    if (pthread_create(&t[i], NULL, thread_main, &w[i]) != 0)
      bench_check(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_create");
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  pthread_barrier_destroy(&start);
  return (w[0].ns + w[1].ns) / 2;
}

enum { REPS = 31 };

/* Medians over REPS rounds, each round timing every operation once, so that a slow spell of
 * the machine falls on all of them alike; a round takes a few ms, shorter than a time slice of
 * a busy machine's scheduler, so most rounds run undisturbed. */
static void measure(twin_context *ctx, twin_array *base, int threads, double median[OPS]) {
  double t[OPS][REPS];
  for (int r = 0; r < REPS; r++)
    for (int op = 0; op < OPS; op++) {
      job j = {.op = op, .ctx = ctx, .base = base, .iters = op == NEW ? 10000 : 20000};
      t[op][r] = time_op(j, threads);
    }
  for (int op = 0; op < OPS; op++) {
    qsort(t[op], REPS, sizeof(double), bench_cmp_double);
    median[op] = t[op][REPS / 2];
  }
}

void bench_views(twin_context *ctx) {
  size_t shape[] = {4096, 4096};
  twin_array *a;
  bench_check(twin_array_new(ctx, TWIN_F32, 2, shape, &a), "twin_array_new");
  double one[OPS], two[OPS];
  measure(ctx, a, 1, one);
  measure(ctx, a, 2, two);
  twin_array_unref(a);
  printf("\n## Views and arrays (host objects only; no device work)\n\n");
  printf("Against malloc+free of %zu bytes (an array object), in the same run; 2 threads: each\n"
         "makes and drops views of one buffer (or arrays of one context) at once. CPU ns per\n"
         "operation in each thread (wall time would count other processes), medians of %d\n"
         "rounds.\n\n",
         sizeof(struct twin_array), REPS);
  printf("| operation | 1 thread, ns | x malloc+free | 2 threads, ns | x malloc+free |\n");
  printf("| --- | --- | --- | --- | --- |\n");
  for (int op = 0; op < OPS; op++)
    printf("| %s | %.1f | %.2f | %.1f | %.2f |\n", op_names[op], one[op], one[op] / one[MALLOC],
           two[op], two[op] / two[MALLOC]);
}

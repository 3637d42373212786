/* View and array creation cost: no device work, one small host object per view (and a buffer
 * object per new array), against a malloc+free of an object the size of an array object in the
 * same run; with one thread, and with two threads at once working on one buffer (the view list
 * and the context's counters are shared) and one context. */
#include <pthread.h>
#include <stdatomic.h>
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
  atomic_int *start; /* two threads: both spin until both run, so that they start at once */
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
  double ns;          /* CPU time per operation */
  double cpu, t0, t1; /* CPU seconds, and the wall clock at its start and end */
} worker;

static void *thread_main(void *arg) {
  worker *w = arg;
  if (w->job.start) {
    atomic_fetch_add(w->job.start, 1);
    while (atomic_load(w->job.start) < 2)
      ;
  }
  w->t0 = bench_now();
  double c0 = thread_now();
  run_op(&w->job);
  w->cpu = thread_now() - c0;
  w->t1 = bench_now();
  w->ns = w->cpu * 1e9 / (double)w->job.iters;
  return NULL;
}

/* One timing: CPU ns per operation in each thread (the mean of the two), and for two threads
 * the share of the time both ran at once: their CPU time over twice the wall time from the
 * first start to the last end (1: side by side throughout; 0.5: one after the other). */
typedef struct timing {
  double ns, together;
} timing;

/* Times iters operations in each of `threads` threads (1 or 2) at once. */
static timing time_op(job j, int threads) {
  worker w[2] = {{.job = j}, {.job = j}};
  if (threads == 1) {
    thread_main(&w[0]);
    return (timing){w[0].ns, 1};
  }
  atomic_int start = 0;
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    w[i].job.start = &start;
    if (pthread_create(&t[i], NULL, thread_main, &w[i]) != 0)
      bench_check(TWIN_ERR_OUT_OF_HOST_MEMORY, "pthread_create");
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  double wall = (w[0].t1 > w[1].t1 ? w[0].t1 : w[1].t1) - (w[0].t0 < w[1].t0 ? w[0].t0 : w[1].t0);
  return (timing){(w[0].ns + w[1].ns) / 2, (w[0].cpu + w[1].cpu) / (2 * wall)};
}

enum { REPS = 31 };

static double median_of(double *x) {
  qsort(x, REPS, sizeof(double), bench_cmp_double);
  return x[REPS / 2];
}

/* Medians over REPS rounds, each round timing every operation once, so that a slow spell of
 * the machine falls on all of them alike; a round takes a few ms, shorter than a time slice of
 * a busy machine's scheduler, so most rounds run undisturbed. */
static void measure(twin_context *ctx, twin_array *base, int threads, timing median[OPS]) {
  double ns[OPS][REPS], together[OPS][REPS];
  for (int r = 0; r < REPS; r++)
    for (int op = 0; op < OPS; op++) {
      job j = {.op = op, .ctx = ctx, .base = base, .iters = op == NEW ? 10000 : 20000};
      timing t = time_op(j, threads);
      ns[op][r] = t.ns;
      together[op][r] = t.together;
    }
  for (int op = 0; op < OPS; op++)
    median[op] = (timing){median_of(ns[op]), median_of(together[op])};
}

void bench_views(twin_context *ctx) {
  size_t shape[] = {4096, 4096};
  twin_array *a;
  bench_check(twin_array_new(ctx, TWIN_F32, 2, shape, &a), "twin_array_new");
  timing one[OPS], two[OPS];
  measure(ctx, a, 1, one);
  measure(ctx, a, 2, two);
  twin_array_unref(a);
  printf("\n## Views and arrays (host objects only; no device work)\n\n");
  printf("Against malloc+free of %zu bytes (an array object), in the same run; 2 threads: each\n"
         "makes and drops views of one buffer (or arrays of one context) at once. CPU ns per\n"
         "operation in each thread (wall time would count other processes), medians of %d\n"
         "rounds; \"together\": the share of the time both threads ran at once.\n\n",
         sizeof(struct twin_array), REPS);
  printf("| operation | 1 thread, ns | x malloc+free | 2 threads, ns | x malloc+free | together "
         "|\n");
  printf("| --- | --- | --- | --- | --- | --- |\n");
  for (int op = 0; op < OPS; op++)
    printf("| %s | %.1f | %.2f | %.1f | %.2f | %.0f%% |\n", op_names[op], one[op].ns,
           one[op].ns / one[MALLOC].ns, two[op].ns, two[op].ns / two[MALLOC].ns,
           100 * two[op].together);
}

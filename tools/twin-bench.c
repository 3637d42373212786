/* twin-bench: the project's benchmark program. Every figure is printed beside a reference
 * measured in the same run (memcpy, memset, or raw OpenCL doing the same job), because
 * absolute numbers on shared machines move by 2x between runs while same-run ratios hold.
 * Usage: twin-bench [device spec]   (default: TWIN_DEVICE, else the default device) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twin.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(twin_status s, const char *what) {
  if (s != TWIN_OK) {
    fprintf(stderr, "twin-bench: %s: %s\n", what, twin_last_error());
    exit(1);
  }
}

/* Median of `reps` timings of `iters` calls each, in ns per call. */
#define TIME_NS(result, reps, iters, body)                                                     \
  do {                                                                                         \
    double t_[reps];                                                                           \
    for (int r_ = 0; r_ < (reps); r_++) {                                                      \
      double t0_ = now();                                                                      \
      for (long i_ = 0; i_ < (iters); i_++) {                                                  \
        body;                                                                                  \
      }                                                                                        \
      t_[r_] = (now() - t0_) * 1e9 / (double)(iters);                                          \
    }                                                                                          \
    qsort(t_, (reps), sizeof(double), cmp_double);                                             \
    (result) = t_[(reps) / 2];                                                                 \
  } while (0)

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Creating and dropping views: no device work, one small host object. */
static void bench_views(twin_context *ctx) {
  size_t shape[] = {4096, 4096};
  twin_array *a, *v;
  check(twin_array_new(ctx, TWIN_F32, 2, shape, &a), "twin_array_new");
  twin_slice col[] = {TWIN_ALL, {100, 101, 1}};
  double slice_ns, transpose_ns, create_ns, malloc_ns;
  TIME_NS(slice_ns, 7, 200000, {
    twin_array_slice(a, col, &v);
    twin_array_unref(v);
  });
  TIME_NS(transpose_ns, 7, 200000, {
    twin_array_transpose(a, NULL, &v);
    twin_array_unref(v);
  });
  size_t small[] = {16};
  TIME_NS(create_ns, 7, 100000, {
    twin_array_new(ctx, TWIN_F32, 1, small, &v);
    twin_array_unref(v);
  });
  /* The floor: one malloc+free of an object the size of a view. */
  void *(*volatile alloc)(size_t) = malloc; /* volatile: the compiler must not elide it */
  TIME_NS(malloc_ns, 7, 200000, free(alloc(192)));
  twin_array_unref(a);
  printf("\n## Views (host only; no device work)\n\n");
  printf("| operation | ns per op | x malloc+free |\n| --- | --- | --- |\n");
  printf("| slice a[:, 100] + unref | %.1f | %.2f |\n", slice_ns, slice_ns / malloc_ns);
  printf("| transpose + unref | %.1f | %.2f |\n", transpose_ns, transpose_ns / malloc_ns);
  printf("| array_new (16 f32, lazy) + unref | %.1f | %.2f |\n", create_ns,
         create_ns / malloc_ns);
  printf("| malloc(192) + free | %.1f | 1.00 |\n", malloc_ns);
}

int main(int argc, char **argv) {
  twin_context *ctx;
  check(twin_context_new(argc > 1 ? argv[1] : NULL, &ctx), "twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("# twin-bench %s on %s (%s / %s)\n", twin_version(), dev->spec, dev->platform,
         dev->name);
  bench_views(ctx);
  twin_context_unref(ctx);
  return 0;
}

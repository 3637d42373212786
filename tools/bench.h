/* Shared pieces of twin-bench: timing, checks, and one function per section. Each section
 * prints a markdown table whose figures are ratios against a reference measured in the same
 * run (memcpy, memset, malloc, or raw OpenCL doing the same job). */
#ifndef TWIN_BENCH_H
#define TWIN_BENCH_H

#include <stdlib.h>

#include "twin.h"
#ifdef TWIN_HAVE_OPENCL
#include "twin_opencl.h"
#endif

/* Monotonic time in seconds. */
double bench_now(void);
/* Exits with the last error when s is not TWIN_OK. */
void bench_check(twin_status s, const char *what);
int bench_cmp_double(const void *a, const void *b);

/* Median of `reps` timings of `iters` calls each, in ns per call. */
#define TIME_NS(result, reps, iters, body)                                                         \
  do {                                                                                             \
    double t_[reps];                                                                               \
    for (int r_ = 0; r_ < (reps); r_++) {                                                          \
      double t0_ = bench_now();                                                                    \
      for (long i_ = 0; i_ < (iters); i_++) {                                                      \
        body;                                                                                      \
      }                                                                                            \
      t_[r_] = (bench_now() - t0_) * 1e9 / (double)(iters);                                        \
    }                                                                                              \
    qsort(t_, (reps), sizeof(double), bench_cmp_double);                                           \
    (result) = t_[(reps) / 2];                                                                     \
  } while (0)

/* Median wall time in seconds of `reps` runs of body. */
#define TIME_S(result, reps, body)                                                                 \
  do {                                                                                             \
    double t_[reps];                                                                               \
    for (int r_ = 0; r_ < (reps); r_++) {                                                          \
      double t0_ = bench_now();                                                                    \
      body;                                                                                        \
      t_[r_] = bench_now() - t0_;                                                                  \
    }                                                                                              \
    qsort(t_, (reps), sizeof(double), bench_cmp_double);                                           \
    (result) = t_[(reps) / 2];                                                                     \
  } while (0)

#ifdef TWIN_HAVE_OPENCL
/* Exits when an OpenCL call of the reference code fails. */
void bench_cl_check(cl_int err, const char *what);
#endif

/* A twin array of n bytes (f32) with its memory allocated and written once. */
twin_array *bench_ready(twin_context *ctx, size_t n);

void bench_views(twin_context *ctx);                             /* bench_views.c */
void bench_handoff(twin_context *zero_copy, twin_context *copy); /* bench_memory.c */
void bench_fresh(twin_context *ctx);
int bench_rss_child(const char *spec, const char *mode);
double bench_spawn_rss(const char *self, const char *mode, const char *spec);
void bench_copy(twin_context *ctx);     /* bench_copy.c */
void bench_launch(twin_context *ctx);   /* bench_launch.c */
void bench_release(twin_context *ctx);  /* bench_release.c */
void bench_pressure(twin_context *ctx); /* bench_pressure.c */
/* bench_dropped.c: rounds of arrays dropped, each column in a child process (`--rounds MODE SPEC`)
 * started before the parent touches OpenCL. */
int bench_rounds_child(const char *spec, const char *mode);
void bench_spawn_rounds(const char *self, const char *spec);
void bench_print_rounds(void);
void bench_strided(twin_context *ctx); /* bench_strided.c */

#endif

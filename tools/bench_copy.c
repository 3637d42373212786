/* Built-in copies and fills against memcpy and memset of the same bytes: every other column
 * and a transpose of a 4096 x 4096 f32 array, and a fill of 64 MiB. On a device the copy runs
 * there (in place on a zero-copy device); the figure is the bytes written per second. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

enum { N = 4096, REPS = 7 };

/* Median seconds of a twin operation, waiting for the device each time. */
#define TIME_OP(result, ctx, call)                                                                 \
  TIME_S(result, REPS, {                                                                           \
    bench_check(call, #call);                                                                      \
    bench_check(twin_context_finish(ctx), "twin_context_finish");                                  \
  })

static double memcpy_time(size_t n) {
  char *src = malloc(n), *dst = malloc(n);
  memset(src, 1, n);
  memset(dst, 2, n);
  double t;
  TIME_S(t, REPS, memcpy(dst, src, n));
  free(src);
  free(dst);
  return t;
}

static double memset_time(size_t n) {
  char *dst = malloc(n);
  memset(dst, 2, n);
  void *(*volatile set)(void *, int, size_t) = memset; /* not elided */
  double t;
  TIME_S(t, REPS, set(dst, 3, n));
  free(dst);
  return t;
}

static void row(const char *what, size_t bytes, double t, double ref_t) {
  printf("| %s | %.2f | %.2f | %.2f |\n", what, bytes / t / 1e9, bytes / ref_t / 1e9, ref_t / t);
}

void bench_copy(twin_context *ctx) {
  size_t shape[] = {N, N}, half[] = {N, N / 2};
  twin_array *a, *cols, *dst_half, *dst_t, *t;
  bench_check(twin_array_zeros(ctx, TWIN_F32, 2, shape, &a), "twin_array_zeros");
  twin_slice every_other[] = {TWIN_ALL, {TWIN_NONE, TWIN_NONE, 2}};
  bench_check(twin_array_slice(a, every_other, &cols), "twin_array_slice");
  bench_check(twin_array_transpose(a, NULL, &t), "twin_array_transpose");
  bench_check(twin_array_zeros(ctx, TWIN_F32, 2, half, &dst_half), "twin_array_zeros");
  bench_check(twin_array_zeros(ctx, TWIN_F32, 2, shape, &dst_t), "twin_array_zeros");
  /* Warm up: the first operation builds the context's kernel program. */
  bench_check(twin_copy(dst_half, cols), "twin_copy");
  bench_check(twin_copy(dst_t, t), "twin_copy");
  bench_check(twin_context_finish(ctx), "twin_context_finish");

  size_t half_bytes = twin_array_nbytes(dst_half), full_bytes = twin_array_nbytes(dst_t);
  double cols_t, trans_t, fill_t, cp_half = memcpy_time(half_bytes);
  double cp_full = memcpy_time(full_bytes), set_full = memset_time(full_bytes);
  TIME_OP(cols_t, ctx, twin_copy(dst_half, cols));
  TIME_OP(trans_t, ctx, twin_copy(dst_t, t));
  float one = 1.0f;
  TIME_OP(fill_t, ctx, twin_fill(dst_t, &one));

  printf("\n## Built-in copy and fill, 4096 x 4096 f32 (median of %d)\n\n", REPS);
  printf("| operation | twin GB/s | reference GB/s | twin / reference |\n");
  printf("| --- | --- | --- | --- |\n");
  row("twin_copy of a[:, ::2] vs memcpy of 32 MiB", half_bytes, cols_t, cp_half);
  row("twin_copy of a.T vs memcpy of 64 MiB", full_bytes, trans_t, cp_full);
  row("twin_fill of 64 MiB vs memset", full_bytes, fill_t, set_full);
  twin_array_unref(t);
  twin_array_unref(cols);
  twin_array_unref(dst_t);
  twin_array_unref(dst_half);
  twin_array_unref(a);
}

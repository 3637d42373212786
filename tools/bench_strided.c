/* Section strided-moves: what a host read of a view of device-newer data moves in two-copy mode,
 * and how long it takes, against one transfer of the view's extent (what twin moved before
 * issue 14: a raw clEnqueueReadBuffer of the extent) and against a raw clEnqueueReadBufferRect
 * of the same elements. Views of a 4096 x 4096 f32 array (a column, a 64 x 64 block, every
 * other row, the transpose of a 512 x 512 block) and a 64^3 sub-box of a 256^3 f32 array.
 * Then 4-D views no rectangle fits (packed moves), and the crossover: raw rectangular reads
 * against raw reads of their extent, by run length. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

enum { REPS = 7 };

/* A view and the rectangle of its elements: lo, run, row pitch, rows, slice pitch, slices. */
typedef struct view_case {
  const char *name;
  int ndim;
  size_t shape[3];
  twin_slice s[3];
  bool transpose;
  size_t lo, run, row, rows, slice, slices;
} view_case;

static const view_case cases[] = {
    {"column a[:, 100]",
     2,
     {4096, 4096},
     {{TWIN_NONE, TWIN_NONE, 1}, {100, 101, 1}},
     false,
     400,
     4,
     16384,
     4096,
     0,
     1},
    {"64 x 64 block",
     2,
     {4096, 4096},
     {{1000, 1064, 1}, {2000, 2064, 1}},
     false,
     1000 * 16384 + 8000,
     256,
     16384,
     64,
     0,
     1},
    {"every other row a[::2]",
     2,
     {4096, 4096},
     {{TWIN_NONE, TWIN_NONE, 2}, {TWIN_NONE, TWIN_NONE, 1}},
     false,
     0,
     16384,
     32768,
     2048,
     0,
     1},
    {"transpose of a 512 x 512 block",
     2,
     {4096, 4096},
     {{0, 512, 1}, {0, 512, 1}},
     true,
     0,
     2048,
     16384,
     512,
     0,
     1},
    {"64^3 sub-box of 256^3",
     3,
     {256, 256, 256},
     {{64, 128, 1}, {64, 128, 1}, {64, 128, 1}},
     false,
     (64 * 65536 + 64 * 256 + 64) * 4,
     256,
     1024,
     64,
     262144,
     64},
};

static size_t extent_of(const view_case *c) {
  return (c->slices - 1) * c->slice + (c->rows - 1) * c->row + c->run;
}

static twin_array *view_of(twin_array *a, const view_case *c) {
  twin_array *v, *t;
  bench_check(twin_array_slice(a, c->s, &v), "twin_array_slice");
  if (!c->transpose)
    return v;
  bench_check(twin_array_transpose(v, NULL, &t), "twin_array_transpose");
  twin_array_unref(v);
  return t;
}

static uint64_t moved(twin_context *ctx) {
  twin_stats s;
  bench_check(twin_context_stats(ctx, &s), "twin_context_stats");
  return s.bytes_to_host + s.bytes_to_device;
}

/* Median seconds of a host read of v after the whole of a was written on the device; *bytes
 * gets the bytes one read moved. */
static double twin_read(twin_context *ctx, twin_array *a, twin_array *v, uint64_t *bytes) {
  double t[REPS];
  float one = 1.0f;
  void *p;
  for (int r = 0; r < REPS; r++) {
    bench_check(twin_fill(a, &one), "twin_fill");
    bench_check(twin_context_finish(ctx), "twin_context_finish");
    uint64_t before = moved(ctx);
    double t0 = bench_now();
    bench_check(twin_host_begin(v, TWIN_READ, &p), "twin_host_begin");
    t[r] = bench_now() - t0;
    bench_check(twin_host_end(v), "twin_host_end");
    *bytes = moved(ctx) - before;
  }
  qsort(t, REPS, sizeof t[0], bench_cmp_double);
  return t[REPS / 2];
}

#ifdef TWIN_HAVE_OPENCL
/* Host memory for the raw reads, as twin's host copies are: 2 MiB-aligned, touched once, so
 * that page faults are not what the comparison measures. */
static char *host_block(size_t n) {
  size_t align = 2u << 20;
  char *p = aligned_alloc(align, (n + align - 1) / align * align);
  if (!p) {
    fprintf(stderr, "twin-bench: out of memory\n");
    exit(1);
  }
  memset(p, 0, n);
  return p;
}

static double raw_rect(cl_command_queue q, cl_mem mem, const view_case *c, char *host) {
  size_t origin[3] = {c->lo, 0, 0}, region[3] = {c->run, c->rows, c->slices};
  double t;
  TIME_S(t, REPS,
         bench_cl_check(clEnqueueReadBufferRect(q, mem, CL_TRUE, origin, origin, region, c->row,
                                                c->slice, c->row, c->slice, host, 0, NULL, NULL),
                        "clEnqueueReadBufferRect"));
  return t;
}

static double raw_extent(cl_command_queue q, cl_mem mem, size_t lo, size_t n, char *host) {
  double t;
  TIME_S(t, REPS,
         bench_cl_check(clEnqueueReadBuffer(q, mem, CL_TRUE, lo, n, host + lo, 0, NULL, NULL),
                        "clEnqueueReadBuffer"));
  return t;
}
#endif

static void one_case(twin_context *ctx, const view_case *c) {
  twin_array *a, *v;
  bench_check(twin_array_zeros(ctx, TWIN_F32, c->ndim, c->shape, &a), "twin_array_zeros");
  v = view_of(a, c);
  uint64_t bytes;
  double t = twin_read(ctx, a, v, &bytes), t_ext = 0, t_rect = 0;
  size_t elems = twin_array_nbytes(v), ext = extent_of(c);
#ifdef TWIN_HAVE_OPENCL
  cl_command_queue q = twin_context_cl_queue(ctx);
  if (q) {
    cl_mem mem;
    size_t off;
    char *host = host_block(twin_array_nbytes(a));
    bench_check(twin_device_begin(a, TWIN_READ, &mem, &off), "twin_device_begin");
    t_rect = raw_rect(q, mem, c, host);
    t_ext = raw_extent(q, mem, c->lo, ext, host);
    bench_check(twin_device_end(a), "twin_device_end");
    free(host);
  }
#endif
  printf("| %s | %zu | %llu | %zu | %.1f | %.1f | %.2f | %.1f | %.2f |\n", c->name, elems,
         (unsigned long long)bytes, ext, t * 1e6, t_ext * 1e6, t_ext > 0 ? t_ext / t : 0,
         t_rect * 1e6, t_rect > 0 ? t_rect / t : 0);
  twin_array_unref(v);
  twin_array_unref(a);
}

/* A view no rectangle fits: every step-th element on each axis of a 64^4 f32 array (64 MiB).
 * Twin gathers it on the device when it is at most an eighth of its extent (packed moves);
 * against one raw read of its extent. */
static void packed_case(twin_context *ctx, ptrdiff_t step) {
  size_t shape[4] = {64, 64, 64, 64};
  twin_slice s[4];
  for (int i = 0; i < 4; i++)
    s[i] = (twin_slice){TWIN_NONE, TWIN_NONE, step};
  twin_array *a, *v;
  bench_check(twin_array_zeros(ctx, TWIN_F32, 4, shape, &a), "twin_array_zeros");
  bench_check(twin_array_slice(a, s, &v), "twin_array_slice");
  uint64_t bytes;
  double t = twin_read(ctx, a, v, &bytes), t_ext = 0;
  size_t last = (size_t)(63 / step * step),
         ext = (((last * 64 + last) * 64 + last) * 64 + last + 1) * 4;
#ifdef TWIN_HAVE_OPENCL
  cl_command_queue q = twin_context_cl_queue(ctx);
  if (q) {
    cl_mem mem;
    size_t off;
    char *host = host_block(twin_array_nbytes(a));
    bench_check(twin_device_begin(a, TWIN_READ, &mem, &off), "twin_device_begin");
    t_ext = raw_extent(q, mem, 0, ext, host);
    bench_check(twin_device_end(a), "twin_device_end");
    free(host);
  }
#endif
  printf("| a[::%td] on 4 axes of 64^4 | %zu | %llu | %zu | %.1f | %.1f | %.2f |\n", step,
         twin_array_nbytes(v), (unsigned long long)bytes, ext, t * 1e6, t_ext * 1e6,
         t_ext > 0 ? t_ext / t : 0);
  twin_array_unref(v);
  twin_array_unref(a);
}

#ifdef TWIN_HAVE_OPENCL
/* Raw rectangular reads of runs of `run` bytes at `density` (run / stride) over 64 MiB against
 * one read of their extent. */
static void crossover(twin_context *ctx) {
  size_t n = 64u << 20, shape[] = {n / 4};
  twin_array *a;
  bench_check(twin_array_zeros(ctx, TWIN_F32, 1, shape, &a), "twin_array_zeros");
  cl_command_queue q = twin_context_cl_queue(ctx);
  cl_mem mem;
  size_t off;
  char *host = host_block(n);
  bench_check(twin_device_begin(a, TWIN_READ, &mem, &off), "twin_device_begin");
  printf("\n| run bytes | run / stride | rect µs | extent µs | rect / extent time |\n");
  printf("| --- | --- | --- | --- | --- |\n");
  const size_t runs[] = {64, 256, 1024, 4096, 16384, 65536};
  const size_t every[] = {2, 8};
  for (size_t d = 0; d < 2; d++)
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
      view_case c = {.lo = 0, .run = runs[i], .row = runs[i] * every[d], .slice = 0, .slices = 1};
      c.rows = n / c.row;
      double tr = raw_rect(q, mem, &c, host), te = raw_extent(q, mem, 0, extent_of(&c), host);
      printf("| %zu | 1/%zu | %.0f | %.0f | %.2f |\n", runs[i], every[d], tr * 1e6, te * 1e6,
             tr / te);
    }
  bench_check(twin_device_end(a), "twin_device_end");
  free(host);
  twin_array_unref(a);
}
#endif

void bench_strided(twin_context *ctx) {
  twin_context *cp;
  twin_context_options opt = {.device = twin_context_device(ctx)->spec,
                              .coherence = TWIN_COHERENCE_COPY};
  bench_check(twin_context_new_with(&opt, &cp), "twin_context_new_with");
  if (twin_context_is_zero_copy(cp) || !twin_context_device(cp)->global_mem_bytes) {
    twin_context_unref(cp);
    return; /* no device memory: nothing ever moves */
  }
  printf("\n## Strided moves: host read of a view of device-newer data, two copies\n\n");
  printf("| view | element bytes | bytes twin moved | extent bytes | twin µs | extent read µs | "
         "extent / twin time | raw rect µs | raw rect / twin time |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    one_case(cp, &cases[i]);
  printf("\n| 4-D view (packed when at most 1/8 of its extent) | element bytes | bytes twin "
         "moved | extent bytes | twin µs | extent read µs | extent / twin time |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (ptrdiff_t step = 2; step <= 8; step *= 2)
    packed_case(cp, step);
#ifdef TWIN_HAVE_OPENCL
  if (twin_context_cl_queue(cp))
    crossover(cp);
#endif
  twin_context_unref(cp);
}

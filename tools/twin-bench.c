/* twin-bench: the project's benchmark program. Every figure is printed beside a reference
 * measured in the same run (memcpy, memset, or raw OpenCL doing the same job), because
 * absolute numbers on shared machines move by 2x between runs while same-run ratios hold.
 * Usage: twin-bench [device spec]   (default: TWIN_DEVICE, else the default device) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "twin.h"
#ifdef TWIN_HAVE_OPENCL
#include "twin_opencl.h"
#endif

extern char **environ;

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

/* Median wall time in seconds of `reps` runs of body. */
#define TIME_S(result, reps, body)                                                             \
  do {                                                                                         \
    double t_[reps];                                                                           \
    for (int r_ = 0; r_ < (reps); r_++) {                                                      \
      double t0_ = now();                                                                      \
      body;                                                                                    \
      t_[r_] = now() - t0_;                                                                    \
    }                                                                                          \
    qsort(t_, (reps), sizeof(double), cmp_double);                                             \
    (result) = t_[(reps) / 2];                                                                 \
  } while (0)

#ifdef TWIN_HAVE_OPENCL
static void cl_check(cl_int err, const char *what) {
  if (err != CL_SUCCESS) {
    fprintf(stderr, "twin-bench: %s failed (%d)\n", what, err);
    exit(1);
  }
}

/* One handoff cycle through twin: host write, device use, device write, host read. The
 * program's own work is left out; what remains is what twin costs (moves, maps, bookkeeping). */
static void twin_cycle(twin_array *a) {
  void *p;
  cl_mem mem;
  size_t off;
  check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
  check(twin_host_end(a), "twin_host_end");
  check(twin_device_begin(a, TWIN_READ, &mem, &off), "twin_device_begin");
  check(twin_device_end(a), "twin_device_end");
  check(twin_device_begin(a, TWIN_WRITE, &mem, &off), "twin_device_begin");
  check(twin_device_end(a), "twin_device_end");
  check(twin_host_begin(a, TWIN_READ, &p), "twin_host_begin");
  check(twin_host_end(a), "twin_host_end");
}

/* A twin array of n bytes with both sides allocated and touched. */
static twin_array *twin_ready(twin_context *ctx, size_t n) {
  size_t shape[] = {n / sizeof(float)};
  twin_array *a;
  void *p;
  check(twin_array_new(ctx, TWIN_F32, 1, shape, &a), "twin_array_new");
  check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
  memset(p, 1, n);
  check(twin_host_end(a), "twin_host_end");
  twin_cycle(a);
  return a;
}

typedef struct handoff {
  double memcpy_s, raw_copy_s, raw_map_s, zero_copy_s, copy_mode_s;
} handoff;

static handoff measure_handoff(twin_context *zc, twin_context *cp, size_t n) {
  enum { REPS = 31 }; /* medians of many: a 1 MiB cycle is ~0.1 ms on a noisy machine */
  handoff h;
  cl_context clctx = twin_context_cl_context(zc);
  cl_command_queue q = twin_context_cl_queue(zc);
  char *src = malloc(n), *dst = malloc(n);
  memset(src, 1, n);
  memset(dst, 2, n);
  TIME_S(h.memcpy_s, REPS, { memcpy(dst, src, n); memcpy(src, dst, n); });
  cl_int err;
  cl_mem plain = clCreateBuffer(clctx, CL_MEM_READ_WRITE, n, NULL, &err);
  cl_check(err, "clCreateBuffer");
  cl_check(clEnqueueWriteBuffer(q, plain, CL_TRUE, 0, n, src, 0, NULL, NULL), "write");
  TIME_S(h.raw_copy_s, REPS, {
    clEnqueueWriteBuffer(q, plain, CL_TRUE, 0, n, src, 0, NULL, NULL);
    clEnqueueReadBuffer(q, plain, CL_TRUE, 0, n, dst, 0, NULL, NULL);
  });
  cl_mem pinned = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, n, NULL, &err);
  cl_check(err, "clCreateBuffer(ALLOC_HOST_PTR)");
  TIME_S(h.raw_map_s, REPS, {
    void *m = clEnqueueMapBuffer(q, pinned, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0, n, 0,
                                 NULL, NULL, &err);
    clEnqueueUnmapMemObject(q, pinned, m, 0, NULL, NULL);
    m = clEnqueueMapBuffer(q, pinned, CL_TRUE, CL_MAP_READ, 0, n, 0, NULL, NULL, &err);
    clEnqueueUnmapMemObject(q, pinned, m, 0, NULL, NULL);
    clFinish(q);
  });
  clReleaseMemObject(pinned);
  clReleaseMemObject(plain);
  free(src);
  free(dst);
  twin_array *a = twin_ready(zc, n);
  TIME_S(h.zero_copy_s, REPS, twin_cycle(a));
  twin_array_unref(a);
  a = twin_ready(cp, n);
  TIME_S(h.copy_mode_s, REPS, twin_cycle(a));
  twin_array_unref(a);
  return h;
}

static void bench_handoff(twin_context *zc, twin_context *cp) {
  static const size_t mib[] = {1, 64, 512};
  handoff h[3];
  for (int i = 0; i < 3; i++)
    h[i] = measure_handoff(zc, cp, mib[i] << 20);
  printf("\n## Coherence: one cycle = host write, device use, device write, host read\n\n");
  printf("Times in ms (median of 31). raw copy = clEnqueueWriteBuffer + ReadBuffer of the "
         "array; raw map = map/unmap twice on an ALLOC_HOST_PTR buffer; memcpy = the same "
         "bytes copied both ways.\n\n");
  printf("| size | memcpy x2 | raw copy | raw map | twin zero-copy | twin copy mode | "
         "copy mode / raw copy | raw copy / zero-copy |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int i = 0; i < 3; i++)
    printf("| %zu MiB | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.0fx |\n", mib[i],
           h[i].memcpy_s * 1e3, h[i].raw_copy_s * 1e3, h[i].raw_map_s * 1e3,
           h[i].zero_copy_s * 1e3, h[i].copy_mode_s * 1e3, h[i].copy_mode_s / h[i].raw_copy_s,
           h[i].raw_copy_s / h[i].zero_copy_s);
  printf("\nzero-copy cycle at 512 MiB / at 1 MiB: %.2f\n", h[2].zero_copy_s / h[0].zero_copy_s);
}
#endif

/* Creating and filling a fresh 64 MiB array: fresh pages are what every peer pays for. */
static void bench_fresh(twin_context *ctx) {
  enum { REPS = 5 };
  size_t n = (size_t)64 << 20, shape[] = {n / sizeof(float)};
  char *src = malloc(n), *dst = malloc(n);
  memset(src, 1, n);
  memset(dst, 2, n);
  double copy_s, fresh_s, malloc_s;
  TIME_S(copy_s, REPS, memcpy(dst, src, n));
  TIME_S(fresh_s, REPS, {
    twin_array *a;
    void *p;
    check(twin_array_new(ctx, TWIN_F32, 1, shape, &a), "twin_array_new");
    check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
    memcpy(p, src, n);
    check(twin_host_end(a), "twin_host_end");
    twin_array_unref(a);
  });
  /* Called through volatile pointers, so the compiler cannot drop the copy as dead. */
  void *(*volatile alloc)(size_t) = malloc;
  void (*volatile release)(void *) = free;
  TIME_S(malloc_s, REPS, {
    char *p = alloc(n);
    memcpy(p, src, n);
    release(p);
  });
  free(src);
  free(dst);
  printf("\n## Fresh memory: new 64 MiB array + fill from host data + unref\n\n");
  printf("| what | ms | x memcpy |\n| --- | --- | --- |\n");
  printf("| memcpy 64 MiB (warm pages) | %.2f | 1.00 |\n", copy_s * 1e3);
  printf("| twin: array_new + host write + unref | %.2f | %.2f |\n", fresh_s * 1e3,
         fresh_s / copy_s);
  printf("| malloc + memcpy + free (4 KiB pages) | %.2f | %.2f |\n", malloc_s * 1e3,
         malloc_s / copy_s);
}

/* Peak resident memory above the start, in MiB, of this process holding a 512 MiB array
 * valid on both sides; run in a child process per coherence mode (--rss auto|copy). */
static long rss_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, strlen(field)) == 0)
      kib = strtol(line + strlen(field), NULL, 10);
  if (f)
    fclose(f);
  return kib;
}

static int rss_child(const char *spec, const char *mode) {
  twin_context_options opt = {.device = spec,
                              .coherence = strcmp(mode, "copy") == 0 ? TWIN_COHERENCE_COPY
                                                                     : TWIN_COHERENCE_AUTO};
  twin_context *ctx;
  check(twin_context_new_with(&opt, &ctx), "twin_context_new_with");
  long base = rss_kib("VmRSS:");
  size_t n = (size_t)512 << 20;
  twin_array *a = twin_ready(ctx, n);
  printf("%.0f\n", (double)(rss_kib("VmHWM:") - base) / 1024.0);
  twin_array_unref(a);
  twin_context_unref(ctx);
  return 0;
}

/* Runs `self --rss MODE SPEC` and returns the MiB it prints. Children start before this
 * process touches OpenCL (no fork after OpenCL), so main calls this first. */
static double spawn_rss(const char *self, const char *mode, const char *spec) {
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char *args[] = {(char *)self, "--rss", (char *)mode, (char *)spec, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, self, &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  char buf[64] = "";
  ssize_t got = rc == 0 ? read(fds[0], buf, sizeof buf - 1) : -1;
  close(fds[0]);
  int status = 0;
  if (rc == 0)
    waitpid(pid, &status, 0);
  return got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? atof(buf) : -1;
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--rss") == 0)
    return rss_child(argv[3], argv[2]);
  const char *spec = argc > 1 ? argv[1] : getenv("TWIN_DEVICE");
  spec = spec ? spec : "";
  double rss_auto = spawn_rss(argv[0], "auto", spec), rss_copy = spawn_rss(argv[0], "copy", spec);
  twin_context *ctx;
  check(twin_context_new(spec, &ctx), "twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("# twin-bench %s on %s (%s / %s), %s\n", twin_version(), dev->spec, dev->platform,
         dev->name, twin_context_is_zero_copy(ctx) ? "zero-copy" : "two copies");
  bench_views(ctx);
#ifdef TWIN_HAVE_OPENCL
  if (twin_context_cl_queue(ctx)) {
    twin_context *cp;
    twin_context_options opt = {.device = dev->spec, .coherence = TWIN_COHERENCE_COPY};
    check(twin_context_new_with(&opt, &cp), "twin_context_new_with");
    bench_handoff(ctx, cp);
    twin_context_unref(cp);
  }
#endif
  bench_fresh(ctx);
  printf("\n## Peak RSS above start, holding a 512 MiB array valid on both sides\n\n");
  printf("| coherence | MiB | x array size |\n| --- | --- | --- |\n");
  printf("| auto (%s) | %.0f | %.2f |\n", twin_context_is_zero_copy(ctx) ? "zero-copy" : "copies",
         rss_auto, rss_auto / 512);
  printf("| copy | %.0f | %.2f |\n", rss_copy, rss_copy / 512);
  twin_context_unref(ctx);
  return 0;
}

/* Coherence handoff against raw OpenCL and memcpy, fresh-memory cost, and peak RSS per
 * coherence mode. */
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* A twin array of n bytes written on the host and, on a device, valid there too. */
twin_array *bench_ready(twin_context *ctx, size_t n) {
  size_t shape[] = {n / sizeof(float)};
  twin_array *a;
  void *p;
  bench_check(twin_array_new(ctx, TWIN_F32, 1, shape, &a), "twin_array_new");
  bench_check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
  memset(p, 1, n);
  bench_check(twin_host_end(a), "twin_host_end");
  if (twin_context_device(ctx)->type != TWIN_DEVICE_HOST)
    bench_check(twin_array_prefetch(a, TWIN_DEVICE), "twin_array_prefetch");
  return a;
}

#ifdef TWIN_HAVE_OPENCL
/* One handoff cycle through twin: host write, device use, device write, host read. The
 * program's own work is left out; what remains is what twin costs (moves, maps, bookkeeping). */
static void twin_cycle(twin_array *a) {
  void *p;
  cl_mem mem;
  size_t off;
  bench_check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
  bench_check(twin_host_end(a), "twin_host_end");
  bench_check(twin_device_begin(a, TWIN_READ, &mem, &off), "twin_device_begin");
  bench_check(twin_device_end(a), "twin_device_end");
  bench_check(twin_device_begin(a, TWIN_WRITE, &mem, &off), "twin_device_begin");
  bench_check(twin_device_end(a), "twin_device_end");
  bench_check(twin_host_begin(a, TWIN_READ, &p), "twin_host_begin");
  bench_check(twin_host_end(a), "twin_host_end");
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
  TIME_S(h.memcpy_s, REPS, {
    memcpy(dst, src, n);
    memcpy(src, dst, n);
  });
  cl_int err;
  cl_mem plain = clCreateBuffer(clctx, CL_MEM_READ_WRITE, n, NULL, &err);
  bench_cl_check(err, "clCreateBuffer");
  bench_cl_check(clEnqueueWriteBuffer(q, plain, CL_TRUE, 0, n, src, 0, NULL, NULL), "write");
  TIME_S(h.raw_copy_s, REPS, {
    clEnqueueWriteBuffer(q, plain, CL_TRUE, 0, n, src, 0, NULL, NULL);
    clEnqueueReadBuffer(q, plain, CL_TRUE, 0, n, dst, 0, NULL, NULL);
  });
  cl_mem pinned = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, n, NULL, &err);
  bench_cl_check(err, "clCreateBuffer(ALLOC_HOST_PTR)");
  TIME_S(h.raw_map_s, REPS, {
    void *m = clEnqueueMapBuffer(q, pinned, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0, n, 0, NULL,
                                 NULL, &err);
    clEnqueueUnmapMemObject(q, pinned, m, 0, NULL, NULL);
    m = clEnqueueMapBuffer(q, pinned, CL_TRUE, CL_MAP_READ, 0, n, 0, NULL, NULL, &err);
    clEnqueueUnmapMemObject(q, pinned, m, 0, NULL, NULL);
    clFinish(q);
  });
  clReleaseMemObject(pinned);
  clReleaseMemObject(plain);
  free(src);
  free(dst);
  twin_array *a = bench_ready(zc, n);
  TIME_S(h.zero_copy_s, REPS, twin_cycle(a));
  twin_array_unref(a);
  a = bench_ready(cp, n);
  TIME_S(h.copy_mode_s, REPS, twin_cycle(a));
  twin_array_unref(a);
  return h;
}

void bench_handoff(twin_context *zc, twin_context *cp) {
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
           h[i].memcpy_s * 1e3, h[i].raw_copy_s * 1e3, h[i].raw_map_s * 1e3, h[i].zero_copy_s * 1e3,
           h[i].copy_mode_s * 1e3, h[i].copy_mode_s / h[i].raw_copy_s,
           h[i].raw_copy_s / h[i].zero_copy_s);
  printf("\nzero-copy cycle at 512 MiB / at 1 MiB: %.2f\n", h[2].zero_copy_s / h[0].zero_copy_s);
}
#endif

/* Creating and filling a fresh 64 MiB array: fresh pages are what every peer pays for. */
void bench_fresh(twin_context *ctx) {
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
    bench_check(twin_array_new(ctx, TWIN_F32, 1, shape, &a), "twin_array_new");
    bench_check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
    memcpy(p, src, n);
    bench_check(twin_host_end(a), "twin_host_end");
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

int bench_rss_child(const char *spec, const char *mode) {
  twin_context_options opt = {.device = spec,
                              .coherence = strcmp(mode, "copy") == 0 ? TWIN_COHERENCE_COPY
                                                                     : TWIN_COHERENCE_AUTO};
  twin_context *ctx;
  bench_check(twin_context_new_with(&opt, &ctx), "twin_context_new_with");
  long base = rss_kib("VmRSS:");
  size_t n = (size_t)512 << 20;
  twin_array *a = bench_ready(ctx, n);
  printf("%.0f\n", (double)(rss_kib("VmHWM:") - base) / 1024.0);
  twin_array_unref(a);
  twin_context_unref(ctx);
  return 0;
}

/* Runs `self --rss MODE SPEC` and returns the MiB it prints. Children start before this
 * process touches OpenCL (no fork after OpenCL), so main calls this first. */
double bench_spawn_rss(const char *self, const char *mode, const char *spec) {
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

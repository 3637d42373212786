/* Memory back to the operating system at every size: rounds of 8 arrays of one size (64 MiB
 * down to 256 KiB), filled, waited for, then all dropped; the process's resident memory right
 * after the last unref, above where it was before the round. Each column (host, the device
 * with automatic coherence, the device with two copies) runs in a child process of its own,
 * since what an allocator keeps depends on what the process freed before. Then what giving
 * memory back costs a program that makes and drops arrays in a loop: fresh pages at each new
 * array, against the C heap's reuse of what it kept. */
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

enum { ROUND_ARRAYS = 8, ROUND_SIZES = 5 };
static const size_t round_kib[ROUND_SIZES] = {64 << 10, 16 << 10, 4 << 10, 1 << 10, 256};

/* Anonymous resident memory (data, not the code paged in), in KiB, to the page:
 * /proc/self/smaps_rollup walks the page tables, where the counters behind /proc/self/statm are
 * kept per CPU and may lag by tens of pages. */
static long resident_kib(void) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  char line[256];
  long kib = -1;
  while (f && kib < 0 && fgets(line, sizeof line, f))
    if (sscanf(line, "Anonymous: %ld kB", &kib) != 1)
      kib = -1;
  if (f)
    fclose(f);
  return kib;
}

/* One round: prints the resident KiB above the start while the arrays are held, and right
 * after the last of them is dropped. */
static void round_of(twin_context *ctx, size_t kib) {
  size_t shape[] = {kib * 1024 / sizeof(float)};
  const float one = 1.0f;
  twin_array *a[ROUND_ARRAYS];
  long base = resident_kib();
  for (int i = 0; i < ROUND_ARRAYS; i++) {
    bench_check(twin_array_new(ctx, TWIN_F32, 1, shape, &a[i]), "twin_array_new");
    bench_check(twin_fill(a[i], &one), "twin_fill");
  }
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  long held = resident_kib();
  for (int i = 0; i < ROUND_ARRAYS; i++)
    twin_array_unref(a[i]);
  printf("%ld %ld\n", held - base, resident_kib() - base);
}

int bench_rounds_child(const char *spec, const char *mode) {
  twin_context_options opt = {.device = spec,
                              .coherence = strcmp(mode, "copy") == 0 ? TWIN_COHERENCE_COPY
                                                                     : TWIN_COHERENCE_AUTO};
  twin_context *ctx;
  bench_check(twin_context_new_with(&opt, &ctx), "twin_context_new_with");
  printf("%s %s\n", twin_context_device(ctx)->spec,
         twin_context_is_zero_copy(ctx) ? "zero-copy" : "copies");
  /* A first round of tiny arrays builds what the fill needs (a kernel program on OpenCL) and
   * grows the heap for a round's bookkeeping, so the rounds see only the arrays' memory. */
  twin_array *warm[ROUND_ARRAYS];
  size_t tiny[] = {16};
  const float zero = 0.0f;
  for (int i = 0; i < ROUND_ARRAYS; i++) {
    bench_check(twin_array_new(ctx, TWIN_F32, 1, tiny, &warm[i]), "twin_array_new");
    bench_check(twin_fill(warm[i], &zero), "twin_fill");
  }
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  for (int i = 0; i < ROUND_ARRAYS; i++)
    twin_array_unref(warm[i]);
  for (int i = 0; i < ROUND_SIZES; i++)
    round_of(ctx, round_kib[i]);
  twin_context_unref(ctx);
  return 0;
}

/* What one child measured: its device and, per size, the KiB held and left after the drop. */
typedef struct column {
  char device[64], kind[16];
  long held[ROUND_SIZES], after[ROUND_SIZES];
  bool ok;
} column;

/* Runs `self --rounds MODE SPEC` and reads what it prints into *c. */
static void spawn_column(const char *self, const char *mode, const char *spec, column *c) {
  memset(c, 0, sizeof *c);
  int fds[2];
  if (pipe(fds) != 0)
    return;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  char *args[] = {(char *)self, "--rounds", (char *)mode, (char *)spec, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, self, &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  FILE *out = fdopen(fds[0], "r");
  bool ok = rc == 0 && out && fscanf(out, "%63s %15s", c->device, c->kind) == 2;
  for (int i = 0; ok && i < ROUND_SIZES; i++)
    ok = fscanf(out, "%ld %ld", &c->held[i], &c->after[i]) == 2;
  if (out)
    fclose(out);
  else
    close(fds[0]);
  int status = 0;
  if (rc == 0)
    waitpid(pid, &status, 0);
  c->ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The columns: the host backend, the device with automatic coherence, with two copies. */
static column columns[3];

void bench_spawn_rounds(const char *self, const char *spec) {
  spawn_column(self, "auto", "host", &columns[0]);
  spawn_column(self, "auto", spec, &columns[1]);
  spawn_column(self, "copy", spec, &columns[2]);
}

/* A device column whose spec resolved to the host backend repeats the host column: a dash. */
static void print_cell(const column *c, int i, bool device) {
  if (!c->ok || (device && strcmp(c->device, "host") == 0))
    printf(" - |");
  else
    printf(" %ld KiB of %.1f MiB |", c->after[i], (double)c->held[i] / 1024);
}

/* ---- The cost: a new array, written on the host, dropped, in a loop ---- */

typedef struct churn {
  double heap_us, fresh_us, twin_us;
} churn;

static churn measure_churn(twin_context *host, size_t n) {
  enum { REPS = 5 };
  long iters = n <= ((size_t)64 << 10) ? 2000 : n <= ((size_t)1 << 20) ? 300 : 50;
  size_t shape[] = {n};
  churn c;
  /* Through volatile pointers, so the compiler cannot drop the work as dead. */
  void *(*volatile alloc)(size_t) = malloc;
  void (*volatile release)(void *) = free;
  TIME_NS(c.heap_us, REPS, iters, {
    char *p = alloc(n);
    memset(p, 1, n);
    release(p);
  });
  TIME_NS(c.fresh_us, REPS, iters, {
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 1, n);
    munmap(p, n);
  });
  TIME_NS(c.twin_us, REPS, iters, {
    twin_array *a;
    void *p;
    bench_check(twin_array_new(host, TWIN_U8, 1, shape, &a), "twin_array_new");
    bench_check(twin_host_begin(a, TWIN_WRITE, &p), "twin_host_begin");
    memset(p, 1, n);
    bench_check(twin_host_end(a), "twin_host_end");
    twin_array_unref(a);
  });
  c.heap_us /= 1e3, c.fresh_us /= 1e3, c.twin_us /= 1e3;
  return c;
}

static void print_churn(void) {
  static const size_t kib[] = {16, 64, 256, 1024, 4096};
  twin_context *host;
  bench_check(twin_context_new("host", &host), "twin_context_new");
  printf("\nWhat it costs: a new array written on the host and dropped, in a loop (host backend; "
         "median of 5). heap = malloc + memset + free, which reuses what the heap kept; fresh = "
         "mmap + memset + munmap, new pages each time.\n\n");
  printf("| size | heap us | fresh us | twin us | twin / fresh | twin / heap |\n");
  printf("| --- | --- | --- | --- | --- | --- |\n");
  for (size_t i = 0; i < sizeof kib / sizeof kib[0]; i++) {
    churn c = measure_churn(host, kib[i] << 10);
    printf("| %zu KiB | %.1f | %.1f | %.1f | %.2f | %.1f |\n", kib[i], c.heap_us, c.fresh_us,
           c.twin_us, c.twin_us / c.fresh_us, c.twin_us / c.heap_us);
  }
  twin_context_unref(host);
}

void bench_print_rounds(void) {
  const column *c = columns;
  printf("\n## Memory back to the system: rounds of %d arrays of one size, filled, finished, "
         "all dropped\n\n",
         ROUND_ARRAYS);
  printf("Anonymous resident memory right after the last unref, above the start of the round, "
         "of what the round held (each column a process of its own).\n\n");
  printf("| size of each array | host | %s (%s) | %s (%s) |\n| --- | --- | --- | --- |\n",
         c[1].ok ? c[1].device : "device", c[1].ok ? c[1].kind : "-",
         c[2].ok ? c[2].device : "device", c[2].ok ? c[2].kind : "-");
  for (int i = 0; i < ROUND_SIZES; i++) {
    if (round_kib[i] >= 1024)
      printf("| %zu MiB |", round_kib[i] >> 10);
    else
      printf("| %zu KiB |", round_kib[i]);
    print_cell(&c[0], i, false);
    print_cell(&c[1], i, true);
    print_cell(&c[2], i, true);
    printf("\n");
  }
  print_churn();
}

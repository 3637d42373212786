/* Streaming over more arrays than the device budget holds: N arrays of 64 MiB, N = 2, 4 and 8
 * times a 128 MiB device budget, two copies, each array used by a kernel once per pass in the
 * same order (the worst case for least-recently-used spilling: every array leaves before its
 * next use). Two kernels: one reads its array (its device copy stays redundant, so making room
 * trims it and nothing goes back to the host), one updates it (its device copy is newer, so
 * making room spills it). Reported per pass: the bytes moved each way against the minimum (each
 * array's bytes once to the device, and for the update once back, per pass), spills, and the
 * time against the same loop with no budget, where every array stays on the device after the
 * first pass. Needs a device that runs OpenCL C. Before it, on any device: the cost of a
 * TWIN_TRIM_UNREACHABLE on the 256 MiB matrix with one column, then one row, kept. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

static const char *const source =
    "__kernel void read(TWIN_ARRAY(__global const uint, x), TWIN_ARRAY(__global uint, hit)) {\n"
    "  if (TWIN_AT(x, get_global_id(0)) == 0xdeadbeefu) TWIN_AT(hit, 0) = 1u;\n"
    "}\n"
    "__kernel void update(TWIN_ARRAY(__global uint, x)) {\n"
    "  TWIN_AT(x, get_global_id(0)) += 1u;\n"
    "}\n";

#define ARRAY_BYTES ((size_t)64 << 20)
#define BUDGET ((size_t)128 << 20)
enum { PASSES = 2 };

typedef struct loop {
  double ms;                   /* per pass */
  double to_device, to_host;   /* MiB per pass */
  double spills, trimmed, bad; /* per pass; bad: arrays whose values came out wrong */
} loop;

static twin_context *open_copy(const char *spec, size_t budget) {
  twin_context_options o = {
      .device = spec, .coherence = TWIN_COHERENCE_COPY, .device_memory_limit = budget};
  twin_context *ctx;
  bench_check(twin_context_new_with(&o, &ctx), "twin_context_new_with");
  return ctx;
}

static void use(twin_kernel *k, twin_array *a, twin_array *hit, bool update) {
  size_t n = twin_array_size(a);
  twin_arg args[] = {twin_arg_array(a, update ? TWIN_READ_WRITE : TWIN_READ),
                     twin_arg_array(hit, TWIN_READ_WRITE)};
  bench_check(twin_kernel_launch(k, 1, &n, NULL, update ? 1 : 2, args), "twin_kernel_launch");
}

static void pass(twin_kernel *k, twin_array **a, int n, twin_array *hit, bool update) {
  for (int i = 0; i < n; i++)
    use(k, a[i], hit, update);
}

/* Arrays whose every value is not `want` (sampled every 4 KiB). */
static int wrong(twin_array **a, int n, uint32_t want) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    const uint32_t *p;
    bench_check(twin_host_begin(a[i], TWIN_READ, (void **)&p), "twin_host_begin");
    for (size_t j = 0; j < ARRAY_BYTES / 4; j += 1024)
      if (p[j] != want) {
        bad++;
        break;
      }
    bench_check(twin_host_end(a[i]), "twin_host_end");
  }
  return bad;
}

/* n arrays written on the host, one warm-up pass, then PASSES timed ones. */
static loop measure(const char *spec, int n, size_t budget, bool update) {
  twin_context *ctx = open_copy(spec, budget);
  twin_program *prog;
  twin_kernel *k;
  bench_check(twin_program_new(ctx, source, NULL, &prog), "twin_program_new");
  bench_check(twin_kernel_new(prog, update ? "update" : "read", &k), "twin_kernel_new");
  twin_program_unref(prog);
  twin_array *a[64], *hit;
  bench_check(twin_array_zeros(ctx, TWIN_U32, 1, (size_t[]){1}, &hit), "twin_array_zeros");
  for (int i = 0; i < n; i++) {
    uint32_t *p;
    bench_check(twin_array_new(ctx, TWIN_U32, 1, (size_t[]){ARRAY_BYTES / 4}, &a[i]),
                "twin_array_new");
    bench_check(twin_host_begin(a[i], TWIN_WRITE, (void **)&p), "twin_host_begin");
    memset(p, 0, ARRAY_BYTES);
    bench_check(twin_host_end(a[i]), "twin_host_end");
  }
  pass(k, a, n, hit, update);
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  bench_check(twin_context_stats_reset(ctx), "twin_context_stats_reset");
  double t0 = bench_now();
  for (int p = 0; p < PASSES; p++)
    pass(k, a, n, hit, update);
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  loop r = {.ms = (bench_now() - t0) * 1e3 / PASSES};
  twin_stats st;
  twin_context_stats(ctx, &st);
  r.to_device = (double)st.bytes_to_device / (1 << 20) / PASSES;
  r.to_host = (double)st.bytes_to_host / (1 << 20) / PASSES;
  r.spills = (double)st.spill_count / PASSES;
  r.trimmed = (double)st.pressure_trimmed_bytes / (double)ARRAY_BYTES / PASSES;
  r.bad = wrong(a, n, update ? 1 + PASSES : 0);
  for (int i = 0; i < n; i++)
    twin_array_unref(a[i]);
  twin_array_unref(hit);
  twin_kernel_unref(k);
  twin_context_unref(ctx);
  return r;
}

/* Milliseconds memcpy takes for 64 MiB, in this run (median of 5). */
static double memcpy_ms(void) {
  char *src = malloc(ARRAY_BYTES), *dst = malloc(ARRAY_BYTES);
  if (!src || !dst)
    exit(1);
  memset(src, 1, ARRAY_BYTES);
  memset(dst, 2, ARRAY_BYTES);
  double s;
  TIME_S(s, 5, memcpy(dst, src, ARRAY_BYTES));
  free(src);
  free(dst);
  return s * 1e3;
}

/* ---- Unreachable pages: the cost of TWIN_TRIM_UNREACHABLE ---- */

#define MATRIX 8192 /* an 8192 x 8192 f32 matrix: 256 MiB, rows of 32 KiB */

static double resident_mib(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
    resident = 0;
  if (f)
    fclose(f);
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

typedef struct trimmed {
  double ms, write_ms, freed_mib, rss_drop_mib;
} trimmed;

/* The matrix written on the host (all of it resident), one column (axis 1) or one row (axis 0)
 * of it kept and the rest dropped; then one TWIN_TRIM_UNREACHABLE, timed. */
static trimmed trim_once(twin_context *ctx, int axis) {
  twin_array *huge, *kept;
  void *p;
  trimmed t;
  bench_check(twin_array_new(ctx, TWIN_F32, 2, (size_t[]){MATRIX, MATRIX}, &huge),
              "twin_array_new");
  double t0 = bench_now();
  bench_check(twin_host_begin(huge, TWIN_WRITE, &p), "twin_host_begin");
  memset(p, 1, (size_t)MATRIX * MATRIX * sizeof(float));
  bench_check(twin_host_end(huge), "twin_host_end");
  t.write_ms = (bench_now() - t0) * 1e3;
  bench_check(twin_array_index(huge, axis, 100, &kept), "twin_array_index");
  twin_array_unref(huge);
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  double rss = resident_mib();
  size_t freed;
  t0 = bench_now();
  bench_check(twin_context_trim(ctx, TWIN_TRIM_UNREACHABLE, &freed), "twin_context_trim");
  t.ms = (bench_now() - t0) * 1e3;
  t.rss_drop_mib = rss - resident_mib();
  t.freed_mib = (double)freed / (1 << 20);
  twin_array_unref(kept);
  return t;
}

static int by_ms(const void *a, const void *b) {
  double x = ((const trimmed *)a)->ms, y = ((const trimmed *)b)->ms;
  return (x > y) - (x < y);
}

static void bench_unreachable(twin_context *ctx) {
  printf("\n## Unreachable pages: TWIN_TRIM_UNREACHABLE on an 8192 x 8192 f32 matrix (256 MiB, "
         "rows of 32 KiB) with one view kept (median of 3)\n\n");
  printf(
      "| kept | trim ms | freed MiB | freed / 256 MiB | resident drop MiB | writing the 256 MiB, "
      "ms | trim / write |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  for (int axis = 1; axis >= 0; axis--) {
    trimmed t[3];
    for (int i = 0; i < 3; i++)
      t[i] = trim_once(ctx, axis);
    qsort(t, 3, sizeof t[0], by_ms);
    const char *kept = axis ? "one column, huge[:, 100]" : "one row, huge[100]";
    printf("| %s | %.1f | %.0f | %.4f | %.0f | %.1f | %.2f |\n", kept, t[1].ms, t[1].freed_mib,
           t[1].freed_mib / 256, t[1].rss_drop_mib, t[1].write_ms, t[1].ms / t[1].write_ms);
  }
}

void bench_pressure(twin_context *ctx) {
  const char *spec = twin_context_device(ctx)->spec;
  bench_unreachable(ctx);
  twin_program *probe;
  if (twin_program_new(ctx, source, NULL, &probe) != TWIN_OK) {
    printf("\n## Memory pressure: skipped (%s runs no OpenCL C)\n", spec);
    return;
  }
  twin_program_unref(probe);
  printf("\n## Memory pressure: N arrays of 64 MiB streamed through a kernel under a 128 MiB "
         "device budget (two copies), per pass\n\n");
  double copy_ms = memcpy_ms();
  printf("| kernel | N | x budget | to device MiB | to host MiB | minimum each way MiB | moved / "
         "minimum | spills | trims | ms | ms, no budget | x no budget | extra ms / memcpy of the "
         "moved bytes |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int update = 0; update < 2; update++)
    for (int times = 2; times <= 8; times *= 2) {
      int n = (int)(times * BUDGET / ARRAY_BYTES);
      /* The small `hit` array needs room too: the budget is 128 MiB plus a page. */
      loop r = measure(spec, n, BUDGET + 4096, update);
      loop big = measure(spec, n, 0, update);
      double min = (double)n * (double)(ARRAY_BYTES >> 20);
      double moved = r.to_device + r.to_host, least = update ? 2 * min : min;
      double moved_copy_ms = moved / (double)(ARRAY_BYTES >> 20) * copy_ms;
      printf("| %s | %d | %d | %.0f | %.0f | %.0f%s | %.2f | %.1f | %.1f | %.0f | %.0f | %.2f | "
             "%.2f |\n",
             update ? "update" : "read", n, times, r.to_device, r.to_host, min,
             update ? "" : " (in only)", moved / least, r.spills, r.trimmed, r.ms, big.ms,
             r.ms / big.ms, (r.ms - big.ms) / moved_copy_ms);
      if (r.bad || big.bad)
        printf("twin-bench: pressure: %.0f arrays hold wrong values\n", r.bad + big.bad);
    }
}

/* What the last unref of a buffer costs now that it returns only after the memory is freed:
 * (a) dropping an idle 64 MiB buffer while a ~200 ms kernel runs on another buffer, against the
 * same drop with nothing queued; (b) dropping a buffer right after a kernel on it, against raw
 * OpenCL waiting for the kernel's event and releasing an equal cl_mem; (c) the peak resident
 * memory of a loop that makes a 256 MiB array, uses it in a kernel and drops it, against the
 * memory one array holds (1x: each array is gone before the next is made). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#ifdef TWIN_HAVE_OPENCL
static const char *const twin_source =
    "__kernel void spin(TWIN_ARRAY(__global float, x), int n) {\n"
    "  float a = TWIN_AT(x, get_global_id(0));\n"
    "  for (int i = 0; i < n; i++)\n"
    "    a = a * 0.999f + 1.0f;\n"
    "  TWIN_AT(x, get_global_id(0)) = a;\n"
    "}\n"
    "__kernel void touch(TWIN_ARRAY(__global float, x)) {\n"
    "  TWIN_AT(x, get_global_id(0)) += 1.0f;\n"
    "}\n";
static const char *const raw_source =
    "__kernel void touch(__global float *x, long xo) { x[xo + get_global_id(0)] += 1.0f; }\n";

enum { REPS = 7 };
#define IDLE_BYTES ((size_t)64 << 20)
#define LOOP_BYTES ((size_t)256 << 20)

typedef struct kernels {
  twin_kernel *spin, *touch;
  int spin_200ms;   /* iterations of spin that take about 200 ms */
  twin_array *busy; /* one element, for spin */
} kernels;

static void launch(twin_kernel *k, twin_array *a, size_t items, const int *iterations) {
  twin_arg args[] = {twin_arg_array(a, TWIN_READ_WRITE),
                     twin_arg_i32(iterations ? *iterations : 0)};
  bench_check(twin_kernel_launch(k, 1, &items, NULL, iterations ? 2 : 1, args),
              "twin_kernel_launch");
}

static kernels kernels_of(twin_context *ctx) {
  kernels k;
  twin_program *prog;
  bench_check(twin_program_new(ctx, twin_source, NULL, &prog), "twin_program_new");
  bench_check(twin_kernel_new(prog, "spin", &k.spin), "twin_kernel_new");
  bench_check(twin_kernel_new(prog, "touch", &k.touch), "twin_kernel_new");
  twin_program_unref(prog);
  k.busy = bench_ready(ctx, sizeof(float));
  int n = 1;
  launch(k.spin, k.busy, 1, &n); /* compiles for its work size */
  bench_check(twin_context_finish(ctx), "twin_context_finish");
  double took = 0;
  for (n = 1 << 18; took < 0.04; n *= 2) {
    double t0 = bench_now();
    launch(k.spin, k.busy, 1, &n);
    bench_check(twin_context_finish(ctx), "twin_context_finish");
    took = bench_now() - t0;
  }
  k.spin_200ms = (int)(n / 2 * (0.2 / took));
  return k;
}

/* (a) µs of the last unref of an idle buffer, with the spin kernel running or nothing queued. */
static double idle_drop_us(twin_context *ctx, const kernels *k, bool during_kernel) {
  double t[REPS];
  for (int r = 0; r < REPS; r++) {
    twin_array *idle = bench_ready(ctx, IDLE_BYTES);
    bench_check(twin_context_finish(ctx), "twin_context_finish");
    if (during_kernel)
      launch(k->spin, k->busy, 1, &k->spin_200ms);
    double t0 = bench_now();
    twin_array_unref(idle);
    t[r] = (bench_now() - t0) * 1e6;
    bench_check(twin_context_finish(ctx), "twin_context_finish");
  }
  qsort(t, REPS, sizeof t[0], bench_cmp_double);
  return t[REPS / 2];
}

/* (b) µs from a kernel's launch over the whole buffer to the end of the buffer's last unref. */
static double busy_drop_us(twin_context *ctx, const kernels *k) {
  double t[REPS];
  for (int r = 0; r < REPS; r++) {
    twin_array *a = bench_ready(ctx, IDLE_BYTES);
    bench_check(twin_context_finish(ctx), "twin_context_finish");
    double t0 = bench_now();
    launch(k->touch, a, IDLE_BYTES / sizeof(float), NULL);
    twin_array_unref(a);
    t[r] = (bench_now() - t0) * 1e6;
  }
  qsort(t, REPS, sizeof t[0], bench_cmp_double);
  return t[REPS / 2];
}

/* Frees a raw cl_mem's host block when the runtime destroys the cl_mem, as twin does. */
static void CL_CALLBACK raw_destroyed(cl_mem mem, void *block) {
  (void)mem;
  free(block);
}

/* The same in raw OpenCL, on a cl_mem like twin's device memory on a device that shares host
 * memory (either coherence: an aligned, advised host block used in place and freed by the
 * cl_mem's destructor): enqueue, clWaitForEvents, clReleaseMemObject once the runtime has let
 * go of the buffer, so that both sides free their memory before the clock stops. */
static double raw_drop_us(twin_context *ctx) {
  cl_context clctx = twin_context_cl_context(ctx);
  cl_command_queue q = twin_context_cl_queue(ctx);
  cl_device_id dev = twin_context_cl_device(ctx);
  cl_int err;
  const char *text = raw_source;
  cl_program p = clCreateProgramWithSource(clctx, 1, &text, NULL, &err);
  bench_cl_check(err, "clCreateProgramWithSource");
  bench_cl_check(clBuildProgram(p, 1, &dev, "", NULL, NULL), "clBuildProgram");
  cl_kernel kernel = clCreateKernel(p, "touch", &err);
  bench_cl_check(err, "clCreateKernel");
  double t[REPS];
  for (int r = 0; r < REPS; r++) {
    /* Aligned and advised as twin's blocks are, so that the kernels run alike. */
    void *block = aligned_alloc((size_t)2 << 20, IDLE_BYTES);
    madvise(block, IDLE_BYTES, MADV_HUGEPAGE);
    memset(block, 1, IDLE_BYTES);
    cl_mem mem =
        clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, IDLE_BYTES, block, &err);
    bench_cl_check(err, "clCreateBuffer");
    bench_cl_check(clSetMemObjectDestructorCallback(mem, raw_destroyed, block),
                   "clSetMemObjectDestructorCallback");
    bench_cl_check(clFinish(q), "clFinish");
    cl_long zero = 0;
    clSetKernelArg(kernel, 0, sizeof mem, &mem);
    clSetKernelArg(kernel, 1, sizeof zero, &zero);
    size_t items = IDLE_BYTES / sizeof(float);
    cl_event ev;
    double t0 = bench_now();
    bench_cl_check(clEnqueueNDRangeKernel(q, kernel, 1, NULL, &items, NULL, 0, NULL, &ev),
                   "clEnqueueNDRangeKernel");
    bench_cl_check(clWaitForEvents(1, &ev), "clWaitForEvents");
    clReleaseEvent(ev);
    cl_uint refs = 2;
    while (refs > 1) /* the runtime's own reference on the kernel's buffer, dropped late */
      clGetMemObjectInfo(mem, CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL);
    clReleaseMemObject(mem);
    t[r] = (bench_now() - t0) * 1e6;
  }
  clReleaseKernel(kernel);
  clReleaseProgram(p);
  qsort(t, REPS, sizeof t[0], bench_cmp_double);
  return t[REPS / 2];
}

static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0)
      kib = atol(line + n);
  if (f)
    fclose(f);
  return kib;
}

/* Resets the peak resident size (VmHWM) to the current one. */
static bool reset_peak(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f)
    return false;
  bool ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok;
}

/* (c) MiB above the start: one array's memory, used, and the peak of the loop. Each array is
 * used by a kernel over all of it and then one that runs ~100 ms more, still queued when the
 * array is dropped and the next one made. */
static void loop_peak(twin_context *ctx, const kernels *k, double *one_mib, double *peak_mib) {
  size_t shape[] = {LOOP_BYTES / sizeof(float)};
  long base = status_kib("VmRSS:");
  *one_mib = *peak_mib = -1;
  if (!reset_peak())
    return;
  for (int i = 0; i < 6; i++) {
    twin_array *a;
    bench_check(twin_array_zeros(ctx, TWIN_F32, 1, shape, &a), "twin_array_zeros");
    launch(k->touch, a, shape[0], NULL);
    int spin = k->spin_200ms / 2;
    launch(k->spin, a, 1, &spin);
    if (i == 0) {
      bench_check(twin_context_finish(ctx), "twin_context_finish");
      *one_mib = (double)(status_kib("VmRSS:") - base) / 1024;
    }
    twin_array_unref(a);
  }
  *peak_mib = (double)(status_kib("VmHWM:") - base) / 1024;
}

static void release_on(twin_context *ctx) {
  const char *mode = twin_context_is_zero_copy(ctx) ? "zero-copy" : "two copies";
  kernels k = kernels_of(ctx);
  double quiet = idle_drop_us(ctx, &k, false), during = idle_drop_us(ctx, &k, true);
  double busy = busy_drop_us(ctx, &k), raw = raw_drop_us(ctx);
  double one, peak;
  loop_peak(ctx, &k, &one, &peak);
  printf("| %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", mode, quiet,
         during, during / quiet, raw, busy, busy / raw, one, peak, peak / one);
  twin_array_unref(k.busy);
  twin_kernel_unref(k.spin);
  twin_kernel_unref(k.touch);
}

void bench_release(twin_context *ctx) {
  printf("\n## The last unref (medians of %d; the idle buffer %zu MiB, the loop's arrays %zu "
         "MiB)\n\n",
         REPS, IDLE_BYTES >> 20, LOOP_BYTES >> 20);
  if (!twin_context_cl_queue(ctx)) {
    printf("skipped: the host backend queues nothing\n");
    return;
  }
  printf("| coherence | idle drop, nothing queued µs | idle drop during a 200 ms kernel µs | "
         "ratio | raw wait + release after a kernel µs | twin unref after a kernel µs | ratio | "
         "one array MiB | loop peak MiB | peak / one |\n"
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  release_on(ctx);
  if (twin_context_is_zero_copy(ctx)) {
    twin_context *cp;
    twin_context_options opt = {.device = twin_context_device(ctx)->spec,
                                .coherence = TWIN_COHERENCE_COPY};
    bench_check(twin_context_new_with(&opt, &cp), "twin_context_new_with");
    release_on(cp);
    twin_context_unref(cp);
  }
}
#else
void bench_release(twin_context *ctx) {
  (void)ctx;
  printf("\n## The last unref\n\nskipped: built without OpenCL\n");
}
#endif

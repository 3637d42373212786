/* Kernel launch overhead: twin_kernel_launch of an empty kernel against the same kernel set up
 * and enqueued with raw clSetKernelArg + clEnqueueNDRangeKernel, on the same queue, in the same
 * run. Each timing is a batch of launches closed by one clFinish (how launches are used), per
 * launch; twin and raw batches alternate so that both see the same machine. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#ifdef TWIN_HAVE_OPENCL
/* The raw kernels take what twin binds: a pointer and an offset per array, then the scalar. */
static const char *const twin_source =
    "__kernel void empty1(TWIN_ARRAY(__global float, x), float a) {}\n"
    "__kernel void empty3(TWIN_ARRAY(__global const float, x), TWIN_ARRAY(__global const float, "
    "y), TWIN_ARRAY(__global float, z), float a) {}\n";
static const char *const raw_source =
    "__kernel void empty1(__global float *x, long xo, float a) {}\n"
    "__kernel void empty3(__global const float *x, long xo, __global const float *y, long yo,\n"
    "                     __global float *z, long zo, float a) {}\n";

enum { REPS = 201, BATCH = 250 };

typedef struct raw_kernel {
  cl_kernel kernel;
  cl_mem mem[3];
  cl_long offset;
  float a;
  int arrays;
} raw_kernel;

static void raw_launch(cl_command_queue q, const raw_kernel *r, const size_t *global) {
  for (int i = 0; i < r->arrays; i++) {
    clSetKernelArg(r->kernel, (cl_uint)(2 * i), sizeof(cl_mem), &r->mem[i]);
    clSetKernelArg(r->kernel, (cl_uint)(2 * i + 1), sizeof r->offset, &r->offset);
  }
  clSetKernelArg(r->kernel, (cl_uint)(2 * r->arrays), sizeof r->a, &r->a);
  clEnqueueNDRangeKernel(q, r->kernel, 1, NULL, global, NULL, 0, NULL, NULL);
}

/* One batch of twin launches (which = 0) or raw ones, closed by clFinish: ns per launch. */
static double batch(cl_command_queue q, int which, twin_kernel *k, const twin_arg *args, int nargs,
                    const raw_kernel *r) {
  size_t global[] = {1};
  double t0 = bench_now();
  for (int i = 0; i < BATCH; i++) {
    if (which == 0)
      twin_kernel_launch(k, 1, global, NULL, nargs, args);
    else
      raw_launch(q, r, global);
  }
  clFinish(q);
  return (bench_now() - t0) * 1e9 / BATCH;
}

/* Medians of twin's and raw batches, and of the ratio of each adjacent pair: the machine's
 * speed drifts between batches far more than twin costs, so pairs that ran back to back (in
 * alternating order) are compared, not two separate medians. */
static void measure(cl_command_queue q, twin_kernel *k, const twin_arg *args, int nargs,
                    const raw_kernel *r, double out[3]) {
  size_t global[] = {1};
  double t[REPS], u[REPS], ratio[REPS];
  bench_check(twin_kernel_launch(k, 1, global, NULL, nargs, args), "twin_kernel_launch");
  raw_launch(q, r, global); /* the first launch of each compiles for its work-group size */
  bench_cl_check(clFinish(q), "clFinish");
  for (int rep = 0; rep < REPS; rep++) {
    int first = rep % 2;
    double a = batch(q, first, k, args, nargs, r), b = batch(q, !first, k, args, nargs, r);
    t[rep] = first == 0 ? a : b;
    u[rep] = first == 0 ? b : a;
    ratio[rep] = t[rep] / u[rep];
  }
  qsort(t, REPS, sizeof t[0], bench_cmp_double);
  qsort(u, REPS, sizeof u[0], bench_cmp_double);
  qsort(ratio, REPS, sizeof ratio[0], bench_cmp_double);
  out[0] = u[REPS / 2];
  out[1] = t[REPS / 2];
  out[2] = ratio[REPS / 2];
}

static cl_program raw_program(twin_context *ctx) {
  cl_int err;
  cl_device_id dev = twin_context_cl_device(ctx);
  const char *text = raw_source;
  cl_program p = clCreateProgramWithSource(twin_context_cl_context(ctx), 1, &text, NULL, &err);
  bench_cl_check(err, "clCreateProgramWithSource");
  bench_cl_check(clBuildProgram(p, 1, &dev, "", NULL, NULL), "clBuildProgram");
  return p;
}

static cl_kernel raw_kernel_of(cl_program p, const char *name) {
  cl_int err;
  cl_kernel k = clCreateKernel(p, name, &err);
  bench_cl_check(err, "clCreateKernel");
  return k;
}

/* Measures both argument lists on ctx and prints their rows, labelled with its coherence. */
static void launch_on(twin_context *ctx) {
  const char *mode = twin_context_is_zero_copy(ctx) ? "zero-copy" : "two copies";
  twin_program *prog;
  twin_kernel *k1, *k3;
  bench_check(twin_program_new(ctx, twin_source, NULL, &prog), "twin_program_new");
  bench_check(twin_kernel_new(prog, "empty1", &k1), "twin_kernel_new");
  bench_check(twin_kernel_new(prog, "empty3", &k3), "twin_kernel_new");
  twin_array *x = bench_ready(ctx, 1 << 16), *y = bench_ready(ctx, 1 << 16),
             *z = bench_ready(ctx, 1 << 16);
  cl_program raw = raw_program(ctx);
  raw_kernel r1 = {raw_kernel_of(raw, "empty1"), {NULL}, 0, 1.0f, 1};
  raw_kernel r3 = {raw_kernel_of(raw, "empty3"), {NULL}, 0, 1.0f, 3};
  twin_array *arrays[] = {x, y, z};
  for (int i = 0; i < 3; i++) { /* the same cl_mem objects twin passes */
    size_t off;
    bench_check(twin_device_begin(arrays[i], TWIN_READ, &r3.mem[i], &off), "twin_device_begin");
    bench_check(twin_device_end(arrays[i]), "twin_device_end");
  }
  r1.mem[0] = r3.mem[2];
  twin_arg a1[] = {twin_arg_array(z, TWIN_READ_WRITE), twin_arg_f32(1.0f)};
  twin_arg a3[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ),
                   twin_arg_array(z, TWIN_WRITE), twin_arg_f32(1.0f)};
  cl_command_queue q = twin_context_cl_queue(ctx);
  double m1[3], m3[3];
  measure(q, k1, a1, 2, &r1, m1);
  measure(q, k3, a3, 4, &r3, m3);
  printf("| %s | 1 array (read-write) + 1 scalar | %.0f | %.0f | %.3f |\n", mode, m1[0], m1[1],
         m1[2]);
  printf("| %s | 3 arrays (2 read, 1 write) + 1 scalar | %.0f | %.0f | %.3f |\n", mode, m3[0],
         m3[1], m3[2]);
  clReleaseKernel(r1.kernel);
  clReleaseKernel(r3.kernel);
  clReleaseProgram(raw);
  twin_array_unref(x);
  twin_array_unref(y);
  twin_array_unref(z);
  twin_kernel_unref(k1);
  twin_kernel_unref(k3);
  twin_program_unref(prog);
}

void bench_launch(twin_context *ctx) {
  printf("\n## Kernel launch overhead (an empty kernel, batches of %d, one clFinish each)\n\n",
         BATCH);
  if (!twin_context_cl_queue(ctx)) {
    printf("skipped: the host backend runs no OpenCL C\n");
    return;
  }
  printf("| coherence | kernel arguments | raw OpenCL ns/launch | twin_kernel_launch ns/launch | "
         "twin / raw (median of adjacent pairs) |\n| --- | --- | --- | --- | --- |\n");
  launch_on(ctx);
  if (twin_context_is_zero_copy(ctx)) { /* the two-copy path does more bookkeeping per array */
    twin_context *cp;
    twin_context_options opt = {.device = twin_context_device(ctx)->spec,
                                .coherence = TWIN_COHERENCE_COPY};
    bench_check(twin_context_new_with(&opt, &cp), "twin_context_new_with");
    launch_on(cp);
    twin_context_unref(cp);
  }
}
#else
void bench_launch(twin_context *ctx) {
  (void)ctx;
  printf("\n## Kernel launch overhead\n\nskipped: built without OpenCL\n");
}
#endif

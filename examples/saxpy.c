/* SAXPY, y = a * x + y, on two twin arrays with a user kernel.
 *
 * One code path for every backend: on an OpenCL device the kernel is OpenCL C, built with
 * twin_program_new; on the host backend (TWIN_DEVICE=host), where OpenCL C cannot run, the
 * same launch calls a C function made into a kernel with twin_kernel_new_host. twin moves x and
 * y to the device before the launch and brings y back when the host reads it. The result is
 * checked against the same computation done here on the host; a mismatch exits with 1. */
#include <stdio.h>
#include <stdlib.h>

#include "twin.h"

static const char *const source =
    "__kernel void saxpy(TWIN_ARRAY(__global const float, x), TWIN_ARRAY(__global float, y),\n"
    "                    float a) {\n"
    "  long i = get_global_id(0);\n"
    "  TWIN_AT(y, i) = a * TWIN_AT(x, i) + TWIN_AT(y, i);\n"
    "}\n";

/* The same kernel in C, for the host backend: data[i] is argument i's element 0. */
static twin_status saxpy_host(const twin_host_launch *l, void *user) {
  (void)user;
  const float *x = l->data[0];
  float *y = l->data[1], a = l->args[2].value.f32;
  for (size_t i = 0; i < l->global[0]; i++)
    y[i] = a * x[i] + y[i];
  return TWIN_OK;
}

static int fail(const char *what) {
  fprintf(stderr, "saxpy: %s: %s\n", what, twin_last_error());
  return 1;
}

/* An OpenCL kernel where the device runs OpenCL C, else the C function. */
static twin_status make_kernel(twin_context *ctx, twin_kernel **k, const char **kind) {
  twin_program *prog;
  twin_status s = twin_program_new(ctx, source, NULL, &prog);
  *kind = "an OpenCL kernel";
  if (s == TWIN_ERR_UNSUPPORTED) {
    *kind = "a host kernel (C function)";
    return twin_kernel_new_host(ctx, "saxpy", saxpy_host, NULL, k);
  }
  if (s != TWIN_OK)
    return s;
  s = twin_kernel_new(prog, "saxpy", k);
  twin_program_unref(prog); /* the kernel holds the program */
  return s;
}

int main(void) {
  enum { N = 1 << 20 };
  const float a = 2.0f;
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("device: %s (%s)\n", dev->spec, dev->name);

  float *init = malloc(N * sizeof *init);
  for (size_t i = 0; i < N; i++)
    init[i] = (float)(i % 100);
  size_t shape[] = {N};
  twin_array *x, *y;
  if (twin_array_from_host(ctx, TWIN_F32, 1, shape, init, &x) != TWIN_OK)
    return fail("twin_array_from_host");
  float one = 1.0f;
  if (twin_array_new(ctx, TWIN_F32, 1, shape, &y) != TWIN_OK || twin_fill(y, &one) != TWIN_OK)
    return fail("y = ones");

  twin_kernel *k;
  const char *kind;
  if (make_kernel(ctx, &k, &kind) != TWIN_OK)
    return fail("making the kernel");
  size_t global[] = {N};
  twin_arg args[] = {twin_arg_array(x, TWIN_READ), twin_arg_array(y, TWIN_READ_WRITE),
                     twin_arg_f32(a)};
  if (twin_kernel_launch(k, 1, global, NULL, 3, args) != TWIN_OK)
    return fail("twin_kernel_launch");

  float *out;
  if (twin_host_begin(y, TWIN_READ, (void **)&out) != TWIN_OK) /* waits for the kernel */
    return fail("twin_host_begin");
  size_t wrong = 0;
  for (size_t i = 0; i < N; i++)
    wrong += out[i] != a * init[i] + 1.0f;
  twin_host_end(y);
  printf("%s over %d elements with %s: %zu mismatches\n", twin_kernel_name(k), N, kind, wrong);

  twin_kernel_unref(k);
  twin_array_unref(x);
  twin_array_unref(y);
  twin_context_unref(ctx);
  free(init);
  if (wrong)
    return 1;
  printf("ok\n");
  return 0;
}

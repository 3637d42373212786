/* A per-row reduction over a transposed view, with local memory: the row sums of m.T, which
 * are the column sums of m, without copying m into the transposed layout first.
 *
 * One work-group sums one row of the view: each work-item adds every L-th element of the row
 * (following the view's strides, which for a transpose step down m's columns), then the group
 * combines its L partial sums in local memory by halving. On the host backend the same launch
 * runs a C function. The result is checked against sums computed here; a mismatch exits 1. */
#include <stdio.h>
#include <stdlib.h>

#include "twin.h"

enum { ROWS = 3000, COLS = 500, L = 64 }; /* m is ROWS x COLS; its transpose COLS x ROWS */

static const char *const source =
    "__kernel void row_sums(TWIN_VIEW(__global const float, m), TWIN_ARRAY(__global float, out),\n"
    "                       __local float *partial) {\n"
    "  long row = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);\n"
    "  float sum = 0.0f;\n"
    "  for (long j = lid; j < TWIN_DIM(m, 1); j += n)\n"
    "    sum += TWIN_AT2(m, row, j);\n"
    "  partial[lid] = sum;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  for (long step = n / 2; step > 0; step /= 2) {\n"
    "    if (lid < step)\n"
    "      partial[lid] += partial[lid + step];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  }\n"
    "  if (lid == 0)\n"
    "    TWIN_AT(out, row) = partial[0];\n"
    "}\n";

/* The same reduction in C, for the host backend (local memory is a scratch block here). */
static twin_status row_sums_host(const twin_host_launch *l, void *user) {
  (void)user;
  const twin_array *m = l->args[0].array;
  const float *base = l->data[0];
  float *out = l->data[1];
  const size_t *shape = twin_array_shape(m);
  const ptrdiff_t *st = twin_array_strides(m);
  for (size_t i = 0; i < shape[0]; i++) {
    float sum = 0.0f;
    for (size_t j = 0; j < shape[1]; j++)
      sum += base[(ptrdiff_t)i * st[0] + (ptrdiff_t)j * st[1]];
    out[i] = sum;
  }
  return TWIN_OK;
}

static int fail(const char *what) {
  fprintf(stderr, "row_reduce: %s: %s\n", what, twin_last_error());
  return 1;
}

static twin_status make_kernel(twin_context *ctx, twin_kernel **k) {
  twin_program *prog;
  twin_status s = twin_program_new(ctx, source, NULL, &prog);
  if (s == TWIN_ERR_UNSUPPORTED)
    return twin_kernel_new_host(ctx, "row_sums", row_sums_host, NULL, k);
  if (s == TWIN_OK) {
    s = twin_kernel_new(prog, "row_sums", k);
    twin_program_unref(prog);
  }
  return s;
}

int main(void) {
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("device: %s (%s)\n", dev->spec, dev->name);

  /* Small integers: every partial sum is exact in float, whatever order adds them. */
  float *data = malloc((size_t)ROWS * COLS * sizeof *data);
  for (size_t i = 0; i < ROWS; i++)
    for (size_t j = 0; j < COLS; j++)
      data[i * COLS + j] = (float)((i * 7 + j * 3) % 11);
  size_t shape[] = {ROWS, COLS}, out_shape[] = {COLS};
  twin_array *m, *mt, *sums;
  if (twin_array_from_host(ctx, TWIN_F32, 2, shape, data, &m) != TWIN_OK ||
      twin_array_transpose(m, NULL, &mt) != TWIN_OK || /* COLS x ROWS, strides (1, COLS) */
      twin_array_new(ctx, TWIN_F32, 1, out_shape, &sums) != TWIN_OK)
    return fail("making the arrays");

  twin_kernel *k;
  if (make_kernel(ctx, &k) != TWIN_OK)
    return fail("making the kernel");
  size_t global[] = {COLS * L}, local[] = {L}; /* one work-group of L per row of m.T */
  twin_arg args[] = {twin_arg_view(mt, TWIN_READ), twin_arg_array(sums, TWIN_WRITE),
                     twin_arg_local(L * sizeof(float))};
  if (twin_kernel_launch(k, 1, global, local, 3, args) != TWIN_OK)
    return fail("twin_kernel_launch");

  float got[COLS];
  if (twin_array_read(sums, got, sizeof got) != TWIN_OK)
    return fail("twin_array_read");
  size_t wrong = 0;
  for (size_t j = 0; j < COLS; j++) {
    float want = 0.0f;
    for (size_t i = 0; i < ROWS; i++)
      want += data[i * COLS + j];
    wrong += got[j] != want;
  }
  printf("row sums of a %d x %d transposed view: first %.0f, last %.0f, %zu mismatches\n", COLS,
         ROWS, got[0], got[COLS - 1], wrong);

  twin_kernel_unref(k);
  twin_array_unref(sums);
  twin_array_unref(mt);
  twin_array_unref(m);
  twin_context_unref(ctx);
  free(data);
  if (wrong)
    return 1;
  printf("ok\n");
  return 0;
}

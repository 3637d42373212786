/* A 2-D 5-point stencil (Jacobi relaxation of a heat plate) with a user kernel on an interior
 * view: each step writes the interior of one grid, a[1:-1, 1:-1], from the 4 neighbours of each
 * cell in the other grid, then the grids swap roles. The border (a hot top edge) never
 * changes, and no step copies a grid: only views and the swap.
 *
 * The kernel reads the whole source grid and writes the destination's interior view: a kernel
 * touches only elements of the views it is given, because twin moves exactly those between
 * host and device. On the host backend the same launches run a C function instead. The result
 * is checked against a plain C computation of the same steps; a mismatch exits with 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin.h"

enum { N = 128, STEPS = 200 };

static const char *const source =
    "__kernel void jacobi(TWIN_VIEW(__global const float, src), TWIN_VIEW(__global float, dst)) {\n"
    "  long i = get_global_id(0), j = get_global_id(1); /* dst's (i, j) is src's (i+1, j+1) */\n"
    "  TWIN_AT2(dst, i, j) = 0.25f * (TWIN_AT2(src, i, j + 1) + TWIN_AT2(src, i + 2, j + 1) +\n"
    "                                 TWIN_AT2(src, i + 1, j) + TWIN_AT2(src, i + 1, j + 2));\n"
    "}\n";

/* The same kernel in C, for the host backend. */
static twin_status jacobi_host(const twin_host_launch *l, void *user) {
  (void)user;
  const float *src = l->data[0];
  float *dst = l->data[1];
  const ptrdiff_t *ss = twin_array_strides(l->args[0].array);
  const ptrdiff_t *ds = twin_array_strides(l->args[1].array);
#define SRC(i, j) src[(ptrdiff_t)(i)*ss[0] + (ptrdiff_t)(j)*ss[1]]
  for (size_t i = 0; i < l->global[0]; i++)
    for (size_t j = 0; j < l->global[1]; j++)
      dst[(ptrdiff_t)i * ds[0] + (ptrdiff_t)j * ds[1]] =
          0.25f * (SRC(i, j + 1) + SRC(i + 2, j + 1) + SRC(i + 1, j) + SRC(i + 1, j + 2));
#undef SRC
  return TWIN_OK;
}

static int fail(const char *what) {
  fprintf(stderr, "stencil: %s: %s\n", what, twin_last_error());
  return 1;
}

static twin_status make_kernel(twin_context *ctx, twin_kernel **k) {
  twin_program *prog;
  twin_status s = twin_program_new(ctx, source, NULL, &prog);
  if (s == TWIN_ERR_UNSUPPORTED)
    return twin_kernel_new_host(ctx, "jacobi", jacobi_host, NULL, k);
  if (s == TWIN_OK) {
    s = twin_kernel_new(prog, "jacobi", k);
    twin_program_unref(prog);
  }
  return s;
}

/* The plate: 100 degrees along the top edge, 0 elsewhere. */
static void initial(float *g) {
  memset(g, 0, N * N * sizeof *g);
  for (int j = 0; j < N; j++)
    g[j] = 100.0f;
}

/* The same steps in plain C, for the check. */
static float *reference(void) {
  float *a = malloc(N * N * sizeof *a), *b = malloc(N * N * sizeof *b);
  initial(a);
  initial(b);
  for (int s = 0; s < STEPS; s++) {
    for (int i = 1; i < N - 1; i++)
      for (int j = 1; j < N - 1; j++)
        b[i * N + j] =
            0.25f * (a[(i - 1) * N + j] + a[(i + 1) * N + j] + a[i * N + j - 1] + a[i * N + j + 1]);
    float *t = a;
    a = b;
    b = t;
  }
  free(b);
  return a;
}

int main(void) {
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("device: %s (%s)\n", dev->spec, dev->name);

  float *plate = malloc(N * N * sizeof *plate);
  initial(plate);
  size_t shape[] = {N, N};
  twin_array *grid[2], *inner[2];
  twin_slice interior[] = {{1, -1, 1}, {1, -1, 1}}; /* a[1:-1, 1:-1] */
  for (int g = 0; g < 2; g++)
    if (twin_array_from_host(ctx, TWIN_F32, 2, shape, plate, &grid[g]) != TWIN_OK ||
        twin_array_slice(grid[g], interior, &inner[g]) != TWIN_OK)
      return fail("making the grids");

  twin_kernel *k;
  if (make_kernel(ctx, &k) != TWIN_OK)
    return fail("making the kernel");
  size_t global[] = {N - 2, N - 2};
  int cur = 0;
  for (int s = 0; s < STEPS; s++, cur ^= 1) {
    twin_arg args[] = {twin_arg_view(grid[cur], TWIN_READ),
                       twin_arg_view(inner[cur ^ 1], TWIN_WRITE)};
    if (twin_kernel_launch(k, 2, global, NULL, 2, args) != TWIN_OK)
      return fail("twin_kernel_launch");
  }

  twin_stats st;
  twin_context_stats(ctx, &st);
  float *got = malloc(N * N * sizeof *got), *want = reference();
  if (twin_array_read(grid[cur], got, N * N * sizeof *got) != TWIN_OK)
    return fail("twin_array_read");
  double worst = 0;
  for (int i = 0; i < N * N; i++) {
    double d = (double)got[i] - (double)want[i];
    if (d < 0)
      d = -d;
    if (d > worst)
      worst = d;
  }
  printf("%d steps on a %d x %d plate: 4 cells below the hot edge's middle %.4f, largest "
         "difference from plain C %.2g; %llu bytes moved to the device in all\n",
         STEPS, N, N, got[4 * N + N / 2], worst, (unsigned long long)st.bytes_to_device);

  twin_kernel_unref(k);
  for (int g = 0; g < 2; g++) {
    twin_array_unref(inner[g]);
    twin_array_unref(grid[g]);
  }
  twin_context_unref(ctx);
  free(plate);
  free(got);
  free(want);
  if (worst > 1e-4)
    return 1;
  printf("ok\n");
  return 0;
}

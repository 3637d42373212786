/* An existing OpenCL library on twin arrays: CLBlast's SGEMM, C = alpha * A * B + beta * C,
 * called on the cl_mem objects and offsets of twin views between twin_device_begin and
 * twin_device_end, on the context's own in-order queue. twin's coherence stays exact: begin
 * brings each operand up to date on the device, and end after C's write makes the host copy
 * stale, so reading C afterwards fetches (and waits for) the library's result.
 *
 * The operands are views, passed to BLAS as a leading dimension and a transpose flag: A is the
 * transpose of a K x M array (column-major to BLAS), and C is the interior of a larger array
 * (a leading dimension wider than its rows). Needs an OpenCL device (TWIN_DEVICE=host has none:
 * the example then says so and exits 0). The result is checked against a plain C product; a
 * mismatch exits 1. Built only when libclblast-dev is installed (it links -lclblast). */
#include <stdio.h>
#include <stdlib.h>

#include "twin_opencl.h"
#include <clblast_c.h>

enum { M = 96, N = 80, K = 64 };

/* How BLAS sees a 2-D view: rows contiguous (no transpose, ld = row stride) or columns
 * contiguous (the transpose of a row-major matrix, ld = column stride). */
static int blas_layout(twin_array *a, CLBlastTranspose *trans, size_t *ld) {
  const ptrdiff_t *s = twin_array_strides(a);
  if (s[1] == 1 && s[0] > 0) {
    *trans = CLBlastTransposeNo;
    *ld = (size_t)s[0];
    return 0;
  }
  if (s[0] == 1 && s[1] > 0) {
    *trans = CLBlastTransposeYes;
    *ld = (size_t)s[1];
    return 0;
  }
  return -1; /* make it contiguous first (twin_array_contiguous) */
}

static int fail(const char *what) {
  fprintf(stderr, "clblast_sgemm: %s: %s\n", what, twin_last_error());
  return 1;
}

static float value(size_t i, size_t j, size_t salt) {
  return (float)((i * 3 + j * 5 + salt) % 7) - 3.0f;
}

/* C = A * B + 0.5 * C, in plain C, for the check (small integers and halves: exact). */
static void reference(const float *at, const float *b, const float *c0, float *out) {
  for (size_t i = 0; i < M; i++)
    for (size_t j = 0; j < N; j++) {
      float sum = 0.0f;
      for (size_t p = 0; p < K; p++)
        sum += at[p * M + i] * b[p * N + j];
      out[i * N + j] = sum + 0.5f * c0[i * N + j];
    }
}

typedef struct operand {
  twin_array *view;
  cl_mem mem;
  size_t offset, ld; /* in elements */
  CLBlastTranspose trans;
} operand;

static twin_status begin(operand *o, twin_access access) {
  size_t bytes;
  twin_status s = twin_device_begin(o->view, access, &o->mem, &bytes);
  o->offset = bytes / sizeof(float);
  if (s == TWIN_OK && blas_layout(o->view, &o->trans, &o->ld) != 0) {
    twin_device_end(o->view);
    return TWIN_ERR_NOT_VIEWABLE;
  }
  return s;
}

int main(void) {
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("device: %s (%s)\n", dev->spec, dev->name);
  if (!twin_context_cl_queue(ctx)) {
    printf("CLBlast needs an OpenCL device; nothing to do on the host backend\n");
    twin_context_unref(ctx);
    return 0;
  }

  static float at[K * M], b[K * N], big[(M + 2) * (N + 4)], c0[M * N], want[M * N], got[M * N];
  for (size_t i = 0; i < K * M; i++)
    at[i] = value(i / M, i % M, 1);
  for (size_t i = 0; i < K * N; i++)
    b[i] = value(i / N, i % N, 2);
  for (size_t i = 0; i < (M + 2) * (N + 4); i++)
    big[i] = value(i / (N + 4), i % (N + 4), 3);
  for (size_t i = 0; i < M; i++)
    for (size_t j = 0; j < N; j++)
      c0[i * N + j] = big[(i + 1) * (N + 4) + j + 2];
  reference(at, b, c0, want);

  size_t at_shape[] = {K, M}, b_shape[] = {K, N}, big_shape[] = {M + 2, N + 4};
  twin_array *at_arr, *big_arr;
  operand a = {0}, bo = {0}, c = {0};
  twin_slice inner[] = {{1, M + 1, 1}, {2, N + 2, 1}};
  if (twin_array_from_host(ctx, TWIN_F32, 2, at_shape, at, &at_arr) != TWIN_OK ||
      twin_array_transpose(at_arr, NULL, &a.view) != TWIN_OK || /* M x K, (1, M) */
      twin_array_from_host(ctx, TWIN_F32, 2, b_shape, b, &bo.view) != TWIN_OK ||
      twin_array_from_host(ctx, TWIN_F32, 2, big_shape, big, &big_arr) != TWIN_OK ||
      twin_array_slice(big_arr, inner, &c.view) != TWIN_OK) /* M x N, ld N + 4 */
    return fail("making the operands");

  if (begin(&a, TWIN_READ) != TWIN_OK || begin(&bo, TWIN_READ) != TWIN_OK ||
      begin(&c, TWIN_READ_WRITE) != TWIN_OK)
    return fail("twin_device_begin");
  cl_command_queue queue = twin_context_cl_queue(ctx);
  CLBlastStatusCode st =
      CLBlastSgemm(CLBlastLayoutRowMajor, a.trans, bo.trans, M, N, K, 1.0f, a.mem, a.offset, a.ld,
                   bo.mem, bo.offset, bo.ld, 0.5f, c.mem, c.offset, c.ld, &queue, NULL);
  twin_device_end(c.view);
  twin_device_end(bo.view);
  twin_device_end(a.view);
  if (st != CLBlastSuccess) {
    fprintf(stderr, "clblast_sgemm: CLBlastSgemm failed with status %d\n", (int)st);
    return 1;
  }

  if (twin_array_read(c.view, got, sizeof got) != TWIN_OK) /* waits for CLBlast */
    return fail("twin_array_read");
  size_t wrong = 0;
  for (size_t i = 0; i < M * N; i++)
    wrong += got[i] != want[i];
  printf("CLBlastSgemm %d x %d x %d, A transposed (%s), C an interior view (ld %zu): %zu "
         "mismatches\n",
         M, N, K, a.trans == CLBlastTransposeYes ? "TransposeYes" : "No", c.ld, wrong);

  twin_array_unref(a.view);
  twin_array_unref(bo.view);
  twin_array_unref(c.view);
  twin_array_unref(at_arr);
  twin_array_unref(big_arr);
  twin_context_unref(ctx);
  if (wrong)
    return 1;
  printf("ok\n");
  return 0;
}

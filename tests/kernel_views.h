/* Helpers shared by the kernel tests (test_kernel.c, host kernels on every backend, and
 * test_opencl_kernel.c, OpenCL C kernels): f32 arrays of known contents, and a pair of views
 * with an offset, a negative stride and non-C-order strides at once, with the check of what
 * scale2d(src, dst, f) leaves behind. */
#ifndef TWIN_TEST_KERNEL_VIEWS_H
#define TWIN_TEST_KERNEL_VIEWS_H

#include "fixture.h"

static twin_array *f32_array(twin_fixture *f, int ndim, const size_t *shape, float base) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  float *data = test_malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = base + (float)i;
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, ndim, shape, data, &a));
  test_free(data);
  return a;
}

/* src: a 6 x 8 grid viewed transposed, with its columns reversed and its first row and column
 * dropped, which gives an offset, a negative stride and non-C-order strides at once. dst: the
 * interior of a 9 x 7 grid. Every dst element outside the view stays untouched. */
typedef struct views {
  twin_array *grid, *src, *out, *dst;
} views;

static views make_views(twin_fixture *f) {
  views v;
  size_t gshape[] = {6, 8}, oshape[] = {9, 7};
  v.grid = f32_array(f, 2, gshape, 0);
  v.out = f32_array(f, 2, oshape, 1000);
  twin_array *t;
  assert_ok(twin_array_transpose(v.grid, NULL, &t));        /* 8 x 6, strides (1, 8) */
  twin_slice s[] = {{1, TWIN_NONE, 1}, {TWIN_NONE, 0, -1}}; /* 7 x 5, strides (1, -8) */
  assert_ok(twin_array_slice(t, s, &v.src));
  twin_array_unref(t);
  twin_slice inner[] = {{1, 8, 1}, {1, 6, 1}}; /* 7 x 5 */
  assert_ok(twin_array_slice(v.out, inner, &v.dst));
  return v;
}

static void drop_views(views *v) {
  twin_array_unref(v->src);
  twin_array_unref(v->dst);
  twin_array_unref(v->grid);
  twin_array_unref(v->out);
}

/* What scale2d(src, dst, f) leaves in the 9 x 7 grid. */
static void check_scaled(twin_array *out, float factor) {
  float got[9 * 7];
  assert_ok(twin_array_read(out, got, sizeof got));
  for (int i = 0; i < 9; i++)
    for (int j = 0; j < 7; j++) {
      float expect = 1000.0f + (float)(i * 7 + j);
      if (i >= 1 && i < 8 && j >= 1 && j < 6) {
        int si = i - 1, sj = j - 1;     /* element (si, sj) of src */
        int row = 5 - sj, col = si + 1; /* is grid[row][col] */
        expect = factor * (float)(row * 8 + col);
      }
      if (got[i * 7 + j] != expect)
        print_error("out[%d][%d] = %g, expected %g\n", i, j, got[i * 7 + j], expect);
      assert_true(got[i * 7 + j] == expect);
    }
}

#endif

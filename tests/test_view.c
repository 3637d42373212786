/* View constructors: every one shares the buffer, proves its extent, and fails cleanly. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define S(a, b, c) ((twin_slice){(a), (b), (c)})
#define N TWIN_NONE

/* An i32 array of the given shape holding 0, 1, 2, ... in C order. */
static twin_array *arange(twin_fixture *f, int ndim, const size_t *shape) {
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  int32_t *data = test_malloc(n * sizeof *data + 1);
  for (size_t i = 0; i < n; i++)
    data[i] = (int32_t)i;
  twin_array *a;
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, ndim, shape, data, &a));
  test_free(data);
  return a;
}

/* Reads a (any layout, at most 64 elements) in C order into out and returns the count. */
static size_t read_all(twin_array *a, int32_t *out) {
  size_t n = twin_array_size(a);
  assert_true(n <= 64);
  assert_ok(twin_array_read(a, out, n * sizeof *out));
  return n;
}

static void expect_1d(twin_array *base, twin_slice sl, const int32_t *want, size_t n) {
  twin_array *v;
  int32_t got[64];
  assert_ok(twin_array_slice(base, &sl, &v));
  assert_int_equal(twin_array_ndim(v), 1);
  assert_int_equal(read_all(v, got), n);
  assert_memory_equal(got, want, n * sizeof *got);
  twin_array_unref(v);
}

static void test_slice_follows_numpy_rules(void **state) {
  size_t shape[] = {10};
  twin_array *a = arange(fixture(state), 1, shape);
  expect_1d(a, S(2, 8, 2), (int32_t[]){2, 4, 6}, 3);
  expect_1d(a, S(N, N, -1), (int32_t[]){9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 10);
  expect_1d(a, S(-3, N, 1), (int32_t[]){7, 8, 9}, 3);
  expect_1d(a, S(8, 2, -2), (int32_t[]){8, 6, 4}, 3);
  expect_1d(a, S(100, N, 1), NULL, 0);
  expect_1d(a, S(-100, 3, 1), (int32_t[]){0, 1, 2}, 3);
  expect_1d(a, S(N, N, -3), (int32_t[]){9, 6, 3, 0}, 4);
  expect_1d(a, S(5, 5, 1), NULL, 0);
  expect_1d(a, S(N, -100, -1), (int32_t[]){9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 10);
  expect_1d(a, S(100, -100, -4), (int32_t[]){9, 5, 1}, 3);
  expect_1d(a, S(3, N, N), (int32_t[]){3, 4, 5, 6, 7, 8, 9}, 7);
  twin_array_unref(a);
}

static void test_slice_2d_has_strides_and_shape(void **state) {
  size_t shape[] = {4, 6};
  twin_array *a = arange(fixture(state), 2, shape), *v;
  twin_slice sl[] = {S(1, 4, 2), S(N, N, -2)};
  assert_ok(twin_array_slice(a, sl, &v));
  assert_int_equal(twin_array_shape(v)[0], 2);
  assert_int_equal(twin_array_shape(v)[1], 3);
  assert_int_equal(twin_array_strides(v)[0], 12);
  assert_int_equal(twin_array_strides(v)[1], -2);
  assert_false(twin_array_is_contiguous(v));
  int32_t got[6];
  read_all(v, got);
  assert_memory_equal(got, ((int32_t[]){11, 9, 7, 23, 21, 19}), sizeof got);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_slice_step_zero_is_invalid(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4};
  twin_array *a = arange(f, 1, shape), *v = (twin_array *)f;
  twin_stats before = fixture_stats(f);
  twin_slice sl = S(0, 4, 0);
  assert_status(twin_array_slice(a, &sl, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "step is 0"));
  assert_ptr_equal(v, (twin_array *)f);
  assert_int_equal(fixture_stats(f).arrays, before.arrays);
  assert_status(twin_array_slice(a, NULL, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_slice(NULL, &sl, &v), TWIN_ERR_INVALID_ARGUMENT);
  twin_array_unref(a);
}

static void test_index_drops_the_axis(void **state) {
  size_t shape[] = {3, 4};
  twin_array *a = arange(fixture(state), 2, shape), *row, *col, *elem;
  int32_t got[4];
  assert_ok(twin_array_index(a, 0, 1, &row));
  assert_int_equal(read_all(row, got), 4);
  assert_memory_equal(got, ((int32_t[]){4, 5, 6, 7}), 4 * sizeof *got);
  assert_ok(twin_array_index(a, 1, -1, &col));
  assert_int_equal(read_all(col, got), 3);
  assert_memory_equal(got, ((int32_t[]){3, 7, 11}), 3 * sizeof *got);
  assert_ok(twin_array_index(col, 0, 2, &elem));
  assert_int_equal(twin_array_ndim(elem), 0);
  assert_int_equal(read_all(elem, got), 1);
  assert_int_equal(got[0], 11);
  assert_status(twin_array_index(a, 0, 3, &elem), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_index(a, 0, -4, &elem), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_index(a, 2, 0, &elem), TWIN_ERR_INVALID_ARGUMENT);
  twin_array_unref(elem);
  twin_array_unref(col);
  twin_array_unref(row);
  twin_array_unref(a);
}

static void test_transpose_permutes_axes(void **state) {
  size_t shape[] = {2, 3, 4};
  twin_array *a = arange(fixture(state), 3, shape), *t, *r;
  int perm[] = {1, 2, 0};
  assert_ok(twin_array_transpose(a, perm, &t));
  assert_int_equal(twin_array_shape(t)[0], 3);
  assert_int_equal(twin_array_shape(t)[1], 4);
  assert_int_equal(twin_array_shape(t)[2], 2);
  assert_int_equal(twin_array_strides(t)[2], 12);
  int32_t got[24];
  read_all(t, got);
  assert_int_equal(got[1], 12); /* t[0][0][1] = a[1][0][0] */
  assert_int_equal(got[2], 1);  /* t[0][1][0] = a[0][0][1] */
  assert_ok(twin_array_transpose(a, NULL, &r));
  assert_int_equal(twin_array_shape(r)[0], 4);
  assert_int_equal(twin_array_strides(r)[0], 1);
  twin_array_unref(r);
  twin_array_unref(t);
  twin_array_unref(a);
}

static void test_transpose_bad_permutation_is_invalid(void **state) {
  size_t shape[] = {2, 3};
  twin_array *a = arange(fixture(state), 2, shape), *t = NULL;
  /* Negative entries count from the end (-1 is the last axis), so -1 and 1 repeat. */
  int repeated[] = {0, 0}, out_of_range[] = {0, 2}, negative[] = {-3, 0}, aliased[] = {-1, 1};
  assert_status(twin_array_transpose(a, repeated, &t), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "repeated"));
  assert_status(twin_array_transpose(a, out_of_range, &t), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_transpose(a, negative, &t), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "perm[0] = -3"));
  assert_status(twin_array_transpose(a, aliased, &t), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "repeated"));
  assert_null(t);
  twin_array_unref(a);
}

static void test_reshape_is_a_view_where_strides_allow(void **state) {
  size_t shape[] = {4, 6};
  twin_array *a = arange(fixture(state), 2, shape), *r, *v, *w;
  size_t flat[] = {TWIN_INFER};
  assert_ok(twin_array_reshape(a, 1, flat, &r));
  assert_int_equal(twin_array_shape(r)[0], 24);
  twin_array_unref(r);
  /* Every other row: rows stay contiguous, so splitting the row axis is a view. */
  twin_slice sl[] = {S(N, N, 2), TWIN_ALL};
  assert_ok(twin_array_slice(a, sl, &v));
  size_t split[] = {2, 2, 3};
  assert_ok(twin_array_reshape(v, 3, split, &w));
  int32_t got[12];
  read_all(w, got);
  assert_memory_equal(got, ((int32_t[]){0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17}), sizeof got);
  twin_array_unref(w);
  /* Flattening across the gap between rows cannot be a view. */
  size_t flat12[] = {12};
  w = NULL;
  assert_status(twin_array_reshape(v, 1, flat12, &w), TWIN_ERR_NOT_VIEWABLE);
  assert_non_null(strstr(twin_last_error(), "contiguous"));
  assert_null(w);
  size_t wrong[] = {5, 5};
  assert_status(twin_array_reshape(a, 2, wrong, &w), TWIN_ERR_SHAPE_MISMATCH);
  size_t two_infer[] = {TWIN_INFER, TWIN_INFER};
  assert_status(twin_array_reshape(a, 2, two_infer, &w), TWIN_ERR_INVALID_ARGUMENT);
  size_t bad_infer[] = {7, TWIN_INFER};
  assert_status(twin_array_reshape(a, 2, bad_infer, &w), TWIN_ERR_SHAPE_MISMATCH);
  /* A second TWIN_INFER is named first, even after lengths whose product overflows; a zero
   * length makes the count zero however large the others are (found by the fuzzer). */
  size_t huge_then_two_infer[] = {SIZE_MAX / 2, SIZE_MAX / 2, TWIN_INFER, TWIN_INFER};
  assert_status(twin_array_reshape(a, 4, huge_then_two_infer, &w), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "TWIN_INFER appears twice"));
  size_t huge_with_zero[] = {SIZE_MAX / 2, SIZE_MAX / 2, 0};
  assert_status(twin_array_reshape(a, 3, huge_with_zero, &w), TWIN_ERR_SHAPE_MISMATCH);
  assert_null(w);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_reshape_of_transpose_follows_numpy(void **state) {
  size_t shape[] = {2, 3};
  twin_array *a = arange(fixture(state), 2, shape), *t, *r;
  assert_ok(twin_array_transpose(a, NULL, &t));
  size_t flat[] = {6};
  assert_status(twin_array_reshape(t, 1, flat, &r), TWIN_ERR_NOT_VIEWABLE);
  size_t add_ones[] = {3, 1, 2, 1};
  assert_ok(twin_array_reshape(t, 4, add_ones, &r));
  int32_t got[6];
  read_all(r, got);
  assert_memory_equal(got, ((int32_t[]){0, 3, 1, 4, 2, 5}), sizeof got);
  twin_array_unref(r);
  twin_array_unref(t);
  twin_array_unref(a);
}

static void test_broadcast_to_repeats_and_is_read_only(void **state) {
  size_t shape[] = {3, 1};
  twin_array *a = arange(fixture(state), 2, shape), *b, *s;
  size_t to[] = {2, 3, 4};
  assert_ok(twin_array_broadcast_to(a, 3, to, &b));
  assert_int_equal(twin_array_strides(b)[0], 0);
  assert_int_equal(twin_array_strides(b)[2], 0);
  int32_t got[24];
  read_all(b, got);
  assert_int_equal(got[0], 0);
  assert_int_equal(got[3], 0);
  assert_int_equal(got[4], 1);
  assert_int_equal(got[12 + 11], 2);
  void *p;
  assert_status(twin_host_begin(b, TWIN_WRITE, &p), TWIN_ERR_READ_ONLY);
  assert_status(twin_host_begin(b, TWIN_READ_WRITE, &p), TWIN_ERR_READ_ONLY);
  assert_status(twin_array_write(b, got, sizeof got), TWIN_ERR_READ_ONLY);
  /* A view of a broadcast view stays read-only. */
  twin_slice sl[] = {TWIN_ALL, S(0, 1, 1), TWIN_ALL};
  assert_ok(twin_array_slice(b, sl, &s));
  assert_status(twin_host_begin(s, TWIN_WRITE, &p), TWIN_ERR_READ_ONLY);
  if (fixture(state)->has_device) {
    void *mem;
    size_t off;
    assert_status(fixture_device_begin(b, TWIN_WRITE, &mem, &off), TWIN_ERR_READ_ONLY);
  }
  size_t bad[] = {2, 4}, fewer[] = {3};
  assert_status(twin_array_broadcast_to(a, 2, bad, &s), TWIN_ERR_SHAPE_MISMATCH);
  twin_array_unref(s);
  assert_status(twin_array_broadcast_to(a, 1, fewer, &s), TWIN_ERR_INVALID_ARGUMENT);
  twin_array_unref(b);
  twin_array_unref(a);
}

static void test_squeeze_and_expand_dims(void **state) {
  size_t shape[] = {1, 3, 1, 2};
  twin_array *a = arange(fixture(state), 4, shape), *s, *e, *e2;
  assert_ok(twin_array_squeeze(a, &s));
  assert_int_equal(twin_array_ndim(s), 2);
  assert_int_equal(twin_array_shape(s)[0], 3);
  assert_int_equal(twin_array_strides(s)[0], 2);
  assert_ok(twin_array_expand_dims(s, -1, &e));
  assert_int_equal(twin_array_ndim(e), 3);
  assert_int_equal(twin_array_shape(e)[2], 1);
  assert_ok(twin_array_expand_dims(s, 0, &e2));
  assert_int_equal(twin_array_shape(e2)[0], 1);
  assert_true(twin_array_is_contiguous(e2));
  int32_t got[6];
  read_all(e2, got);
  assert_memory_equal(got, ((int32_t[]){0, 1, 2, 3, 4, 5}), sizeof got);
  twin_array *bad = NULL;
  assert_status(twin_array_expand_dims(s, 3, &bad), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_expand_dims(s, -4, &bad), TWIN_ERR_INVALID_ARGUMENT);
  assert_null(bad);
  twin_array_unref(e2);
  twin_array_unref(e);
  twin_array_unref(s);
  twin_array_unref(a);
}

static void test_as_strided_outside_buffer_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {10};
  twin_array *a = arange(f, 1, shape), *v = NULL;
  size_t s5[] = {5}, s3[] = {3};
  ptrdiff_t st2[] = {2}, st3[] = {3}, neg[] = {-1}, zero[] = {0};
  assert_ok(twin_array_as_strided(a, 1, s5, st2, 0, &v));
  twin_array_unref(v);
  v = NULL;
  assert_status(twin_array_as_strided(a, 1, s5, st2, 2, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "outside"));
  assert_status(twin_array_as_strided(a, 1, s5, st3, 0, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_as_strided(a, 1, s3, neg, 1, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_as_strided(a, 1, s3, zero, 10, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_as_strided(a, 1, s3, zero, -1, &v), TWIN_ERR_INVALID_ARGUMENT);
  size_t huge[] = {SIZE_MAX / 2};
  ptrdiff_t big[] = {PTRDIFF_MAX / 2};
  assert_status(twin_array_as_strided(a, 1, huge, big, 0, &v), TWIN_ERR_OVERFLOW);
  assert_null(v);
  /* Negative strides inside the buffer are fine. */
  assert_ok(twin_array_as_strided(a, 1, s3, neg, 9, &v));
  int32_t got[3];
  read_all(v, got);
  assert_memory_equal(got, ((int32_t[]){9, 8, 7}), sizeof got);
  twin_array_unref(v);
  twin_array_unref(a);
}

/* Whether the one gate every view goes through must accept a geometry, in wide arithmetic: the
 * counts and byte sizes twin__check_shape bounds, the strides and extent twin__check_extent
 * bounds, and every element inside the buffer of `elements` items of `item` bytes (an empty
 * view's offset in [0, elements]). */
__extension__ typedef __int128 wide_int; /* gcc and clang: every sum below fits */

static bool gate_accepts(int ndim, const size_t *shape, const ptrdiff_t *strides, ptrdiff_t offset,
                         size_t elements, size_t item) {
  const wide_int max = PTRDIFF_MAX, min = PTRDIFF_MIN;
  wide_int n = 1, span = item, lo = 0, hi = 0;
  for (int i = 0; i < ndim; i++) {
    n *= shape[i];
    span *= shape[i] ? shape[i] : 1;
    if (n * item > max || (n == 0 && span > max))
      return false;
  }
  for (int i = 0; i < ndim; i++) {
    wide_int step = (wide_int)strides[i] * item,
             reach = step * (wide_int)(shape[i] ? shape[i] - 1 : 0);
    if (step > max || step < min)
      return false;
    *(reach < 0 ? &lo : &hi) += reach;
    if (lo < min || hi > max)
      return false;
  }
  if (n == 0)
    return offset >= 0 && (size_t)offset <= elements;
  return offset + lo / (wide_int)item >= 0 && offset + hi / (wide_int)item < (wide_int)elements;
}

/* as_strided runs the gate on any geometry: around the edges of a small buffer, with strides
 * and offsets near the largest that fit in bytes, it accepts exactly what gate_accepts does
 * (the usual view takes a one-pass proof, the rest the checks that explain a refusal). */
static void test_the_view_gate_accepts_exactly_the_views_inside(void **state) {
  twin_fixture *f = fixture(state);
  const twin_dtype dtypes[] = {TWIN_U8, TWIN_I32, TWIN_F64};
  const size_t lens[] = {0, 1, 2, 3, 5};
  for (int d = 0; d < 3; d++) {
    size_t item = twin_dtype_size(dtypes[d]), elements = 12;
    /* edge: the largest stride that fits in bytes; past: one beyond (for bytes, the largest
     * stride of all, its bytes fit too, so one below). */
    ptrdiff_t edge = PTRDIFF_MAX / (ptrdiff_t)item, past = item > 1 ? edge + 1 : edge - 1;
    const ptrdiff_t strides[] = {-7,   -3,    -1,   0,         1,        2,         5,
                                 edge, -edge, past, -edge - 1, edge / 2, -edge / 2, edge / 4 + 1};
    const ptrdiff_t offsets[] = {-3, -1, 0, 1, 5, 11, 12, 13, edge, -edge};
    enum { NS = sizeof strides / sizeof *strides, NO = sizeof offsets / sizeof *offsets };
    twin_array *a, *v;
    assert_ok(twin_array_zeros(f->ctx, dtypes[d], 1, &elements, &a));
    size_t accepted = 0;
    for (int k = 0; k < 5 * 5 * NS * NS; k++) {
      size_t shape[2] = {lens[k % 5], lens[k / 5 % 5]};
      ptrdiff_t st[2] = {strides[k / 25 % NS], strides[k / 25 / NS]};
      for (int o = 0; o < NO; o++)
        for (int ndim = 1; ndim <= 2; ndim++) {
          if (ndim == 1 && (k / 5 % 5 || k / 25 / NS))
            continue; /* one case per 1-D geometry */
          bool want = gate_accepts(ndim, shape, st, offsets[o], elements, item);
          v = NULL;
          twin_status s = twin_array_as_strided(a, ndim, shape, st, offsets[o], &v);
          if ((s == TWIN_OK) != want)
            print_error("%s: shape %zu,%zu strides %td,%td offset %td (ndim %d): %s\n",
                        twin_dtype_name(dtypes[d]), shape[0], shape[1], st[0], st[1], offsets[o],
                        ndim, s == TWIN_OK ? "accepted" : twin_last_error());
          assert_int_equal(s == TWIN_OK, want);
          if (s != TWIN_OK) {
            assert_null(v);
            continue;
          }
          accepted++;
          for (int i = 0; i < ndim; i++)
            assert_int_equal(twin_array_shape(v)[i], shape[i]);
          twin_array_unref(v);
        }
    }
    assert_true(accepted > 100); /* the sweep reaches inside as well as out */
    twin_array_unref(a);
  }
}

/* ---- Overflow: every stride, offset and extent is computed with checked arithmetic ---- */

static void test_slice_with_a_huge_step_keeps_one_element(void **state) {
  size_t shape[] = {3, 4};
  twin_array *a = arange(fixture(state), 2, shape), *v;
  int32_t got[4];
  /* Axis 0 has stride 4: stride x step overflows, but the slice holds one row, so its stride
   * addresses nothing and the result is NumPy's a[::huge]. */
  twin_slice first[] = {S(N, N, PTRDIFF_MAX), TWIN_ALL};
  assert_ok(twin_array_slice(a, first, &v));
  assert_int_equal(twin_array_shape(v)[0], 1);
  assert_true(twin_array_strides(v)[0] >= 0);
  read_all(v, got);
  assert_memory_equal(got, ((int32_t[]){0, 1, 2, 3}), sizeof got);
  twin_array_unref(v);
  twin_slice last[] = {S(N, N, -PTRDIFF_MAX), S(N, N, PTRDIFF_MAX - 1)};
  assert_ok(twin_array_slice(a, last, &v));
  assert_int_equal(twin_array_size(v), 1);
  read_all(v, got);
  assert_int_equal(got[0], 8);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_slice_of_an_extreme_stride_does_not_overflow(void **state) {
  size_t shape[] = {4};
  twin_array *a = arange(fixture(state), 1, shape), *v, *w;
  size_t one[] = {1};
  /* A length-1 axis may have any stride whose byte count fits: it never steps. */
  ptrdiff_t most_negative[] = {PTRDIFF_MIN / 4}, too_negative[] = {PTRDIFF_MIN};
  v = NULL;
  assert_status(twin_array_as_strided(a, 1, one, too_negative, 2, &v), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "overflows in bytes"));
  assert_null(v);
  assert_ok(twin_array_as_strided(a, 1, one, most_negative, 2, &v));
  twin_slice steps[] = {S(N, N, 2), S(N, N, -1), S(0, 1, -3), S(N, N, PTRDIFF_MAX)};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    assert_ok(twin_array_slice(v, &steps[i], &w));
    int32_t got[1] = {-1};
    assert_int_equal(read_all(w, got), steps[i].step == -3 ? 0 : 1);
    if (twin_array_size(w))
      assert_int_equal(got[0], 2);
    twin_array_unref(w);
  }
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_index_with_extreme_values_is_out_of_range(void **state) {
  size_t shape[] = {3, 4};
  twin_array *a = arange(fixture(state), 2, shape), *v = NULL;
  const ptrdiff_t bad[] = {PTRDIFF_MIN, PTRDIFF_MIN + 1, PTRDIFF_MAX, -4, 3};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_status(twin_array_index(a, 0, bad[i], &v), TWIN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(twin_last_error(), "out of range"));
  }
  assert_null(v);
  twin_array_unref(a);
}

static void test_empty_view_with_unrepresentable_geometry_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4};
  twin_array *a = arange(f, 1, shape), *v = NULL;
  twin_stats before = fixture_stats(f);
  /* An axis longer than PTRDIFF_MAX: indexing it from the end would overflow. */
  size_t longest[] = {0, SIZE_MAX}, lengths[] = {0, 1ull << 61, 8}, wide[] = {0, 3};
  ptrdiff_t ones[] = {1, 1, 1}, huge[] = {1, PTRDIFF_MAX};
  assert_status(twin_array_as_strided(a, 2, longest, ones, 0, &v), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_as_strided"));
  assert_non_null(strstr(twin_last_error(), "shape[1]"));
  /* Lengths whose C-order strides overflow, as a broadcast target and through as_strided. */
  assert_status(twin_array_as_strided(a, 3, lengths, ones, 0, &v), TWIN_ERR_OVERFLOW);
  twin_array *one;
  assert_ok(twin_array_index(a, 0, 0, &one));
  assert_status(twin_array_broadcast_to(one, 3, lengths, &v), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "twin_array_broadcast_to"));
  /* Strides whose extent overflows, even with no element to reach. */
  assert_status(twin_array_as_strided(a, 2, wide, huge, 0, &v), TWIN_ERR_OVERFLOW);
  assert_non_null(strstr(twin_last_error(), "axis 1"));
  assert_null(v);
  twin_array_unref(one);
  assert_int_equal(fixture_stats(f).arrays, before.arrays);
  twin_array_unref(a);
}

/* ---- Empty arrays: views of them are empty, as in NumPy ---- */

static void expect_shape(twin_array *v, int ndim, const size_t *shape) {
  assert_int_equal(twin_array_ndim(v), ndim);
  assert_memory_equal(twin_array_shape(v), shape, (size_t)ndim * sizeof *shape);
}

static void test_views_of_an_empty_array_are_empty(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {0, 5}, tall[] = {5, 0};
  twin_array *a, *b, *v;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, shape, &a));
  assert_ok(twin_array_zeros(f->ctx, TWIN_I32, 2, tall, &b));
  twin_slice cols[] = {TWIN_ALL, S(1, 4, 1)}, far[] = {S(100, N, 1), S(103, N, -1)};
  assert_ok(twin_array_slice(a, cols, &v));
  expect_shape(v, 2, (size_t[]){0, 3});
  twin_array_unref(v);
  assert_ok(twin_array_slice(a, far, &v));
  expect_shape(v, 2, (size_t[]){0, 5});
  twin_array_unref(v);
  twin_slice rows[] = {S(3, N, 1), S(2, 9, 2)};
  assert_ok(twin_array_slice(b, rows, &v));
  expect_shape(v, 2, (size_t[]){2, 0});
  assert_ok(twin_array_read(v, NULL, 0));
  twin_array_unref(v);
  /* Indexing an axis that has elements, while another axis has none. */
  assert_ok(twin_array_index(a, 1, 2, &v));
  expect_shape(v, 1, (size_t[]){0});
  twin_array_unref(v);
  assert_ok(twin_array_index(b, 0, -1, &v));
  expect_shape(v, 1, (size_t[]){0});
  twin_array_unref(v);
  v = NULL;
  assert_status(twin_array_index(a, 0, 0, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "out of range"));
  assert_null(v);
  twin_array_unref(b);
  twin_array_unref(a);
}

static void test_empty_array_with_long_axes_works_for_every_view(void **state) {
  twin_fixture *f = fixture(state);
  /* The largest i32 shape of this form whose strides fit in every axis order. */
  size_t shape[] = {0, 1ull << 56, 8};
  twin_array *a, *v, *w;
  assert_ok(twin_array_new(f->ctx, TWIN_I32, 3, shape, &a));
  assert_ok(twin_array_transpose(a, NULL, &v));
  expect_shape(v, 3, (size_t[]){8, 1ull << 56, 0});
  twin_array_unref(v);
  size_t moved[] = {1ull << 56, 0, 8};
  assert_ok(twin_array_reshape(a, 3, moved, &v));
  twin_array_unref(v);
  twin_slice sl[] = {TWIN_ALL, S(N, N, -2), S(1, N, 3)};
  assert_ok(twin_array_slice(a, sl, &v));
  expect_shape(v, 3, (size_t[]){0, 1ull << 55, 3});
  twin_array_unref(v);
  assert_ok(twin_array_index(a, 1, -1, &v));
  twin_array_unref(v);
  assert_ok(twin_array_expand_dims(a, 0, &v));
  size_t twice[] = {2, 1, 0, 1ull << 56, 8};
  assert_ok(twin_array_broadcast_to(v, 5, twice, &w));
  assert_ok(twin_array_read(w, NULL, 0)); /* packed strides of a long empty shape */
  twin_array_unref(w);
  twin_array_unref(v);
  assert_ok(twin_array_read(a, NULL, 0));
  twin_array_unref(a);
}

/* ---- Negative axes count from the end, as in NumPy ---- */

static void test_negative_axes_count_from_the_end(void **state) {
  size_t shape[] = {2, 3, 4};
  twin_array *a = arange(fixture(state), 3, shape), *v, *w;
  assert_ok(twin_array_index(a, -1, 1, &v)); /* a[..., 1] */
  expect_shape(v, 2, (size_t[]){2, 3});
  int32_t got[24];
  read_all(v, got);
  assert_memory_equal(got, ((int32_t[]){1, 5, 9, 13, 17, 21}), 6 * sizeof *got);
  twin_array_unref(v);
  assert_ok(twin_array_index(a, -3, -1, &v)); /* a[-1] */
  read_all(v, got);
  assert_int_equal(got[0], 12);
  twin_array_unref(v);
  v = NULL;
  assert_status(twin_array_index(a, -4, 0, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "axis -4"));
  assert_null(v);
  int perm[] = {-1, 0, -2}, same[] = {2, 0, 1};
  assert_ok(twin_array_transpose(a, perm, &v));
  assert_ok(twin_array_transpose(a, same, &w));
  expect_shape(v, 3, (size_t[]){4, 2, 3});
  assert_memory_equal(twin_array_strides(v), twin_array_strides(w), 3 * sizeof(ptrdiff_t));
  twin_array_unref(w);
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_squeeze_axis_drops_one_length_one_axis(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {1, 3, 1, 2};
  twin_array *a = arange(f, 4, shape), *v, *w;
  assert_ok(twin_array_squeeze_axis(a, -2, &v)); /* axis 2 */
  expect_shape(v, 3, (size_t[]){1, 3, 2});
  assert_ok(twin_array_squeeze_axis(v, 0, &w));
  expect_shape(w, 2, (size_t[]){3, 2});
  int32_t got[6];
  read_all(w, got);
  assert_memory_equal(got, ((int32_t[]){0, 1, 2, 3, 4, 5}), sizeof got);
  twin_array_unref(w);
  twin_array_unref(v);
  twin_stats before = fixture_stats(f);
  v = NULL;
  assert_status(twin_array_squeeze_axis(a, 1, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "twin_array_squeeze_axis"));
  assert_non_null(strstr(twin_last_error(), "length 3"));
  assert_status(twin_array_squeeze_axis(a, -5, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_squeeze_axis(a, 4, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_squeeze_axis(NULL, 0, &v), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_array_squeeze_axis(a, 0, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_null(v);
  assert_int_equal(fixture_stats(f).arrays, before.arrays);
  /* The plain squeeze still drops every length-1 axis. */
  assert_ok(twin_array_squeeze(a, &v));
  expect_shape(v, 2, (size_t[]){3, 2});
  twin_array_unref(v);
  twin_array_unref(a);
}

static void test_view_keeps_buffer_alive_after_base_drops(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {64, 64};
  twin_array *a = arange(f, 2, shape), *col;
  twin_slice sl[] = {TWIN_ALL, S(5, 6, 1)};
  twin_stats before = fixture_stats(f);
  assert_ok(twin_array_slice(a, sl, &col));
  twin_stats after = fixture_stats(f);
  /* A view allocates no buffer memory on either side. */
  assert_int_equal(after.host_bytes, before.host_bytes);
  assert_int_equal(after.device_bytes, before.device_bytes);
  assert_int_equal(after.buffers, before.buffers);
  assert_int_equal(after.arrays, before.arrays + 1);
  twin_array_unref(a);
  after = fixture_stats(f);
  assert_int_equal(after.host_bytes, 64 * 64 * 4);
  assert_int_equal(after.buffers, 1);
  int32_t got[64];
  read_all(col, got);
  for (int i = 0; i < 64; i++)
    assert_int_equal(got[i], i * 64 + 5);
  twin_array_unref(col);
  after = fixture_stats(f);
  assert_int_equal(after.host_bytes, 0);
  assert_int_equal(after.device_bytes, 0);
  assert_int_equal(after.buffers, 0);
}

static void test_view_dropped_first_leaves_base_intact(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {8};
  twin_array *a = arange(f, 1, shape), *v;
  twin_slice sl = S(2, 6, 1);
  assert_ok(twin_array_slice(a, &sl, &v));
  twin_array_unref(v);
  assert_int_equal(fixture_stats(f).buffers, 1);
  int32_t got[8];
  read_all(a, got);
  assert_int_equal(got[7], 7);
  twin_array_unref(a);
}

/* ---- Making and dropping views and arrays: the report stays exact ---- */

/* The sizes of the buffers a walk saw, in the order it saw them (largest first). */
typedef struct sizes {
  size_t n, nbytes[8];
} sizes;

static bool note_size(const twin_buffer_info *b, void *user) {
  sizes *s = user;
  if (s->n < 8)
    s->nbytes[s->n] = b->nbytes;
  s->n++;
  return true;
}

static void expect_buffers(twin_fixture *f, size_t n, const size_t *nbytes) {
  sizes s = {0};
  assert_ok(twin_context_walk(f->ctx, note_size, &s));
  assert_int_equal(s.n, n);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(s.nbytes[i], nbytes[i]);
  assert_int_equal(fixture_stats(f).buffers, n);
}

static twin_array *bytes_array(twin_fixture *f, size_t n) {
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, &n, &a));
  return a;
}

/* A new buffer joins the context without its lock and a walk then lists it; the report must
 * lose none however buffers are dropped: the newest before any walk, one below it, and one a
 * walk has listed. */
static void test_buffers_leave_the_report_in_any_order(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = bytes_array(f, 100), *b = bytes_array(f, 200), *c = bytes_array(f, 300);
  twin_array *d = bytes_array(f, 400);
  twin_array_unref(d); /* the newest, no walk since it was made */
  twin_array_unref(a); /* the oldest, below the newest ones */
  expect_buffers(f, 2, (size_t[]){300, 200});
  d = bytes_array(f, 400);
  twin_array_unref(b); /* listed by the walk above, between two others */
  expect_buffers(f, 2, (size_t[]){400, 300});
  twin_array_unref(c);
  expect_buffers(f, 1, (size_t[]){400});
  twin_array_unref(d);
  expect_buffers(f, 0, NULL);
}

enum { VIEW_THREADS = 2, VIEW_ROUNDS = 3000, SHARED_FLOATS = 1024 };

typedef struct view_work {
  twin_array *small;   /* a view covering 1/64 of the shared buffer */
  twin_context *ctx;   /* for the arrays of buffers of their own */
  atomic_bool *done;   /* set by the last worker */
  atomic_int *running; /* workers still running */
  bool failed;
} view_work;

/* Makes and drops, VIEW_ROUNDS times: a view of the whole shared buffer (its views then hold
 * it no longer), a small one with an owner, and an array of its own buffer. No assertion here
 * (cmocka's are not for threads): a failure is noted. */
static void *make_and_drop_views(void *arg) {
  view_work *w = arg;
  const size_t whole = SHARED_FLOATS, n = 16;
  const ptrdiff_t one = 1;
  for (int r = 0; r < VIEW_ROUNDS && !w->failed; r++) {
    twin_array *big, *tiny, *own;
    twin_slice half = S(0, 8, 1);
    w->failed |= twin_array_as_strided(w->small, 1, &whole, &one, 0, &big) != TWIN_OK;
    w->failed |= twin_array_slice(w->small, &half, &tiny) != TWIN_OK;
    w->failed |= twin_array_new(w->ctx, TWIN_F32, 1, &n, &own) != TWIN_OK;
    if (w->failed)
      break;
    twin_array_set_owner(tiny, "worker");
    twin_array_unref(big);
    twin_array_unref(own);
    twin_array_unref(tiny);
  }
  if (atomic_fetch_sub(w->running, 1) == 1)
    atomic_store(w->done, true);
  return NULL;
}

/* What every walk must see of the shared buffer while the workers run. */
typedef struct shared_seen {
  size_t nbytes, walks;
  bool bad;
} shared_seen;

static bool check_shared(const twin_buffer_info *b, void *user) {
  shared_seen *s = user;
  if (b->nbytes != s->nbytes)
    return true;
  s->walks++;
  /* The small view always, and at most three of each worker's (one of them being made). */
  s->bad |= b->views < 1 || b->views > 1 + 3 * VIEW_THREADS;
  for (size_t i = 0; i < b->views; i++) {
    const twin_view_info *v = &b->view[i];
    s->bad |= v->dtype != TWIN_F32 || v->ndim != 1;
    s->bad |= v->shape[0] != 16 && v->shape[0] != 8 && v->shape[0] != SHARED_FLOATS;
    s->bad |=
        strcmp(v->owner, "small") != 0 && strcmp(v->owner, "worker") != 0 && v->owner[0] != '\0';
  }
  return true;
}

/* Threads making and dropping views of one buffer and arrays of their own, while this thread
 * walks the report and reads the statistics: every snapshot is whole, and once they are done
 * every count is back where it was. The view list's lock, the views' shared reference on the
 * buffer and the lock-free joining of new buffers under ThreadSanitizer. */
static void test_threads_making_views_keep_the_report_exact(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {SHARED_FLOATS}, nbytes = SHARED_FLOATS * 4;
  twin_array *a, *small;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, shape, &a));
  twin_slice first = S(0, 16, 1);
  assert_ok(twin_array_slice(a, &first, &small));
  assert_ok(twin_array_set_owner(small, "small"));
  twin_array_unref(a); /* small alone holds the buffer now: held by views */
  assert_int_equal(fixture_stats(f).held_by_views_bytes, base.held_by_views_bytes + nbytes);
  atomic_bool done = false;
  atomic_int running = VIEW_THREADS;
  view_work w[VIEW_THREADS];
  pthread_t th[VIEW_THREADS];
  for (int t = 0; t < VIEW_THREADS; t++) {
    w[t] = (view_work){small, f->ctx, &done, &running, false};
    assert_int_equal(pthread_create(&th[t], NULL, make_and_drop_views, &w[t]), 0);
  }
  shared_seen seen = {.nbytes = nbytes};
  bool held_ok = true;
  while (!atomic_load(&done)) {
    assert_ok(twin_context_walk(f->ctx, check_shared, &seen));
    size_t held = fixture_stats(f).held_by_views_bytes - base.held_by_views_bytes;
    held_ok &= held == 0 || held == nbytes;
  }
  for (int t = 0; t < VIEW_THREADS; t++) {
    assert_int_equal(pthread_join(th[t], NULL), 0);
    assert_false(w[t].failed);
  }
  assert_false(seen.bad);
  assert_true(held_ok);
  twin_stats now = fixture_stats(f);
  assert_int_equal(now.buffers, base.buffers + 1);
  assert_int_equal(now.arrays, base.arrays + 1);
  assert_int_equal(now.held_by_views_bytes, base.held_by_views_bytes + nbytes);
  expect_buffers(f, 1, &nbytes);
  twin_array_unref(small);
  now = fixture_stats(f);
  assert_int_equal(now.buffers, base.buffers);
  assert_int_equal(now.arrays, base.arrays);
  assert_int_equal(now.held_by_views_bytes, base.held_by_views_bytes);
}

/* ---- Released array objects are kept for reuse, but never behind the allocator's back ---- */

static void *no_memory(size_t n) {
  (void)n;
  return NULL;
}

static atomic_int hook_frees;

static void counting_free(void *p) {
  atomic_fetch_add(&hook_frees, 1);
  free(p);
}

/* Views released just before may be kept for the next ones; with allocation hooks installed,
 * a view is still made by the hook, here one that fails, and still freed through the hook. */
static void test_views_made_and_freed_through_hooks_skip_kept_objects(void **state) {
  size_t shape[] = {8};
  twin_array *a = arange(fixture(state), 1, shape), *v = NULL;
  twin_slice sl = S(2, 6, 1);
  for (int i = 0; i < 4; i++) {
    assert_ok(twin_array_slice(a, &sl, &v));
    twin_array_unref(v);
  }
  twin__allocator saved;
  twin__allocator_copy(&saved, &twin__host_alloc);
  atomic_store(&twin__host_alloc.malloc_fn, no_memory);
  v = NULL;
  assert_status(twin_array_slice(a, &sl, &v), TWIN_ERR_OUT_OF_HOST_MEMORY);
  assert_null(v);
  twin__allocator_set(&saved);
  assert_ok(twin_array_slice(a, &sl, &v));
  atomic_store(&hook_frees, 0);
  atomic_store(&twin__host_alloc.free_fn, counting_free);
  twin_array_unref(v);
  twin__allocator_set(&saved);
  assert_int_equal(atomic_load(&hook_frees), 1);
  twin_array_unref(a);
}

/* Reads element k of a 1-D view on the device side, straight from its device memory. */
static int32_t device_element(twin_fixture *f, twin_array *v, size_t k) {
  void *mem;
  size_t off;
  int32_t x;
  assert_ok(fixture_device_begin(v, TWIN_READ, &mem, &off));
  off += (size_t)((ptrdiff_t)k * twin_array_strides(v)[0]) * sizeof x;
  assert_true(fixture_device_get(f->ctx, mem, off, &x, sizeof x));
  assert_ok(fixture_device_end(v));
  return x;
}

static void test_host_write_through_view_is_seen_on_device_through_another(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  size_t shape[] = {4, 4};
  twin_array *a = arange(f, 2, shape), *row, *col;
  assert_ok(twin_array_index(a, 0, 2, &row)); /* a[2, :] */
  assert_ok(twin_array_index(a, 1, 1, &col)); /* a[:, 1], crosses the row at a[2, 1] */
  int32_t *p;
  assert_ok(twin_host_begin(row, TWIN_READ_WRITE, (void **)&p));
  p[1] = -42;
  assert_ok(twin_host_end(row));
  assert_int_equal(device_element(f, col, 2), -42);
  assert_int_equal(device_element(f, col, 3), 13);
  twin_array_unref(col);
  twin_array_unref(row);
  twin_array_unref(a);
}

static void test_device_write_through_view_is_seen_on_host_through_another(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  size_t shape[] = {4, 4};
  twin_array *a = arange(f, 2, shape), *rev, *diag;
  twin_slice sl[] = {S(N, N, -1), S(N, N, -1)};
  assert_ok(twin_array_slice(a, sl, &rev)); /* a[::-1, ::-1] */
  void *mem;
  size_t off;
  int32_t v = 777;
  assert_ok(fixture_device_begin(rev, TWIN_READ_WRITE, &mem, &off));
  /* rev[0][0] is a[3][3], the first element of the view. */
  assert_true(fixture_device_put(f->ctx, mem, off, &v, sizeof v));
  assert_ok(fixture_device_end(rev));
  size_t dshape[] = {4};
  ptrdiff_t dstride[] = {5};
  assert_ok(twin_array_as_strided(a, 1, dshape, dstride, 0, &diag));
  int32_t got[4];
  read_all(diag, got);
  assert_memory_equal(got, ((int32_t[]){0, 5, 10, 777}), sizeof got);
  twin_array_unref(diag);
  twin_array_unref(rev);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_slice_follows_numpy_rules),
    TWIN_TEST(test_slice_2d_has_strides_and_shape),
    TWIN_TEST(test_slice_step_zero_is_invalid),
    TWIN_TEST(test_index_drops_the_axis),
    TWIN_TEST(test_transpose_permutes_axes),
    TWIN_TEST(test_transpose_bad_permutation_is_invalid),
    TWIN_TEST(test_reshape_is_a_view_where_strides_allow),
    TWIN_TEST(test_reshape_of_transpose_follows_numpy),
    TWIN_TEST(test_broadcast_to_repeats_and_is_read_only),
    TWIN_TEST(test_squeeze_and_expand_dims),
    TWIN_TEST(test_as_strided_outside_buffer_is_refused),
    TWIN_TEST(test_the_view_gate_accepts_exactly_the_views_inside),
    TWIN_TEST(test_slice_with_a_huge_step_keeps_one_element),
    TWIN_TEST(test_slice_of_an_extreme_stride_does_not_overflow),
    TWIN_TEST(test_index_with_extreme_values_is_out_of_range),
    TWIN_TEST(test_empty_view_with_unrepresentable_geometry_is_refused),
    TWIN_TEST(test_views_of_an_empty_array_are_empty),
    TWIN_TEST(test_empty_array_with_long_axes_works_for_every_view),
    TWIN_TEST(test_negative_axes_count_from_the_end),
    TWIN_TEST(test_squeeze_axis_drops_one_length_one_axis),
    TWIN_TEST(test_view_keeps_buffer_alive_after_base_drops),
    TWIN_TEST(test_view_dropped_first_leaves_base_intact),
    TWIN_TEST(test_buffers_leave_the_report_in_any_order),
    TWIN_TEST(test_threads_making_views_keep_the_report_exact),
    TWIN_TEST(test_views_made_and_freed_through_hooks_skip_kept_objects),
    TWIN_TEST(test_host_write_through_view_is_seen_on_device_through_another),
    TWIN_TEST(test_device_write_through_view_is_seen_on_host_through_another),
};

TWIN_TEST_MAIN(tests)

/* twin_mpi_datatype against a packed reference (twin_array_read) for random views: slices with
 * any step (negative strides), transposes, indexes, new axes, broadcasts and zero-stride
 * as_strided views, of every element size. Each rank checks its own views through MPI on
 * MPI_COMM_SELF, sending with the datatype and receiving packed, and the other way round for
 * views that can be written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_fixture.h"

enum { VIEWS = 300 };

static uint64_t rng;

static unsigned next(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return n ? (unsigned)(rng % n) : 0;
}

static twin_array *random_base(twin_context *ctx) {
  static const twin_dtype dtypes[] = {TWIN_U8, TWIN_I16, TWIN_I32, TWIN_F32, TWIN_F64};
  twin_dtype dtype = dtypes[next(5)];
  int ndim = 1 + (int)next(4);
  size_t shape[4], n = 1;
  for (int k = 0; k < ndim; k++) {
    shape[k] = next(12) == 0 ? 0 : 1 + next(6);
    n *= shape[k];
  }
  size_t elem = twin_dtype_size(dtype);
  unsigned char *data = malloc(n * elem + 1);
  for (size_t i = 0; i < n * elem; i++)
    data[i] = (unsigned char)(i * 37 + 11); /* every byte distinct enough to spot a slip */
  twin_array *a;
  assert_ok(twin_array_from_host(ctx, dtype, ndim, shape, data, &a));
  free(data);
  return a;
}

static ptrdiff_t bound(size_t n) {
  return next(4) == 0 ? TWIN_NONE : (ptrdiff_t)next((unsigned)(2 * n + 3)) - (ptrdiff_t)n - 1;
}

static twin_status slice(twin_array *a, twin_array **out) {
  twin_slice s[TWIN_MAX_DIMS];
  for (int k = 0; k < twin_array_ndim(a); k++) {
    static const ptrdiff_t steps[] = {-3, -2, -1, 1, 1, 2, 3};
    size_t n = twin_array_shape(a)[k];
    s[k] = (twin_slice){bound(n), bound(n), steps[next(7)]};
  }
  return twin_array_slice(a, s, out);
}

static twin_status transpose(twin_array *a, twin_array **out) {
  int perm[TWIN_MAX_DIMS], n = twin_array_ndim(a);
  for (int k = 0; k < n; k++)
    perm[k] = k;
  for (int k = n - 1; k > 0; k--) {
    int j = (int)next((unsigned)k + 1), t = perm[k];
    perm[k] = perm[j];
    perm[j] = t;
  }
  return twin_array_transpose(a, perm, out);
}

/* A repeated leading axis (stride 0), as np.broadcast_to does, and length-1 axes widened. */
static twin_status broadcast(twin_array *a, twin_array **out) {
  int n = twin_array_ndim(a);
  if (n + 1 > TWIN_MAX_DIMS)
    return twin_array_transpose(a, NULL, out);
  size_t shape[TWIN_MAX_DIMS];
  shape[0] = 1 + next(3);
  for (int k = 0; k < n; k++)
    shape[k + 1] = twin_array_shape(a)[k] == 1 ? 1 + next(3) : twin_array_shape(a)[k];
  return twin_array_broadcast_to(a, n + 1, shape, out);
}

/* A writable view that repeats elements: a new outer axis of stride 0. */
static twin_status repeat(twin_array *a, twin_array **out) {
  int n = twin_array_ndim(a);
  if (n + 1 > TWIN_MAX_DIMS)
    return twin_array_transpose(a, NULL, out);
  size_t shape[TWIN_MAX_DIMS];
  ptrdiff_t strides[TWIN_MAX_DIMS];
  shape[0] = 2;
  strides[0] = 0;
  for (int k = 0; k < n; k++) {
    shape[k + 1] = twin_array_shape(a)[k];
    strides[k + 1] = twin_array_strides(a)[k];
  }
  return twin_array_as_strided(a, n + 1, shape, strides, 0, out);
}

static twin_status index_or_expand(twin_array *a, twin_array **out) {
  int n = twin_array_ndim(a);
  int axis = (int)next((unsigned)n);
  size_t len = twin_array_shape(a)[axis];
  if (n > 1 && len > 0)
    return twin_array_index(a, axis, (ptrdiff_t)next((unsigned)len), out);
  return twin_array_expand_dims(a, (int)next((unsigned)n + 1), out);
}

/* Replaces *a by a random view of it; *repeats records whether elements may now repeat. */
static void random_step(twin_array **a, bool *repeats) {
  twin_array *v = NULL;
  unsigned op = next(6);
  twin_status s = op == 0   ? slice(*a, &v)
                  : op == 1 ? transpose(*a, &v)
                  : op == 2 ? index_or_expand(*a, &v)
                  : op == 3 ? (*repeats = true, broadcast(*a, &v))
                  : op == 4 ? (*repeats = true, repeat(*a, &v))
                            : slice(*a, &v);
  assert_ok(s);
  twin_array_unref(*a);
  *a = v;
}

/* Names a view whose type packs wrong, so a failure can be reproduced. */
static void describe(const twin_array *v) {
  char text[256];
  int used =
      snprintf(text, sizeof text, "%s view, shape/strides", twin_dtype_name(twin_array_dtype(v)));
  for (int k = 0; k < twin_array_ndim(v) && used > 0 && (size_t)used < sizeof text; k++)
    used += snprintf(text + used, sizeof text - (size_t)used, " %zu/%td", twin_array_shape(v)[k],
                     twin_array_strides(v)[k]);
  print_error("%s\n", text);
}

/* Sends v with its datatype to this rank and receives it packed; compares with the packed
 * reference. */
static void check_send_side(twin_array *v, const void *want) {
  size_t n = twin_array_size(v), bytes = twin_array_nbytes(v);
  MPI_Datatype t;
  assert_ok(twin_mpi_datatype(v, &t));
  int type_size = -1;
  MPI_Type_size(t, &type_size);
  assert_int_equal(type_size, bytes);
  unsigned char *got = calloc(1, bytes + 1);
  void *p;
  assert_ok(twin_host_begin(v, TWIN_READ, &p));
  MPI_Sendrecv(p, 1, t, 0, 1, got, (int)n, twin_mpi_element_type(twin_array_dtype(v)), 0, 1,
               MPI_COMM_SELF, MPI_STATUS_IGNORE);
  assert_ok(twin_host_end(v));
  MPI_Type_free(&t);
  if (memcmp(got, want, bytes))
    describe(v);
  assert_memory_equal(got, want, bytes);
  free(got);
}

/* Sends packed bytes to this rank and receives them through v's datatype; v must read back
 * the packed bytes. */
static void check_recv_side(twin_array *v, const unsigned char *want) {
  size_t n = twin_array_size(v), bytes = twin_array_nbytes(v);
  unsigned char *src = malloc(bytes + 1), *got = malloc(bytes + 1);
  for (size_t i = 0; i < bytes; i++)
    src[i] = (unsigned char)(want[i] ^ 0x5a);
  MPI_Datatype t;
  assert_ok(twin_mpi_datatype(v, &t));
  void *p;
  assert_ok(twin_host_begin(v, TWIN_WRITE, &p));
  MPI_Sendrecv(src, (int)n, twin_mpi_element_type(twin_array_dtype(v)), 0, 2, p, 1, t, 0, 2,
               MPI_COMM_SELF, MPI_STATUS_IGNORE);
  assert_ok(twin_host_end(v));
  MPI_Type_free(&t);
  assert_ok(twin_array_read(v, got, bytes));
  if (memcmp(got, src, bytes))
    describe(v);
  assert_memory_equal(got, src, bytes);
  free(src);
  free(got);
}

MPI_CASE(test_datatype_matches_packed_reference_for_random_views) {
  mpi_fixture *f = mpi_fix(state);
  rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(f->rank + 1) * 7919 ^ (uint64_t)strlen(f->spec);
  for (int i = 0; i < VIEWS; i++) {
    twin_array *v = random_base(f->ctx);
    bool repeats = false;
    for (int steps = 1 + (int)next(4); steps > 0; steps--)
      random_step(&v, &repeats);
    size_t bytes = twin_array_nbytes(v);
    unsigned char *want = malloc(bytes + 1);
    assert_ok(twin_array_read(v, want, bytes));
    check_send_side(v, want);
    if (!repeats)
      check_recv_side(v, want);
    free(want);
    twin_array_unref(v);
  }
}

/* A reversed axis: the type reaches below element 0 (a negative lower bound), in order. */
MPI_CASE(test_datatype_reversed_view_reaches_below_element_zero) {
  mpi_fixture *f = mpi_fix(state);
  int32_t data[12];
  for (int i = 0; i < 12; i++)
    data[i] = i;
  twin_array *a, *r;
  size_t shape[] = {3, 4};
  assert_ok(twin_array_from_host(f->ctx, TWIN_I32, 2, shape, data, &a));
  twin_slice rev[] = {{TWIN_NONE, TWIN_NONE, -1}, {TWIN_NONE, TWIN_NONE, -2}}; /* a[::-1, ::-2] */
  assert_ok(twin_array_slice(a, rev, &r));
  MPI_Datatype t;
  assert_ok(twin_mpi_datatype(r, &t));
  MPI_Aint lb, extent;
  MPI_Type_get_true_extent(t, &lb, &extent);
  assert_int_equal(lb, -(2 * 4 + 2) * 4); /* element (0, 0) of r is a[2, 3]; a[0, 1] lowest */
  int32_t got[6], want[] = {11, 9, 7, 5, 3, 1};
  void *p;
  assert_ok(twin_host_begin(r, TWIN_READ, &p));
  MPI_Sendrecv(p, 1, t, 0, 3, got, 6, MPI_INT32_T, 0, 3, MPI_COMM_SELF, MPI_STATUS_IGNORE);
  assert_ok(twin_host_end(r));
  assert_memory_equal(got, want, sizeof want);
  MPI_Type_free(&t);
  twin_array_unref(r);
  twin_array_unref(a);
}

/* Axes merge: a contiguous array is one contiguous block; rows with gaps one hvector of
 * contiguous rows; a scalar and an empty view still give types of one and no element. */
MPI_CASE(test_datatype_is_as_flat_as_the_layout) {
  mpi_fixture *f = mpi_fix(state);
  size_t shape[] = {4, 5, 6};
  twin_array *a, *rows, *scalar, *empty;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F64, 3, shape, &a));
  twin_slice s[] = {TWIN_ALL, TWIN_ALL, {1, 4, 1}};
  assert_ok(twin_array_slice(a, s, &rows));
  assert_ok(twin_array_new(f->ctx, TWIN_U16, 0, NULL, &scalar));
  twin_slice none[] = {{2, 2, 1}, TWIN_ALL, TWIN_ALL};
  assert_ok(twin_array_slice(a, none, &empty));
  int ni, na, nd, combiner, size;
  MPI_Datatype t, inner[2];
  assert_ok(twin_mpi_datatype(a, &t));
  MPI_Type_get_envelope(t, &ni, &na, &nd, &combiner);
  assert_int_equal(combiner, MPI_COMBINER_CONTIGUOUS);
  MPI_Type_free(&t);
  assert_ok(twin_mpi_datatype(rows, &t)); /* 20 rows of 3 elements, 6 apart */
  MPI_Type_get_envelope(t, &ni, &na, &nd, &combiner);
  assert_int_equal(combiner, MPI_COMBINER_HVECTOR);
  int ints[3];
  MPI_Aint addrs[1];
  MPI_Type_get_contents(t, 3, 1, 1, ints, addrs, inner);
  assert_int_equal(ints[0], 20);
  assert_int_equal(addrs[0], 6 * 8);
  MPI_Type_get_envelope(inner[0], &ni, &na, &nd, &combiner);
  assert_int_equal(combiner, MPI_COMBINER_CONTIGUOUS);
  MPI_Type_free(&inner[0]);
  MPI_Type_free(&t);
  assert_ok(twin_mpi_datatype(scalar, &t));
  MPI_Type_size(t, &size);
  assert_int_equal(size, 2);
  MPI_Type_free(&t);
  assert_ok(twin_mpi_datatype(empty, &t));
  MPI_Type_size(t, &size);
  assert_int_equal(size, 0);
  MPI_Type_free(&t);
  twin_array_unref(empty);
  twin_array_unref(scalar);
  twin_array_unref(rows);
  twin_array_unref(a);
}

MPI_CASE(test_datatype_null_arguments_are_refused) {
  mpi_fixture *f = mpi_fix(state);
  MPI_Datatype t;
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_I8, 0, NULL, &a));
  assert_status(twin_mpi_datatype(NULL, &t), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("twin_mpi_datatype: a is NULL");
  assert_status(twin_mpi_datatype(a, NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_message("out is NULL");
  assert_true(twin_mpi_element_type((twin_dtype)99) == MPI_DATATYPE_NULL);
  twin_array_unref(a);
}

static const struct CMUnitTest tests[] = {
    MPI_TEST(test_datatype_matches_packed_reference_for_random_views),
    MPI_TEST(test_datatype_reversed_view_reaches_below_element_zero),
    MPI_TEST(test_datatype_is_as_flat_as_the_layout),
    MPI_TEST(test_datatype_null_arguments_are_refused),
};

MPI_TEST_MAIN(tests)

/* Memory the application lends twin as OpenCL objects, and DLPack kDLOpenCL both ways: a
 * wrapped cl_mem behaves as an array, is retained and released at the last unref with the final
 * contents in it; refusals keep no reference; exports name the buffer's cl_mem and the view's
 * byte offset. Registered only in builds with OpenCL; runs on the OpenCL groups
 * (test_interop.c holds lent host memory and kDLCPU, on every backend). */
#include <dlpack/dlpack.h>
#include <stdint.h>
#include <string.h>

#include "core/twin_opencl.h"
#include "fixture.h"

#define SENTINEL ((twin_array *)(uintptr_t)0x5e1f)

static void assert_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("message \"%s\"\nlacks \"%s\"\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

static cl_uint ref_count(cl_mem mem) {
  cl_uint n = 0;
  assert_int_equal(clGetMemObjectInfo(mem, CL_MEM_REFERENCE_COUNT, sizeof n, &n, NULL), CL_SUCCESS);
  return n;
}

static cl_mem make_cl_mem(twin_context *ctx, const float *data, size_t n) {
  cl_int err;
  cl_mem mem =
      clCreateBuffer(twin_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                     n * sizeof *data, (void *)data, &err);
  assert_int_equal(err, CL_SUCCESS);
  return mem;
}

static void read_cl_mem(twin_context *ctx, cl_mem mem, float *out, size_t n) {
  assert_int_equal(clEnqueueReadBuffer(twin_context_cl_queue(ctx), mem, CL_TRUE, 0, n * sizeof *out,
                                       out, 0, NULL, NULL),
                   CL_SUCCESS);
}

static void test_wrapped_cl_mem_is_retained_and_released_at_the_end(void **state) {
  twin_fixture *f = fixture(state);
  float data[16], back[16];
  for (int i = 0; i < 16; i++)
    data[i] = (float)i;
  cl_mem mem = make_cl_mem(f->ctx, data, 16);
  size_t shape[] = {3, 4};
  twin_array *a, *col;
  /* Elements 4..15 as a 3 x 4 matrix: byte_offset 16. */
  assert_ok(twin_array_wrap_cl_mem(f->ctx, mem, 16, TWIN_F32, 2, shape, NULL, &a));
  assert_int_equal(ref_count(mem), 2);
  assert_false(twin_array_is_zero_copy(a)); /* the cl_mem is the device side of two copies */
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.device_bytes, 64);
  assert_ok(twin_array_index(a, 1, 0, &col)); /* 4, 8, 12 */
  float got[3];
  assert_ok(twin_array_read(col, got, sizeof got));
  assert_true(got[0] == 4.0f && got[2] == 12.0f);
  float twos[3] = {2, 2, 2};
  assert_ok(twin_array_write(col, twos, sizeof twos)); /* newer on the host now */
  assert_status(twin_array_evict(a, TWIN_DEVICE), TWIN_ERR_UNSUPPORTED);
  twin_array_unref(a);
  assert_int_equal(ref_count(mem), 2);
  twin_array_unref(col);
  assert_int_equal(ref_count(mem), 1);
  /* The host's newer elements went back into the cl_mem before twin let go of it. */
  read_cl_mem(f->ctx, mem, back, 16);
  for (int i = 0; i < 16; i++)
    assert_true(back[i] == (i >= 4 && i % 4 == 0 ? 2.0f : (float)i));
  clReleaseMemObject(mem);
}

/* Refused: a misaligned or too long region, a cl_mem of another OpenCL context, and any cl_mem
 * on a device that is not OpenCL's (never touched there); none keeps a reference. */
static void test_wrap_cl_mem_refusals_keep_no_reference(void **state) {
  twin_fixture *f = fixture(state);
  size_t shape[] = {4}, big[] = {5};
  twin_array *a = NULL;
  static const char *const others[] = {"host", "fake", "fake+copy"};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    twin_context *ctx;
    assert_ok(fixture_open(others[i], &ctx));
    assert_status(twin_array_wrap_cl_mem(ctx, (cl_mem)0x1, 0, TWIN_F32, 1, shape, NULL, &a),
                  TWIN_ERR_UNSUPPORTED);
    twin_context_unref(ctx);
  }
  float data[4] = {0};
  cl_mem mem = make_cl_mem(f->ctx, data, 4);
  assert_status(twin_array_wrap_cl_mem(f->ctx, mem, 2, TWIN_F32, 1, shape, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("byte_offset 2 is not a multiple");
  assert_status(twin_array_wrap_cl_mem(f->ctx, mem, 0, TWIN_F32, 1, big, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("outside the 16-byte buffer");
  assert_int_equal(ref_count(mem), 1);
  twin_context *other;
  assert_ok(fixture_open(f->spec, &other));
  assert_status(twin_array_wrap_cl_mem(other, mem, 0, TWIN_F32, 1, shape, NULL, &a),
                TWIN_ERR_INVALID_ARGUMENT);
  assert_message_has("twin_array_wrap_cl_mem: the cl_mem belongs to another OpenCL context");
  twin_context_unref(other);
  assert_int_equal(ref_count(mem), 1);
  assert_null(a);
  clReleaseMemObject(mem);
}

typedef struct cl_producer {
  DLManagedTensor t;
  int64_t shape[1];
  cl_mem mem;
  int deleted;
} cl_producer;

static void cl_producer_delete(DLManagedTensor *t) {
  cl_producer *p = t->manager_ctx;
  clReleaseMemObject(p->mem);
  p->deleted++;
}

static void test_dlpack_opencl_both_ways(void **state) {
  twin_fixture *f = fixture(state);
  /* Export: the tensor names the buffer's cl_mem and the view's byte offset. */
  size_t shape[] = {10};
  float data[10];
  for (int i = 0; i < 10; i++)
    data[i] = (float)i;
  twin_array *a, *v;
  assert_ok(twin_array_from_host(f->ctx, TWIN_F32, 1, shape, data, &a));
  twin_slice s[] = {{2, 8, 1}};
  assert_ok(twin_array_slice(a, s, &v));
  DLManagedTensor *t;
  assert_ok(twin_array_to_dlpack_opencl(v, TWIN_READ, &t));
  assert_int_equal(t->dl_tensor.device.device_type, kDLOpenCL);
  assert_int_equal(t->dl_tensor.byte_offset, 8);
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_READ, &mem, &off));
  assert_ptr_equal(t->dl_tensor.data, mem);
  assert_ok(twin_device_end(a));
  float got[6];
  assert_int_equal(clEnqueueReadBuffer(twin_context_cl_queue(f->ctx), t->dl_tensor.data, CL_TRUE,
                                       t->dl_tensor.byte_offset, sizeof got, got, 0, NULL, NULL),
                   CL_SUCCESS);
  assert_true(got[0] == 2.0f && got[5] == 7.0f);
  twin_array_unref(v);
  twin_array_unref(a);
  assert_int_equal(fixture_stats(f).buffers, 1);
  t->deleter(t);
  assert_int_equal(fixture_stats(f).buffers, 0);
  /* Import: a producer's cl_mem, released by its deleter once twin lets go. */
  cl_producer p = {0};
  p.mem = make_cl_mem(f->ctx, data, 10);
  p.shape[0] = 4;
  p.t.dl_tensor = (DLTensor){p.mem, {kDLOpenCL, 0}, 1, {kDLFloat, 32, 1}, p.shape, NULL, 12};
  p.t.manager_ctx = &p;
  p.t.deleter = cl_producer_delete;
  twin_array *b;
  assert_ok(twin_array_from_dlpack(f->ctx, &p.t, &b));
  float four[4];
  assert_ok(twin_array_read(b, four, sizeof four));
  assert_true(four[0] == 3.0f && four[3] == 6.0f);
  assert_int_equal(p.deleted, 0);
  twin_array_unref(b);
  assert_int_equal(p.deleted, 1);
}

/* Without an OpenCL device (the host backend, the fake device) there is no kDLOpenCL export:
 * refused, with the private view it made for the export gone again. */
static void test_dlpack_opencl_export_unsupported_without_an_opencl_device(void **state) {
  (void)state;
  static const char *const specs[] = {"host", "fake", "fake+copy"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    twin_context *ctx;
    assert_ok(fixture_open(specs[i], &ctx));
    size_t shape[] = {2};
    twin_array *a;
    assert_ok(twin_array_zeros(ctx, TWIN_F32, 1, shape, &a));
    DLManagedTensor *t = NULL;
    assert_status(twin_array_to_dlpack_opencl(a, TWIN_READ, &t), TWIN_ERR_UNSUPPORTED);
    assert_null(t);
    assert_int_equal(fixture_ctx_stats(ctx).arrays, 1); /* the private view went again */
    twin_array_unref(a);
    twin_context_unref(ctx);
  }
}

static void test_wrap_cl_mem_offset_far_beyond_the_buffer_is_refused(void **state) {
  twin_fixture *f = fixture(state);
  cl_int err;
  cl_mem mem = clCreateBuffer(twin_context_cl_context(f->ctx), CL_MEM_READ_WRITE, 64, NULL, &err);
  assert_non_null(mem);
  const size_t four[] = {4}, none[] = {0};
  const size_t offsets[] = {SIZE_MAX - 3, (SIZE_MAX / 2 + 1), 68, (size_t)PTRDIFF_MAX - 3};
  twin_array *a = SENTINEL;
  for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
    /* The message names the byte offset as given, with no wrapped negative byte numbers. */
    char named[64];
    snprintf(named, sizeof named, "byte_offset %zu is beyond", offsets[i]);
    static const twin_dtype dtypes[] = {TWIN_I32, TWIN_U8};
    for (int d = 0; d < 2; d++) {
      assert_status(twin_array_wrap_cl_mem(f->ctx, mem, offsets[i], dtypes[d], 1, four, NULL, &a),
                    TWIN_ERR_INVALID_ARGUMENT);
      assert_non_null(strstr(twin_last_error(), "twin_array_wrap_cl_mem"));
      assert_non_null(strstr(twin_last_error(), named));
      assert_status(twin_array_wrap_cl_mem(f->ctx, mem, offsets[i], dtypes[d], 1, none, NULL, &a),
                    TWIN_ERR_INVALID_ARGUMENT);
    }
  }
  /* The last four elements end exactly at the end: inside. */
  assert_ptr_equal(a, SENTINEL);
  assert_ok(twin_array_wrap_cl_mem(f->ctx, mem, 48, TWIN_I32, 1, four, NULL, &a));
  twin_array_unref(a);
  clReleaseMemObject(mem);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_wrapped_cl_mem_is_retained_and_released_at_the_end),
    TWIN_TEST(test_wrap_cl_mem_refusals_keep_no_reference),
    TWIN_TEST(test_wrap_cl_mem_offset_far_beyond_the_buffer_is_refused),
    TWIN_TEST(test_dlpack_opencl_both_ways),
    TWIN_TEST(test_dlpack_opencl_export_unsupported_without_an_opencl_device),
};

TWIN_TEST_MAIN_OPENCL(tests)

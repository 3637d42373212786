#include "memory_workload.h"

/* Creates an array from host data, a strided view, a copy of the view (a kernel on OpenCL),
 * uses the copy on the device, writes the base on the host, moves the copy's data between
 * sides with prefetch and evict, makes one more array, trims, and reads everything back;
 * stops at the first failure. With two copies, two allocations find a redundant copy to trim
 * when they fail: the copy's device memory in the second prefetch (the base's device copy
 * is redundant then) and the last array's host memory (the copy's host copy is). */
twin_status workload(const twin_fixture *f, work *w) {
  int32_t src[64], got[64];
  for (int i = 0; i < 64; i++)
    src[i] = 100 + i;
  const size_t shape[] = {64};
  twin_status s = twin_array_from_host(f->ctx, TWIN_I32, 1, shape, src, &w->a);
  if (s != TWIN_OK)
    return s;
  w->a0 = 100;
  if ((s = twin_array_slice(w->a, (twin_slice[]){{8, 40, 2}}, &w->v)) != TWIN_OK)
    return s;
  if ((s = twin_array_copy(w->v, &w->c)) != TWIN_OK)
    return s;
  if (f->has_device) {
    void *mem;
    size_t off;
    if ((s = fixture_device_begin(w->c, TWIN_READ, &mem, &off)) != TWIN_OK)
      return s;
    assert_ok(fixture_device_end(w->c));
  }
  int32_t *p;
  if ((s = twin_host_begin(w->a, TWIN_READ_WRITE, (void **)&p)) != TWIN_OK)
    return s;
  p[0] = -1;
  w->a0 = -1;
  if ((s = twin_host_end(w->a)) != TWIN_OK)
    return s;
  if ((s = twin_array_prefetch(w->c, TWIN_HOST)) != TWIN_OK)
    return s;
  if (f->layout == FIXTURE_TWO_COPIES) {
    assert_ok(twin_array_evict(w->c, TWIN_DEVICE));
    if ((s = twin_array_prefetch(w->c, TWIN_DEVICE)) != TWIN_OK)
      return s;
  }
  const size_t dshape[] = {32};
  if ((s = twin_array_from_host(f->ctx, TWIN_I32, 1, dshape, src, &w->d)) != TWIN_OK)
    return s;
  assert_ok(twin_context_trim(f->ctx, TWIN_TRIM_HOST | TWIN_TRIM_DEVICE, NULL));
  if ((s = twin_array_read(w->c, got, 16 * sizeof *got)) != TWIN_OK)
    return s;
  for (int i = 0; i < 16; i++)
    assert_int_equal(got[i], 108 + 2 * i);
  if ((s = twin_array_read(w->a, got, sizeof got)) != TWIN_OK)
    return s;
  assert_int_equal(got[0], -1);
  return TWIN_OK;
}

/* Checks that what a (partial) workload made holds the right data, then drops it. */
void check_and_drop_work(work *w) {
  int32_t got[64];
  if (w->a) {
    assert_ok(twin_array_read(w->a, got, sizeof got));
    assert_int_equal(got[0], w->a0);
    for (int i = 1; i < 64; i++)
      assert_int_equal(got[i], 100 + i);
  }
  if (w->v) {
    assert_ok(twin_array_read(w->v, got, 16 * sizeof *got));
    for (int i = 0; i < 16; i++)
      assert_int_equal(got[i], 108 + 2 * i);
  }
  if (w->c) {
    assert_ok(twin_array_read(w->c, got, 16 * sizeof *got));
    for (int i = 0; i < 16; i++)
      assert_int_equal(got[i], 108 + 2 * i);
  }
  if (w->d) {
    assert_ok(twin_array_read(w->d, got, 32 * sizeof *got));
    for (int i = 0; i < 32; i++)
      assert_int_equal(got[i], 100 + i);
  }
  twin_array_unref(w->d);
  twin_array_unref(w->c);
  twin_array_unref(w->v);
  twin_array_unref(w->a);
}

void expect_same_live(const twin_fixture *f, const twin_stats *base) {
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.arrays, base->arrays);
  assert_int_equal(st.buffers, base->buffers);
  assert_int_equal(st.host_bytes, base->host_bytes);
  assert_int_equal(st.device_bytes, base->device_bytes);
}

/* An array the sweeps must never disturb: held on the host only, so no trim can free it. */
twin_array *sweep_setup(twin_fixture *f, twin_stats *base) {
  twin_array *keep = fixture_i32(f->ctx, 50, 7);
  work w = {0};
  assert_ok(workload(f, &w)); /* builds the kernels once, outside the sweep */
  check_and_drop_work(&w);
  *base = fixture_stats(f);
  return keep;
}

void quiesce(const twin_fixture *f) {
  assert_ok(twin_context_finish(f->ctx));
}

/* Freed means back to the operating system, at every size: the blocks of buffers from
 * TWIN__MAP_MIN up (host mirrors, zero-copy blocks, device copies in host memory) are mapped
 * from the system and unmapped at the last unref, so the process's resident memory drops in
 * that call whatever the program freed before; smaller blocks come from the C heap. Mapping
 * goes through the allocator hooks like every other allocation, so failure injection reaches
 * it, and a mapping that fails is an out-of-memory error like any other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"
#include "memory_workload.h"
#include "release_probe.h"

enum { ROUND_ARRAYS = 8 };

/* "Within a few pages": what twin's and the runtime's bookkeeping for a round of arrays (their
 * objects, events, a cl_mem's record) may add to the heap, far below one array of the round.
 * Measured in anonymous resident memory, to the page (release_probe.h). */
#define FEW_PAGES_KIB 32

/* Under a sanitizer the resident size says nothing (shadow memory, quarantine): only the hooks
 * count, and the rounds stay small. */
#ifdef UNDER_SANITIZER
static const size_t round_kib[] = {4 << 10, 1 << 10, 256};
#else
static const size_t round_kib[] = {64 << 10, 16 << 10, 4 << 10, 1 << 10, 256};
#endif

/* A first round of tiny arrays builds what fills need (a kernel program on OpenCL) and grows
 * the heap for a round's bookkeeping, so that the rounds see only the arrays' memory. */
static void warm_up(twin_context *ctx) {
  const size_t shape[] = {16};
  const float zero = 0;
  twin_array *a[ROUND_ARRAYS];
  for (int i = 0; i < ROUND_ARRAYS; i++) {
    assert_ok(twin_array_new(ctx, TWIN_F32, 1, shape, &a[i]));
    assert_ok(twin_fill(a[i], &zero));
  }
  assert_ok(twin_context_finish(ctx));
  for (int i = 0; i < ROUND_ARRAYS; i++)
    twin_array_unref(a[i]);
}

/* One round: 8 arrays of kib KiB each, filled, waited for, all dropped. Holding them takes
 * fresh resident memory (not heap memory freed before and reused, which would hide whether a
 * drop gives anything back), and right after the last unref the resident size is back within a
 * few pages of where the round started. */
static void round_of(twin_context *ctx, size_t kib) {
  const size_t shape[] = {kib * 1024 / sizeof(float)};
  const float one = 1;
  twin_array *a[ROUND_ARRAYS];
  long base = anon_resident_kib();
  for (int i = 0; i < ROUND_ARRAYS; i++) {
    assert_ok(twin_array_new(ctx, TWIN_F32, 1, shape, &a[i]));
    assert_ok(twin_fill(a[i], &one));
  }
  assert_ok(twin_context_finish(ctx));
  long held = anon_resident_kib() - base;
  for (int i = 0; i < ROUND_ARRAYS; i++)
    twin_array_unref(a[i]);
  long after = anon_resident_kib() - base;
  if (getenv("TWIN_RELEASE_REPORT"))
    printf("give back: %zu KiB arrays: %ld KiB held, %ld KiB right after the last unref\n", kib,
           held, after);
#ifndef UNDER_SANITIZER
  if (held < (long)(ROUND_ARRAYS * kib) * 9 / 10 || after > FEW_PAGES_KIB)
    print_error("%zu KiB arrays: %ld KiB held, %ld KiB still resident after the last unref\n", kib,
                held, after);
  assert_true(held >= (long)(ROUND_ARRAYS * kib) * 9 / 10);
  assert_true(after <= FEW_PAGES_KIB);
#endif
  assert_int_equal(atomic_load(&host_maps_live), 0);
}

static void test_rounds_of_dropped_arrays_give_memory_back_at_every_size(void **state) {
  twin_fixture *f = fixture(state);
  warm_up(f->ctx);
  host_inject(0);
  for (size_t i = 0; i < sizeof round_kib / sizeof round_kib[0]; i++)
    round_of(f->ctx, round_kib[i]);
  assert_true(atomic_load(&host_maps) >= ROUND_ARRAYS); /* the arrays' blocks were mapped */
}

/* Writes every byte of a on the host (allocating its host memory). */
static void host_write(twin_array *a) {
  void *p;
  assert_ok(twin_host_begin(a, TWIN_WRITE, &p));
  memset(p, 7, twin_array_nbytes(a));
  assert_ok(twin_host_end(a));
}

static void test_blocks_from_the_threshold_up_are_mapped_and_smaller_ones_are_not(void **state) {
  twin_fixture *f = fixture(state);
  const size_t at[] = {TWIN__MAP_MIN}, below[] = {TWIN__MAP_MIN - 1};
  twin_array *big, *small;
  host_inject(0);
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, at, &big));
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, below, &small));
  host_write(small);
  assert_int_equal(atomic_load(&host_maps), 0);
  host_write(big);
  assert_int_equal(atomic_load(&host_maps), 1);
  assert_int_equal(atomic_load(&host_maps_live), 1);
  twin_array_unref(big);
  assert_int_equal(atomic_load(&host_maps_live), 0); /* unmapped in the call */
  twin_array_unref(small);
  assert_int_equal(atomic_load(&host_live), 0);
}

static void test_a_mapping_that_fails_is_out_of_host_memory(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {(size_t)1 << 20};
  twin_array *a;
  assert_ok(twin_array_zeros(f->ctx, TWIN_U8, 1, shape, &a));
  host_fail_blocks();
  void *p = NULL;
  assert_status(twin_host_begin(a, TWIN_READ_WRITE, &p), TWIN_ERR_OUT_OF_HOST_MEMORY);
  assert_non_null(strstr(twin_last_error(), "1048576 bytes"));
  host_restore();
  /* Nothing was kept, and the array is as it was: all zeros, usable. */
  assert_int_equal(fixture_stats(f).host_bytes, base.host_bytes);
  assert_ok(twin_host_begin(a, TWIN_READ, &p));
  assert_true(((unsigned char *)p)[0] == 0 && ((unsigned char *)p)[shape[0] - 1] == 0);
  assert_ok(twin_host_end(a));
  twin_array_unref(a);
}

/* Large arrays through every allocation there is: from host data, on the device, a copy, read
 * back; stops at the first failure. */
static twin_status large_workload(const twin_fixture *f, twin_array **a, twin_array **c) {
  enum { N = 64 << 10 }; /* 256 KiB of i32: mapped blocks */
  static int32_t data[N];
  const size_t shape[] = {N};
  data[N - 1] = 42;
  twin_status s = twin_array_from_host(f->ctx, TWIN_I32, 1, shape, data, a);
  if (s == TWIN_OK && f->has_device)
    s = twin_array_prefetch(*a, TWIN_DEVICE);
  if (s == TWIN_OK)
    s = twin_array_copy(*a, c);
  void *p;
  if (s == TWIN_OK && (s = twin_host_begin(*c, TWIN_READ, &p)) == TWIN_OK) {
    assert_int_equal(((int32_t *)p)[N - 1], 42);
    s = twin_host_end(*c);
  }
  return s;
}

static void test_failing_each_allocation_of_large_arrays_leaks_nothing(void **state) {
  twin_fixture *f = fixture(state);
  twin_array *a = NULL, *c = NULL;
  assert_ok(large_workload(f, &a, &c)); /* builds any kernel outside the sweep */
  twin_array_unref(c);
  twin_array_unref(a);
  twin_stats base = fixture_stats(f);
  int map_failures = 0;
  for (int n = 1;; n++) {
    assert_true(n < 100);
    a = c = NULL;
    host_inject(n);
    twin_status s = large_workload(f, &a, &c);
    int calls = atomic_load(&host_calls), maps = atomic_load(&host_maps);
    map_failures += atomic_load(&host_map_failures);
    twin_array_unref(c);
    twin_array_unref(a);
    quiesce(f);
    assert_int_equal(atomic_load(&host_live), 0); /* every block and object given back */
    host_restore();
    expect_same_live(f, &base);
    if (s == TWIN_OK && calls < n) {
      assert_true(maps >= 2); /* the clean run mapped its blocks */
      break;
    }
    if (s != TWIN_OK)
      assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
  }
  assert_true(map_failures >= 2); /* each mapping was failed once, and said so */
}

/* No address space holds 2^47 bytes: the system refuses the mapping itself (no hook involved),
 * and twin says out of memory; where the device uses host blocks in place, the device's
 * largest allocation refuses it first. */
static void test_a_size_the_system_cannot_map_is_out_of_memory(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base = fixture_stats(f);
  const size_t shape[] = {(size_t)1 << 47};
  twin_array *a;
  twin_status expected =
      f->layout == FIXTURE_SHARED ? TWIN_ERR_OUT_OF_DEVICE_MEMORY : TWIN_ERR_OUT_OF_HOST_MEMORY;
  twin_status s = twin_array_zeros(f->ctx, TWIN_U8, 1, shape, &a);
  if (s == TWIN_OK) {
    void *p;
    s = twin_host_begin(a, TWIN_WRITE, &p);
    twin_array_unref(a);
  }
  assert_int_equal(s, expected);
  assert_non_null(strstr(twin_last_error(), "140737488355328"));
  expect_same_live(f, &base);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_rounds_of_dropped_arrays_give_memory_back_at_every_size),
    TWIN_TEST(test_blocks_from_the_threshold_up_are_mapped_and_smaller_ones_are_not),
    TWIN_TEST(test_a_mapping_that_fails_is_out_of_host_memory),
    TWIN_TEST(test_failing_each_allocation_of_large_arrays_leaks_nothing),
    TWIN_TEST(test_a_size_the_system_cannot_map_is_out_of_memory),
};

TWIN_TEST_MAIN(tests)

/* Memory budgets and running out of memory: host and device budgets from the options and the
 * environment (an allocation beyond one trims redundant copies and retries once, then fails
 * naming the size, the budget, what is held and the largest holders), malformed limits, the
 * device's largest allocation refused up front, and every host allocation of a scripted
 * workload failed in turn (test_opencl_memory.c fails its OpenCL calls likewise). Every case
 * runs on every backend group. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "host_faults.h"
#include "memory_workload.h"

static void expect_message_has(const char *needle) {
  if (!strstr(twin_last_error(), needle))
    print_error("last error: %s\nexpected to contain: %s\n", twin_last_error(), needle);
  assert_non_null(strstr(twin_last_error(), needle));
}

/* "FILE:LINE" of this file. */
static const char *here(int line) {
  static char site[512];
  snprintf(site, sizeof site, "%s:%d", __FILE__, line);
  return site;
}

static void expect_residency(twin_array *a, twin_residency host, twin_residency device) {
  twin_residency h = 99, d = 99;
  assert_ok(twin_array_residency(a, &h, &d));
  assert_int_equal(h, host);
  assert_int_equal(d, device);
}

/* ---- budgets ---- */

static twin_status open_with(const twin_fixture *f, size_t host, size_t device, twin_spill spill,
                             twin_context **ctx) {
  char spec[64];
  twin_context_options o = fixture_options(f->spec, spec, sizeof spec);
  o.host_memory_limit = host;
  o.device_memory_limit = device;
  o.spill = spill;
  return twin_context_new_with(&o, ctx);
}

static twin_status open_with_limits(const twin_fixture *f, size_t host, size_t device,
                                    twin_context **ctx) {
  return open_with(f, host, device, TWIN_SPILL_AUTO, ctx);
}

/* A new u8 array of n bytes, made (for messages and the report) on the caller's line. */
#define NEW_U8(ctx, n, out) assert_ok(twin_array_new((ctx), TWIN_U8, 1, (size_t[]){(n)}, (out)))

static void test_host_budget_trims_or_explains(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(open_with_limits(f, 10000, 0, &ctx));
  twin_array *a, *b, *fits;
  int line = __LINE__ + 1;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 4000, &b);
  NEW_U8(ctx, 2000, &fits);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  fixture_device_touch(f, a, TWIN_READ); /* with two copies, a's host copy is now redundant */
  twin_status s = twin_array_prefetch(b, TWIN_HOST);
  if (f->layout == FIXTURE_TWO_COPIES) {
    assert_ok(s); /* a's host copy was trimmed and the allocation retried */
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 4000);
    expect_residency(a, TWIN_RESIDENT_NONE, TWIN_RESIDENT_VALID);
    /* Bringing a back would exceed the budget while b holds its only copy: refused, with b
     * named as the holder; a's data is still there once b is gone. */
    assert_status(twin_array_prefetch(a, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
    expect_message_has("cannot allocate 8000 bytes of host memory");
    expect_message_has("host memory held now 4000 bytes");
    char holder[600];
    snprintf(holder, sizeof holder, "largest holders: 4000 bytes made at %s (its only copy);",
             here(line + 1));
    expect_message_has(holder);
    expect_message_has("spilled nothing (spilling frees device memory only)");
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 4000);
    twin_array_unref(b);
    b = NULL;
    assert_ok(twin_array_prefetch(a, TWIN_HOST));
    assert_int_equal(fixture_ctx_stats(ctx).bytes_to_host, 8000);
  } else {
    assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    expect_message_has("cannot allocate 4000 bytes of host memory");
    expect_message_has("host budget 10000 bytes");
    expect_message_has("host memory held now 8000 bytes");
    char holder[600];
    snprintf(holder, sizeof holder, "largest holders: 8000 bytes made at %s (its only copy);",
             here(line));
    expect_message_has(holder);
    expect_message_has("spilled nothing (buffers here are one copy)");
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 8000);
    expect_residency(b, TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE);
    assert_ok(twin_array_prefetch(fits, TWIN_HOST)); /* 10000 exactly is within budget */
    assert_int_equal(fixture_ctx_stats(ctx).host_bytes, 10000);
    assert_int_equal(fixture_ctx_stats(ctx).peak_host_bytes, 10000);
  }
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(fits);
  twin_context_unref(ctx);
}

/* With spilling off, as before spilling existed (test_spill.c has the spills). */
static void test_device_budget_trims_or_explains(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_context *ctx;
  assert_ok(open_with(f, 0, 10000, TWIN_SPILL_OFF, &ctx));
  twin_array *a, *b, *c;
  int line = __LINE__ + 1;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 4000, &b);
  NEW_U8(ctx, 7000, &c);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  fixture_device_touch(f, a, TWIN_READ);  /* with two copies, a's device copy is now redundant */
  fixture_device_touch(f, b, TWIN_WRITE); /* which this trims */
  twin_stats st = fixture_ctx_stats(ctx);
  if (f->layout == FIXTURE_SHARED) {
    /* One allocation per buffer, counted as host memory: the device budget never applies. */
    fixture_device_touch(f, c, TWIN_WRITE);
    st = fixture_ctx_stats(ctx);
    assert_int_equal(st.device_bytes, 0);
    assert_int_equal(st.host_bytes, 19000);
  } else {
    assert_int_equal(st.device_bytes, 4000);
    expect_residency(a, TWIN_RESIDENT_VALID, TWIN_RESIDENT_NONE);
    /* b holds the only copy of its data on the device: nothing left to trim for c. */
    void *mem = NULL;
    size_t off;
    assert_status(fixture_device_begin(c, TWIN_WRITE, &mem, &off), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    assert_null(mem);
    expect_message_has("cannot allocate 7000 bytes of device memory");
    expect_message_has("device budget 10000 bytes");
    expect_message_has("device memory held now 4000 bytes");
    char holder[800];
    assert_int_equal(fixture_ctx_stats(ctx).device_bytes, 4000);
    expect_residency(c, TWIN_RESIDENT_NONE, TWIN_RESIDENT_NONE);
    snprintf(holder, sizeof holder,
             "largest holders: 4000 bytes made at %s (spilling is off: TWIN_SPILL=off or "
             "twin_context_options.spill);",
             here(line + 1));
    expect_message_has(holder);
    expect_message_has("spilled nothing (spilling is off)");
    assert_null(strstr(twin_last_error(), "8000 bytes made")); /* a holds no device memory */
    st = fixture_ctx_stats(ctx);
    assert_int_equal(st.spill_count, 0);
    assert_int_equal(st.pressure_events, 2); /* b's allocation (trimmed a) and c's */
    assert_int_equal(st.pressure_failures, 1);
    assert_int_equal(st.pressure_trimmed_bytes, 8000);
  }
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);
}

/* Opens the group's kind of context with one variable set, then unsets it. */
static twin_status open_with_env(const twin_fixture *f, const char *name, const char *value,
                                 twin_context **ctx) {
  setenv(name, value, 1);
  twin_status s = fixture_open(f->spec, ctx);
  unsetenv(name);
  return s;
}

static void test_budgets_from_the_environment(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(open_with_env(f, "TWIN_HOST_MEMORY_LIMIT", "10K", &ctx));
  twin_array *a, *b, *c;
  NEW_U8(ctx, 8000, &a);
  NEW_U8(ctx, 2241, &b);
  NEW_U8(ctx, 2240, &c);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_status(twin_array_prefetch(b, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message_has("host budget 10240 bytes");
  assert_ok(twin_array_prefetch(c, TWIN_HOST)); /* 10240 exactly */
  twin_array_unref(a);
  twin_array_unref(b);
  twin_array_unref(c);
  twin_context_unref(ctx);

  assert_ok(open_with_env(f, "TWIN_HOST_MEMORY_LIMIT", "1m", &ctx));
  NEW_U8(ctx, 1 << 20, &a);
  NEW_U8(ctx, 1, &b);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  assert_status(twin_array_prefetch(b, TWIN_HOST), TWIN_ERR_OUT_OF_HOST_MEMORY);
  expect_message_has("host budget 1048576 bytes");
  twin_array_unref(a);
  twin_array_unref(b);
  twin_context_unref(ctx);

  if (f->layout == FIXTURE_TWO_COPIES) {
    /* b needs a's room: a is spilled, unless TWIN_SPILL says off. */
    for (int off_ = 0; off_ < 2; off_++) {
      setenv("TWIN_SPILL", off_ ? "OFF" : "Auto", 1);
      assert_ok(open_with_env(f, "TWIN_DEVICE_MEMORY_LIMIT", "6144", &ctx));
      unsetenv("TWIN_SPILL");
      NEW_U8(ctx, 6144, &a);
      NEW_U8(ctx, 1, &b);
      fixture_device_touch(f, a, TWIN_WRITE);
      void *mem;
      size_t off;
      twin_status s = fixture_device_begin(b, TWIN_WRITE, &mem, &off);
      if (off_) {
        assert_status(s, TWIN_ERR_OUT_OF_DEVICE_MEMORY);
        expect_message_has("device budget 6144 bytes");
      } else {
        assert_ok(s);
        assert_ok(fixture_device_end(b));
        assert_int_equal(fixture_ctx_stats(ctx).spill_count, 1);
      }
      twin_array_unref(a);
      twin_array_unref(b);
      twin_context_unref(ctx);
    }
  }

  /* An option wins over the environment. */
  setenv("TWIN_HOST_MEMORY_LIMIT", "1K", 1);
  twin_status s = open_with_limits(f, 10000, 0, &ctx);
  unsetenv("TWIN_HOST_MEMORY_LIMIT");
  assert_ok(s);
  NEW_U8(ctx, 8000, &a);
  assert_ok(twin_array_prefetch(a, TWIN_HOST));
  twin_array_unref(a);
  twin_context_unref(ctx);

  /* Empty means unset. */
  assert_ok(open_with_env(f, "TWIN_DEVICE_MEMORY_LIMIT", "", &ctx));
  twin_context_unref(ctx);
}

static void test_malformed_limits_are_invalid(void **state) {
  twin_fixture *f = fixture(state);
  static const char *bad[] = {
      "12Q", "-5", "K", "1.5G", "10KB", " 5", "0x10", "99999999999999999999", "17179869184G"};
  static const char *names[] = {"TWIN_HOST_MEMORY_LIMIT", "TWIN_DEVICE_MEMORY_LIMIT"};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      twin_context *ctx = (twin_context *)&ctx;
      assert_status(open_with_env(f, names[k], bad[i], &ctx), TWIN_ERR_INVALID_ARGUMENT);
      assert_ptr_equal(ctx, (twin_context *)&ctx);
      expect_message_has(names[k]);
      char quoted[64];
      snprintf(quoted, sizeof quoted, "\"%s\"", bad[i]);
      expect_message_has(quoted);
    }
}

static void test_allocation_above_the_device_limit_is_refused_up_front(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  uint64_t limit = twin_context_device(f->ctx)->max_alloc_bytes;
  if (limit >= PTRDIFF_MAX / 2)
    skip();
  const size_t n = (size_t)limit + 1;
  twin_stats base = fixture_stats(f);
  twin_array *a;
  assert_ok(twin_array_new(f->ctx, TWIN_U8, 1, &n, &a)); /* lazy: nothing allocated */
  char asked[64];
  snprintf(asked, sizeof asked, "%zu bytes exceed", n);
  assert_status(twin_array_prefetch(a, TWIN_DEVICE), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
  expect_message_has("CL_DEVICE_MAX_MEM_ALLOC_SIZE");
  expect_message_has(asked);
  if (f->layout == FIXTURE_SHARED) { /* one allocation: the host side is refused too */
    void *p = NULL;
    assert_status(twin_host_begin(a, TWIN_WRITE, &p), TWIN_ERR_OUT_OF_DEVICE_MEMORY);
    expect_message_has("CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    assert_null(p);
  }
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.host_bytes, base.host_bytes);
  assert_int_equal(st.device_bytes, base.device_bytes);
  assert_int_equal(st.peak_device_bytes, base.peak_device_bytes);
  twin_array_unref(a);
}

/* ---- every host allocation of a scripted workload failed in turn ---- */

static void test_host_allocation_failure_sweep(void **state) {
  twin_fixture *f = fixture(state);
  twin_stats base;
  twin_array *keep = sweep_setup(f, &base);
  quiesce(f);
  host_inject(0);
  work w = {0};
  assert_ok(workload(f, &w));
  quiesce(f);
  host_restore();
  int calls = atomic_load(&host_calls); /* host allocations of one clean run */
  check_and_drop_work(&w);
  int failures = 0, recovered = 0, spill_recovered = 0, n;
  for (n = 1; n < 200; n++) {
    memset(&w, 0, sizeof w);
    uint64_t spills_before = fixture_stats(f).spill_count;
    quiesce(f);
    host_inject(n);
    twin_status s = workload(f, &w);
    quiesce(f);
    host_restore();
    if (s == TWIN_OK) {
      check_and_drop_work(&w);
      if (atomic_load(&host_calls) < n)
        break;     /* no call was the Nth: each has been failed once */
      recovered++; /* a redundant copy was trimmed, or a device copy spilled, and retried */
      spill_recovered += fixture_stats(f).spill_count > spills_before;
      continue;
    }
    failures++;
    if (s != TWIN_ERR_OUT_OF_HOST_MEMORY)
      print_error("n = %d: %s\n", n, twin_last_error());
    assert_int_equal(s, TWIN_ERR_OUT_OF_HOST_MEMORY);
    assert_int_equal(atomic_load(&host_calls), n); /* the failure stopped the workload */
    expect_message_has("TWIN_ERR_OUT_OF_HOST_MEMORY: ");
    check_and_drop_work(&w);
    expect_same_live(f, &base);
    fixture_expect_i32(keep, 7);
  }
  assert_int_equal(failures + recovered, calls);
  assert_int_equal(n, calls + 1);
  /* The last array's host memory finds the copy's host copy to trim (two copies only). Where
   * device memory comes from the host allocator too (the fake device, PoCL), a refused device
   * allocation also spills a device copy and succeeds on its retry (two copies only). */
  assert_int_equal(recovered - spill_recovered, f->layout == FIXTURE_TWO_COPIES ? 1 : 0);
  if (f->layout != FIXTURE_TWO_COPIES)
    assert_int_equal(spill_recovered, 0);
  /* Buffer, array and view objects, host copies, bookkeeping of the copy: at least 9. */
  assert_true(calls >= 9);
  expect_same_live(f, &base);
  twin_array_unref(keep);
  quiesce(f); /* before the teardown restores the hooks */
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_host_budget_trims_or_explains),
    TWIN_TEST(test_device_budget_trims_or_explains),
    TWIN_TEST(test_budgets_from_the_environment),
    TWIN_TEST(test_malformed_limits_are_invalid),
    TWIN_TEST(test_allocation_above_the_device_limit_is_refused_up_front),
    TWIN_TEST(test_host_allocation_failure_sweep),
};

TWIN_TEST_MAIN(tests)

/* The shared test fixture: every test file's cases run once per backend, in one cmocka group
 * per backend, with the group's context in the fixture. After each case, the teardown asserts
 * that no array or buffer is left alive and restores the failure-injection hooks. */
#ifndef TWIN_TEST_FIXTURE_H
#define TWIN_TEST_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/internal.h"
#include "core/twin.h"

typedef struct twin_fixture {
  twin_context *ctx;
  const char *spec;  /* the spec the group opened, e.g. "host" or "opencl" */
  bool has_device;   /* the context has device memory (an OpenCL device) */
  bool zero_copy;    /* a device shares each buffer with the host: no byte is ever moved */
  bool one_copy;     /* each buffer is one allocation (zero_copy, or the host backend):
                        twin_context_is_zero_copy */
  twin_stats leaked; /* what earlier failed cases left alive, not counted again */
} twin_fixture;

/* The fixture of the running case: `twin_fixture *f = fixture(state);`. */
static inline twin_fixture *fixture(void **state) {
  return (twin_fixture *)*state;
}

int twin_fixture_teardown(void **state);

/* Register a case that uses the fixture. */
#define TWIN_TEST(fn) cmocka_unit_test_teardown(fn, twin_fixture_teardown)

/* Runs the cases once per backend: TWIN_TEST_BACKENDS (comma-separated device specs, a
 * "+copy" suffix forcing TWIN_COHERENCE_COPY) or, by default, "host" and, in builds with
 * OpenCL, "opencl" (zero-copy where the device shares host memory) and "opencl+copy".
 * Returns the number of failures. */
int twin_test_run(const char *file, const struct CMUnitTest *tests, size_t n);

#define TWIN_TEST_MAIN(tests)                                                                      \
  int main(void) {                                                                                 \
    return twin_test_run(__FILE__, tests, sizeof tests / sizeof tests[0]);                         \
  }

/* Asserts a status and prints the last error when it differs. */
#define assert_status(expr, expected)                                                              \
  do {                                                                                             \
    twin_status s_ = (expr);                                                                       \
    if (s_ != (expected))                                                                          \
      print_error("%s = %s, expected %s; last error: %s\n", #expr, twin_status_name(s_),           \
                  twin_status_name(expected), twin_last_error());                                  \
    assert_int_equal(s_, (expected));                                                              \
  } while (0)
#define assert_ok(expr) assert_status(expr, TWIN_OK)

/* Opens a new context the way the group opened its own (spec as in TWIN_TEST_BACKENDS). */
twin_status fixture_open(const char *spec, twin_context **out);

/* Counts of live objects and bytes in f->ctx. */
twin_stats fixture_stats(const twin_fixture *f);

/* Statistics of any context. */
twin_stats fixture_ctx_stats(twin_context *ctx);

/* A new i32 array of n elements (n <= 1024) holding first + i, and the check that an array
 * (any layout) reads back so. */
twin_array *fixture_i32(twin_context *ctx, size_t n, int first);
void fixture_expect_i32(twin_array *a, int first);

/* Opens and closes a device access on a: its device side becomes allocated and current
 * (nothing on the host backend). */
void fixture_device_touch(const twin_fixture *f, twin_array *a, twin_access access);

#endif

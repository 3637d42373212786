/* The fixture of the MPI tests: cmocka programs run under mpirun, each rank with its own
 * context, every case once per backend group (TWIN_TEST_BACKENDS as in tests/fixture.h). Only
 * the public API of libtwin and libtwin-mpi is used.
 *
 * A rank whose case fails must fail the whole run, and must not leave the other ranks waiting
 * in a message it will never send: a rank whose case did not pass calls MPI_Abort at its next
 * fixture step (once cmocka has printed why), which ends every rank and makes mpirun (so the
 * meson test) fail. A case passes
 * when its body returns (MPI_CASE wraps it to record that); it skips with mpi_skip(), which
 * every rank must decide alike. After each case, every rank checks that the case left no
 * array alive, and all ranks meet at a barrier. */
#ifndef TWIN_MPI_FIXTURE_H
#define TWIN_MPI_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "twin.h"
#include "twin_mpi.h"

typedef struct mpi_fixture {
  twin_context *ctx;
  const char *spec; /* the group's spec, e.g. "host", "opencl", "opencl+copy" */
  bool has_device;  /* the context has a device (not the host backend) */
  bool one_copy;    /* each buffer is one copy: nothing ever moves (twin_context_is_zero_copy) */
  int rank, size;   /* in MPI_COMM_WORLD */
} mpi_fixture;

static inline mpi_fixture *mpi_fix(void **state) {
  return (mpi_fixture *)*state;
}

int mpi_case_setup(void **state);
int mpi_case_teardown(void **state);
void mpi_case_passed(void);
void mpi_case_skipped(void);

#define MPI_TEST(fn) cmocka_unit_test_setup_teardown(fn, mpi_case_setup, mpi_case_teardown)

/* Defines a case whose passing is recorded when its body returns. */
#define MPI_CASE(name)                                                                             \
  static void name##_body(void **state);                                                           \
  static void name(void **state) {                                                                 \
    name##_body(state);                                                                            \
    mpi_case_passed();                                                                             \
  }                                                                                                \
  static void name##_body(void **state)

/* Skips the case; every rank must skip it alike. */
#define mpi_skip()                                                                                 \
  do {                                                                                             \
    mpi_case_skipped();                                                                            \
    skip();                                                                                        \
  } while (0)

int mpi_test_run(int *argc, char ***argv, const char *file, const struct CMUnitTest *tests,
                 size_t n);

#define MPI_TEST_MAIN(tests)                                                                       \
  int main(int argc, char **argv) {                                                                \
    return mpi_test_run(&argc, &argv, __FILE__, tests, sizeof tests / sizeof tests[0]);            \
  }

/* Asserts a status, printing both libraries' last messages when it differs. */
#define assert_status(expr, expected)                                                              \
  do {                                                                                             \
    twin_status s_ = (expr);                                                                       \
    if (s_ != (expected))                                                                          \
      print_error("%s = %s, expected %s\n  twin_mpi_last_error: %s\n  twin_last_error: %s\n",      \
                  #expr, twin_status_name(s_), twin_status_name(expected), twin_mpi_last_error(),  \
                  twin_last_error());                                                              \
    assert_int_equal(s_, (expected));                                                              \
  } while (0)
#define assert_ok(expr) assert_status(expr, TWIN_OK)

/* Asserts that twin_mpi_last_error() contains text. */
#define assert_message(text)                                                                       \
  do {                                                                                             \
    if (!strstr(twin_mpi_last_error(), (text)))                                                    \
      print_error("twin_mpi_last_error() lacks \"%s\": %s\n", (text), twin_mpi_last_error());      \
    assert_non_null(strstr(twin_mpi_last_error(), (text)));                                        \
  } while (0)

/* The context's statistics. */
twin_stats mpi_stats(twin_context *ctx);

#endif

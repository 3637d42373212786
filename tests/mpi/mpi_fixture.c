#include "mpi_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mpi_fixture current;
static bool case_passed, case_skipped;
/* This rank failed a case: it ends every rank at the next fixture step, once cmocka has
 * printed why (cmocka prints a case's failure only after its teardown). */
static bool rank_failed;

static void end_all_if_failed(void) {
  if (!rank_failed)
    return;
  fprintf(stderr, "rank %d of %d failed a case on %s; ending every rank\n", current.rank,
          current.size, current.spec);
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

void mpi_case_passed(void) {
  case_passed = true;
}

void mpi_case_skipped(void) {
  case_skipped = true;
}

twin_stats mpi_stats(twin_context *ctx) {
  twin_stats st;
  assert_int_equal(twin_context_stats(ctx, &st), TWIN_OK);
  return st;
}

/* A spec ending in "+copy" asks for two copies, as tests/fixture.c does. */
static twin_status open_context(const char *spec, twin_context **out) {
  char device[128];
  snprintf(device, sizeof device, "%s", spec);
  char *plus = strstr(device, "+copy");
  twin_context_options options = {.device = device};
  if (plus) {
    *plus = '\0';
    options.coherence = TWIN_COHERENCE_COPY;
  }
  return twin_context_new_with(&options, out);
}

static int group_setup(void **state) {
  if (open_context(current.spec, &current.ctx) != TWIN_OK) {
    print_error("rank %d cannot open \"%s\": %s\n", current.rank, current.spec, twin_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  current.has_device = twin_context_device(current.ctx)->type != TWIN_DEVICE_HOST;
  current.one_copy = twin_context_is_zero_copy(current.ctx);
  *state = &current;
  return 0;
}

static int group_teardown(void **state) {
  end_all_if_failed();
  twin_context_unref(current.ctx);
  current.ctx = NULL;
  return 0;
}

int mpi_case_setup(void **state) {
  end_all_if_failed();
  case_passed = case_skipped = false;
  return twin_context_stats_reset(mpi_fix(state)->ctx) == TWIN_OK ? 0 : -1;
}

int mpi_case_teardown(void **state) {
  mpi_fixture *f = mpi_fix(state);
  if (!case_passed && !case_skipped) {
    rank_failed = true; /* no barrier: other ranks may wait for this one's messages */
    return -1;
  }
  twin_stats st = mpi_stats(f->ctx);
  int leaked = st.arrays != 0 || st.buffers != 0;
  if (leaked)
    print_error("rank %d: the case left %zu arrays and %zu buffers alive\n", f->rank, st.arrays,
                st.buffers);
  MPI_Barrier(MPI_COMM_WORLD);
  return leaked ? -1 : 0;
}

static int run_group(const char *file, const char *spec, const struct CMUnitTest *tests, size_t n) {
  char name[256];
  const char *base = strrchr(file, '/');
  snprintf(name, sizeof name, "%s on %s, rank %d of %d", base ? base + 1 : file, spec, current.rank,
           current.size);
  current.spec = spec;
  printf("[ BACKEND  ] %s\n", name);
  fflush(stdout);
  return _cmocka_run_group_tests(name, tests, n, group_setup, group_teardown);
}

/* tests/fixture.c's default groups: the host backend, the fake test device where libtwin has
 * one (asked by its spec, so this builds against a libtwin without it), and OpenCL zero-copy
 * and two-copy in builds with OpenCL. */
static void default_backends(char *out, size_t cap) {
  twin_device_info fake;
  snprintf(out, cap, "host%s",
           twin_device_resolve("fake", &fake) == TWIN_OK ? ",fake,fake+copy" : "");
#ifdef TWIN_HAVE_OPENCL
  size_t used = strlen(out);
  snprintf(out + used, cap - used, ",opencl,opencl+copy");
#endif
}

int mpi_test_run(int *argc, char ***argv, const char *file, const struct CMUnitTest *tests,
                 size_t n) {
  MPI_Init(argc, argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &current.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &current.size);
  const char *env = getenv("TWIN_TEST_BACKENDS");
  char def[128];
  default_backends(def, sizeof def);
  char list[256];
  snprintf(list, sizeof list, "%s", env && *env ? env : def);
  int failures = 0;
  char *save = NULL;
  for (char *spec = strtok_r(list, ",", &save); spec; spec = strtok_r(NULL, ",", &save))
    failures += run_group(file, spec, tests, n);
  MPI_Finalize();
  return failures != 0;
}

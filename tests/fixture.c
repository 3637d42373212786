#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#endif

static twin_fixture current;
static twin__allocator default_alloc;

/* A spec ending in "+copy" asks for TWIN_COHERENCE_COPY, so the two-copy path runs on a
 * device that shares host memory too. */
twin_status fixture_open(const char *spec, twin_context **out) {
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
  if (fixture_open(current.spec, &current.ctx) != TWIN_OK) {
    print_error("cannot open \"%s\": %s\n", current.spec, twin_last_error());
    return -1;
  }
  current.has_device = twin_context_device(current.ctx)->type != TWIN_DEVICE_HOST;
  current.one_copy = twin_context_is_zero_copy(current.ctx);
  current.zero_copy = current.has_device && current.one_copy;
  *state = &current;
  return 0;
}

static int group_teardown(void **state) {
  twin_context_unref(current.ctx);
  current.ctx = NULL;
  return 0;
}

/* Puts back the real allocator and OpenCL entry points, writing only what a case changed:
 * runtime threads read the allocator (freeing zero-copy blocks) while the main thread tears
 * down, and an unchanged table must not look like a racing write. */
static void restore_hooks(void) {
  if (atomic_load(&twin__host_alloc.malloc_fn) != atomic_load(&default_alloc.malloc_fn) ||
      atomic_load(&twin__host_alloc.aligned_fn) != atomic_load(&default_alloc.aligned_fn) ||
      atomic_load(&twin__host_alloc.free_fn) != atomic_load(&default_alloc.free_fn))
    twin__allocator_set(&default_alloc);
#ifdef TWIN_HAVE_OPENCL
  if (memcmp(&twin__cl, &twin__cl_real, sizeof twin__cl) != 0)
    twin__cl = twin__cl_real;
#endif
}

twin_stats fixture_ctx_stats(twin_context *ctx) {
  twin_stats st;
  assert_int_equal(twin_context_stats(ctx, &st), TWIN_OK);
  return st;
}

twin_array *fixture_i32(twin_context *ctx, size_t n, int first) {
  int32_t data[1024];
  assert_true(n <= 1024);
  for (size_t i = 0; i < n; i++)
    data[i] = first + (int32_t)i;
  twin_array *a;
  assert_int_equal(twin_array_from_host(ctx, TWIN_I32, 1, &n, data, &a), TWIN_OK);
  return a;
}

void fixture_expect_i32(twin_array *a, int first) {
  int32_t got[1024];
  size_t n = twin_array_size(a);
  assert_true(n <= 1024);
  assert_int_equal(twin_array_read(a, got, n * sizeof *got), TWIN_OK);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(got[i], first + (int32_t)i);
}

void fixture_device_touch(const twin_fixture *f, twin_array *a, twin_access access) {
#ifdef TWIN_HAVE_OPENCL
  if (!f->has_device)
    return;
  cl_mem mem;
  size_t off;
  assert_int_equal(twin_device_begin(a, access, &mem, &off), TWIN_OK);
  assert_int_equal(twin_device_end(a), TWIN_OK);
#else
  (void)f, (void)a, (void)access;
#endif
}

twin_stats fixture_stats(const twin_fixture *f) {
  twin_stats st;
  assert_int_equal(twin_context_stats(f->ctx, &st), TWIN_OK);
  return st;
}

int twin_fixture_teardown(void **state) {
  twin_fixture *f = fixture(state);
  restore_hooks();
  twin_stats st = fixture_stats(f), *old = &f->leaked;
  if (st.arrays == old->arrays && st.buffers == old->buffers && st.host_bytes == old->host_bytes &&
      st.device_bytes == old->device_bytes)
    return 0;
  print_error("left alive in the context: %zu arrays, %zu buffers, %zu host bytes, %zu device "
              "bytes\n",
              st.arrays, st.buffers, st.host_bytes, st.device_bytes);
  /* A failed case leaves its objects behind; report them once, not in every later case. */
  *old = st;
  return -1;
}

static int run_group(const char *file, const char *spec, const struct CMUnitTest *tests, size_t n) {
  char name[256];
  const char *base = strrchr(file, '/');
  snprintf(name, sizeof name, "%s on %s", base ? base + 1 : file, spec);
  printf("[ BACKEND  ] %s\n", name);
  fflush(stdout);
  memset(&current, 0, sizeof current);
  current.spec = spec;
  return _cmocka_run_group_tests(name, tests, n, group_setup, group_teardown);
}

int twin_test_run(const char *file, const struct CMUnitTest *tests, size_t n) {
  twin__allocator_copy(&default_alloc, &twin__host_alloc);
  const char *env = getenv("TWIN_TEST_BACKENDS");
#ifdef TWIN_HAVE_OPENCL
  const char *def = "host,opencl,opencl+copy";
#else
  const char *def = "host";
#endif
  char list[256];
  snprintf(list, sizeof list, "%s", env && *env ? env : def);
  int failures = 0;
  char *save = NULL;
  for (char *spec = strtok_r(list, ",", &save); spec; spec = strtok_r(NULL, ",", &save))
    failures += run_group(file, spec, tests, n);
  return failures;
}

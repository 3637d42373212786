#include "release_probe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host_faults.h"

/* Flags set when watched device memory is destroyed, each used once in the process, so that a
 * memory released late (after its case ended) cannot touch a later case's flag. */
static atomic_int destroyed_flags[256];
static int flags_used;

long resident_mib(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
  fclose(f);
  return resident * sysconf(_SC_PAGESIZE) / (1 << 20);
}

long anon_resident_kib(void) {
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  assert_non_null(f);
  char line[256];
  long kib = -1;
  while (kib < 0 && fgets(line, sizeof line, f))
    if (sscanf(line, "Anonymous: %ld kB", &kib) != 1)
      kib = -1;
  fclose(f);
  assert_true(kib >= 0);
  return kib;
}

double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

void begin_probe(twin_context *ctx, probe *p) {
  memset(p, 0, sizeof *p);
  host_inject(0);
  p->ctx = ctx;
  p->stats = fixture_ctx_stats(ctx);
  p->resident = resident_mib();
}

atomic_int *probe_watch(probe *p) {
  assert_true(p->watched < WATCHES);
  assert_true(flags_used < (int)(sizeof destroyed_flags / sizeof destroyed_flags[0]));
  p->destroyed[p->watched] = &destroyed_flags[flags_used++];
  return p->destroyed[p->watched++];
}

void watch_device(probe *p, twin_array *a, twin_access access) {
  if (twin_context_device(twin_array_context(a))->type != TWIN_DEVICE_HOST)
    fixture_watch_device(a, access, probe_watch(p));
}

void expect_held(const probe *p, size_t bytes) {
  assert_true(host_large_live() >= bytes);
#ifndef UNDER_SANITIZER
  assert_true(resident_mib() >= p->resident + (long)(bytes >> 20) * 9 / 10);
#else
  (void)p;
#endif
}

#ifndef UNDER_SANITIZER
static int count_destroyed(const probe *p) {
  int n = 0;
  for (int i = 0; i < p->watched; i++)
    n += atomic_load(p->destroyed[i]);
  return n;
}
#endif

void expect_released_but(const probe *p, size_t kept) {
  assert_int_equal(host_large_live(), kept);
#ifndef UNDER_SANITIZER
  /* Slack for the allocator's and the runtime's own growth, far below one array. */
  long resident = resident_mib(), limit = p->resident + (long)(kept >> 20) + 48;
  if (getenv("TWIN_RELEASE_REPORT")) /* the figures behind the README's release table */
    printf("release: resident %ld MiB before the case, %ld MiB right after the last unref, "
           "%d of %d watched device memories destroyed\n",
           p->resident, resident, count_destroyed(p), p->watched);
  if (resident > limit)
    print_error("resident %ld MiB, expected at most %ld\n", resident, limit);
  assert_true(resident <= limit);
#endif
  for (int i = 0; i < p->watched; i++)
    assert_int_equal(atomic_load(p->destroyed[i]), 1);
  if (p->ctx && !kept) {
    twin_stats st = fixture_ctx_stats(p->ctx);
    assert_int_equal(st.host_bytes, p->stats.host_bytes);
    assert_int_equal(st.device_bytes, p->stats.device_bytes);
    assert_int_equal(st.buffers, p->stats.buffers);
  }
}

void expect_released(const probe *p) {
  expect_released_but(p, 0);
}

twin_array *big_zeros(twin_context *ctx, int ndim, const size_t *shape) {
  twin_array *a;
  assert_ok(twin_array_zeros(ctx, TWIN_F32, ndim, shape, &a));
  return a;
}

twin_array *big_vector(twin_context *ctx) {
  size_t n = BIG_F32;
  return big_zeros(ctx, 1, &n);
}

void hold(const twin_fixture *f, probe *p, twin_array *a) {
  if (p)
    watch_device(p, a, TWIN_READ);
  else
    fixture_device_touch(f, a, TWIN_READ);
  void *x;
  assert_ok(twin_host_begin(a, TWIN_READ, &x));
  assert_ok(twin_host_end(a));
}

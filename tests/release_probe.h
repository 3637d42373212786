/* What the release tests watch (test_release.c on every backend, test_opencl_release.c for the
 * OpenCL cases): after the call that drops a buffer's last view, with no sleep and no
 * twin_context_finish,
 * - the host blocks are back: counted through the library's allocator hooks (host_faults), and
 *   (in builds without AddressSanitizer) seen in the process's resident memory;
 * - the device memory is gone: a watch flag set when it was destroyed (fixture_watch_device);
 * - twin_context_stats counts the bytes off then, and never before. */
#ifndef TWIN_TEST_RELEASE_PROBE_H
#define TWIN_TEST_RELEASE_PROBE_H

#include "fixture.h"

/* AddressSanitizer keeps freed memory in quarantine, so the resident size does not drop when
 * a block is freed, and ThreadSanitizer keeps shadow memory and makes big memsets slow: under
 * either only the allocator hooks count, and the arrays are smaller. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifdef UNDER_SANITIZER
#define BIG_MIB 16
#else
#define BIG_MIB 256
#endif
#define BIG ((size_t)BIG_MIB << 20)
#define BIG_F32 (BIG / sizeof(float))

#define WATCHES 4

typedef struct probe {
  twin_context *ctx;              /* whose statistics: NULL once the case has dropped it */
  twin_stats stats;               /* before the case made its arrays */
  long resident;                  /* MiB, before */
  atomic_int *destroyed[WATCHES]; /* of the device memories the case watches */
  int watched;
} probe;

/* Puts the allocator hooks in (the fixture's teardown takes them out) and notes what ctx holds
 * now. */
void begin_probe(twin_context *ctx, probe *p);
/* A fresh flag for the next device memory the case watches, counted in p. */
atomic_int *probe_watch(probe *p);
/* Watches a's device memory, which a device access of this mode allocates (nothing on the host
 * backend). */
void watch_device(probe *p, twin_array *a, twin_access access);

/* The case's memory is in use: `bytes` of it in large library blocks (host memory and, on a
 * device whose memory is host memory, device copies) and resident. */
void expect_held(const probe *p, size_t bytes);
/* Everything the case made is gone again, except `kept` bytes of large blocks. */
void expect_released_but(const probe *p, size_t kept);
void expect_released(const probe *p);

/* Makes both of a's memories exist and resident (a zeroed array is written as each side is
 * allocated) and, when p is not NULL, watches its device memory. */
void hold(const twin_fixture *f, probe *p, twin_array *a);
twin_array *big_zeros(twin_context *ctx, int ndim, const size_t *shape);
twin_array *big_vector(twin_context *ctx);

double now_ms(void);
/* The process's anonymous resident memory (its data, not the code it has paged in), in KiB,
 * to the page: /proc/self/smaps_rollup walks the page tables, where the counters behind
 * /proc/self/statm are kept per CPU and may lag by tens of pages. */
long anon_resident_kib(void);
/* The process's resident memory now, in MiB (/proc/self/statm). */
long resident_mib(void);

#endif

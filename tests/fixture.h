/* The shared test fixture: every test file's cases run once per backend, in one cmocka group
 * per backend, with the group's context in the fixture. After each case, the teardown asserts
 * that no array or buffer is left alive and restores the failure-injection hooks. */
#ifndef TWIN_TEST_FIXTURE_H
#define TWIN_TEST_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/internal.h"
#include "core/twin.h"

/* How the group's context keeps each buffer's data, fixed when the buffer is made. */
typedef enum fixture_layout {
  FIXTURE_HOST_ONLY,  /* the host backend: one host allocation, no device memory */
  FIXTURE_SHARED,     /* a device that uses each buffer's host block in place (zero-copy): one
                         allocation, counted as host memory, and no byte ever moves */
  FIXTURE_TWO_COPIES, /* a host copy and a device copy, each made at its first use; stale
                         ranges move between them, and every byte moved is counted */
} fixture_layout;

typedef struct twin_fixture {
  twin_context *ctx;
  const char *spec;      /* the spec the group opened, e.g. "host", "fake+copy", "opencl" */
  fixture_layout layout; /* of every buffer twin makes in ctx */
  bool has_device;       /* device memory (layout is not FIXTURE_HOST_ONLY): OpenCL's or the
                            fake device's; device accesses work (fixture_device_begin) */
  bool opencl;           /* an OpenCL device: cl_mem, queues, OpenCL C kernels, twin_opencl.h */
  twin_stats leaked;     /* what earlier failed cases left alive, not counted again */
} twin_fixture;

/* The fixture of the running case: `twin_fixture *f = fixture(state);`. */
static inline twin_fixture *fixture(void **state) {
  return (twin_fixture *)*state;
}

int twin_fixture_teardown(void **state);

/* Register a case that uses the fixture. */
#define TWIN_TEST(fn) cmocka_unit_test_teardown(fn, twin_fixture_teardown)

/* Runs the cases once per backend: TWIN_TEST_BACKENDS (comma-separated device specs, a
 * "+copy" suffix forcing TWIN_COHERENCE_COPY) or, by default, "host", "fake" (the fake test
 * device, zero-copy), "fake+copy" and, in builds with OpenCL, "opencl" (zero-copy where the
 * device shares host memory) and "opencl+copy". opencl_only: only the OpenCL groups of that
 * list (a file of cases that need OpenCL). Returns the number of failures, or 77 (skipped) when
 * no group is to run. */
int twin_test_run(const char *file, const struct CMUnitTest *tests, size_t n, bool opencl_only);

#define TWIN_TEST_MAIN(tests)                                                                      \
  int main(void) {                                                                                 \
    return twin_test_run(__FILE__, tests, sizeof tests / sizeof tests[0], false);                  \
  }

/* For a file whose every case needs an OpenCL device; registered only in builds with OpenCL. */
#define TWIN_TEST_MAIN_OPENCL(tests)                                                               \
  int main(void) {                                                                                 \
    return twin_test_run(__FILE__, tests, sizeof tests / sizeof tests[0], true);                   \
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

/* Options that open a context as spec says (as in TWIN_TEST_BACKENDS: a device spec, a "+copy"
 * suffix asking for TWIN_COHERENCE_COPY); device is room of cap bytes for the device part. A
 * case adds its own options (budgets, debug) before twin_context_new_with. */
twin_context_options fixture_options(const char *spec, char *device, size_t cap);

/* Opens a new context the way the group opened its own (spec as in TWIN_TEST_BACKENDS). */
twin_status fixture_open(const char *spec, twin_context **out);

/* Counts of live objects and bytes in f->ctx. */
twin_stats fixture_stats(const twin_fixture *f);

/* Statistics of any context. */
twin_stats fixture_ctx_stats(twin_context *ctx);

/* The walk's record of the buffer made at `line` of a file whose path ends in `file` (its view
 * pointer cleared: the view may be gone by the time it is read); fails the test when no live
 * buffer was made there. */
twin_buffer_info fixture_walk_find(twin_context *ctx, const char *file, int line);

/* A new i32 array of n elements (n <= 1024) holding first + i, and the check that an array
 * (any layout) reads back so. */
twin_array *fixture_i32(twin_context *ctx, size_t n, int first);
void fixture_expect_i32(twin_array *a, int first);

/* Device accesses on every backend group: through the public twin_device_begin in an OpenCL
 * group, and through the same protocol beneath it (the same checks, states and messages) in the
 * other groups (the fake device has device memory but no cl_mem; the host backend refuses as
 * twin_device_begin does). The group decides, not the array, which may be a released one under
 * TWIN_DEBUG. *handle is the cl_mem on OpenCL, the device block's address on the fake device;
 * it is left alone on failure. */
#define fixture_device_begin(a, access, handle, byte_offset)                                       \
  fixture_device_begin_at((a), (access), (handle), (byte_offset), __FILE__, __LINE__)
twin_status fixture_device_begin_at(twin_array *a, twin_access access, void **handle,
                                    size_t *byte_offset, const char *file, int line);
twin_status fixture_device_end(twin_array *a);

/* A DLPack export of a's device side, as twin_array_to_dlpack_opencl (its public call in an
 * OpenCL group, the same export beneath it in the others; on the fake device the kDLOpenCL data
 * pointer is then a host address). */
struct DLManagedTensor;
#define fixture_to_dlpack_device(a, access, out)                                                   \
  fixture_to_dlpack_device_at((a), (access), (out), __FILE__, __LINE__)
twin_status fixture_to_dlpack_device_at(twin_array *a, twin_access access,
                                        struct DLManagedTensor **out, const char *file, int line);

/* Copies n bytes between host memory and the device memory of a handle from
 * fixture_device_begin on ctx, at byte offset off, complete on return: what an application's
 * own device code would do during the access. False when the device refused. */
bool fixture_device_put(twin_context *ctx, void *handle, size_t off, const void *src, size_t n);
bool fixture_device_get(twin_context *ctx, void *handle, size_t off, void *dst, size_t n);

/* A whole contiguous array's bytes written or read on the device: a device access of that mode
 * around fixture_device_put / fixture_device_get. */
void fixture_device_write(twin_array *a, twin_access access, const void *src);
void fixture_device_read(twin_array *a, void *dst);

/* Makes a's device memory exist (a device access of this mode) and arranges for *destroyed to be
 * incremented once when it is destroyed: a destructor callback on the cl_mem in an OpenCL group,
 * the release of the device block to twin's allocator on the fake device (host_inject must be
 * in). Nothing on the host backend, which has no device memory. */
void fixture_watch_device(twin_array *a, twin_access access, atomic_int *destroyed);

/* Opens and closes a device access on a: its device side becomes allocated and current
 * (nothing on the host backend). */
void fixture_device_touch(const twin_fixture *f, twin_array *a, twin_access access);

#endif

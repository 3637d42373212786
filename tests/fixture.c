#include "fixture.h"
#include "host_faults.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/backend.h"
#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#endif

static twin_fixture current;
static twin__allocator default_alloc;

/* A spec ending in "+copy" asks for TWIN_COHERENCE_COPY, so the two-copy path runs on a
 * device that shares host memory too. */
twin_context_options fixture_options(const char *spec, char *device, size_t cap) {
  snprintf(device, cap, "%s", spec);
  char *plus = strstr(device, "+copy");
  twin_context_options options = {.device = device};
  if (plus) {
    *plus = '\0';
    options.coherence = TWIN_COHERENCE_COPY;
  }
  return options;
}

twin_status fixture_open(const char *spec, twin_context **out) {
  char device[128];
  twin_context_options options = fixture_options(spec, device, sizeof device);
  return twin_context_new_with(&options, out);
}

static bool is_opencl(twin_context *ctx) {
  return strncmp(twin_context_device(ctx)->spec, "opencl", 6) == 0;
}

static bool is_opencl_spec(const char *spec) {
  return strncasecmp(spec, "opencl", 6) == 0;
}

static int group_setup(void **state) {
  if (fixture_open(current.spec, &current.ctx) != TWIN_OK) {
    print_error("cannot open \"%s\": %s\n", current.spec, twin_last_error());
    return -1;
  }
  current.has_device = twin_context_device(current.ctx)->type != TWIN_DEVICE_HOST;
  current.opencl = is_opencl(current.ctx);
  current.layout = !current.has_device                      ? FIXTURE_HOST_ONLY
                   : twin_context_is_zero_copy(current.ctx) ? FIXTURE_SHARED
                                                            : FIXTURE_TWO_COPIES;
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
  host_restore();
  if (!twin__allocator_same(&twin__host_alloc, &default_alloc))
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

twin_status fixture_device_begin_at(twin_array *a, twin_access access, void **handle,
                                    size_t *byte_offset, const char *file, int line) {
#ifdef TWIN_HAVE_OPENCL
  if (current.opencl) {
    cl_mem mem;
    twin_status s = twin_device_begin_at(a, access, handle ? &mem : NULL, byte_offset, file, line);
    if (s == TWIN_OK)
      *handle = mem;
    return s;
  }
#endif
  twin__opener who = {"twin_device_begin", NULL, {file, line}};
  return twin__device_begin(&who, false, a, access, handle, byte_offset);
}

twin_status fixture_device_end(twin_array *a) {
#ifdef TWIN_HAVE_OPENCL
  return twin_device_end(a);
#else
  return twin__device_end(a);
#endif
}

twin_status fixture_to_dlpack_device_at(twin_array *a, twin_access access,
                                        struct DLManagedTensor **out, const char *file, int line) {
#ifdef TWIN_HAVE_OPENCL
  if (current.opencl)
    return twin_array_to_dlpack_opencl_at(a, access, out, file, line);
#endif
  return twin__array_to_dlpack("twin_array_to_dlpack_opencl", a, TWIN__DEVICE, access,
                               (twin__site){file, line}, out);
}

bool fixture_device_put(twin_context *ctx, void *handle, size_t off, const void *src, size_t n) {
#ifdef TWIN_HAVE_OPENCL
  if (is_opencl(ctx))
    return clEnqueueWriteBuffer(twin_context_cl_queue(ctx), (cl_mem)handle, CL_TRUE, off, n, src, 0,
                                NULL, NULL) == CL_SUCCESS;
#endif
  /* The fake device's own transfer, in its queue's order, as an application's command. */
  return ctx->ops->to_device(ctx, handle, off, n, src) == TWIN_OK;
}

bool fixture_device_get(twin_context *ctx, void *handle, size_t off, void *dst, size_t n) {
#ifdef TWIN_HAVE_OPENCL
  if (is_opencl(ctx))
    return clEnqueueReadBuffer(twin_context_cl_queue(ctx), (cl_mem)handle, CL_TRUE, off, n, dst, 0,
                               NULL, NULL) == CL_SUCCESS;
#endif
  return ctx->ops->to_host(ctx, handle, off, n, dst) == TWIN_OK;
}

void fixture_device_write(twin_array *a, twin_access access, const void *src) {
  void *mem;
  size_t off, n = twin_array_nbytes(a);
  assert_int_equal(fixture_device_begin(a, access, &mem, &off), TWIN_OK);
  if (n)
    assert_true(fixture_device_put(twin_array_context(a), mem, off, src, n));
  assert_int_equal(fixture_device_end(a), TWIN_OK);
}

void fixture_device_read(twin_array *a, void *dst) {
  void *mem;
  size_t off, n = twin_array_nbytes(a);
  assert_int_equal(fixture_device_begin(a, TWIN_READ, &mem, &off), TWIN_OK);
  if (n)
    assert_true(fixture_device_get(twin_array_context(a), mem, off, dst, n));
  assert_int_equal(fixture_device_end(a), TWIN_OK);
}

#ifdef TWIN_HAVE_OPENCL
static void CL_CALLBACK on_destroyed(cl_mem mem, void *flag) {
  (void)mem;
  atomic_fetch_add((atomic_int *)flag, 1);
}
#endif

void fixture_watch_device(twin_array *a, twin_access access, atomic_int *destroyed) {
  if (twin_context_device(twin_array_context(a))->type == TWIN_DEVICE_HOST)
    return;
  void *mem;
  size_t off;
  assert_int_equal(fixture_device_begin(a, access, &mem, &off), TWIN_OK);
#ifdef TWIN_HAVE_OPENCL
  if (current.opencl)
    assert_int_equal(clSetMemObjectDestructorCallback((cl_mem)mem, on_destroyed, destroyed),
                     CL_SUCCESS);
  else
#endif
    /* The fake device frees the record it keeps in the buffer's track after the handle's own
     * block, or, for memory the application lent, before it gives the memory back. */
    host_watch_free(a->buf->track.life ? a->buf->track.life : mem, destroyed);
  assert_int_equal(fixture_device_end(a), TWIN_OK);
}

void fixture_device_touch(const twin_fixture *f, twin_array *a, twin_access access) {
  if (!f->has_device)
    return;
  void *mem;
  size_t off;
  assert_int_equal(fixture_device_begin(a, access, &mem, &off), TWIN_OK);
  assert_int_equal(fixture_device_end(a), TWIN_OK);
}

twin_stats fixture_stats(const twin_fixture *f) {
  twin_stats st;
  assert_int_equal(twin_context_stats(f->ctx, &st), TWIN_OK);
  return st;
}

typedef struct found {
  const char *file;
  int line;
  bool seen;
  twin_buffer_info info;
} found;

static bool find_line(const twin_buffer_info *b, void *user) {
  found *x = user;
  if (b->line != x->line || !b->file || !strstr(b->file, x->file))
    return true;
  x->info = *b;
  x->info.view = NULL;
  x->seen = true;
  return false;
}

twin_buffer_info fixture_walk_find(twin_context *ctx, const char *file, int line) {
  found x = {.file = file, .line = line};
  assert_int_equal(twin_context_walk(ctx, find_line, &x), TWIN_OK);
  assert_true(x.seen);
  return x.info;
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

int twin_test_run(const char *file, const struct CMUnitTest *tests, size_t n, bool opencl_only) {
  twin__allocator_copy(&default_alloc, &twin__host_alloc);
  /* TWIN_TEST_FILTER=PATTERN runs only the cases whose names match (cmocka's * and ?). */
  const char *filter = getenv("TWIN_TEST_FILTER");
  if (filter && *filter)
    cmocka_set_test_filter(filter);
  const char *env = getenv("TWIN_TEST_BACKENDS");
#ifdef TWIN_HAVE_OPENCL
  const char *def = "host,fake,fake+copy,opencl,opencl+copy";
#else
  const char *def = "host,fake,fake+copy";
#endif
  char list[256];
  snprintf(list, sizeof list, "%s", env && *env ? env : def);
  int failures = 0, groups = 0;
  char *save = NULL;
  for (char *spec = strtok_r(list, ",", &save); spec; spec = strtok_r(NULL, ",", &save)) {
    if (opencl_only && !is_opencl_spec(spec))
      continue;
    failures += run_group(file, spec, tests, n);
    groups++;
  }
  if (groups == 0) {
    printf("[ SKIPPED  ] %s: no OpenCL group in \"%s\"\n", file, env && *env ? env : def);
    return 77;
  }
  return failures;
}

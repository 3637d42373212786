/* Contexts and device selection where OpenCL is built: the host backend and the fake test device
 * open without loading the OpenCL platforms, and PoCL is found by name. Registered only in
 * builds with OpenCL; runs on the OpenCL groups. */
#include <stdlib.h>
#include <string.h>

#include "backends/opencl/clapi.h"
#include "fixture.h"

/* The first OpenCL device, or false when there is none. */
static bool first_opencl(twin_device_info *out) {
  twin_device_info *list;
  size_t n;
  assert_ok(twin_device_list(&list, &n));
  bool found = n > 1;
  if (found)
    *out = list[0];
  twin_device_list_free(list);
  return found;
}

static void test_resolve_pocl_by_name(void **state) {
  (void)state;
  twin_device_info cl, d;
  if (!first_opencl(&cl) || !strstr(cl.platform, "Portable Computing Language"))
    skip();
  assert_ok(twin_device_resolve("opencl:pthread", &d));
  assert_true(strstr(d.name, "pthread") != NULL);
  assert_ok(twin_device_resolve("opencl:portable", &d));
}

static int platform_queries;

static cl_int CL_API_CALL counting_platform_ids(cl_uint n, cl_platform_id *ids, cl_uint *count) {
  platform_queries++;
  return twin__cl_real.clGetPlatformIDs(n, ids, count);
}

/* OpenCL calls twin makes to open a context: counted where every OpenCL use starts. */
static int platform_queries_of(const char *spec, twin_status expected) {
  twin__cl.clGetPlatformIDs = counting_platform_ids;
  platform_queries = 0;
  twin_context *ctx = NULL;
  assert_status(twin_context_new(spec, &ctx), expected);
  twin_context_unref(ctx);
  twin__cl.clGetPlatformIDs = twin__cl_real.clGetPlatformIDs;
  return platform_queries;
}

/* The host backend and the fake device need no OpenCL: opening them must not load the
 * platforms (PoCL starts its threads and maps tens of MB when its platform is queried). */
static void test_host_and_fake_contexts_do_not_touch_opencl(void **state) {
  (void)state;
  const char *old = getenv("TWIN_DEVICE");
  char saved[128] = "";
  if (old)
    snprintf(saved, sizeof saved, "%s", old);
  assert_int_equal(platform_queries_of("host", TWIN_OK), 0);
  assert_int_equal(platform_queries_of("HOST", TWIN_OK), 0);
  assert_int_equal(platform_queries_of("fake", TWIN_OK), 0);
  assert_int_equal(platform_queries_of("Fake", TWIN_OK), 0);
  setenv("TWIN_DEVICE", "Host", 1);
  assert_int_equal(platform_queries_of(NULL, TWIN_OK), 0);
  twin_device_info d;
  assert_ok(twin_device_resolve(NULL, &d));
  assert_string_equal(d.spec, "host");
  /* The default pick and OpenCL specs do need the platforms, and a spec that matches nothing
   * lists every device. */
  unsetenv("TWIN_DEVICE");
  assert_true(platform_queries_of(NULL, TWIN_OK) > 0);
  assert_true(platform_queries_of("opencl:nosuchdevice", TWIN_ERR_NO_DEVICE) > 0);
  if (old)
    setenv("TWIN_DEVICE", saved, 1);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_resolve_pocl_by_name),
    TWIN_TEST(test_host_and_fake_contexts_do_not_touch_opencl),
};

TWIN_TEST_MAIN_OPENCL(tests)

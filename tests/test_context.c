/* Contexts and run-time device selection. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static void test_context_ref_returns_same_and_unref_null_is_noop(void **state) {
  twin_fixture *f = fixture(state);
  assert_ptr_equal(twin_context_ref(f->ctx), f->ctx);
  twin_context_unref(f->ctx);
  twin_context_unref(NULL);
  assert_null(twin_context_ref(NULL));
}

static void test_context_new_null_out_is_invalid(void **state) {
  (void)state;
  assert_status(twin_context_new("host", NULL), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "out"));
}

static void test_context_opens_what_the_spec_names(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  assert_string_equal(twin_context_device(ctx)->spec, twin_context_device(f->ctx)->spec);
  assert_int_equal(twin_context_is_zero_copy(ctx), f->layout != FIXTURE_TWO_COPIES);
  assert_ok(twin_context_finish(ctx));
  twin_context_unref(ctx);
}

static void test_device_list_ends_with_host(void **state) {
  (void)state;
  twin_device_info *list;
  size_t n;
  assert_ok(twin_device_list(&list, &n));
  assert_true(n >= 1);
  assert_string_equal(list[n - 1].spec, "host");
  assert_int_equal(list[n - 1].type, TWIN_DEVICE_HOST);
  for (size_t i = 0; i + 1 < n; i++) {
    assert_int_not_equal(list[i].type, TWIN_DEVICE_HOST);
    assert_true(list[i].global_mem_bytes > 0);
    assert_true(list[i].max_alloc_bytes > 0);
    assert_true(list[i].name[0] != '\0');
    char spec[32];
    snprintf(spec, sizeof spec, "opencl:%d.%d", list[i].platform_index, list[i].device_index);
    assert_string_equal(list[i].spec, spec);
  }
  twin_device_list_free(list);
  twin_device_list_free(NULL);
}

/* The spec of the first OpenCL device, or NULL when there is none. */
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

static void test_resolve_grammar(void **state) {
  (void)state;
  twin_device_info d, cl;
  assert_ok(twin_device_resolve("host", &d));
  assert_string_equal(d.spec, "host");
  assert_ok(twin_device_resolve("HOST", &d));
  assert_string_equal(d.spec, "host");
  if (!first_opencl(&cl)) {
    assert_status(twin_device_resolve("opencl", &d), TWIN_ERR_NO_DEVICE);
    assert_ok(twin_device_resolve("", &d));
    assert_string_equal(d.spec, "host");
    return;
  }
  assert_ok(twin_device_resolve("opencl:0.0", &d));
  assert_int_equal(d.platform_index, 0);
  assert_int_equal(d.device_index, 0);
  assert_ok(twin_device_resolve("opencl", &d));
  assert_int_not_equal(d.type, TWIN_DEVICE_HOST);
  /* The default takes an OpenCL device over the host backend. */
  twin_device_info def;
  assert_ok(twin_device_resolve("", &def));
  assert_string_equal(def.spec, d.spec);
  if (cl.type == TWIN_DEVICE_CPU) {
    assert_ok(twin_device_resolve("opencl:cpu", &d));
    assert_int_equal(d.type, TWIN_DEVICE_CPU);
  }
  /* A case-insensitive substring of the device name selects it. */
  char part[8] = {0};
  memcpy(part, cl.name, strlen(cl.name) < 5 ? strlen(cl.name) : 5);
  for (char *p = part; *p; p++)
    *p = (char)(*p ^ 0x20 * (((*p | 0x20) >= 'a') && ((*p | 0x20) <= 'z')));
  char spec[32];
  snprintf(spec, sizeof spec, "opencl:%s", part);
  assert_ok(twin_device_resolve(spec, &d));
}

static void test_unknown_spec_lists_devices(void **state) {
  (void)state;
  twin_device_info d;
  memset(&d, 0x5a, sizeof d);
  twin_device_info before = d;
  const char *bad[] = {
      "opencl:nosuchdevice", "cuda", "opencl:", "opencl:7.7", "opencl:0.", "opencl:gpu:0"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    twin_status s = twin_device_resolve(bad[i], &d);
    if (strcmp(bad[i], "opencl:gpu:0") == 0 && s == TWIN_OK)
      continue; /* a device whose name contains "gpu:0" is not impossible */
    assert_int_equal(s, TWIN_ERR_NO_DEVICE);
    assert_non_null(strstr(twin_last_error(), bad[i]));
    assert_non_null(strstr(twin_last_error(), "[host]"));
    assert_memory_equal(&d, &before, sizeof d);
  }
  twin_context *ctx = (twin_context *)&d;
  assert_status(twin_context_new("opencl:nosuchdevice", &ctx), TWIN_ERR_NO_DEVICE);
  assert_ptr_equal(ctx, (twin_context *)&d);
}

static void test_twin_device_env_is_read_when_spec_is_null(void **state) {
  (void)state;
  twin_device_info d;
  const char *old = getenv("TWIN_DEVICE");
  char saved[128] = "";
  if (old)
    snprintf(saved, sizeof saved, "%s", old);
  setenv("TWIN_DEVICE", "host", 1);
  assert_ok(twin_device_resolve(NULL, &d));
  assert_string_equal(d.spec, "host");
  twin_context *ctx;
  assert_ok(twin_context_new(NULL, &ctx));
  assert_string_equal(twin_context_device(ctx)->spec, "host");
  twin_context_unref(ctx);
  setenv("TWIN_DEVICE", "opencl:nosuchdevice", 1);
  assert_status(twin_device_resolve(NULL, &d), TWIN_ERR_NO_DEVICE);
  assert_non_null(strstr(twin_last_error(), "TWIN_DEVICE"));
  setenv("TWIN_DEVICE", "", 1);
  twin_device_info def;
  assert_ok(twin_device_resolve(NULL, &d));
  assert_ok(twin_device_resolve("", &def));
  assert_string_equal(d.spec, def.spec);
  if (old)
    setenv("TWIN_DEVICE", saved, 1);
  else
    unsetenv("TWIN_DEVICE");
}

/* The fake test device: selected by its own spec in any case, never listed and never picked by
 * default; it says what it is, shares host memory (automatic coherence is zero-copy, "+copy"
 * two copies), and runs no OpenCL C. */
static void test_fake_device_is_selected_only_by_its_spec(void **state) {
  (void)state;
  twin_device_info d;
  static const char *const specs[] = {"fake", "FAKE", "Fake"};
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    memset(&d, 0, sizeof d);
    assert_ok(twin_device_resolve(specs[i], &d));
    assert_string_equal(d.spec, "fake");
    assert_string_equal(d.platform, "twin");
    assert_string_equal(d.name, "fake device (host memory; for tests)");
    assert_int_equal(d.type, TWIN_DEVICE_OTHER);
    assert_true(d.host_unified_memory);
    assert_true(d.max_alloc_bytes > 0 && d.max_alloc_bytes <= d.global_mem_bytes);
  }
  twin_device_info *list;
  size_t n;
  assert_ok(twin_device_list(&list, &n));
  for (size_t i = 0; i < n; i++)
    assert_string_not_equal(list[i].spec, "fake");
  twin_device_list_free(list);
  assert_ok(twin_device_resolve("", &d));
  assert_string_not_equal(d.spec, "fake");
  assert_status(twin_device_resolve("fake:0", &d), TWIN_ERR_NO_DEVICE);
  twin_context *ctx;
  assert_ok(fixture_open("fake", &ctx));
  assert_true(twin_context_is_zero_copy(ctx));
  twin_program *p = NULL;
  assert_status(twin_program_new(ctx, "__kernel void k(void) {}", NULL, &p), TWIN_ERR_UNSUPPORTED);
  assert_non_null(strstr(twin_last_error(), "the fake backend runs no OpenCL C"));
  assert_null(p);
  twin_context_unref(ctx);
  assert_ok(fixture_open("fake+copy", &ctx));
  assert_false(twin_context_is_zero_copy(ctx));
  assert_string_equal(twin_context_device(ctx)->spec, "fake");
  twin_context_unref(ctx);
}

static void test_resolve_null_out_is_invalid(void **state) {
  (void)state;
  assert_status(twin_device_resolve("host", NULL), TWIN_ERR_INVALID_ARGUMENT);
  size_t n;
  twin_device_info *list;
  assert_status(twin_device_list(NULL, &n), TWIN_ERR_INVALID_ARGUMENT);
  assert_status(twin_device_list(&list, NULL), TWIN_ERR_INVALID_ARGUMENT);
}

static void test_context_lives_while_an_array_holds_it(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  size_t shape[] = {16};
  twin_array *a;
  assert_ok(twin_array_zeros(ctx, TWIN_I32, 1, shape, &a));
  twin_context_unref(ctx); /* the array's buffer still holds the context */
  assert_ptr_equal(twin_array_context(a), ctx);
  int32_t out[16] = {1};
  assert_ok(twin_array_read(a, out, sizeof out));
  assert_int_equal(out[0], 0);
  twin_array_unref(a); /* the last reference: the context goes with it */
}

/* TWIN_COHERENCE takes any case, like TWIN_DEVICE. */
static void test_coherence_env_is_case_insensitive(void **state) {
  twin_fixture *f = fixture(state);
  const char *old = getenv("TWIN_COHERENCE");
  char saved[64] = "";
  if (old)
    snprintf(saved, sizeof saved, "%s", old);
  char spec[64]; /* the group's device, without its coherence */
  fixture_options(f->spec, spec, sizeof spec);
  unsetenv("TWIN_COHERENCE");
  twin_context *ctx;
  assert_ok(twin_context_new(spec, &ctx));
  bool automatic = twin_context_is_zero_copy(ctx);
  twin_context_unref(ctx);
  static const char *const values[] = {"COPY", "Copy", "AUTO", "Auto", "auto", "copy"};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    setenv("TWIN_COHERENCE", values[i], 1);
    assert_ok(twin_context_new(spec, &ctx));
    bool copy = (values[i][0] | 0x20) == 'c';
    /* Two copies on a device; the host backend has one copy whatever is asked. */
    assert_int_equal(twin_context_is_zero_copy(ctx), copy ? !f->has_device : automatic);
    twin_context_unref(ctx);
  }
  setenv("TWIN_COHERENCE", "copies", 1);
  ctx = NULL;
  assert_status(twin_context_new(spec, &ctx), TWIN_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(twin_last_error(), "TWIN_COHERENCE"));
  assert_null(ctx);
  if (old)
    setenv("TWIN_COHERENCE", saved, 1);
  else
    unsetenv("TWIN_COHERENCE");
}

static bool zero_copy_of(const twin_buffer_info *b, void *user) {
  *(int *)user = b->zero_copy;
  return false;
}

/* "Zero-copy" means one copy, so portable code need not ask for the backend: it is true on
 * the host backend, whose buffers are one host allocation, and wherever the device shares
 * host memory; the statistics and the report agree with the array. */
static void test_one_copy_is_zero_copy_on_every_backend(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  bool one = f->layout != FIXTURE_TWO_COPIES;
  assert_int_equal(twin_context_is_zero_copy(ctx), one);
  const size_t n = 10;
  twin_array *a;
  assert_ok(twin_array_zeros(ctx, TWIN_U8, 1, &n, &a));
  assert_ok(twin_array_set_owner(a, "one"));
  assert_int_equal(twin_array_is_zero_copy(a), one);
  twin_stats st = fixture_ctx_stats(ctx), owned;
  assert_int_equal(st.zero_copy_buffers, one ? 1 : 0);
  assert_ok(twin_context_owner_stats(ctx, "one", &owned));
  assert_int_equal(owned.zero_copy_buffers, one ? 1 : 0);
  int reported = -1;
  assert_ok(twin_context_walk(ctx, zero_copy_of, &reported));
  assert_int_equal(reported, one);
  twin_array_unref(a);
  assert_int_equal(fixture_ctx_stats(ctx).zero_copy_buffers, 0);
  twin_context_unref(ctx);
}

static void test_status_names_and_version(void **state) {
  (void)state;
  assert_string_equal(twin_status_name(TWIN_OK), "TWIN_OK");
  assert_string_equal(twin_status_name(TWIN_ERR_NO_DEVICE), "TWIN_ERR_NO_DEVICE");
  assert_string_equal(twin_status_name((twin_status)999), "TWIN_STATUS_UNKNOWN");
  assert_true(strlen(twin_status_message(TWIN_ERR_BUSY)) > 0);
  int major, minor, patch;
  assert_int_equal(sscanf(twin_version(), "%d.%d.%d", &major, &minor, &patch), 3);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_context_ref_returns_same_and_unref_null_is_noop),
    TWIN_TEST(test_context_new_null_out_is_invalid),
    TWIN_TEST(test_context_opens_what_the_spec_names),
    TWIN_TEST(test_device_list_ends_with_host),
    TWIN_TEST(test_resolve_grammar),
    TWIN_TEST(test_unknown_spec_lists_devices),
    TWIN_TEST(test_twin_device_env_is_read_when_spec_is_null),
    TWIN_TEST(test_fake_device_is_selected_only_by_its_spec),
    TWIN_TEST(test_resolve_null_out_is_invalid),
    TWIN_TEST(test_context_lives_while_an_array_holds_it),
    TWIN_TEST(test_coherence_env_is_case_insensitive),
    TWIN_TEST(test_one_copy_is_zero_copy_on_every_backend),
    TWIN_TEST(test_status_names_and_version),
};

TWIN_TEST_MAIN(tests)

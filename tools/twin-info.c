/* twin-info: what a user runs first on a new machine. Lists every device twin can use, marks
 * the one the default spec (and TWIN_DEVICE, if set) picks, and with --selftest opens each,
 * round-trips data through it and reports pass or fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin.h"
#ifdef TWIN_HAVE_OPENCL
#include "twin_opencl.h"
#endif

static const char *type_name(twin_device_type t) {
  static const char *names[] = {"host", "gpu", "accelerator", "cpu", "other"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static void print_device(const twin_device_info *d, const char *mark) {
  printf("%-12s %-11s %s / %s\n", d->spec, type_name(d->type), d->platform, d->name);
  char max_alloc[32] = "no limit"; /* the host backend's only limit is the address space */
  if (d->type != TWIN_DEVICE_HOST)
    snprintf(max_alloc, sizeof max_alloc, "%.1f GiB", d->max_alloc_bytes / 1073741824.0);
  printf("             memory %.1f GiB, max allocation %s, host-unified %s, fp64 %s%s\n",
         d->global_mem_bytes / 1073741824.0, max_alloc, d->host_unified_memory ? "yes" : "no",
         d->fp64 ? "yes" : "no", mark);
}

/* Opens the device, writes a known pattern, makes the device side current (on an OpenCL
 * device), and reads it back. Returns 0 on pass. */
static int selftest(const twin_device_info *d) {
  enum { N = 1 << 16 };
  static float in[N], out[N];
  for (int i = 0; i < N; i++)
    in[i] = (float)i * 0.5f;
  twin_context *ctx = NULL;
  twin_array *a = NULL;
  size_t shape[] = {N};
  twin_status s = twin_context_new(d->spec, &ctx);
  if (s == TWIN_OK)
    s = twin_array_from_host(ctx, TWIN_F32, 1, shape, in, &a);
#ifdef TWIN_HAVE_OPENCL
  cl_mem mem;
  size_t off;
  if (s == TWIN_OK && d->type != TWIN_DEVICE_HOST &&
      (s = twin_device_begin(a, TWIN_READ_WRITE, &mem, &off)) == TWIN_OK)
    s = twin_device_end(a);
#endif
  if (s == TWIN_OK)
    s = twin_array_read(a, out, sizeof out);
  int ok = s == TWIN_OK && memcmp(in, out, sizeof in) == 0;
  printf("selftest %-12s %s", d->spec, ok ? "pass" : "FAIL");
  if (s != TWIN_OK)
    printf(": %s", twin_last_error());
  else if (!ok)
    printf(": data differs after the round trip");
  printf("\n");
  twin_array_unref(a);
  twin_context_unref(ctx);
  return !ok;
}

int main(int argc, char **argv) {
  int run_selftest = argc > 1 && strcmp(argv[1], "--selftest") == 0;
  if (argc > 1 && !run_selftest) {
    fprintf(stderr, "usage: %s [--selftest]\n", argv[0]);
    return 2;
  }
  twin_device_info *list;
  size_t n;
  if (twin_device_list(&list, &n) != TWIN_OK) {
    fprintf(stderr, "twin-info: %s\n", twin_last_error());
    return 1;
  }
  twin_device_info def, env;
  twin_status s_def = twin_device_resolve("", &def);
  const char *env_spec = getenv("TWIN_DEVICE");
  twin_status s_env = env_spec ? twin_device_resolve(NULL, &env) : TWIN_ERR_NO_DEVICE;
  printf("twin %s: %zu device(s)\n", twin_version(), n);
  for (size_t i = 0; i < n; i++) {
    char mark[96] = "";
    if (s_def == TWIN_OK && strcmp(def.spec, list[i].spec) == 0)
      strcat(mark, "  <- default");
    if (env_spec && s_env == TWIN_OK && strcmp(env.spec, list[i].spec) == 0)
      strcat(mark, "  <- TWIN_DEVICE");
    print_device(&list[i], mark);
  }
  int failures = 0;
  if (env_spec && s_env != TWIN_OK) {
    printf("TWIN_DEVICE=\"%s\": %s\n", env_spec, twin_last_error());
    failures++;
  }
  for (size_t i = 0; run_selftest && i < n; i++)
    failures += selftest(&list[i]);
  twin_device_list_free(list);
  return failures ? 1 : 0;
}

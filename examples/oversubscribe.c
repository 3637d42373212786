/* More arrays on the device than fit: twin spills by itself.
 *
 * Keeps separate host and device copies (the discrete-GPU path) with a device budget of 256 MiB,
 * then makes and keeps sixteen arrays of 64 MiB (1 GiB), each written on the device: by an
 * OpenCL kernel, or on the fake test device (TWIN_DEVICE=fake), which runs no OpenCL C, by
 * twin_fill, a built-in operation that runs on the device side. From the fifth array on there
 * is no room: twin writes the least recently used device copy back to the host and frees it
 * (spilling), and the program never says which array to give up. Then every value is checked on
 * the host, and the statistics and the memory report are printed.
 *
 * With TWIN_SPILL=off the fifth array fails, with the error that says why: the size asked, the
 * budget, what trimming and spilling freed, and the four arrays holding the device memory with
 * the line that made them. Exit status 1 on any failure or wrong value. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "twin.h"

enum { ARRAYS = 16, ELEMS = 16 << 20 }; /* 16 arrays of 16 Mi u32: 64 MiB each */
#define BUDGET ((size_t)256 << 20)

static const char *const source = "__kernel void label(TWIN_ARRAY(__global uint, x), uint k) {\n"
                                  "  long i = get_global_id(0);\n"
                                  "  TWIN_AT(x, i) = k * 1000003u + (uint)i;\n"
                                  "}\n";

/* Element i of array k as the device writes it: the kernel's value, or k with twin_fill. */
static uint32_t expected(bool kernel, uint32_t k, size_t i) {
  return kernel ? k * 1000003u + (uint32_t)i : k;
}

static int fail(const char *what, int k) {
  if (k)
    fprintf(stderr, "oversubscribe: array %d of %d: %s: %s\n", k, ARRAYS, what, twin_last_error());
  else
    fprintf(stderr, "oversubscribe: %s: %s\n", what, twin_last_error());
  return 1;
}

/* An OpenCL kernel where the device runs OpenCL C; NULL (use twin_fill) where it does not. */
static twin_status make_kernel(twin_context *ctx, twin_kernel **k) {
  twin_program *prog;
  *k = NULL;
  twin_status s = twin_program_new(ctx, source, NULL, &prog);
  if (s == TWIN_ERR_UNSUPPORTED)
    return TWIN_OK;
  if (s == TWIN_OK) {
    s = twin_kernel_new(prog, "label", k);
    twin_program_unref(prog); /* the kernel holds the program */
  }
  return s;
}

/* Writes array number k (1-based) on the device. */
static twin_status write_on_device(twin_kernel *kernel, twin_array *a, uint32_t k) {
  if (!kernel)
    return twin_fill(a, &k);
  twin_arg args[] = {twin_arg_array(a, TWIN_WRITE), twin_arg_u32(k)};
  return twin_kernel_launch(kernel, 1, (size_t[]){ELEMS}, NULL, 2, args);
}

/* Checks every value of array k on the host; the host copy comes up to date as needed. */
static bool check(twin_array *a, bool kernel, uint32_t k) {
  const uint32_t *p;
  if (twin_host_begin(a, TWIN_READ, (void **)&p) != TWIN_OK)
    return false;
  size_t bad = 0;
  for (size_t i = 0; i < ELEMS; i++)
    bad += p[i] != expected(kernel, k, i);
  twin_host_end(a);
  if (bad)
    fprintf(stderr, "oversubscribe: array %u: %zu wrong values\n", k, bad);
  return bad == 0;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void print_stats(twin_context *ctx) {
  twin_stats st;
  twin_context_stats(ctx, &st);
  printf("device now %zu MiB (peak %zu MiB, budget %zu MiB), host now %zu MiB\n",
         st.device_bytes >> 20, st.peak_device_bytes >> 20, BUDGET >> 20, st.host_bytes >> 20);
  printf("allocations under pressure %llu, failed %llu; spills %llu, written back %llu MiB, "
         "device memory freed %llu MiB\n",
         (unsigned long long)st.pressure_events, (unsigned long long)st.pressure_failures,
         (unsigned long long)st.spill_count, (unsigned long long)(st.spilled_bytes >> 20),
         (unsigned long long)(st.spill_freed_bytes >> 20));
  printf("moved to the device %llu MiB, to the host %llu MiB\n",
         (unsigned long long)(st.bytes_to_device >> 20),
         (unsigned long long)(st.bytes_to_host >> 20));
}

int main(void) {
  twin_context_options options = {.coherence = TWIN_COHERENCE_COPY, .device_memory_limit = BUDGET};
  twin_context *ctx;
  if (twin_context_new_with(&options, &ctx) != TWIN_OK)
    return fail("twin_context_new_with", 0);
  const twin_device_info *dev = twin_context_device(ctx);
  twin_kernel *kernel;
  if (make_kernel(ctx, &kernel) != TWIN_OK)
    return fail("building the kernel", 0);
  printf("device: %s (%s), %s, device budget %zu MiB; %d arrays of %d MiB written by %s\n",
         dev->spec, dev->name,
         twin_context_is_zero_copy(ctx) ? "one copy (no device memory of its own)" : "two copies",
         BUDGET >> 20, ARRAYS, (int)(ELEMS * sizeof(uint32_t) >> 20),
         kernel ? "an OpenCL kernel" : "twin_fill on the device");

  twin_array *a[ARRAYS] = {NULL};
  int status = 0;
  double t0 = now();
  for (int k = 1; k <= ARRAYS && !status; k++) {
    if (twin_array_new(ctx, TWIN_U32, 1, (size_t[]){ELEMS}, &a[k - 1]) != TWIN_OK)
      status = fail("twin_array_new", k);
    else if (write_on_device(kernel, a[k - 1], (uint32_t)k) != TWIN_OK)
      status = fail("written on the device", k);
  }
  if (!status && twin_context_finish(ctx) != TWIN_OK)
    status = fail("twin_context_finish", 0);
  double t1 = now();
  for (int k = 1; k <= ARRAYS && !status; k++)
    if (!check(a[k - 1], kernel != NULL, (uint32_t)k))
      status = 1;
  if (!status)
    printf("all %d arrays hold the values written on the device (writes %.2f s, checks %.2f s)\n",
           ARRAYS, t1 - t0, now() - t1);
  print_stats(ctx);
  printf("\n");
  twin_context_report(ctx, stdout);
  for (int k = 0; k < ARRAYS; k++)
    twin_array_unref(a[k]);
  twin_kernel_unref(kernel);
  twin_context_unref(ctx);
  return status;
}

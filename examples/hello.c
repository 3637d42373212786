/* The showcase: an array that lives on the host and on the device at once.
 * Picks its device from TWIN_DEVICE (unset: the first GPU, else accelerator, else CPU, else
 * the host backend), fills an array on the host, hands it to the device, and shows what moved
 * and what is held, from twin's own counters. */
#include <stdio.h>

#include "twin.h"
#ifdef TWIN_HAVE_OPENCL
#include "twin_opencl.h"
#endif

static void show(twin_context *ctx, const char *when) {
  twin_stats st;
  twin_context_stats(ctx, &st);
  printf("%-28s host %8zu B  device %8zu B  moved to device %8llu B, to host %8llu B\n", when,
         st.host_bytes, st.device_bytes, (unsigned long long)st.bytes_to_device,
         (unsigned long long)st.bytes_to_host);
}

static int fail(const char *what) {
  fprintf(stderr, "hello: %s: %s\n", what, twin_last_error());
  return 1;
}

int main(void) {
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("device: %s (%s / %s)\n", dev->spec, dev->platform, dev->name);

  size_t shape[] = {256, 256};
  twin_array *a;
  if (twin_array_zeros(ctx, TWIN_F32, 2, shape, &a) != TWIN_OK)
    return fail("twin_array_zeros");
  show(ctx, "zeros, nothing touched:");

  float *p;
  if (twin_host_begin(a, TWIN_READ_WRITE, (void **)&p) != TWIN_OK)
    return fail("twin_host_begin");
  for (size_t i = 0; i < 256 * 256; i++)
    p[i] = (float)i;
  twin_host_end(a);
  show(ctx, "written on the host:");

#ifdef TWIN_HAVE_OPENCL
  cl_mem mem;
  size_t off;
  if (twin_context_cl_queue(ctx)) {
    if (twin_device_begin(a, TWIN_READ, &mem, &off) != TWIN_OK)
      return fail("twin_device_begin");
    twin_device_end(a);
    show(ctx, "read on the device:");
    if (twin_device_begin(a, TWIN_READ, &mem, &off) != TWIN_OK)
      return fail("twin_device_begin");
    twin_device_end(a);
    show(ctx, "read again (nothing moves):");
  }
#endif
  float back[4];
  twin_array *row = a; /* views arrive with slicing; read the first elements directly */
  if (twin_host_begin(row, TWIN_READ, (void **)&p) != TWIN_OK)
    return fail("twin_host_begin");
  for (int i = 0; i < 4; i++)
    back[i] = p[i];
  twin_host_end(row);
  printf("first elements: %g %g %g %g\n", back[0], back[1], back[2], back[3]);

  twin_array_unref(a);
  show(ctx, "after the last unref:");
  twin_context_unref(ctx);
  return 0;
}

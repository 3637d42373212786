/* The showcase: one array on the host and the device at once, a view of it, a fill that runs
 * on the device, and twin's own account of what moved and what is held.
 *
 * Picks its device from TWIN_DEVICE (unset: the first GPU, else accelerator, else CPU, else
 * the host backend); TWIN_COHERENCE=copy keeps two copies even on a device that shares host
 * memory, so the transfer counts below become real. Exits 1 if the data read back is wrong. */
#include <stdio.h>

#include "twin.h"

static void show(twin_context *ctx, const char *when) {
  twin_stats st;
  twin_context_stats(ctx, &st);
  printf("%-40s host %7zu B  device %7zu B  moved: to device %7llu B, to host %7llu B\n", when,
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
  printf("device: %s (%s / %s), %s\n\n", dev->spec, dev->platform, dev->name,
         twin_context_is_zero_copy(ctx) ? "zero-copy: one copy of each buffer, nothing moves"
                                        : "two copies: only stale ranges move");

  size_t shape[] = {256, 256};
  twin_array *a, *row, *col;
  if (twin_array_zeros(ctx, TWIN_F32, 2, shape, &a) != TWIN_OK)
    return fail("twin_array_zeros");
  show(ctx, "256x256 zeros, nothing touched yet:");

  /* Write one row on the host through a view: a[3, :] = 0, 1, 2, ... */
  float *p;
  if (twin_array_index(a, 0, 3, &row) != TWIN_OK ||
      twin_host_begin(row, TWIN_READ_WRITE, (void **)&p) != TWIN_OK)
    return fail("writing row 3");
  for (int j = 0; j < 256; j++)
    p[j] = (float)j;
  twin_host_end(row);
  show(ctx, "row 3 written on the host:");

  /* Use the whole array on the device: only the written row is stale there. */
  if (twin_array_prefetch(a, TWIN_DEVICE) != TWIN_OK) /* on any backend */
    return fail("twin_array_prefetch");
  show(ctx, "whole array made current on the device:");

  /* a[:, 5] = -1, run on the device when there is one. */
  float minus_one = -1.0f;
  if (twin_array_index(a, 1, 5, &col) != TWIN_OK || twin_fill(col, &minus_one) != TWIN_OK)
    return fail("filling column 5");
  float back[256];
  if (twin_array_read(row, back, sizeof back) != TWIN_OK)
    return fail("twin_array_read");
  show(ctx, "column 5 filled, row 3 read back:");
  printf("\nrow 3 starts %g %g %g %g %g %g %g\n", back[0], back[1], back[2], back[3], back[4],
         back[5], back[6]);
  int ok = back[4] == 4.0f && back[5] == -1.0f && back[255] == 255.0f;

  printf("\nwhat holds memory:\n");
  twin_context_report(ctx, stdout);
  twin_array_unref(col);
  twin_array_unref(row);
  twin_array_unref(a);
  printf("\n");
  show(ctx, "after the last unref:");
  twin_context_unref(ctx);
  if (!ok)
    fprintf(stderr, "hello: row 3 holds the wrong values\n");
  return ok ? 0 : 1;
}

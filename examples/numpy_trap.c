/* The trap that started twin, and its way out.
 *
 * In NumPy, `col = huge[:, 100]; del huge` keeps all of `huge` alive through `col`, and
 * nothing tells you. Here the same program asks twin what holds memory, sees the line that
 * made the column, detaches the column with twin_array_copy, and watches the memory go. */
#include <stdio.h>

#include "twin.h"

static void show(twin_context *ctx, const char *when) {
  twin_stats st;
  twin_context_stats(ctx, &st);
  printf("%-34s host %9.1f KiB, device %9.1f KiB, held alive by small views %9.1f KiB\n", when,
         st.host_bytes / 1024.0, st.device_bytes / 1024.0, st.held_by_views_bytes / 1024.0);
}

static int fail(const char *what) {
  fprintf(stderr, "numpy_trap: %s: %s\n", what, twin_last_error());
  return 1;
}

int main(void) {
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  printf("device: %s\n", twin_context_device(ctx)->spec);

  size_t shape[] = {4096, 4096};
  twin_array *huge, *col, *kept;
  if (twin_array_zeros(ctx, TWIN_F32, 2, shape, &huge) != TWIN_OK)
    return fail("twin_array_zeros");
  twin_array_set_owner(huge, "loader");
  twin_array_prefetch(huge, TWIN_HOST);                /* touch it, as real code would */
  if (twin_array_index(huge, 1, 100, &col) != TWIN_OK) /* col = huge[:, 100] */
    return fail("twin_array_index");
  twin_array_unref(huge); /* del huge */
  show(ctx, "after `del huge`, col still alive:");

  printf("\nwhat holds memory:\n");
  twin_context_report(ctx, stdout);

  /* The way out: a copy of exactly the column's size, then drop the view. */
  if (twin_array_copy(col, &kept) != TWIN_OK)
    return fail("twin_array_copy");
  twin_array_unref(col);
  printf("\n");
  show(ctx, "after copying col out:");
  twin_array_unref(kept);
  twin_context_unref(ctx);
  return 0;
}

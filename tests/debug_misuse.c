/* Misuses a released array on purpose, for the TWIN_DEBUG tests: run with TWIN_DEBUG=1, it must
 * stop with abort() after naming the call and the line that made the array (check_misuse.py
 * checks both). It prints that line first, as "expect: FILE:LINE", so the check needs no line
 * numbers of its own. Its own process, because the report aborts and no process may fork after
 * an OpenCL call. Modes:
 *   double-unref     twin_array_unref twice
 *   host-begin       twin_host_begin after the last unref
 *   view             twin_array_slice of a released array
 *   copy             twin_copy from a released array
 *   context-gone     the context's last reference goes first, then the array twice
 *   open-access      the last twin_array_unref with a host write access still open; it also
 *                    prints "begun: FILE:LINE", where the access began
 *   clean            correct use: must exit 0 with TWIN_DEBUG=1 too */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin.h"

static int fail(const char *what) {
  fprintf(stderr, "debug_misuse: %s: %s\n", what, twin_last_error());
  return 2;
}

int main(int argc, char **argv) {
  if (argc != 2)
    return fail("usage: debug_misuse MODE");
  const char *mode = argv[1];
  twin_context *ctx;
  if (twin_context_new(NULL, &ctx) != TWIN_OK)
    return fail("twin_context_new");
  const size_t shape[] = {4, 4};
  twin_array *a, *b;
  int line = __LINE__ + 1;
  if (twin_array_zeros(ctx, TWIN_F32, 2, shape, &a) != TWIN_OK)
    return fail("twin_array_zeros");
  if (twin_array_zeros(ctx, TWIN_F32, 2, shape, &b) != TWIN_OK)
    return fail("twin_array_zeros");
  printf("expect: %s:%d\n", __FILE__, line);
  fflush(stdout);
  if (strcmp(mode, "context-gone") == 0) {
    twin_array_unref(b);
    twin_context_set_leak_handler(ctx, NULL, NULL);
    twin_context_unref(ctx); /* a still holds the context; the leak report goes to stderr */
    twin_array_unref(a);     /* the last reference: the context closes here */
    twin_array_unref(a);
    return 0;
  }
  if (strcmp(mode, "open-access") == 0) {
    void *p;
    int begun = __LINE__ + 1;
    if (twin_host_begin(a, TWIN_WRITE, &p) != TWIN_OK)
      return fail("twin_host_begin");
    printf("begun: %s:%d\n", __FILE__, begun);
    fflush(stdout);
    twin_array_unref(a);
    fprintf(stderr, "debug_misuse: the misuse was not reported\n");
    return 0;
  }
  if (strcmp(mode, "clean") == 0) {
    twin_array *col;
    if (twin_array_index(a, 1, 2, &col) != TWIN_OK || twin_copy(col, col) != TWIN_OK)
      return fail("clean use");
    twin_array_unref(a);
    twin_array_unref(col);
    twin_array_unref(b);
    twin_context_unref(ctx);
    return 0;
  }
  twin_array_unref(a);
  if (strcmp(mode, "double-unref") == 0) {
    twin_array_unref(a);
  } else if (strcmp(mode, "host-begin") == 0) {
    void *p;
    twin_host_begin(a, TWIN_READ, &p);
  } else if (strcmp(mode, "view") == 0) {
    twin_array *v;
    twin_array_slice(a, (twin_slice[]){TWIN_ALL, {0, 2, 1}}, &v);
  } else if (strcmp(mode, "copy") == 0) {
    twin_copy(b, a);
  } else {
    return fail("unknown mode");
  }
  /* Reached only when the misuse went unnoticed. */
  fprintf(stderr, "debug_misuse: the misuse was not reported\n");
  return 0;
}

/* Timing and checks shared by the twin-bench sections. */
#include <stdio.h>
#include <time.h>

#include "bench.h"

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_check(twin_status s, const char *what) {
  if (s != TWIN_OK) {
    fprintf(stderr, "twin-bench: %s: %s\n", what, twin_last_error());
    exit(1);
  }
}

int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#ifdef TWIN_HAVE_OPENCL
void bench_cl_check(cl_int err, const char *what) {
  if (err != CL_SUCCESS) {
    fprintf(stderr, "twin-bench: %s failed (%d)\n", what, err);
    exit(1);
  }
}
#endif

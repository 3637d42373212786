/* The scripted workload the memory failure sweeps run (test_budgets.c fails each of its host
 * allocations, test_opencl_memory.c each of its OpenCL calls): it creates an array from host
 * data, a strided view, a copy of the view (on the device where there is one), uses the copy on
 * the device, writes the base on the host, moves the copy's data between sides with prefetch and
 * evict, makes one more array, trims, and reads everything back; it stops at the first failure.
 * With two copies, two allocations find a redundant copy to trim when they fail: the copy's
 * device memory in the second prefetch (the base's device copy is redundant then) and the last
 * array's host memory (the copy's host copy is). */
#ifndef TWIN_TEST_MEMORY_WORKLOAD_H
#define TWIN_TEST_MEMORY_WORKLOAD_H

#include "fixture.h"

typedef struct work {
  twin_array *a, *v, *c, *d;
  int32_t a0; /* what a[0] holds by now */
} work;

twin_status workload(const twin_fixture *f, work *w);
/* Checks that what a (partial) workload made holds the right data, then drops it. */
void check_and_drop_work(work *w);
/* The live objects and memory of f->ctx are those of base. */
void expect_same_live(const twin_fixture *f, const twin_stats *base);
/* An array the sweeps must never disturb (held on the host only, so no trim can free it), made
 * after one clean run of the workload (which builds any kernels outside the sweep); *base is
 * what f->ctx holds then. */
twin_array *sweep_setup(twin_fixture *f, twin_stats *base);
/* Waits for the device: the runtime's own threads free zero-copy blocks through the allocator
 * hooks once the commands using them are done, so hooks change only after this. */
void quiesce(const twin_fixture *f);

#endif

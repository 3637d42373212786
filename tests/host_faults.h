/* Failing the Nth host allocation of the library, and watching its blocks, shared by the tests
 * that sweep failure paths or observe memory going back (as cl_faults.c is for OpenCL calls).
 * host_inject routes twin's host allocator (twin__host_alloc, never the process-wide malloc that
 * OpenCL runtimes depend on) through wrappers that count every allocation, make number fail_at
 * fail, count the allocations still live, and keep the blocks of at least HOST_LARGE bytes (the
 * arrays' memory; smaller ones are bookkeeping). host_restore puts the allocator back; the
 * fixture's teardown also does. The counters are atomic and the block list locked: a runtime
 * thread may free a zero-copy block (a cl_mem's destructor) while the hooks are in. */
#ifndef TWIN_TEST_HOST_FAULTS_H
#define TWIN_TEST_HOST_FAULTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define HOST_LARGE ((size_t)1 << 20)

extern atomic_int host_calls;        /* allocations (plain, aligned and mapped) since host_inject */
extern atomic_long host_live;        /* allocations made minus blocks freed since host_inject */
extern atomic_int host_maps;         /* blocks mapped (twin__host_alloc.map_fn) since host_inject */
extern atomic_long host_maps_live;   /* blocks mapped minus blocks unmapped since host_inject */
extern atomic_int host_map_failures; /* mappings made to fail since host_inject */

/* Installs the wrappers (or, when they are in, resets their counters) so that allocation number
 * fail_at fails; 0 fails none. */
void host_inject(int fail_at);
/* From now on every aligned or mapped allocation (a buffer's memory block) fails too, until
 * host_restore. */
void host_fail_blocks(void);
void host_restore(void);

/* Bytes of blocks of at least HOST_LARGE allocated since host_inject and not freed yet. */
size_t host_large_live(void);

/* Adds 1 to *freed when block p goes back to the allocator (the wrappers must be in): how a test
 * sees the fake device's memory released, as a destructor callback shows a cl_mem's. */
void host_watch_free(void *p, atomic_int *freed);

#endif

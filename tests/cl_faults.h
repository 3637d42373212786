/* Failing the Nth OpenCL call, shared by the tests that sweep failure paths. Each fault_*
 * wrapper has the signature of the entry point it stands for in the twin__cl dispatch table;
 * install the ones a workload uses, arm the counter with cl_inject, and restore the table
 * with twin__cl = twin__cl_real (the fixture also does at teardown). */
#ifndef TWIN_TEST_CL_FAULTS_H
#define TWIN_TEST_CL_FAULTS_H

#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"

extern int cl_calls;          /* wrapped calls since cl_inject */
extern int cl_fail_at;        /* the call number that fails */
extern cl_int cl_fail_code;   /* what it fails with */
extern const char *cl_failed; /* the entry point made to fail last, NULL if none */
extern char cl_seen[512];     /* every entry point made to fail, space-separated */

/* Resets the counter so that wrapped call number fail_at fails with code. */
void cl_inject(int fail_at, cl_int code);

cl_mem CL_API_CALL fault_create_buffer(cl_context c, cl_mem_flags fl, size_t n, void *host,
                                       cl_int *err);
cl_int CL_API_CALL fault_destructor(cl_mem m, void(CL_CALLBACK *fn)(cl_mem, void *), void *user);
cl_int CL_API_CALL fault_write_buffer(cl_command_queue q, cl_mem m, cl_bool b, size_t off, size_t n,
                                      const void *p, cl_uint ne, const cl_event *wl, cl_event *ev);
cl_int CL_API_CALL fault_read_buffer(cl_command_queue q, cl_mem m, cl_bool b, size_t off, size_t n,
                                     void *p, cl_uint ne, const cl_event *wl, cl_event *ev);
/* The rectangular transfers, likewise ("clEnqueueWriteBufferRect", "clEnqueueReadBufferRect"). */
cl_int CL_API_CALL fault_write_buffer_rect(cl_command_queue q, cl_mem m, cl_bool b,
                                           const size_t *bo, const size_t *ho, const size_t *r,
                                           size_t brp, size_t bsp, size_t hrp, size_t hsp,
                                           const void *p, cl_uint ne, const cl_event *wl,
                                           cl_event *ev);
cl_int CL_API_CALL fault_read_buffer_rect(cl_command_queue q, cl_mem m, cl_bool b, const size_t *bo,
                                          const size_t *ho, const size_t *r, size_t brp, size_t bsp,
                                          size_t hrp, size_t hsp, void *p, cl_uint ne,
                                          const cl_event *wl, cl_event *ev);
cl_int CL_API_CALL fault_fill_buffer(cl_command_queue q, cl_mem m, const void *pat, size_t ps,
                                     size_t off, size_t n, cl_uint ne, const cl_event *wl,
                                     cl_event *ev);
cl_int CL_API_CALL fault_copy_buffer(cl_command_queue q, cl_mem s, cl_mem d, size_t so, size_t dof,
                                     size_t n, cl_uint ne, const cl_event *wl, cl_event *ev);
void *CL_API_CALL fault_map(cl_command_queue q, cl_mem m, cl_bool b, cl_map_flags fl, size_t off,
                            size_t n, cl_uint ne, const cl_event *wl, cl_event *ev, cl_int *err);
/* Really unmaps (and waits for it), then reports the failure: a mapping the runtime still held
 * would keep its cl_mem alive and read as a leak of twin's, while what is tested is twin's
 * answer. */
cl_int CL_API_CALL fault_unmap(cl_command_queue q, cl_mem m, void *p, cl_uint ne,
                               const cl_event *wl, cl_event *ev);
cl_int CL_API_CALL fault_migrate(cl_command_queue q, cl_uint n, const cl_mem *m,
                                 cl_mem_migration_flags fl, cl_uint ne, const cl_event *wl,
                                 cl_event *ev);
cl_int CL_API_CALL fault_set_arg(cl_kernel k, cl_uint i, size_t n, const void *v);
cl_int CL_API_CALL fault_launch(cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o,
                                const size_t *g, const size_t *l, cl_uint ne, const cl_event *wl,
                                cl_event *ev);
cl_context CL_API_CALL fault_create_context(
    const cl_context_properties *props, cl_uint nd, const cl_device_id *devs,
    void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *), void *user, cl_int *err);
cl_command_queue CL_API_CALL fault_create_queue(cl_context c, cl_device_id d,
                                                cl_command_queue_properties props, cl_int *err);
#endif

#endif

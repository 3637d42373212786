#include "cl_faults.h"

#ifdef TWIN_HAVE_OPENCL
#include <string.h>

int cl_calls, cl_fail_at;
cl_int cl_fail_code;
const char *cl_failed;
char cl_seen[512];

void cl_inject(int fail_at, cl_int code) {
  cl_calls = 0;
  cl_fail_at = fail_at;
  cl_fail_code = code;
  cl_failed = NULL;
}

static bool should_fail(const char *name) {
  if (++cl_calls != cl_fail_at)
    return false;
  cl_failed = name;
  if (!strstr(cl_seen, name) && strlen(cl_seen) + strlen(name) + 2 < sizeof cl_seen) {
    strcat(cl_seen, name);
    strcat(cl_seen, " ");
  }
  return true;
}

/* For entry points that return an object and report through *err. */
static bool should_fail_err(const char *name, cl_int *err) {
  if (!should_fail(name))
    return false;
  if (err)
    *err = cl_fail_code;
  return true;
}

cl_mem CL_API_CALL fault_create_buffer(cl_context c, cl_mem_flags fl, size_t n, void *host,
                                       cl_int *err) {
  return should_fail_err("clCreateBuffer", err) ? NULL
                                                : twin__cl_real.clCreateBuffer(c, fl, n, host, err);
}

cl_int CL_API_CALL fault_destructor(cl_mem m, void(CL_CALLBACK *fn)(cl_mem, void *), void *user) {
  return should_fail("clSetMemObjectDestructorCallback")
             ? cl_fail_code
             : twin__cl_real.clSetMemObjectDestructorCallback(m, fn, user);
}

cl_int CL_API_CALL fault_write_buffer(cl_command_queue q, cl_mem m, cl_bool b, size_t off, size_t n,
                                      const void *p, cl_uint ne, const cl_event *wl, cl_event *ev) {
  return should_fail("clEnqueueWriteBuffer")
             ? cl_fail_code
             : twin__cl_real.clEnqueueWriteBuffer(q, m, b, off, n, p, ne, wl, ev);
}

cl_int CL_API_CALL fault_read_buffer(cl_command_queue q, cl_mem m, cl_bool b, size_t off, size_t n,
                                     void *p, cl_uint ne, const cl_event *wl, cl_event *ev) {
  return should_fail("clEnqueueReadBuffer")
             ? cl_fail_code
             : twin__cl_real.clEnqueueReadBuffer(q, m, b, off, n, p, ne, wl, ev);
}

cl_int CL_API_CALL fault_write_buffer_rect(cl_command_queue q, cl_mem m, cl_bool b,
                                           const size_t *bo, const size_t *ho, const size_t *r,
                                           size_t brp, size_t bsp, size_t hrp, size_t hsp,
                                           const void *p, cl_uint ne, const cl_event *wl,
                                           cl_event *ev) {
  return should_fail("clEnqueueWriteBufferRect")
             ? cl_fail_code
             : twin__cl_real.clEnqueueWriteBufferRect(q, m, b, bo, ho, r, brp, bsp, hrp, hsp, p, ne,
                                                      wl, ev);
}

cl_int CL_API_CALL fault_read_buffer_rect(cl_command_queue q, cl_mem m, cl_bool b, const size_t *bo,
                                          const size_t *ho, const size_t *r, size_t brp, size_t bsp,
                                          size_t hrp, size_t hsp, void *p, cl_uint ne,
                                          const cl_event *wl, cl_event *ev) {
  return should_fail("clEnqueueReadBufferRect")
             ? cl_fail_code
             : twin__cl_real.clEnqueueReadBufferRect(q, m, b, bo, ho, r, brp, bsp, hrp, hsp, p, ne,
                                                     wl, ev);
}

cl_int CL_API_CALL fault_fill_buffer(cl_command_queue q, cl_mem m, const void *pat, size_t ps,
                                     size_t off, size_t n, cl_uint ne, const cl_event *wl,
                                     cl_event *ev) {
  return should_fail("clEnqueueFillBuffer")
             ? cl_fail_code
             : twin__cl_real.clEnqueueFillBuffer(q, m, pat, ps, off, n, ne, wl, ev);
}

cl_int CL_API_CALL fault_copy_buffer(cl_command_queue q, cl_mem s, cl_mem d, size_t so, size_t dof,
                                     size_t n, cl_uint ne, const cl_event *wl, cl_event *ev) {
  return should_fail("clEnqueueCopyBuffer")
             ? cl_fail_code
             : twin__cl_real.clEnqueueCopyBuffer(q, s, d, so, dof, n, ne, wl, ev);
}

void *CL_API_CALL fault_map(cl_command_queue q, cl_mem m, cl_bool b, cl_map_flags fl, size_t off,
                            size_t n, cl_uint ne, const cl_event *wl, cl_event *ev, cl_int *err) {
  return should_fail_err("clEnqueueMapBuffer", err)
             ? NULL
             : twin__cl_real.clEnqueueMapBuffer(q, m, b, fl, off, n, ne, wl, ev, err);
}

cl_int CL_API_CALL fault_unmap(cl_command_queue q, cl_mem m, void *p, cl_uint ne,
                               const cl_event *wl, cl_event *ev) {
  cl_int real = twin__cl_real.clEnqueueUnmapMemObject(q, m, p, ne, wl, ev);
  if (!should_fail("clEnqueueUnmapMemObject"))
    return real;
  /* A failed call makes no event: finish the real unmap and drop the one it made. */
  if (real == CL_SUCCESS && ev) {
    twin__cl_real.clWaitForEvents(1, ev);
    twin__cl_real.clReleaseEvent(*ev);
  }
  return cl_fail_code;
}

cl_int CL_API_CALL fault_migrate(cl_command_queue q, cl_uint n, const cl_mem *m,
                                 cl_mem_migration_flags fl, cl_uint ne, const cl_event *wl,
                                 cl_event *ev) {
  return should_fail("clEnqueueMigrateMemObjects")
             ? cl_fail_code
             : twin__cl_real.clEnqueueMigrateMemObjects(q, n, m, fl, ne, wl, ev);
}

cl_int CL_API_CALL fault_set_arg(cl_kernel k, cl_uint i, size_t n, const void *v) {
  return should_fail("clSetKernelArg") ? cl_fail_code : twin__cl_real.clSetKernelArg(k, i, n, v);
}

cl_int CL_API_CALL fault_launch(cl_command_queue q, cl_kernel k, cl_uint d, const size_t *o,
                                const size_t *g, const size_t *l, cl_uint ne, const cl_event *wl,
                                cl_event *ev) {
  return should_fail("clEnqueueNDRangeKernel")
             ? cl_fail_code
             : twin__cl_real.clEnqueueNDRangeKernel(q, k, d, o, g, l, ne, wl, ev);
}

cl_context CL_API_CALL fault_create_context(const cl_context_properties *props, cl_uint nd,
                                            const cl_device_id *devs,
                                            void(CL_CALLBACK *notify)(const char *, const void *,
                                                                      size_t, void *),
                                            void *user, cl_int *err) {
  return should_fail_err("clCreateContext", err)
             ? NULL
             : twin__cl_real.clCreateContext(props, nd, devs, notify, user, err);
}

cl_command_queue CL_API_CALL fault_create_queue(cl_context c, cl_device_id d,
                                                cl_command_queue_properties props, cl_int *err) {
  return should_fail_err("clCreateCommandQueue", err)
             ? NULL
             : twin__cl_real.clCreateCommandQueue(c, d, props, err);
}
#else
/* Without OpenCL there is nothing to fail; keep the translation unit non-empty. */
int cl_faults_unused;
#endif

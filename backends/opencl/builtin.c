/* The built-in kernel program of an OpenCL context: one program per context, built from the
 * embedded .cl files of kernels/ at the first built-in operation (a cold build costs PoCL about
 * a second, so contexts that never copy never pay it), and its kernels created on first use
 * and kept until the context closes (the application's programs are in user_program.c).
 * Everything here runs with cl->ops_lock held, except twin__cl_prepare_ops, which takes it,
 * and twin__cl_append_build_log, which user programs share and which keeps no state. */
#include <stdio.h>

#include "clapi.h"

static const char *const family_names[TWIN__CL_FAMILIES] = {
    [TWIN__CL_COPY1] = "copy1", [TWIN__CL_COPYT] = "copyt", [TWIN__CL_COPYN] = "copyn",
    [TWIN__CL_FILL1] = "fill1", [TWIN__CL_FILLN] = "filln",
};

/* Kernels that move bits are named for the element size: 1, 2, 4, 8 bytes. */
static const char *const size_names[TWIN__CL_SIZES] = {"u8", "u16", "u32", "u64"};

static int size_index(size_t item) {
  return item == 1 ? 0 : item == 2 ? 1 : item == 4 ? 2 : 3;
}

int twin__cl_kernel_id(twin__cl_family family, size_t item) {
  return (int)family * TWIN__CL_SIZES + size_index(item);
}

int twin__cl_convert_id(twin_dtype src, twin_dtype dst) {
  return TWIN__CL_FAMILIES * TWIN__CL_SIZES + (int)src * TWIN_DTYPE_COUNT + (int)dst;
}

static void kernel_name(int id, char *buf, size_t cap) {
  int families = TWIN__CL_FAMILIES * TWIN__CL_SIZES;
  if (id < families) {
    snprintf(buf, cap, "%s_%s", family_names[id / TWIN__CL_SIZES], size_names[id % TWIN__CL_SIZES]);
    return;
  }
  id -= families;
  snprintf(buf, cap, "convert_%s_%s", twin_dtype_name((twin_dtype)(id / TWIN_DTYPE_COUNT)),
           twin_dtype_name((twin_dtype)(id % TWIN_DTYPE_COUNT)));
}

void twin__cl_append_build_log(const twin__cl_context *cl, cl_program program) {
  size_t size = 0;
  if (twin__cl.clGetProgramBuildInfo(program, cl->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) !=
          CL_SUCCESS ||
      size <= 1) {
    twin__fail_append("; the device gave no build log");
    return;
  }
  char *log = twin__malloc(size + 1);
  if (!log) {
    twin__fail_append("; no memory to fetch the %zu-byte build log", size);
    return;
  }
  if (twin__cl.clGetProgramBuildInfo(program, cl->device, CL_PROGRAM_BUILD_LOG, size, log, NULL) ==
      CL_SUCCESS) {
    log[size] = '\0';
    twin__fail_append("\nbuild log:\n%s", log);
  }
  twin__free(log);
}

static twin_status build(twin_context *ctx, twin__cl_context *cl) {
  cl_int err;
  cl_program program =
      twin__cl.clCreateProgramWithSource(cl->context, (cl_uint)twin__cl_program_line_count,
                                         (const char **)twin__cl_program_lines, NULL, &err);
  if (!program)
    return twin__cl_fail("clCreateProgramWithSource", err);
  /* f64 kernels exist only where the device can compile them. */
  const char *options = ctx->device.fp64 ? "-DTWIN_FP64" : "";
  err = twin__cl.clBuildProgram(program, 1, &cl->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    twin__fail(TWIN_ERR_BUILD,
               "clBuildProgram failed with %s (%d) for twin's built-in kernels "
               "on \"%s\"",
               twin__cl_error_name(err), (int)err, ctx->device.name);
    twin__cl_append_build_log(cl, program);
    twin__cl.clReleaseProgram(program);
    return TWIN_ERR_BUILD;
  }
  cl->program = program;
  return TWIN_OK;
}

twin_status twin__cl_prepare_ops(twin_context *ctx) {
  twin__cl_context *cl = to_cl(ctx);
  pthread_mutex_lock(&cl->ops_lock);
  twin_status s = cl->program ? TWIN_OK : build(ctx, cl);
  pthread_mutex_unlock(&cl->ops_lock);
  return s;
}

static twin_status create_kernel(twin__cl_context *cl, int id, twin__cl_kernel *k) {
  char name[64];
  kernel_name(id, name, sizeof name);
  cl_int err;
  cl_kernel kernel = twin__cl.clCreateKernel(cl->program, name, &err);
  if (!kernel) {
    twin__cl_fail("clCreateKernel", err);
    twin__fail_append(" for kernel %s", name);
    return err == CL_OUT_OF_HOST_MEMORY ? TWIN_ERR_OUT_OF_HOST_MEMORY : TWIN_ERR_OPENCL;
  }
  size_t max_group = 0;
  err = twin__cl.clGetKernelWorkGroupInfo(kernel, cl->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof max_group, &max_group, NULL);
  if (err != CL_SUCCESS) {
    twin__cl.clReleaseKernel(kernel);
    return twin__cl_fail("clGetKernelWorkGroupInfo", err);
  }
  k->kernel = kernel;
  k->max_group = max_group ? max_group : 1;
  return TWIN_OK;
}

twin_status twin__cl_kernel_get(twin_context *ctx, int id, const twin__cl_kernel **out) {
  twin__cl_context *cl = to_cl(ctx);
  twin_status s = cl->program ? TWIN_OK : build(ctx, cl);
  twin__cl_kernel *k = &cl->kernels[id];
  if (s == TWIN_OK && !k->kernel)
    s = create_kernel(cl, id, k);
  if (s == TWIN_OK)
    *out = k;
  return s;
}

void twin__cl_builtin_release(twin__cl_context *cl) {
  for (int i = 0; i < TWIN__CL_KERNELS; i++)
    if (cl->kernels[i].kernel)
      twin__cl.clReleaseKernel(cl->kernels[i].kernel);
  if (cl->program)
    twin__cl.clReleaseProgram(cl->program);
}

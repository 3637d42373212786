/* User programs and kernels on an OpenCL device: the mechanics behind core's program cache
 * (program.c), kernels (kernel.c) and launches (launch.c). Nothing here keeps shared state, so
 * every function is safe to call from several threads at once; core serialises the calls that
 * set one kernel's arguments. */
#include <stdio.h>
#include <string.h>

#include "clapi.h"

/* The program's text: twin_kernel.h, then a #line directive so that the build log numbers the
 * application's own lines, then its source. */
static const char **program_lines(const char *source, const char *label, char *line_directive,
                                  size_t cap, cl_uint *count) {
  size_t n = twin__cl_kernel_header_line_count;
  const char **lines = twin__malloc((n + 2) * sizeof *lines);
  if (!lines)
    return NULL;
  for (size_t i = 0; i < n; i++)
    lines[i] = twin__cl_kernel_header_lines[i];
  snprintf(line_directive, cap, "#line 1 \"%s\"\n", label);
  lines[n] = line_directive;
  lines[n + 1] = source;
  *count = (cl_uint)(n + 2);
  return lines;
}

/* The application's options, and the argument information twin checks launches against. */
static char *build_options(const char *options) {
  static const char arg_info[] = " -cl-kernel-arg-info";
  size_t n = options ? strlen(options) : 0;
  char *all = twin__malloc(n + sizeof arg_info);
  if (all) {
    memcpy(all, options ? options : "", n);
    memcpy(all + n, arg_info, sizeof arg_info);
  }
  return all;
}

twin_status twin__cl_program_build(twin_context *ctx, const char *source, const char *label,
                                   const char *options, void **program) {
  twin__cl_context *cl = to_cl(ctx);
  char line_directive[300];
  cl_uint count = 0;
  const char **lines = program_lines(source, label, line_directive, sizeof line_directive, &count);
  char *all_options = build_options(options);
  twin_status s = TWIN_OK;
  cl_program p = NULL;
  cl_int err;
  if (!lines || !all_options) {
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_program_new: no memory for the source");
    goto done;
  }
  p = twin__cl.clCreateProgramWithSource(cl->context, count, lines, NULL, &err);
  if (!p) {
    s = twin__cl_fail("clCreateProgramWithSource", err);
    goto done;
  }
  err = twin__cl.clBuildProgram(p, 1, &cl->device, all_options, NULL, NULL);
  if (err != CL_SUCCESS) {
    s = twin__fail(err == CL_INVALID_BUILD_OPTIONS ? TWIN_ERR_INVALID_ARGUMENT : TWIN_ERR_BUILD,
                   "twin_program_new: clBuildProgram failed with %s (%d) for \"%s\" with "
                   "options \"%s\" on \"%s\"",
                   twin__cl_error_name(err), (int)err, label, options ? options : "",
                   ctx->device.name);
    twin__cl_append_build_log(cl, p);
    twin__cl.clReleaseProgram(p);
    goto done;
  }
  *program = p;
done:
  twin__free(all_options);
  twin__free((void *)lines);
  return s;
}

void twin__cl_program_free(twin_context *ctx, void *program) {
  (void)ctx;
  twin__cl.clReleaseProgram((cl_program)program);
}

/* Appends the names of the program's kernels to the message, for a name that is not one. */
static void append_kernel_names(cl_program program) {
  size_t size = 0;
  if (twin__cl.clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, 0, NULL, &size) != CL_SUCCESS ||
      size == 0)
    return;
  char *names = twin__malloc(size + 1);
  if (!names)
    return;
  if (twin__cl.clGetProgramInfo(program, CL_PROGRAM_KERNEL_NAMES, size, names, NULL) ==
      CL_SUCCESS) {
    names[size] = '\0';
    twin__fail_append("; the program's kernels are: %s", names);
  }
  twin__free(names);
}

static twin__space space_of(cl_kernel_arg_address_qualifier q) {
  switch (q) {
  case CL_KERNEL_ARG_ADDRESS_GLOBAL:
    return TWIN__SPACE_GLOBAL;
  case CL_KERNEL_ARG_ADDRESS_CONSTANT:
    return TWIN__SPACE_CONSTANT;
  case CL_KERNEL_ARG_ADDRESS_LOCAL:
    return TWIN__SPACE_LOCAL;
  case CL_KERNEL_ARG_ADDRESS_PRIVATE:
    return TWIN__SPACE_PRIVATE;
  }
  return TWIN__SPACE_UNKNOWN;
}

/* Reads a name of parameter i into buf; one that does not fit is left empty. */
static cl_int arg_name(cl_kernel kernel, cl_uint i, cl_kernel_arg_info what, char *buf,
                       size_t cap) {
  cl_int err = twin__cl.clGetKernelArgInfo(kernel, i, what, cap - 1, buf, NULL);
  if (err == CL_INVALID_VALUE) { /* longer than the record */
    buf[0] = '\0';
    return CL_SUCCESS;
  }
  return err;
}

/* Describes parameter i. A device without argument information leaves the record zero (core
 * then refuses the kernel); any other failure is an error. */
static cl_int describe_param(cl_kernel kernel, cl_uint i, twin__param *p) {
  cl_kernel_arg_address_qualifier space;
  cl_kernel_arg_type_qualifier type_q = 0;
  memset(p, 0, sizeof *p);
  cl_int err = twin__cl.clGetKernelArgInfo(kernel, i, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof space,
                                           &space, NULL);
  if (err == CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    return CL_SUCCESS;
  if (err == CL_SUCCESS)
    err = twin__cl.clGetKernelArgInfo(kernel, i, CL_KERNEL_ARG_TYPE_QUALIFIER, sizeof type_q,
                                      &type_q, NULL);
  if (err == CL_SUCCESS)
    err = arg_name(kernel, i, CL_KERNEL_ARG_TYPE_NAME, p->type, sizeof p->type);
  if (err == CL_SUCCESS)
    err = arg_name(kernel, i, CL_KERNEL_ARG_NAME, p->name, sizeof p->name);
  if (err != CL_SUCCESS) {
    memset(p, 0, sizeof *p);
    return err;
  }
  p->space = space_of(space);
  p->is_const = (type_q & CL_KERNEL_ARG_TYPE_CONST) || space == CL_KERNEL_ARG_ADDRESS_CONSTANT;
  return CL_SUCCESS;
}

static twin_status describe_params(cl_kernel kernel, twin__kernel_desc *desc) {
  cl_uint n = 0;
  cl_int err = twin__cl.clGetKernelInfo(kernel, CL_KERNEL_NUM_ARGS, sizeof n, &n, NULL);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetKernelInfo(CL_KERNEL_NUM_ARGS)", err);
  twin__param *p = twin__calloc(n ? n : 1, sizeof *p);
  if (!p)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to describe %u parameters", n);
  for (cl_uint i = 0; i < n && err == CL_SUCCESS; i++)
    err = describe_param(kernel, i, &p[i]);
  if (err != CL_SUCCESS) {
    twin__free(p);
    return twin__cl_fail("clGetKernelArgInfo", err);
  }
  desc->params = p;
  desc->nparams = (int)n;
  return TWIN_OK;
}

/* The kernel's own limits on its device. Read before any argument is set, so that
 * CL_KERNEL_LOCAL_MEM_SIZE counts only the kernel's own __local variables. */
static twin_status describe_limits(twin_context *ctx, cl_kernel kernel, twin__kernel_desc *desc) {
  cl_device_id dev = to_cl(ctx)->device;
  size_t group = 0;
  cl_ulong local = 0;
  cl_int err = twin__cl.clGetKernelWorkGroupInfo(kernel, dev, CL_KERNEL_WORK_GROUP_SIZE,
                                                 sizeof group, &group, NULL);
  if (err == CL_SUCCESS)
    err = twin__cl.clGetKernelWorkGroupInfo(kernel, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof local,
                                            &local, NULL);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetKernelWorkGroupInfo", err);
  desc->work_group_size = group;
  desc->local_bytes = local;
  return TWIN_OK;
}

twin_status twin__cl_kernel_create(twin_context *ctx, void *program, const char *name,
                                   void **kernel, twin__kernel_desc *desc) {
  cl_int err;
  cl_kernel k = twin__cl.clCreateKernel((cl_program)program, name, &err);
  if (!k) {
    if (err != CL_INVALID_KERNEL_NAME)
      return twin__fail_prefix(twin__cl_fail("clCreateKernel", err),
                               "twin_kernel_new: kernel %s: ", name);
    twin__fail(TWIN_ERR_INVALID_ARGUMENT,
               "twin_kernel_new: the program has no kernel named "
               "\"%s\"",
               name);
    append_kernel_names((cl_program)program);
    return TWIN_ERR_INVALID_ARGUMENT;
  }
  twin_status s = describe_limits(ctx, k, desc);
  if (s == TWIN_OK)
    s = describe_params(k, desc);
  if (s != TWIN_OK) {
    twin__cl.clReleaseKernel(k);
    return twin__fail_prefix(s, "twin_kernel_new: kernel %s: ", name);
  }
  *kernel = k;
  return TWIN_OK;
}

void twin__cl_kernel_free(twin_context *ctx, void *kernel) {
  (void)ctx;
  twin__cl.clReleaseKernel((cl_kernel)kernel);
}

twin_status twin__cl_kernel_enqueue(twin_context *ctx, void *kernel, const twin__kvalue *values,
                                    int nvalues, int work_dim, const size_t *global,
                                    const size_t *local, int *failed_value) {
  cl_kernel k = kernel;
  *failed_value = -1;
  for (int i = 0; i < nvalues; i++) {
    if (values[i].same)
      continue;
    cl_int err = twin__cl.clSetKernelArg(k, (cl_uint)i, values[i].size, values[i].value);
    if (err != CL_SUCCESS) {
      *failed_value = i;
      return twin__cl_fail("clSetKernelArg", err);
    }
  }
  twin__cl_context *cl = to_cl(ctx);
  cl_event ev;
  twin__cl_enqueue_begin(cl);
  cl_int err = twin__cl.clEnqueueNDRangeKernel(cl->queue, k, (cl_uint)work_dim, NULL, global, local,
                                               0, NULL, &ev);
  for (int i = 0; i < nvalues && err == CL_SUCCESS; i++)
    if (values[i].track) /* each buffer the kernel is given */
      twin__cl_record(values[i].track, ev);
  err = twin__cl_enqueue_end(cl, err, ev, NULL, 0);
  return err == CL_SUCCESS ? TWIN_OK : twin__cl_fail("clEnqueueNDRangeKernel", err);
}

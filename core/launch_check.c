/* Checking a launch before anything opens: the arguments and work sizes of every launch, and
 * for a device kernel whether each argument fits the kernel's parameters and the work-group and
 * local memory fit the kernel's and the device's limits. The messages carry no public call in
 * front; launch.c puts it there with the caller's file and line. Uses kernel.c. */
#include <stdio.h>

#include "../backends/backend.h"
#include "objects.h"

static const char *access_name(twin_access a) {
  return a == TWIN_READ ? "TWIN_READ" : a == TWIN_WRITE ? "TWIN_WRITE" : "TWIN_READ_WRITE";
}

/* ---- Every launch ---- */

static twin_status check_array_arg(const twin_kernel *k, int i, const twin_arg *arg) {
  const twin_array *a = arg->array;
  twin__debug_check(a, "twin_kernel_launch");
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: the array is NULL", i);
  const twin_context *actx = a->buf->ctx;
  if (actx != k->ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: the array belongs to another context (%s) than kernel %s "
                      "(%s)",
                      i, actx->device.spec, k->name, k->ctx->device.spec);
  if (arg->access != TWIN_READ && arg->access != TWIN_WRITE && arg->access != TWIN_READ_WRITE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: access is %d, not TWIN_READ, TWIN_WRITE or TWIN_READ_WRITE", i,
                      (int)arg->access);
  char who[32];
  snprintf(who, sizeof who, "argument %d", i);
  twin_status s = arg->access & TWIN_WRITE ? twin__check_writable(a, who, "the array") : TWIN_OK;
  if (s != TWIN_OK)
    return s;
  if (arg->kind == TWIN_ARG_ARRAY && !twin__is_contiguous(a))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: the array is not C-contiguous; pass it with twin_arg_view "
                      "(shape and strides too) or make it contiguous",
                      i);
  return k->host_fn ? TWIN_OK : twin__check_fp64(actx, a->dtype, who);
}

static twin_status check_arg(const twin_kernel *k, int i, const twin_arg *arg) {
  switch (arg->kind) {
  case TWIN_ARG_ARRAY:
  case TWIN_ARG_VIEW:
    return check_array_arg(k, i, arg);
  case TWIN_ARG_SCALAR:
    if (!twin__dtype_valid(arg->dtype))
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: dtype %d is not a twin_dtype", i,
                        (int)arg->dtype);
    return TWIN_OK;
  case TWIN_ARG_LOCAL:
    if (arg->local_bytes == 0)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: local memory of 0 bytes", i);
    return TWIN_OK;
  }
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: kind %d is not a twin_arg_kind", i,
                    (int)arg->kind);
}

/* The most work items a launch may have: the largest signed value of the size_t where the
 * kernel runs (CL_DEVICE_ADDRESS_BITS wide on the device, the host's for a host kernel), which
 * get_global_id and twin_kernel.h's long index arithmetic hold. Larger sizes are nearly always
 * a negative count converted to size_t. *bits is that width, 0 for the host's. */
static size_t global_bound(const twin_kernel *k, unsigned *bits) {
  unsigned host_bits = 8 * sizeof(size_t);
  *bits = k->host_fn ? 0 : k->ctx->device.address_bits;
  if (*bits == 0 || *bits > host_bits) {
    *bits = 0;
    return SIZE_MAX >> 1;
  }
  return SIZE_MAX >> (host_bits - *bits + 1);
}

/* "4294967296 x 4294967296 x 4" */
static const char *sizes_text(const size_t *sizes, int n, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int d = 0; d < n && used < cap; d++)
    used += (size_t)snprintf(buf + used, cap - used, d ? " x %zu" : "%zu", sizes[d]);
  return buf;
}

/* Refuses a global size (dim >= 0) or the product of all (dim -1) for exceeding bound. */
static twin_status global_refused(const twin_kernel *k, int work_dim, const size_t *global, int dim,
                                  size_t bound, unsigned bits) {
  char why[256], text[96];
  if (bits)
    snprintf(why, sizeof why,
             "the largest signed size of device \"%s\", whose CL_DEVICE_ADDRESS_BITS = %u",
             k->ctx->device.name, bits);
  else
    snprintf(why, sizeof why, "the largest signed size of the host");
  if (dim >= 0)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "global[%d] = %zu exceeds %zu work items (%s)",
                      dim, global[dim], bound, why);
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "the global work items, %s, exceed %zu (%s)",
                    sizes_text(global, work_dim, text, sizeof text), bound, why);
}

/* Each global size and their product within global_bound; *items is the product. */
static twin_status check_global(const twin_kernel *k, int work_dim, const size_t *global,
                                size_t *items) {
  unsigned bits;
  size_t bound = global_bound(k, &bits), n = 1;
  bool over = false;
  for (int d = 0; d < work_dim; d++) {
    if (global[d] > bound)
      return global_refused(k, work_dim, global, d, bound, bits);
    over = over || twin__mul_overflows(n, global[d], &n);
  }
  if (over || n > bound)
    return global_refused(k, work_dim, global, -1, bound, bits);
  *items = n;
  return TWIN_OK;
}

static twin_status check_launch(const twin_kernel *k, int work_dim, const size_t *global,
                                const size_t *local, int nargs, const twin_arg *args,
                                size_t *items) {
  if (!k || !global || (nargs > 0 && !args))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s is NULL",
                      !k        ? "the kernel"
                      : !global ? "global"
                                : "args");
  if (work_dim < 1 || work_dim > 3)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "work_dim is %d, outside 1..3", work_dim);
  if (nargs < 0)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "nargs is %d", nargs);
  for (int d = 0; local && d < work_dim; d++)
    if (local[d] == 0 || global[d] % local[d])
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "global[%d] = %zu is not a multiple of local[%d] = %zu", d, global[d], d,
                        local[d]);
  twin_status s = check_global(k, work_dim, global, items);
  for (int i = 0; s == TWIN_OK && i < nargs; i++)
    s = check_arg(k, i, &args[i]);
  return s;
}

/* ---- A device kernel's parameters ---- */

/* "an f32 array passed TWIN_READ", "a u32 scalar", "local memory". */
static const char *arg_text(const twin_arg *arg, char *buf, size_t cap) {
  if (twin__arg_is_array(arg->kind))
    snprintf(buf, cap, "%s %s passed %s", twin_dtype_name(arg->array->dtype),
             arg->kind == TWIN_ARG_ARRAY ? "array" : "view", access_name(arg->access));
  else if (arg->kind == TWIN_ARG_SCALAR)
    snprintf(buf, cap, "%s scalar", twin_dtype_name(arg->dtype));
  else
    snprintf(buf, cap, "%zu bytes of local memory", arg->local_bytes);
  return buf;
}

static const char *space_text(twin__space s) {
  static const char *names[] = {"", "__global ", "__constant ", "__local ", ""};
  return names[s];
}

/* Refuses argument i at parameter j, naming both and saying why. */
static twin_status mismatch(const twin_kernel *k, int i, const twin_arg *arg, int j,
                            const char *why) {
  const twin__param *p = &k->params[j];
  char text[96];
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                    "argument %d (%s) does not fit parameter %d '%s' of kernel %s (%s%s%s): %s", i,
                    arg_text(arg, text, sizeof text), j, p->name, k->name, space_text(p->space),
                    p->is_const ? "const " : "", p->type[0] ? p->type : "a type name too long",
                    why);
}

static const char *article(twin_dtype dtype) {
  return dtype == TWIN_U8 || dtype == TWIN_U16 || dtype == TWIN_U32 || dtype == TWIN_U64 ? "a"
                                                                                         : "an";
}

/* Refuses a parameter whose type is not exactly `dtype`: a pointer's pointee for an array, the
 * value's type for a scalar. */
static twin_status type_mismatch(const twin_kernel *k, int i, const twin_arg *arg, int j,
                                 twin_dtype dtype) {
  const twin__param_type *t = &k->types[j];
  bool array = twin__arg_is_array(arg->kind);
  const char *what = array ? "element type" : "type";
  char why[384];
  if (t->elem >= 0)
    snprintf(why, sizeof why, "the %ss differ (the parameter's is %s, the argument's %s)", what,
             twin_dtype_name((twin_dtype)t->elem), twin_dtype_name(dtype));
  else
    snprintf(why, sizeof why,
             "%s %s %s binds only %s%s; twin refuses other %ss (vectors, half, bool, size_t, "
             "structs, typedef names), which the kernel would read in units of another size",
             article(dtype), twin_dtype_name(dtype), array ? "array" : "scalar",
             twin__kernel_type_name(dtype), array ? "*" : "", what);
  return mismatch(k, i, arg, j, why);
}

/* The parameters after an array's pointer: its offset, then a view's shape and strides. */
static twin_status check_array_extras(const twin_kernel *k, int i, const twin_arg *arg, int j) {
  static const char *const what[] = {"its element offset, a long", "its shape, a long8",
                                     "its strides, a long8"};
  for (int m = 1; m < twin__arg_binds(arg->kind); m++) {
    const twin__param_type *t = &k->types[j + m];
    if (k->params[j + m].space != TWIN__SPACE_PRIVATE || (m == 1 ? !t->offset_type : !t->long8)) {
      char why[96];
      snprintf(why, sizeof why, "the array binds %s, here", what[m - 1]);
      return mismatch(k, i, arg, j + m, why);
    }
  }
  return TWIN_OK;
}

static twin_status check_array_params(const twin_kernel *k, int i, const twin_arg *arg, int j) {
  const twin__param *p = &k->params[j];
  const twin__param_type *t = &k->types[j];
  if ((p->space != TWIN__SPACE_GLOBAL && p->space != TWIN__SPACE_CONSTANT) || !t->pointer)
    return mismatch(k, i, arg, j,
                    "an array binds a __global or __constant pointer, then its offset (see "
                    "twin_kernel.h)");
  if (t->elem != (int)arg->array->dtype)
    return type_mismatch(k, i, arg, j, arg->array->dtype);
  if ((arg->access & TWIN_WRITE) && p->is_const)
    return mismatch(k, i, arg, j,
                    "the kernel cannot write through a pointer to const; pass TWIN_READ or drop "
                    "the const");
  if (arg->access == TWIN_READ && !p->is_const)
    return mismatch(k, i, arg, j,
                    "an array passed TWIN_READ binds a pointer to const, so the kernel cannot "
                    "write it unseen; declare it const or pass TWIN_READ_WRITE");
  return check_array_extras(k, i, arg, j);
}

static twin_status check_binding(const twin_kernel *k, int i, const twin_arg *arg, int j) {
  const twin__param *p = &k->params[j];
  if (twin__arg_is_array(arg->kind))
    return check_array_params(k, i, arg, j);
  if (arg->kind == TWIN_ARG_LOCAL)
    return p->space == TWIN__SPACE_LOCAL
               ? TWIN_OK
               : mismatch(k, i, arg, j, "local memory binds a __local pointer");
  if (p->space != TWIN__SPACE_PRIVATE || k->types[j].pointer)
    return mismatch(k, i, arg, j, "a scalar binds a value parameter");
  if (k->types[j].elem != (int)arg->dtype)
    return type_mismatch(k, i, arg, j, arg->dtype);
  return TWIN_OK;
}

static twin_status check_params(const twin_kernel *k, int nargs, const twin_arg *args) {
  int j = 0, total = 0;
  for (int i = 0; i < nargs; i++)
    total += twin__arg_binds(args[i].kind);
  for (int i = 0; i < nargs && j + twin__arg_binds(args[i].kind) <= k->nparams; i++) {
    twin_status s = check_binding(k, i, &args[i], j);
    if (s != TWIN_OK)
      return s;
    j += twin__arg_binds(args[i].kind);
  }
  if (total == k->nparams)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                    "kernel %s has %d parameters, but the %d arguments bind %d (an array binds "
                    "2: pointer and offset; a view 4: pointer, offset, shape and strides; a "
                    "scalar or local memory 1)",
                    k->name, k->nparams, nargs, total);
}

/* ---- A device kernel's limits ---- */

/* The work-group: each local size within the device's per-dimension limit, and their product
 * within the device's and the kernel's own work-group limits. Zero limits are unknown. */
static twin_status check_local_sizes(const twin_kernel *k, int work_dim, const size_t *local) {
  const twin_device_info *dev = &k->ctx->device;
  size_t n = 1;
  bool over = false;
  char text[96];
  for (int d = 0; d < work_dim; d++) {
    size_t limit = dev->max_work_item_sizes[d];
    if (limit && local[d] > limit)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "local[%d] = %zu exceeds CL_DEVICE_MAX_WORK_ITEM_SIZES[%d] = %zu of "
                        "device \"%s\"",
                        d, local[d], d, limit, dev->name);
    over = over || twin__mul_overflows(n, local[d], &n);
  }
  sizes_text(local, work_dim, text, sizeof text);
  if (dev->max_work_group_size && (over || n > dev->max_work_group_size))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "the work-group, local %s, exceeds CL_DEVICE_MAX_WORK_GROUP_SIZE = %zu "
                      "work items of device \"%s\"",
                      text, dev->max_work_group_size, dev->name);
  if (k->group_limit && (over || n > k->group_limit))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "the work-group, local %s, exceeds CL_KERNEL_WORK_GROUP_SIZE = %zu, the "
                      "most work items kernel %s runs with on device \"%s\"",
                      text, k->group_limit, k->name, dev->name);
  return TWIN_OK;
}

/* Local memory: the kernel's own __local variables and every local argument, together within
 * the device's CL_DEVICE_LOCAL_MEM_SIZE. The argument that goes over is named. */
static twin_status check_local_memory(const twin_kernel *k, int nargs, const twin_arg *args) {
  const twin_device_info *dev = &k->ctx->device;
  uint64_t limit = dev->local_mem_bytes, total = k->own_local;
  for (int i = 0; limit && i < nargs; i++) {
    if (args[i].kind != TWIN_ARG_LOCAL)
      continue;
    uint64_t before = total;
    if (!__builtin_add_overflow(before, (uint64_t)args[i].local_bytes, &total) && total <= limit)
      continue;
    if (before == 0)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "argument %d: %zu bytes of local memory exceed CL_DEVICE_LOCAL_MEM_SIZE "
                        "= %llu of device \"%s\"",
                        i, args[i].local_bytes, (unsigned long long)limit, dev->name);
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: %zu bytes of local memory, with the %llu bytes before it "
                      "(kernel %s's own __local variables, CL_KERNEL_LOCAL_MEM_SIZE = %llu, and "
                      "earlier local arguments), exceed CL_DEVICE_LOCAL_MEM_SIZE = %llu of device "
                      "\"%s\"",
                      i, args[i].local_bytes, (unsigned long long)before, k->name,
                      (unsigned long long)k->own_local, (unsigned long long)limit, dev->name);
  }
  return TWIN_OK;
}

twin_status twin__launch_check(const twin_kernel *k, int work_dim, const size_t *global,
                               const size_t *local, int nargs, const twin_arg *args,
                               size_t *items) {
  twin_status s = check_launch(k, work_dim, global, local, nargs, args, items);
  if (s != TWIN_OK || k->host_fn)
    return s;
  s = check_params(k, nargs, args);
  if (s == TWIN_OK && local)
    s = check_local_sizes(k, work_dim, local);
  if (s == TWIN_OK)
    s = check_local_memory(k, nargs, args);
  return s;
}

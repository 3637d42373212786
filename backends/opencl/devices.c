/* Enumerates OpenCL devices into twin_device_info records. */
#include <stdio.h>
#include <string.h>

#include "clapi.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

static twin_device_type type_of(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU)
    return TWIN_DEVICE_GPU;
  if (t & CL_DEVICE_TYPE_ACCELERATOR)
    return TWIN_DEVICE_ACCELERATOR;
  if (t & CL_DEVICE_TYPE_CPU)
    return TWIN_DEVICE_CPU;
  return TWIN_DEVICE_OTHER;
}

/* The limits a kernel launch is checked against. CL_DEVICE_MAX_WORK_ITEM_SIZES has one entry
 * per dimension the device supports (at least 3), so it is read whole and cut to three. */
static void describe_limits(cl_device_id dev, twin_device_info *out) {
  cl_ulong local = 0;
  size_t group = 0, items[16] = {0};
  cl_uint bits = 0, dims = 0;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof group, &group, NULL);
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_ADDRESS_BITS, sizeof bits, &bits, NULL);
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof dims, &dims, NULL);
  if (dims >= 3 && dims <= 16 &&
      twin__cl.clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_ITEM_SIZES, dims * sizeof items[0], items,
                               NULL) == CL_SUCCESS)
    memcpy(out->max_work_item_sizes, items, sizeof out->max_work_item_sizes);
  out->local_mem_bytes = local;
  out->max_work_group_size = group;
  out->address_bits = bits;
}

/* Fills one record. A device that fails to answer a query keeps a zero in that field. */
static void describe(cl_device_id dev, const char *platform, int p, int d, twin_device_info *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->spec, sizeof out->spec, "opencl:%d.%d", p, d);
  snprintf(out->platform, sizeof out->platform, "%s", platform);
  out->platform_index = p;
  out->device_index = d;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof out->name - 1, out->name, NULL);
  cl_device_type type = 0;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
  out->type = type_of(type);
  cl_ulong global = 0, max_alloc = 0;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
  out->global_mem_bytes = global;
  out->max_alloc_bytes = max_alloc;
  cl_bool unified = CL_FALSE;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  out->host_unified_memory = unified == CL_TRUE;
  cl_device_fp_config fp64 = 0;
  twin__cl.clGetDeviceInfo(dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
  out->fp64 = fp64 != 0;
  describe_limits(dev, out);
}

/* Appends platform p's devices to list (capacity MAX_PLATFORMS * MAX_DEVICES). */
static void list_platform(cl_platform_id platform, int p, twin_device_info *list, size_t *n) {
  char name[128] = "";
  twin__cl.clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof name - 1, name, NULL);
  cl_device_id devs[MAX_DEVICES];
  cl_uint count = 0;
  if (twin__cl.clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &count) !=
      CL_SUCCESS)
    return; /* a platform without devices answers CL_DEVICE_NOT_FOUND */
  if (count > MAX_DEVICES)
    count = MAX_DEVICES;
  for (cl_uint d = 0; d < count; d++)
    describe(devs[d], name, p, (int)d, &list[(*n)++]);
}

twin_status twin__opencl_list(twin_device_info **out, size_t *count) {
  cl_platform_id platforms[MAX_PLATFORMS];
  cl_uint np = 0;
  /* No ICD installed answers CL_PLATFORM_NOT_FOUND_KHR: that is an empty list, not an error. */
  if (twin__cl.clGetPlatformIDs(MAX_PLATFORMS, platforms, &np) != CL_SUCCESS)
    np = 0;
  if (np > MAX_PLATFORMS)
    np = MAX_PLATFORMS;
  twin_device_info *list = twin__calloc((size_t)np * MAX_DEVICES + 1, sizeof *list);
  if (!list)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to list OpenCL devices");
  size_t n = 0;
  for (cl_uint p = 0; p < np; p++)
    list_platform(platforms[p], (int)p, list, &n);
  *out = list;
  *count = n;
  return TWIN_OK;
}

/* Finds the platform and device ids behind a record from twin__opencl_list. */
twin_status twin__opencl_find(const twin_device_info *info, cl_platform_id *platform,
                              cl_device_id *device) {
  cl_platform_id platforms[MAX_PLATFORMS];
  cl_uint np = 0;
  cl_int err = twin__cl.clGetPlatformIDs(MAX_PLATFORMS, platforms, &np);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetPlatformIDs", err);
  if (info->platform_index < 0 || (cl_uint)info->platform_index >= np)
    return twin__fail(TWIN_ERR_NO_DEVICE, "OpenCL platform %d is gone", info->platform_index);
  cl_device_id devs[MAX_DEVICES];
  cl_uint nd = 0;
  *platform = platforms[info->platform_index];
  err = twin__cl.clGetDeviceIDs(*platform, CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd);
  if (err != CL_SUCCESS)
    return twin__cl_fail("clGetDeviceIDs", err);
  if (info->device_index < 0 || (cl_uint)info->device_index >= nd)
    return twin__fail(TWIN_ERR_NO_DEVICE, "OpenCL device %s is gone", info->spec);
  *device = devs[info->device_index];
  return TWIN_OK;
}

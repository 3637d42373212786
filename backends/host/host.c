/* The host backend: arrays live in host memory only and no OpenCL is needed. Core keeps the
 * host block; this backend has no device memory, so every device member stays NULL, and its
 * copy and fill are the plain C ones of core/convert.c. */
#include <string.h>
#include <unistd.h>

#include "../backend.h"

static twin_status host_open(twin_context *ctx) {
  ctx->backend = NULL;
  return TWIN_OK;
}

static void host_close(twin_context *ctx) {
  (void)ctx;
}

const struct twin_backend_ops twin__host_ops = {
    .name = "host",
    .device_memory = false,
    .open = host_open,
    .close = host_close,
    .copy = twin__host_copy,
    .fill = twin__host_fill,
};

void twin__host_device_info(twin_device_info *out) {
  memset(out, 0, sizeof *out);
  strcpy(out->spec, "host");
  strcpy(out->platform, "twin");
  strcpy(out->name, "host memory (no OpenCL)");
  out->type = TWIN_DEVICE_HOST;
  out->platform_index = -1;
  out->device_index = -1;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  out->global_mem_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
  out->max_alloc_bytes = PTRDIFF_MAX;
  out->host_unified_memory = true;
  out->fp64 = true;
}

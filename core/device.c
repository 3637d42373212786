/* Device enumeration and the device spec grammar. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../backends/backend.h"
#include "context.h"

twin_status twin_device_list(twin_device_info **out, size_t *count) {
  if (!out || !count)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_device_list: %s is NULL",
                      out ? "count" : "out");
  twin_device_info *cl_list = NULL;
  size_t n = 0;
#ifdef TWIN_HAVE_OPENCL
  twin_status s = twin__opencl_list(&cl_list, &n);
  if (s != TWIN_OK)
    return s;
#endif
  twin_device_info *list = twin__calloc(n + 1, sizeof *list);
  if (!list) {
    twin__free(cl_list);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_device_list: no memory for %zu entries",
                      n + 1);
  }
  if (n)
    memcpy(list, cl_list, n * sizeof *list);
  twin__free(cl_list);
  twin__host_device_info(&list[n]);
  *out = list;
  *count = n + 1;
  return TWIN_OK;
}

void twin_device_list_free(twin_device_info *list) {
  twin__free(list);
}

static bool contains_nocase(const char *haystack, const char *needle) {
  size_t n = strlen(needle);
  for (; *haystack; haystack++) {
    size_t i = 0;
    while (i < n && tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n)
      return true;
  }
  return n == 0;
}

/* The default choice: first GPU, else accelerator, else CPU among the n OpenCL devices; then,
 * unless opencl_only, the host backend, which follows them as the list's last entry. */
static const twin_device_info *pick_default(const twin_device_info *list, size_t n,
                                            bool opencl_only) {
  static const twin_device_type order[] = {TWIN_DEVICE_GPU, TWIN_DEVICE_ACCELERATOR,
                                           TWIN_DEVICE_CPU, TWIN_DEVICE_OTHER};
  for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
    for (size_t i = 0; i < n; i++)
      if (list[i].type == order[k])
        return &list[i];
  return opencl_only ? NULL : &list[n];
}

static const twin_device_info *pick_type(const twin_device_info *list, size_t n,
                                         twin_device_type type) {
  for (size_t i = 0; i < n; i++)
    if (list[i].type == type)
      return &list[i];
  return NULL;
}

/* "P.D" with both parts decimal. */
static bool parse_index(const char *s, int *p, int *d) {
  char *end;
  if (!isdigit((unsigned char)*s))
    return false;
  long pl = strtol(s, &end, 10);
  if (*end != '.' || !isdigit((unsigned char)end[1]))
    return false;
  long dl = strtol(end + 1, &end, 10);
  if (*end || pl > 1000000 || dl > 1000000)
    return false;
  *p = (int)pl;
  *d = (int)dl;
  return true;
}

/* Resolves the part after "opencl:" among OpenCL devices (list minus the host entry). */
static const twin_device_info *pick_opencl(const char *arg, const twin_device_info *list,
                                           size_t n) {
  int p, d;
  if (strcasecmp(arg, "gpu") == 0)
    return pick_type(list, n, TWIN_DEVICE_GPU);
  if (strcasecmp(arg, "cpu") == 0)
    return pick_type(list, n, TWIN_DEVICE_CPU);
  if (strcasecmp(arg, "accelerator") == 0)
    return pick_type(list, n, TWIN_DEVICE_ACCELERATOR);
  if (parse_index(arg, &p, &d)) {
    for (size_t i = 0; i < n; i++)
      if (list[i].platform_index == p && list[i].device_index == d)
        return &list[i];
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    if (contains_nocase(list[i].name, arg) || contains_nocase(list[i].platform, arg))
      return &list[i];
  return NULL;
}

/* Resolves any spec but "host" (which twin_device_resolve answers without a list). */
static const twin_device_info *pick(const char *spec, const twin_device_info *list, size_t n) {
  size_t n_cl = n - 1; /* the host entry is last */
  if (*spec == '\0')
    return pick_default(list, n_cl, false);
  if (strcasecmp(spec, "opencl") == 0)
    return pick_default(list, n_cl, true);
  if (strncasecmp(spec, "opencl:", 7) == 0 && spec[7])
    return pick_opencl(spec + 7, list, n_cl);
  return NULL;
}

static twin_status no_match(const char *spec, const char *origin, const twin_device_info *list,
                            size_t n) {
  twin__fail(TWIN_ERR_NO_DEVICE,
             "%s \"%s\" matches no device (grammar: host, opencl, "
             "opencl:gpu, opencl:cpu, opencl:accelerator, opencl:P.D, opencl:NAME); devices:",
             origin, spec);
  for (size_t i = 0; i < n; i++)
    twin__fail_append(" [%s] %s / %s;", list[i].spec, list[i].platform, list[i].name);
  return TWIN_ERR_NO_DEVICE;
}

twin_status twin_device_resolve(const char *spec, twin_device_info *out) {
  if (!out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_device_resolve: out is NULL");
  const char *origin = "device spec";
  if (!spec) {
    spec = getenv("TWIN_DEVICE");
    origin = "TWIN_DEVICE";
    if (!spec)
      spec = "";
  }
  /* The host backend needs no OpenCL: listing devices would load every platform (PoCL starts
   * its threads and maps tens of MB), so "host" is answered without a list. */
  if (strcasecmp(spec, "host") == 0) {
    twin__host_device_info(out);
    return TWIN_OK;
  }
  /* The fake test device is never listed, so only its own spec selects it. */
  if (strcasecmp(spec, "fake") == 0) {
    twin__fake_device_info(out);
    return TWIN_OK;
  }
  twin_device_info *list;
  size_t n;
  twin_status s = twin_device_list(&list, &n);
  if (s != TWIN_OK)
    return s;
  const twin_device_info *found = pick(spec, list, n);
  if (found)
    *out = *found;
  else
    s = no_match(spec, origin, list, n);
  twin_device_list_free(list);
  return s;
}

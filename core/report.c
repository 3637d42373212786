/* What holds memory: the walk over live buffers behind twin_context_walk, the printed report,
 * the leak report at the application's last context reference, and the per-owner statistics,
 * which need the buffer list. The walk snapshots under the locks and calls back with none held,
 * so a callback may call into twin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objects.h"

static double coverage(const twin__buffer *b) {
  size_t covered = atomic_load_explicit(&b->view_bytes, memory_order_relaxed);
  if (b->nbytes == 0 || covered >= b->nbytes)
    return 1.0;
  return (double)covered / (double)b->nbytes;
}

/* Fills one record and its views (an array the caller frees) from buffer b. */
static twin_status describe(twin__buffer *b, twin_buffer_info *info) {
  memset(info, 0, sizeof *info);
  info->nbytes = b->nbytes;
  info->zero_copy = twin__one_copy(b);
  info->file = b->site.file;
  info->line = b->site.line;
  info->coverage = coverage(b);
  twin__buffer_reach(b, &info->reachable, &info->released_bytes);
  twin__buffer_residency(b, 0, b->nbytes, &info->host, &info->device);
  twin__site pinned_at;
  twin__buffer_spill_state(b, &info->spill, &info->pin, &pinned_at, &info->pin_call);
  info->pin_file = pinned_at.file;
  info->pin_line = pinned_at.line;
  twin__spin_lock(&b->views_lock);
  size_t n = b->nviews;
  twin_view_info *views = twin__calloc(n ? n : 1, sizeof *views);
  for (int k = 0; views && k < TWIN__VIEW_LISTS; k++)
    for (twin_array *a = b->views[k]; a; a = a->next) {
      twin_view_info *v = &views[info->views++];
      v->file = a->site.file;
      v->line = a->site.line;
      memcpy(v->owner, a->owner, sizeof v->owner);
      v->dtype = a->dtype;
      v->ndim = a->ndim;
      memcpy(v->shape, a->shape, (size_t)a->ndim * sizeof *v->shape); /* the rest: calloc's 0 */
      v->nbytes = twin_array_nbytes(a);
    }
  twin__spin_unlock(&b->views_lock);
  if (!views)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to describe %zu views", n);
  info->view = views;
  return TWIN_OK;
}

static int larger_first(const void *x, const void *y) {
  const twin_buffer_info *a = x, *b = y;
  return (a->nbytes < b->nbytes) - (a->nbytes > b->nbytes);
}

static void free_infos(twin_buffer_info *infos, size_t n) {
  for (size_t i = 0; i < n; i++)
    twin__free((void *)infos[i].view);
  twin__free(infos);
}

/* A snapshot of every live buffer, largest first. */
static twin_status snapshot(twin_context *ctx, twin_buffer_info **out, size_t *count) {
  twin__buffer **list = NULL;
  size_t n = 0, k = 0;
  twin_status s = twin__hold_buffers(ctx, &list, &n);
  if (s != TWIN_OK)
    return s;
  twin_buffer_info *infos = twin__calloc(n ? n : 1, sizeof *infos);
  if (!infos)
    s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory to describe %zu buffers", n);
  for (; s == TWIN_OK && k < n; k++)
    s = describe(list[k], &infos[k]);
  twin__drop_buffers(list, n);
  if (s != TWIN_OK) {
    if (infos)
      free_infos(infos, k);
    return s;
  }
  qsort(infos, n, sizeof *infos, larger_first);
  *out = infos;
  *count = n;
  return TWIN_OK;
}

twin_status twin_context_walk(twin_context *ctx, twin_walk_fn fn, void *user) {
  if (!ctx || !fn)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_walk: %s is NULL",
                      ctx ? "fn" : "ctx");
  twin_buffer_info *infos;
  size_t n;
  twin_status s = snapshot(ctx, &infos, &n);
  if (s != TWIN_OK)
    return s;
  for (size_t i = 0; i < n && fn(&infos[i], user); i++)
    ;
  free_infos(infos, n);
  return TWIN_OK;
}

static const char *residency_name(twin_residency r) {
  static const char *names[] = {"none", "valid", "stale", "shared"};
  return (unsigned)r < 4 ? names[r] : "?";
}

/* "12.0 MiB" style sizes. */
static void human(char *out, size_t cap, size_t bytes) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void print_site(FILE *out, const char *file, int line) {
  if (file)
    fprintf(out, "%s:%d", file, line);
  else
    fprintf(out, "(unknown)");
}

/* Why a buffer's device copy cannot be spilled now, as one line of the report. */
static void print_pin(FILE *out, const twin_buffer_info *b) {
  static const char *what[] = {
      [TWIN_PIN_LENT] = "pinned: its device memory is the application's (lent) since",
      [TWIN_PIN_EXPORT] = "pinned: a DLPack kDLOpenCL export holds it, made at",
      [TWIN_PIN_ACCESS] = "pinned: a device access is open, begun at",
      [TWIN_PIN_IN_FLIGHT] = "in flight: a command queued on it has not finished; spilled only "
                             "after it, when no idle copy is left",
  };
  if (b->pin == TWIN_PIN_NONE || (unsigned)b->pin >= sizeof what / sizeof what[0])
    return;
  fprintf(out, "              %s", what[b->pin]);
  if (b->pin != TWIN_PIN_IN_FLIGHT) {
    fprintf(out, " ");
    print_site(out, b->pin_file, b->pin_line);
  }
  if (b->pin_call)
    fprintf(out, " by %s", b->pin_call);
  fprintf(out, "\n");
}

static bool print_buffer(const twin_buffer_info *b, void *user) {
  FILE *out = user;
  char size[32];
  human(size, sizeof size, b->nbytes);
  const char *device = b->spill == TWIN_SPILL_STATE_SPILLED ? "spilled" : residency_name(b->device);
  fprintf(out,
          "  %10s  host %-6s device %-7s  reachable %.0f%%  %zu view%s covering %.1f%%  made at ",
          size, residency_name(b->host), device, b->reachable * 100.0, b->views,
          b->views == 1 ? "" : "s", b->coverage * 100.0);
  print_site(out, b->file, b->line);
  fprintf(out, "\n");
  if (b->released_bytes) {
    char released[32];
    human(released, sizeof released, b->released_bytes);
    fprintf(out, "              released: %s of host pages no view reaches\n", released);
  }
  print_pin(out, b);
  for (size_t i = 0; i < b->views; i++) {
    const twin_view_info *v = &b->view[i];
    fprintf(out, "              view %s[", twin_dtype_name(v->dtype));
    for (int k = 0; k < v->ndim; k++)
      fprintf(out, k ? "x%zu" : "%zu", v->shape[k]);
    fprintf(out, "] at ");
    print_site(out, v->file, v->line);
    if (v->owner[0])
      fprintf(out, " owner \"%s\"", v->owner);
    fprintf(out, "\n");
  }
  return true;
}

void twin_context_report(twin_context *ctx, FILE *out) {
  if (!ctx || !out)
    return;
  twin_stats st;
  twin_context_stats(ctx, &st);
  char host[32], dev[32], held[32];
  human(host, sizeof host, st.host_bytes);
  human(dev, sizeof dev, st.device_bytes);
  human(held, sizeof held, st.held_by_views_bytes);
  fprintf(out,
          "twin: context %s: %zu buffers, %zu arrays; host %s, device %s; %s held alive "
          "by views covering under a quarter of their buffer\n",
          ctx->device.spec, st.buffers, st.arrays, host, dev, held);
  if (st.pressure_events) {
    char spilled[32];
    human(spilled, sizeof spilled, st.spilled_bytes);
    fprintf(out,
            "twin: this period, %llu allocations ran out of memory (%llu failed); %llu device "
            "copies spilled, writing back %s\n",
            (unsigned long long)st.pressure_events, (unsigned long long)st.pressure_failures,
            (unsigned long long)st.spill_count, spilled);
  }
  if (twin_context_walk(ctx, print_buffer, out) != TWIN_OK)
    fprintf(out, "twin: the report is incomplete: %s\n", twin_last_error());
}

void twin__report_leak(twin_context *ctx) {
  if (ctx->leak_fn) {
    ctx->leak_fn(ctx, ctx->leak_user);
    return;
  }
  fprintf(stderr,
          "twin: the application dropped its last reference to context %s while "
          "arrays are still alive; they hold this memory (and the context) until they are "
          "unreferenced:\n",
          ctx->device.spec);
  twin_context_report(ctx, stderr);
}

twin_status twin_context_set_leak_handler(twin_context *ctx, twin_leak_fn fn, void *user) {
  if (!ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_set_leak_handler: ctx is NULL");
  ctx->leak_fn = fn;
  ctx->leak_user = user;
  return TWIN_OK;
}

/* Adds buffer info b to *st when one of its views carries `owner`. */
static void add_owned(const twin_buffer_info *b, const char *owner, twin_stats *st) {
  size_t views = 0;
  for (size_t i = 0; i < b->views; i++)
    views += strcmp(b->view[i].owner, owner) == 0;
  if (!views)
    return;
  st->arrays += views;
  st->buffers++;
  st->zero_copy_buffers += b->zero_copy;
  if (b->host != TWIN_RESIDENT_NONE)
    st->host_bytes += b->nbytes - b->released_bytes;
  if (b->device != TWIN_RESIDENT_NONE && !b->zero_copy)
    st->device_bytes += b->nbytes;
  if (b->coverage < 1.0 / TWIN__HELD_BY_VIEWS_SHARE)
    st->held_by_views_bytes += b->nbytes;
}

twin_status twin_context_owner_stats(twin_context *ctx, const char *owner, twin_stats *out) {
  if (!ctx || !owner || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_context_owner_stats: %s is NULL",
                      !ctx     ? "ctx"
                      : !owner ? "owner"
                               : "out");
  twin_buffer_info *infos;
  size_t n;
  twin_status s = snapshot(ctx, &infos, &n);
  if (s != TWIN_OK)
    return s;
  twin_stats st = {0};
  for (size_t i = 0; i < n; i++)
    add_owned(&infos[i], owner, &st);
  free_infos(infos, n);
  *out = st;
  return TWIN_OK;
}

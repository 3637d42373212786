/* twin-bench: the project's benchmark program. Every figure is printed beside a reference
 * measured in the same run (memcpy, memset, or raw OpenCL doing the same job), because
 * absolute numbers on shared machines move by 2x between runs while same-run ratios hold.
 * Usage: twin-bench [device spec]   (default: TWIN_DEVICE, else the default device) */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* Runs the memory sections that need OpenCL: the handoff against raw OpenCL. */
static void run_handoff(twin_context *ctx) {
#ifdef TWIN_HAVE_OPENCL
  if (!twin_context_cl_queue(ctx))
    return;
  twin_context *cp;
  twin_context_options opt = {.device = twin_context_device(ctx)->spec,
                              .coherence = TWIN_COHERENCE_COPY};
  bench_check(twin_context_new_with(&opt, &cp), "twin_context_new_with");
  bench_handoff(ctx, cp);
  twin_context_unref(cp);
#else
  (void)ctx;
#endif
}

static const struct section {
  const char *name;
  void (*run)(twin_context *ctx);
} sections[] = {
    {"views", bench_views},       {"copy", bench_copy},
    {"handoff", run_handoff},     {"fresh", bench_fresh},
    {"launch", bench_launch},     {"release", bench_release},
    {"pressure", bench_pressure}, {"strided-moves", bench_strided},
};

static bool wanted(const char *name, int argc, char **argv) {
  bool any = false;
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--section") == 0) {
      any = true;
      if (strcmp(argv[i + 1], name) == 0)
        return true;
    }
  return !any;
}

/* The device spec: the first argument that is not an option. */
static const char *spec_of(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--section") == 0)
      i++;
    else
      return argv[i];
  }
  const char *env = getenv("TWIN_DEVICE");
  return env ? env : "";
}

static void print_rss(twin_context *ctx, double rss_auto, double rss_copy) {
  printf("\n## Peak RSS above start, holding a 512 MiB array valid on both sides\n\n");
  printf("| coherence | MiB | x array size |\n| --- | --- | --- |\n");
  printf("| auto (%s) | %.0f | %.2f |\n", twin_context_is_zero_copy(ctx) ? "zero-copy" : "copies",
         rss_auto, rss_auto / 512);
  printf("| copy | %.0f | %.2f |\n", rss_copy, rss_copy / 512);
}

/* Usage: twin-bench [--section views|copy|handoff|fresh|launch|release|pressure|strided-moves|
 * rss|dropped]... [device spec] */
int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--rss") == 0)
    return bench_rss_child(argv[3], argv[2]);
  if (argc == 4 && strcmp(argv[1], "--rounds") == 0)
    return bench_rounds_child(argv[3], argv[2]);
  const char *spec = spec_of(argc, argv);
  /* Children first: no fork after this process has touched OpenCL. */
  bool rss = wanted("rss", argc, argv);
  double rss_auto = rss ? bench_spawn_rss(argv[0], "auto", spec) : 0;
  double rss_copy = rss ? bench_spawn_rss(argv[0], "copy", spec) : 0;
  bool dropped = wanted("dropped", argc, argv);
  if (dropped)
    bench_spawn_rounds(argv[0], spec);
  twin_context *ctx;
  bench_check(twin_context_new(spec, &ctx), "twin_context_new");
  const twin_device_info *dev = twin_context_device(ctx);
  printf("# twin-bench %s on %s (%s / %s), %s\n", twin_version(), dev->spec, dev->platform,
         dev->name, twin_context_is_zero_copy(ctx) ? "zero-copy" : "two copies");
  for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
    if (wanted(sections[i].name, argc, argv))
      sections[i].run(ctx);
  if (rss)
    print_rss(ctx, rss_auto, rss_copy);
  if (dropped)
    bench_print_rounds();
  twin_context_unref(ctx);
  return 0;
}

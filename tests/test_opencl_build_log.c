/* twin's built-in OpenCL kernels compile without a word from the compiler: the build log is
 * empty and nothing reaches stderr, also on a cold compile. The process points PoCL's kernel
 * cache at a fresh empty folder before any OpenCL call, so its first build really compiles.
 * Registered only in builds with OpenCL; runs on the OpenCL groups. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/opencl/clapi.h"
#include "fixture.h"

static char cache_dir[] = "/tmp/twin-build-log-XXXXXX";
static int device_builds, cold_builds;

/* Folders in the cache folder: PoCL keeps each compiled program in one (a context leaves only
 * an empty temporary file there). */
static size_t programs_in(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  size_t n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += e->d_type == DT_DIR && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

/* Runs the context's build of the built-in program with stderr going to a file, and returns
 * what was written there (the caller frees it). */
static char *build_capturing_stderr(twin_context *ctx, twin_status *s) {
  FILE *capture = tmpfile();
  assert_non_null(capture);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  dup2(fileno(capture), STDERR_FILENO);
  *s = ctx->ops->prepare_ops(ctx);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  fseek(capture, 0, SEEK_END);
  long n = ftell(capture);
  char *text = calloc((size_t)n + 1, 1);
  rewind(capture);
  assert_int_equal(fread(text, 1, (size_t)n, capture), (size_t)n);
  fclose(capture);
  return text;
}

/* The program's build log, trimmed of white space (the caller frees it). */
static char *build_log(twin_context *ctx) {
  const twin__cl_context *cl = to_cl(ctx);
  size_t size = 0;
  assert_int_equal(
      clGetProgramBuildInfo(cl->program, cl->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size),
      CL_SUCCESS);
  char *log = calloc(size + 1, 1);
  assert_int_equal(
      clGetProgramBuildInfo(cl->program, cl->device, CL_PROGRAM_BUILD_LOG, size, log, NULL),
      CL_SUCCESS);
  size_t n = strlen(log);
  while (n > 0 && strchr(" \t\r\n", log[n - 1]))
    log[--n] = '\0';
  return log;
}

static void test_builtin_kernels_build_with_an_empty_log(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx)); /* a context of its own, whose program is unbuilt */
  bool cold = programs_in(cache_dir) == 0;
  twin_status s;
  char *err = build_capturing_stderr(ctx, &s);
  assert_ok(s);
  char *log = build_log(ctx);
  if (*log || *err)
    print_error("build log:\n%s\nstderr:\n%s\n", log, err);
  assert_string_equal(log, "");
  assert_string_equal(err, "");
  free(log);
  free(err);
  device_builds++;
  if (cold) {
    assert_true(programs_in(cache_dir) > 0); /* the compile happened, into the fresh cache */
    cold_builds++;
  }
  twin_context_unref(ctx);
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_builtin_kernels_build_with_an_empty_log),
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

int main(void) {
  if (!mkdtemp(cache_dir)) {
    perror("mkdtemp");
    return 1;
  }
  setenv("POCL_CACHE_DIR", cache_dir, 1);
  int failures = twin_test_run(__FILE__, tests, sizeof tests / sizeof tests[0], true);
  if (device_builds > 0 && cold_builds == 0) {
    fprintf(stderr, "no build was cold: %s was not empty before the first one\n", cache_dir);
    failures++;
  }
  nftw(cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return failures;
}

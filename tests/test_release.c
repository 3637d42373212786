/* The call that drops the last view of a buffer returns only after both of its memories are
 * really released, on every path a buffer can end by: the last view, a DLPack deleter, the
 * release of lent memory, the last array of a context the application already dropped. Each
 * case asserts right after the call, with no sleep and no twin_context_finish, that
 * - the host blocks are back: counted through the library's allocator hooks, and (in builds
 *   without AddressSanitizer) seen in the process's resident memory;
 * - the device memory is gone: a destructor callback the test put on the cl_mem has run;
 * - twin_context_stats counts the bytes off then, and never before.
 * It also checks that the wait covers only the commands that use that buffer: dropping an idle
 * buffer while a long kernel runs on another returns at once. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dlpack/dlpack.h>

#include "fixture.h"
#ifdef TWIN_HAVE_OPENCL
#include "backends/opencl/clapi.h"
#include "core/twin_opencl.h"
#endif

/* AddressSanitizer keeps freed memory in quarantine, so the resident size does not drop when
 * a block is freed, and ThreadSanitizer keeps shadow memory and makes big memsets slow: under
 * either only the allocator hooks count, and the arrays are smaller. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifdef UNDER_SANITIZER
#define BIG_MIB 16
#else
#define BIG_MIB 256
#endif
#define BIG ((size_t)BIG_MIB << 20)
#define BIG_F32 (BIG / sizeof(float))

/* Blocks of at least this size are the arrays' memory; smaller ones are bookkeeping. */
#define LARGE ((size_t)1 << 20)

/* ---- host blocks, counted through the allocator hooks ---- */

/* A runtime thread may free a zero-copy block (the cl_mem's destructor), hence the lock. */
static twin__allocator real_alloc;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  void *p;
  size_t n;
} blocks[32];

static void note_block(void *p, size_t n) {
  if (!p || n < LARGE)
    return;
  pthread_mutex_lock(&blocks_lock);
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
    if (!blocks[i].p) {
      blocks[i].p = p;
      blocks[i].n = n;
      break;
    }
  pthread_mutex_unlock(&blocks_lock);
}

static void *hook_malloc(size_t n) {
  void *p = real_alloc.malloc_fn(n);
  note_block(p, n);
  return p;
}

static void *hook_aligned(size_t alignment, size_t n) {
  void *p = real_alloc.aligned_fn(alignment, n);
  note_block(p, n);
  return p;
}

static void hook_free(void *p) {
  pthread_mutex_lock(&blocks_lock);
  for (size_t i = 0; p && i < sizeof blocks / sizeof blocks[0]; i++)
    if (blocks[i].p == p)
      blocks[i].p = NULL;
  pthread_mutex_unlock(&blocks_lock);
  real_alloc.free_fn(p);
}

/* Bytes of large blocks the library allocated since the hooks went in and has not freed. */
static size_t live_blocks(void) {
  size_t n = 0;
  pthread_mutex_lock(&blocks_lock);
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
    if (blocks[i].p)
      n += blocks[i].n;
  pthread_mutex_unlock(&blocks_lock);
  return n;
}

/* The fixture's teardown puts the real allocator back. */
static void install_hooks(void) {
  memset(blocks, 0, sizeof blocks);
  twin__allocator_copy(&real_alloc, &twin__host_alloc);
  twin__host_alloc.malloc_fn = hook_malloc;
  twin__host_alloc.aligned_fn = hook_aligned;
  twin__host_alloc.free_fn = hook_free;
}

/* ---- resident memory ---- */

static long resident_mib(void) {
  long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  assert_non_null(f);
  assert_int_equal(fscanf(f, "%ld %ld", &size, &resident), 2);
  fclose(f);
  return resident * sysconf(_SC_PAGESIZE) / (1 << 20);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* ---- what a case watches ---- */

#define WATCHES 4

#ifdef TWIN_HAVE_OPENCL
/* Flags set by destructor callbacks on cl_mem objects, each used once in the process, so that
 * a memory released late (after its case ended) cannot touch a later case's flag. */
static atomic_int destroyed_flags[256];
static int flags_used;
#endif

typedef struct probe {
  twin_context *ctx;              /* whose statistics: NULL once the case has dropped it */
  twin_stats stats;               /* before the case made its arrays */
  long resident;                  /* MiB, before */
  atomic_int *destroyed[WATCHES]; /* of the cl_mem objects the case watches */
  int watched;
} probe;

static void begin_probe(twin_context *ctx, probe *p) {
  memset(p, 0, sizeof *p);
  install_hooks();
  p->ctx = ctx;
  p->stats = fixture_ctx_stats(ctx);
  p->resident = resident_mib();
}

/* The case's memory is in use: `bytes` of it in large library blocks (host memory and, on a
 * device that shares host memory, device copies) and resident. */
static void expect_held(const probe *p, size_t bytes) {
  assert_true(live_blocks() >= bytes);
#ifndef UNDER_SANITIZER
  assert_true(resident_mib() >= p->resident + (long)(bytes >> 20) * 9 / 10);
#endif
}

static int count_destroyed(const probe *p) {
  int n = 0;
  for (int i = 0; i < p->watched; i++)
    n += atomic_load(p->destroyed[i]);
  return n;
}

/* Everything the case made is gone again, except `kept` bytes of large blocks. */
static void expect_released_but(const probe *p, size_t kept) {
  assert_int_equal(live_blocks(), kept);
#ifndef UNDER_SANITIZER
  /* Slack for the allocator's and the runtime's own growth, far below one array. */
  long resident = resident_mib(), limit = p->resident + (long)(kept >> 20) + 48;
  if (getenv("TWIN_RELEASE_REPORT")) /* the figures behind the README's release table */
    printf("release: resident %ld MiB before the case, %ld MiB right after the last unref, "
           "%d of %d watched cl_mem destroyed\n",
           p->resident, resident, count_destroyed(p), p->watched);
  if (resident > limit)
    print_error("resident %ld MiB, expected at most %ld\n", resident, limit);
  assert_true(resident <= limit);
#endif
  for (int i = 0; i < p->watched; i++)
    assert_int_equal(atomic_load(p->destroyed[i]), 1);
  if (p->ctx && !kept) {
    twin_stats st = fixture_ctx_stats(p->ctx);
    assert_int_equal(st.host_bytes, p->stats.host_bytes);
    assert_int_equal(st.device_bytes, p->stats.device_bytes);
    assert_int_equal(st.buffers, p->stats.buffers);
  }
}

static void expect_released(const probe *p) {
  expect_released_but(p, 0);
}

#ifdef TWIN_HAVE_OPENCL
static void CL_CALLBACK on_destroyed(cl_mem mem, void *flag) {
  (void)mem;
  atomic_fetch_add((atomic_int *)flag, 1);
}

/* Watches a cl_mem: its destructor sets the probe's next flag. */
static void watch_mem(probe *p, cl_mem mem) {
  assert_true(p->watched < WATCHES);
  assert_true(flags_used < (int)(sizeof destroyed_flags / sizeof destroyed_flags[0]));
  p->destroyed[p->watched] = &destroyed_flags[flags_used++];
  assert_int_equal(clSetMemObjectDestructorCallback(mem, on_destroyed, p->destroyed[p->watched]),
                   CL_SUCCESS);
  p->watched++;
}

/* Watches a's device memory, which a device access of this mode allocates. */
static void watch_device(const twin_fixture *f, probe *p, twin_array *a, twin_access access) {
  if (!f->has_device)
    return;
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, access, &mem, &off));
  watch_mem(p, mem);
  assert_ok(twin_device_end(a));
}
#else
static void watch_device(const twin_fixture *f, probe *p, twin_array *a, twin_access access) {
  (void)f, (void)p, (void)a, (void)access;
}
#endif

/* ---- a kernel that runs for a while ---- */

static const char spin_source[] = "__kernel void spin(TWIN_ARRAY(__global float, x), int n) {\n"
                                  "  float a = TWIN_AT(x, get_global_id(0));\n"
                                  "  for (int i = 0; i < n; i++)\n"
                                  "    a = a * 0.999f + 1.0f;\n"
                                  "  TWIN_AT(x, get_global_id(0)) = a;\n"
                                  "}\n";

/* On the host backend the kernel is a C function that writes element 0 at once. */
static twin_status host_spin(const twin_host_launch *l, void *user) {
  (void)user;
  *(float *)l->data[0] = 1.0f;
  return TWIN_OK;
}

static twin_kernel *spin_kernel(const twin_fixture *f, twin_context *ctx) {
  twin_kernel *k;
  if (!f->has_device) {
    assert_ok(twin_kernel_new_host(ctx, "spin", host_spin, NULL, &k));
    return k;
  }
  twin_program *prog;
  assert_ok(twin_program_new(ctx, spin_source, NULL, &prog));
  assert_ok(twin_kernel_new(prog, "spin", &k));
  twin_program_unref(prog);
  return k;
}

static void launch_spin(twin_kernel *k, twin_array *a, int iterations) {
  size_t one = 1;
  twin_arg args[] = {twin_arg_array(a, TWIN_READ_WRITE), twin_arg_i32(iterations)};
  assert_ok(twin_kernel_launch(k, 1, &one, NULL, 2, args));
}

/* Iterations of spin that take about ms milliseconds on this device, measured once. */
static int spin_iterations(const twin_fixture *f, double ms) {
  static double per_ms;
  if (!f->has_device)
    return 1;
  if (per_ms == 0) {
    twin_kernel *k = spin_kernel(f, f->ctx);
    size_t one = 1;
    twin_array *x;
    assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, &one, &x));
    launch_spin(k, x, 1); /* the first launch also compiles the kernel for its work size */
    assert_ok(twin_context_finish(f->ctx));
    for (int n = 1 << 18; per_ms == 0; n *= 2) {
      double t0 = now_ms();
      launch_spin(k, x, n);
      assert_ok(twin_context_finish(f->ctx));
      double took = now_ms() - t0;
      if (took >= 40)
        per_ms = n / took;
    }
    twin_array_unref(x);
    twin_kernel_unref(k);
  }
  return (int)(per_ms * ms);
}

static twin_array *big_zeros(twin_context *ctx, int ndim, const size_t *shape) {
  twin_array *a;
  assert_ok(twin_array_zeros(ctx, TWIN_F32, ndim, shape, &a));
  return a;
}

static twin_array *big_vector(twin_context *ctx) {
  size_t n = BIG_F32;
  return big_zeros(ctx, 1, &n);
}

/* Makes both of a's memories exist and resident (a zeroed array is written as each side is
 * allocated) and, when p is not NULL, watches its device memory. */
static void hold(const twin_fixture *f, probe *p, twin_array *a) {
  if (p)
    watch_device(f, p, a, TWIN_READ);
  else
    fixture_device_touch(f, a, TWIN_READ);
  void *x;
  assert_ok(twin_host_begin(a, TWIN_READ, &x));
  assert_ok(twin_host_end(a));
}

/* ---- the scenarios ---- */

/* A column view written on the host; the base dropped first, the column last. */
static void test_column_written_on_the_host_then_base_and_column_dropped(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  size_t shape[] = {BIG_F32 / 1024, 1024};
  twin_array *a = big_zeros(f->ctx, 2, shape), *col;
  hold(f, &p, a);
  assert_ok(twin_array_index(a, 1, 100, &col));
  float *x;
  assert_ok(twin_host_begin(col, TWIN_WRITE, (void **)&x));
  for (size_t i = 0; i < shape[0]; i++)
    x[i * 1024] = (float)i;
  assert_ok(twin_host_end(col));
  expect_held(&p, BIG);
  twin_array_unref(a);
  expect_held(&p, BIG);
  twin_array_unref(col);
  expect_released(&p);
}

/* The last unref while a user kernel on the array still runs. */
static void test_last_unref_while_a_kernel_on_the_array_runs(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k = spin_kernel(f, f->ctx);
  int spin = spin_iterations(f, 150);
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx);
  hold(f, &p, a);
  expect_held(&p, BIG);
  launch_spin(k, a, spin);
  twin_array_unref(a);
  expect_released(&p);
  twin_kernel_unref(k);
}

/* The last unrefs right after a queued twin_fill of a view and a twin_copy. */
static void test_last_unrefs_right_after_a_fill_of_a_view_and_a_copy(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx), *b = big_vector(f->ctx), *v;
  hold(f, &p, a);
  hold(f, &p, b);
  expect_held(&p, 2 * BIG);
  twin_slice every_other = {TWIN_NONE, TWIN_NONE, 2};
  assert_ok(twin_array_slice(a, &every_other, &v));
  float seven = 7.0f;
  assert_ok(twin_fill(v, &seven));
  assert_ok(twin_copy(b, a));
  twin_array_unref(v);
  twin_array_unref(a);
  twin_array_unref(b);
  expect_released(&p);
}

/* The base dropped right after twin_array_copy of a view: the copy still reads it. */
static void test_base_dropped_right_after_copying_a_view_out(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  size_t shape[] = {2, BIG_F32 / 2};
  twin_array *a = big_zeros(f->ctx, 2, shape), *row, *copy;
  hold(f, &p, a);
  assert_ok(twin_array_index(a, 0, 1, &row));
  assert_ok(twin_array_copy(row, &copy));
  twin_array_unref(row);
  twin_array_unref(a);
  expect_released_but(&p, BIG / 2); /* the copy: half the base, on one side */
  twin_stats st = fixture_stats(f);
  assert_int_equal(st.buffers, p.stats.buffers + 1);
  assert_int_equal(st.host_bytes + st.device_bytes,
                   p.stats.host_bytes + p.stats.device_bytes + BIG / 2);
  twin_array_unref(copy);
  expect_released(&p);
}

/* A DLPack export outlives its array; the deleter drops the last reference. */
static void dlpack_export_outlives_the_array(twin_fixture *f, bool on_device) {
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx);
  hold(f, &p, a);
  float two = 2.0f;
  assert_ok(twin_fill(a, &two));
  DLManagedTensor *t;
#ifdef TWIN_HAVE_OPENCL
  if (on_device) {
    assert_ok(twin_array_to_dlpack_opencl(a, TWIN_READ_WRITE, &t));
    /* The consumer's own work on the memory, on the context's queue, still queued. */
    cl_mem mem = t->dl_tensor.data;
    assert_int_equal(clEnqueueFillBuffer(twin_context_cl_queue(f->ctx), mem, &two, sizeof two,
                                         t->dl_tensor.byte_offset, BIG, 0, NULL, NULL),
                     CL_SUCCESS);
  }
#endif
  if (!on_device) {
    assert_ok(twin_array_to_dlpack(a, TWIN_READ_WRITE, &t));
    float *x = t->dl_tensor.data;
    x[0] = x[BIG_F32 - 1] = 3.0f;
  }
  twin_array_unref(a);
  expect_held(&p, BIG);
  t->deleter(t);
  expect_released(&p);
}

static void test_dlpack_cpu_export_outlives_the_array(void **state) {
  dlpack_export_outlives_the_array(fixture(state), false);
}

static void test_dlpack_opencl_export_outlives_the_array(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  dlpack_export_outlives_the_array(f, true);
}

/* The application's commands on a cl_mem between twin_device_begin and twin_device_end. */
static void test_commands_enqueued_through_interop_are_waited_for(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  probe p;
  begin_probe(f->ctx, &p);
  twin_array *a = big_vector(f->ctx);
  hold(f, NULL, a);
  cl_mem mem;
  size_t off;
  assert_ok(twin_device_begin(a, TWIN_WRITE, &mem, &off));
  watch_mem(&p, mem);
  float five = 5.0f;
  assert_int_equal(clEnqueueFillBuffer(twin_context_cl_queue(f->ctx), mem, &five, sizeof five, off,
                                       BIG, 0, NULL, NULL),
                   CL_SUCCESS);
  assert_ok(twin_device_end(a));
  twin_array_unref(a);
  expect_released(&p);
#endif
}

/* Lent host memory: its release callback runs inside the last unref, after the device is done
 * with it, and finds the array's final contents there. */
typedef struct lent {
  float *mem;
  probe *p;
  int calls;
  bool device_done; /* every watched cl_mem was gone when the callback ran */
  float first, last;
} lent;

static void lent_released(void *user) {
  lent *l = user;
  l->calls++;
  l->device_done = true;
  for (int i = 0; i < l->p->watched; i++)
    l->device_done = l->device_done && atomic_load(l->p->destroyed[i]) == 1;
  l->first = l->mem[0];
  l->last = l->mem[BIG_F32 - 1];
}

static void test_lent_host_memory_is_given_back_after_the_device_is_done(void **state) {
  twin_fixture *f = fixture(state);
  probe p;
  begin_probe(f->ctx, &p);
  lent l = {aligned_alloc(4096, BIG), &p, 0, false, 0, 0};
  assert_non_null(l.mem);
  memset(l.mem, 0, BIG);
  size_t n = BIG_F32;
  twin_array *a;
  assert_ok(twin_array_wrap_host(f->ctx, l.mem, TWIN_F32, 1, &n, NULL, lent_released, &l, &a));
  watch_device(f, &p, a, TWIN_READ);
  float nine = 9.0f;
  assert_ok(twin_fill(a, &nine)); /* on the device, still running when the unref comes */
  twin_array_unref(a);
  assert_int_equal(l.calls, 1);
  assert_true(l.device_done);
  assert_true(l.first == 9.0f && l.last == 9.0f);
  free(l.mem);
  expect_released(&p);
}

/* A cl_mem the application made and lent: twin's reference is gone when the unref returns,
 * and with it the memory when twin's was the last. */
static void test_wrapped_cl_mem_is_released_by_the_last_unref(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  probe p;
  begin_probe(f->ctx, &p);
  cl_context cl = twin_context_cl_context(f->ctx);
  for (int keep = 0; keep < 2; keep++) {
    cl_int err;
    cl_mem mem = clCreateBuffer(cl, CL_MEM_READ_WRITE, BIG, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    watch_mem(&p, mem);
    size_t n = BIG_F32;
    twin_array *a;
    assert_ok(twin_array_wrap_cl_mem(f->ctx, mem, 0, TWIN_F32, 1, &n, NULL, &a));
    float four = 4.0f;
    assert_ok(twin_fill(a, &four));
    if (!keep)
      assert_int_equal(clReleaseMemObject(mem), CL_SUCCESS); /* twin's is the last reference */
    twin_array_unref(a);
    if (keep) {
      cl_uint refs = 0;
      assert_int_equal(clGetMemObjectInfo(mem, CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                       CL_SUCCESS);
      assert_int_equal(refs, 1);
      assert_int_equal(atomic_load(p.destroyed[p.watched - 1]), 0);
      assert_int_equal(clReleaseMemObject(mem), CL_SUCCESS);
    }
    assert_int_equal(atomic_load(p.destroyed[p.watched - 1]), 1);
  }
  expect_released(&p);
#endif
}

/* The last array of a context the application has already dropped: the memory, and the
 * context with all of its OpenCL objects, are gone when the unref returns. */
static void quiet_leak(twin_context *ctx, void *user) {
  (void)ctx, (void)user;
}

static void test_last_array_of_a_dropped_context(void **state) {
  twin_fixture *f = fixture(state);
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  twin_kernel *k = spin_kernel(f, ctx);
  int spin = spin_iterations(f, 100);
  probe p;
  begin_probe(ctx, &p);
  assert_ok(twin_context_set_leak_handler(ctx, quiet_leak, NULL));
  twin_array *a = big_vector(ctx);
  hold(f, &p, a);
#ifdef TWIN_HAVE_OPENCL
  cl_context cl = twin_context_cl_context(ctx);
  if (cl)
    assert_int_equal(clRetainContext(cl), CL_SUCCESS);
#endif
  launch_spin(k, a, spin);
  twin_kernel_unref(k);
  twin_context_unref(ctx);
  p.ctx = NULL;
  twin_array_unref(a);
  expect_released(&p);
#ifdef TWIN_HAVE_OPENCL
  if (cl) {
    cl_uint refs = 0;
    assert_int_equal(clGetContextInfo(cl, CL_CONTEXT_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                     CL_SUCCESS);
    assert_int_equal(refs, 1); /* the test's own */
    assert_int_equal(clReleaseContext(cl), CL_SUCCESS);
  }
#endif
}

/* The wait covers only the dropped buffer's commands: an idle buffer dropped while a long
 * kernel runs on another buffer goes at once. */
static void test_idle_buffer_dropped_during_a_long_kernel_goes_at_once(void **state) {
  twin_fixture *f = fixture(state);
  twin_kernel *k = spin_kernel(f, f->ctx);
  const double kernel_ms = 200;
  int spin = spin_iterations(f, kernel_ms);
  size_t one = 1;
  twin_array *busy;
  assert_ok(twin_array_zeros(f->ctx, TWIN_F32, 1, &one, &busy));
  hold(f, NULL, busy);
  probe p;
  begin_probe(f->ctx, &p);
  /* Smaller than the others: what is timed is the wait, not the freeing of its pages. */
  size_t n = ((size_t)16 << 20) / sizeof(float);
  twin_array *idle = big_zeros(f->ctx, 1, &n);
  hold(f, &p, idle);
  assert_ok(twin_context_finish(f->ctx));
  double t0 = now_ms();
  launch_spin(k, busy, spin);
  double t1 = now_ms();
  twin_array_unref(idle);
  double t2 = now_ms();
  expect_released(&p);
  assert_ok(twin_context_finish(f->ctx));
  double t3 = now_ms();
  if (f->has_device) {
    /* Generous against a noisy machine, yet well before the kernel ended; and the kernel ran
     * long enough to tell (its real length varies with the machine's load). */
    if (t2 - t1 > (t3 - t1) / 2 || t3 - t0 < kernel_ms / 4)
      print_error("idle drop %.1f ms, kernel %.1f ms\n", t2 - t1, t3 - t0);
    assert_true(t2 - t1 < (t3 - t1) / 2);
    assert_true(t3 - t0 >= kernel_ms / 4);
  }
  twin_array_unref(busy);
  twin_kernel_unref(k);
}

/* twin_context_stats never counts bytes as freed before they are: watched from another thread
 * while the last unref waits for a kernel. */
typedef struct dropper {
  twin_array *a;
  atomic_bool done;
} dropper;

static void *drop(void *arg) {
  dropper *d = arg;
  twin_array_unref(d->a);
  atomic_store(&d->done, true);
  return NULL;
}

static void test_stats_count_bytes_off_only_once_they_are_freed(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
  twin_kernel *k = spin_kernel(f, f->ctx);
  int spin = spin_iterations(f, 150);
  probe p;
  begin_probe(f->ctx, &p);
  dropper d = {big_vector(f->ctx), false};
  hold(f, &p, d.a);
  twin_stats held = fixture_stats(f);
  launch_spin(k, d.a, spin);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, drop, &d), 0);
  int looks = 0;
  while (!atomic_load(&d.done)) {
    /* Statistics first, then the destructor's flag: if the bytes are counted off, the memory
     * must be gone already. */
    twin_stats st = fixture_stats(f);
    bool gone = atomic_load(p.destroyed[0]) == 1;
    if (st.host_bytes + st.device_bytes < held.host_bytes + held.device_bytes)
      assert_true(gone);
    looks++;
  }
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(looks > 0);
  expect_released(&p);
  twin_kernel_unref(k);
}

/* A cl_mem borrowed from twin_device_begin and retained past its array's life: the last unref
 * does not hang, releases twin's reference, and says so once per context, naming the line
 * that made the array. */
static void test_retained_borrowed_cl_mem_warns_once_and_does_not_hang(void **state) {
  twin_fixture *f = fixture(state);
  if (!f->has_device)
    skip();
#ifdef TWIN_HAVE_OPENCL
  twin_context *ctx;
  assert_ok(fixture_open(f->spec, &ctx));
  probe p;
  begin_probe(ctx, &p);
  /* The wait for a reference that never goes, shortened for the test. */
  double limit = twin__cl_poll_limit_ms;
  twin__cl_poll_limit_ms = 20;
  cl_mem mems[2];
  int line = 0;
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stderr);
  int saved = dup(2);
  assert_true(dup2(fileno(tmp), 2) >= 0);
  double longest = 0;
  for (int i = 0; i < 2; i++) {
    size_t n = 1 << 20;
    twin_array *a;
    line = __LINE__ + 1;
    assert_ok(twin_array_zeros(ctx, TWIN_F32, 1, &n, &a));
    size_t off;
    assert_ok(twin_device_begin(a, TWIN_READ, &mems[i], &off));
    assert_int_equal(clRetainMemObject(mems[i]), CL_SUCCESS);
    watch_mem(&p, mems[i]);
    assert_ok(twin_device_end(a));
    double t0 = now_ms();
    twin_array_unref(a);
    double took = now_ms() - t0;
    longest = took > longest ? took : longest;
  }
  twin__cl_poll_limit_ms = limit;
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char text[2048] = "";
  rewind(tmp);
  size_t got = fread(text, 1, sizeof text - 1, tmp);
  text[got] = '\0';
  fclose(tmp);
  assert_true(longest < 2000);
  char site[600];
  snprintf(site, sizeof site, "%s:%d", __FILE__, line);
  const char *warning = strstr(text, site);
  if (!warning)
    print_error("stderr was: %s\n", text);
  assert_non_null(warning);
  assert_null(strstr(warning + 1, site)); /* once */
  for (int i = 0; i < 2; i++) {
    cl_uint refs = 0;
    assert_int_equal(clGetMemObjectInfo(mems[i], CL_MEM_REFERENCE_COUNT, sizeof refs, &refs, NULL),
                     CL_SUCCESS);
    assert_int_equal(refs, 1); /* the test's own */
    assert_int_equal(clReleaseMemObject(mems[i]), CL_SUCCESS);
  }
  expect_released(&p);
  twin_context_unref(ctx);
#endif
}

static const struct CMUnitTest tests[] = {
    TWIN_TEST(test_column_written_on_the_host_then_base_and_column_dropped),
    TWIN_TEST(test_last_unref_while_a_kernel_on_the_array_runs),
    TWIN_TEST(test_last_unrefs_right_after_a_fill_of_a_view_and_a_copy),
    TWIN_TEST(test_base_dropped_right_after_copying_a_view_out),
    TWIN_TEST(test_dlpack_cpu_export_outlives_the_array),
    TWIN_TEST(test_dlpack_opencl_export_outlives_the_array),
    TWIN_TEST(test_commands_enqueued_through_interop_are_waited_for),
    TWIN_TEST(test_lent_host_memory_is_given_back_after_the_device_is_done),
    TWIN_TEST(test_wrapped_cl_mem_is_released_by_the_last_unref),
    TWIN_TEST(test_last_array_of_a_dropped_context),
    TWIN_TEST(test_idle_buffer_dropped_during_a_long_kernel_goes_at_once),
    TWIN_TEST(test_stats_count_bytes_off_only_once_they_are_freed),
    TWIN_TEST(test_retained_borrowed_cl_mem_warns_once_and_does_not_hang),
};

TWIN_TEST_MAIN(tests)

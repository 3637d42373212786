/* twin-bench-mpi: twin-bench's section `mpi`, a program of its own since it runs under MPI
 * (twin-bench itself never links MPI). Run on two ranks:
 *
 *     mpirun -np 2 build/tools/mpi/twin-bench-mpi [device spec]
 *
 * Two tables, every figure beside a reference measured in the same run:
 * - per halo exchange of a 4096 x 4096 f64 field split over the 2 ranks (by rows, then by
 *   columns), in both coherence modes: the bytes moved between host and device against the
 *   strips' bytes (they must be equal in copy mode, 0 in one copy), and the time against a
 *   hand-written exchange of the same strips from contiguous host buffers with MPI_Sendrecv;
 * - twin_mpi_send + twin_mpi_recv of a column strip a[:, 0:w] of a 4096-row f64 array,
 *   through the datatype path against the pack path (TWIN_MPI_PACK_BELOW forces each), for
 *   runs of 8 bytes to 4 KiB, against MPI_Send of the same bytes from a contiguous buffer.
 * A rank that finds a moved-bytes figure wrong exits with status 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twin.h"
#include "twin_mpi.h"

enum { N = 4096, REPS = 15 };

static int rank;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, by_value);
  return t[n / 2];
}

static void check(twin_status s, const char *what) {
  if (s == TWIN_OK)
    return;
  fprintf(stderr, "twin-bench-mpi: rank %d: %s: %s\n  %s\n", rank, what, twin_mpi_last_error(),
          twin_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static twin_context *open_context(const char *spec, twin_coherence coherence) {
  twin_context *ctx;
  twin_context_options o = {.device = spec, .coherence = coherence};
  check(twin_context_new_with(&o, &ctx), "twin_context_new_with");
  return ctx;
}

/* ---- Halo exchange against hand-written MPI_Sendrecv ---- */

typedef struct split {
  const char *name;
  int dims[2];
} split;

/* The hand-written exchange: contiguous host strips, one MPI_Sendrecv per neighbour. */
static double sendrecv_ms(MPI_Comm cart, size_t strip_elems) {
  double *out = calloc(strip_elems, sizeof *out), *in = calloc(strip_elems, sizeof *in);
  double t[REPS];
  for (int r = 0; r < REPS; r++) {
    MPI_Barrier(cart);
    double t0 = now();
    for (int k = 0; k < 2; k++) {
      int lo, hi;
      MPI_Cart_shift(cart, k, 1, &lo, &hi);
      MPI_Sendrecv(out, (int)strip_elems, MPI_DOUBLE, hi, 0, in, (int)strip_elems, MPI_DOUBLE, lo,
                   0, cart, MPI_STATUS_IGNORE);
      MPI_Sendrecv(out, (int)strip_elems, MPI_DOUBLE, lo, 1, in, (int)strip_elems, MPI_DOUBLE, hi,
                   1, cart, MPI_STATUS_IGNORE);
    }
    t[r] = (now() - t0) * 1e3;
  }
  free(out);
  free(in);
  return median(t, REPS);
}

/* The field, newer on the device (filled there), and its halo. */
static twin_array *field_of(twin_context *ctx, const int *dims) {
  size_t shape[] = {N / (size_t)dims[0] + 2, N / (size_t)dims[1] + 2};
  twin_array *f;
  double one = 1;
  check(twin_array_new(ctx, TWIN_F64, 2, shape, &f), "the field");
  check(twin_fill(f, &one), "filling the field");
  return f;
}

static double exchange_ms(twin_context *ctx, MPI_Comm cart, twin_mpi_halo *h, twin_stats *moved) {
  double t[REPS];
  twin_stats before, after;
  check(twin_mpi_halo_exchange(h), "a first exchange"); /* staging allocated, kernels built */
  check(twin_context_finish(ctx), "twin_context_finish");
  twin_context_stats(ctx, &before);
  for (int r = 0; r < REPS; r++) {
    MPI_Barrier(cart);
    double t0 = now();
    check(twin_mpi_halo_exchange(h), "twin_mpi_halo_exchange");
    check(twin_context_finish(ctx), "twin_context_finish"); /* the ghosts are in place */
    t[r] = (now() - t0) * 1e3;
  }
  twin_context_stats(ctx, &after);
  moved->bytes_to_host = (after.bytes_to_host - before.bytes_to_host) / REPS;
  moved->bytes_to_device = (after.bytes_to_device - before.bytes_to_device) / REPS;
  return median(t, REPS);
}

/* What an exchange that brings the whole field to the host and back costs in host-device
 * traffic alone (the OP2 way), in copy mode: the field made newer on the device, then read
 * and written on the host, then brought back to the device. */
static double whole_field_ms(twin_array *field) {
  double t[REPS], one = 1;
  void *p;
  for (int r = 0; r < REPS; r++) {
    check(twin_fill(field, &one), "twin_fill");
    check(twin_context_finish(twin_array_context(field)), "twin_context_finish");
    double t0 = now();
    check(twin_host_begin(field, TWIN_READ_WRITE, &p), "twin_host_begin");
    check(twin_host_end(field), "twin_host_end");
    check(twin_array_prefetch(field, TWIN_DEVICE), "twin_array_prefetch");
    t[r] = (now() - t0) * 1e3;
  }
  return median(t, REPS);
}

static int bench_split(const char *spec, twin_coherence coherence, const split *sp) {
  twin_context *ctx = open_context(spec, coherence);
  int periods[] = {0, 0}, failed = 0;
  MPI_Comm cart;
  MPI_Cart_create(MPI_COMM_WORLD, 2, sp->dims, periods, 0, &cart);
  twin_array *field = field_of(ctx, sp->dims);
  twin_mpi_halo *h;
  check(twin_mpi_halo_new(field, cart, 1, &h), "twin_mpi_halo_new");
  size_t sent, received;
  twin_mpi_halo_bytes(h, &sent, &received);
  twin_stats moved;
  double ms = exchange_ms(ctx, cart, h, &moved);
  double ref = sendrecv_ms(cart, sent / sizeof(double));
  bool one = twin_context_is_zero_copy(ctx);
  size_t want_host = one ? 0 : sent, want_device = one ? 0 : received;
  if (moved.bytes_to_host != want_host || moved.bytes_to_device != want_device)
    failed = 1;
  char whole[32] = "-";
  if (!one)
    snprintf(whole, sizeof whole, "%.1f", whole_field_ms(field));
  if (rank == 0)
    printf("| %s | %s | %zu + %zu | %llu + %llu | %s | %.3f | %.3f | %.1f | %s |\n", sp->name,
           one ? "one copy" : "two copies", sent, received, (unsigned long long)moved.bytes_to_host,
           (unsigned long long)moved.bytes_to_device, failed ? "**no**" : "yes", ms, ref, ms / ref,
           whole);
  twin_mpi_halo_free(h);
  twin_array_unref(field);
  MPI_Comm_free(&cart);
  twin_context_unref(ctx);
  return failed;
}

static int bench_exchanges(const char *spec) {
  static const split splits[] = {{"rows (2 x 1 ranks)", {2, 1}}, {"columns (1 x 2 ranks)", {1, 2}}};
  if (rank == 0)
    printf("\n## Halo exchange of a %d x %d f64 field over 2 ranks, ghost width 1\n\n"
           "| split | buffers | strip bytes out + in | moved to host + device | equal | twin ms | "
           "MPI_Sendrecv of host strips ms | ratio | whole field to host and back ms |\n"
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
           N, N);
  int failed = 0;
  for (int s = 0; s < 2; s++)
    for (int c = 0; c < 2; c++)
      failed |= bench_split(spec, c ? TWIN_COHERENCE_COPY : TWIN_COHERENCE_AUTO, &splits[s]);
  return failed;
}

/* ---- Datatype path against pack path ---- */

/* Median ms of a round trip of v: rank 0 sends, rank 1 receives into w, then back. */
static double round_trip_ms(twin_array *v, twin_array *w) {
  double t[REPS];
  int other = 1 - rank;
  for (int r = 0; r < REPS; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    if (rank == 0) {
      check(twin_mpi_send(v, other, 0, MPI_COMM_WORLD), "twin_mpi_send");
      check(twin_mpi_recv(w, other, 0, MPI_COMM_WORLD), "twin_mpi_recv");
    } else {
      check(twin_mpi_recv(w, other, 0, MPI_COMM_WORLD), "twin_mpi_recv");
      check(twin_mpi_send(v, other, 0, MPI_COMM_WORLD), "twin_mpi_send");
    }
    t[r] = (now() - t0) * 1e3;
  }
  return median(t, REPS);
}

/* The same bytes from a contiguous buffer, its pages touched before the timing. */
static double raw_round_trip_ms(size_t bytes) {
  char *buf = malloc(bytes);
  memset(buf, 1, bytes);
  double t[REPS];
  int other = 1 - rank;
  for (int r = 0; r < REPS; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now();
    if (rank == 0) {
      MPI_Send(buf, (int)bytes, MPI_BYTE, other, 0, MPI_COMM_WORLD);
      MPI_Recv(buf, (int)bytes, MPI_BYTE, other, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(buf, (int)bytes, MPI_BYTE, other, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf, (int)bytes, MPI_BYTE, other, 0, MPI_COMM_WORLD);
    }
    t[r] = (now() - t0) * 1e3;
  }
  free(buf);
  return median(t, REPS);
}

static double path_ms(const char *pack_below, twin_array *v, twin_array *w) {
  setenv("TWIN_MPI_PACK_BELOW", pack_below, 1);
  round_trip_ms(v, w); /* once, so both sides are on the host */
  double ms = round_trip_ms(v, w);
  unsetenv("TWIN_MPI_PACK_BELOW");
  return ms;
}

static void bench_column(twin_array *a, twin_array *b, size_t w) {
  size_t elem = twin_dtype_size(twin_array_dtype(a));
  twin_slice s[] = {{TWIN_NONE, TWIN_NONE, 1}, {0, (ptrdiff_t)w, 1}};
  twin_array *v, *x;
  check(twin_array_slice(a, s, &v), "slice");
  check(twin_array_slice(b, s, &x), "slice");
  double dt = path_ms("0", v, x), pk = path_ms("1000000000000", v, x);
  double raw = raw_round_trip_ms(twin_array_nbytes(v));
  if (rank == 0)
    printf("| %s | %s a[:, 0:%zu] | %zu | %zu | %.3f | %.3f | %.2f | %.3f |\n",
           twin_array_is_zero_copy(a) ? "one copy" : "two copies",
           twin_dtype_name(twin_array_dtype(a)), w, w * elem, twin_array_nbytes(v), dt, pk, dt / pk,
           raw);
  twin_array_unref(x);
  twin_array_unref(v);
}

static void bench_paths(const char *spec) {
  if (rank == 0)
    printf("\n## twin_mpi_send + twin_mpi_recv round trip of a column strip of a %d x 1024 "
           "array\n\n| buffers | view | run bytes | message bytes | datatype ms | pack ms | "
           "datatype / pack | MPI_Send of a contiguous buffer ms |\n"
           "| --- | --- | --- | --- | --- | --- | --- | --- |\n",
           N);
  static const struct {
    twin_dtype dtype;
    size_t width;
  } cols[] = {{TWIN_U8, 1},   {TWIN_F32, 1},  {TWIN_F64, 1},   {TWIN_F64, 4},
              {TWIN_F64, 16}, {TWIN_F64, 64}, {TWIN_F64, 128}, {TWIN_F64, 512}};
  for (int c = 0; c < 2; c++) {
    twin_context *ctx = open_context(spec, c ? TWIN_COHERENCE_COPY : TWIN_COHERENCE_AUTO);
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
      size_t shape[] = {N, 1024};
      twin_array *a, *b;
      check(twin_array_zeros(ctx, cols[i].dtype, 2, shape, &a), "array");
      check(twin_array_zeros(ctx, cols[i].dtype, 2, shape, &b), "array");
      bench_column(a, b, cols[i].width);
      twin_array_unref(b);
      twin_array_unref(a);
    }
    twin_context_unref(ctx);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size != 2) {
    if (rank == 0)
      fprintf(stderr, "usage: mpirun -np 2 twin-bench-mpi [device spec]\n");
    MPI_Finalize();
    return 2;
  }
  const char *spec = argc > 1 ? argv[1] : getenv("TWIN_DEVICE");
  twin_context *ctx = open_context(spec, TWIN_COHERENCE_AUTO);
  const twin_device_info *dev = twin_context_device(ctx);
  if (rank == 0)
    printf("# twin-bench mpi %s on %s (%s / %s), 2 ranks\n", twin_version(), dev->spec,
           dev->platform, dev->name);
  twin_context_unref(ctx);
  int failed = bench_exchanges(spec);
  bench_paths(spec);
  MPI_Finalize();
  return failed;
}

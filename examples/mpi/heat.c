/* 2-D heat diffusion (Jacobi relaxation of a plate whose top edge is held at 100 degrees)
 * over a Cartesian grid of MPI ranks, each rank computing its block on its own device.
 *
 * Each rank holds two fields of its block with one ghost cell around it. Every step exchanges
 * the current field's ghosts with the neighbours (twin_mpi_halo_exchange: the faces are packed
 * on the device, only the strips cross between host and device), then a user kernel computes
 * the other field's interior from the current one's 4 neighbours of each cell, and the fields
 * swap roles. Ghosts on the plate's edges have no neighbour and keep the boundary values.
 * Every 100 steps a second kernel sums the squared change per row, and MPI_Allreduce makes it
 * the global residual. At the end rank 0 gathers the plate with twin_mpi_recv into views of
 * one array and prints a hash of its bytes: the same on 1, 2 or 4 ranks, in either coherence
 * mode, since each cell's update is the same arithmetic wherever it runs.
 *
 * Usage: mpirun -np P heat [N] [STEPS]   (N divisible by the grid's dimensions; 240, 500)
 * The device comes from TWIN_DEVICE (and TWIN_COHERENCE); on the host backend the kernels are
 * C functions (twin_kernel_new_host). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin.h"
#include "twin_mpi.h"

static const char *const source =
    "__kernel void jacobi(TWIN_VIEW(__global const double, u), TWIN_VIEW(__global double, v)) {\n"
    "  long i = get_global_id(0), j = get_global_id(1); /* v's (i, j) is u's (i+1, j+1) */\n"
    "  TWIN_AT2(v, i, j) = 0.25 * (TWIN_AT2(u, i, j + 1) + TWIN_AT2(u, i + 2, j + 1) +\n"
    "                              TWIN_AT2(u, i + 1, j) + TWIN_AT2(u, i + 1, j + 2));\n"
    "}\n"
    "__kernel void change(TWIN_VIEW(__global const double, a), TWIN_VIEW(__global const double, "
    "b),\n"
    "                     TWIN_ARRAY(__global double, rows)) {\n"
    "  long i = get_global_id(0);\n"
    "  double s = 0.0;\n"
    "  for (long j = 0; j < TWIN_DIM(a, 1); j++) {\n"
    "    double d = TWIN_AT2(a, i, j) - TWIN_AT2(b, i, j);\n"
    "    s += d * d;\n"
    "  }\n"
    "  TWIN_AT(rows, i) = s;\n"
    "}\n";

#define AT(p, st, i, j) (p)[(ptrdiff_t)(i) * (st)[0] + (ptrdiff_t)(j) * (st)[1]]

/* The kernels in C, for the host backend. */
static twin_status jacobi_host(const twin_host_launch *l, void *user) {
  (void)user;
  const double *u = l->data[0];
  double *v = l->data[1];
  const ptrdiff_t *us = twin_array_strides(l->args[0].array);
  const ptrdiff_t *vs = twin_array_strides(l->args[1].array);
  for (size_t i = 0; i < l->global[0]; i++)
    for (size_t j = 0; j < l->global[1]; j++)
      AT(v, vs, i, j) = 0.25 * (AT(u, us, i, j + 1) + AT(u, us, i + 2, j + 1) +
                                AT(u, us, i + 1, j) + AT(u, us, i + 1, j + 2));
  return TWIN_OK;
}

static twin_status change_host(const twin_host_launch *l, void *user) {
  (void)user;
  const double *a = l->data[0], *b = l->data[1];
  double *rows = l->data[2];
  const ptrdiff_t *as = twin_array_strides(l->args[0].array);
  const ptrdiff_t *bs = twin_array_strides(l->args[1].array);
  size_t cols = twin_array_shape(l->args[0].array)[1];
  for (size_t i = 0; i < l->global[0]; i++) {
    double s = 0.0;
    for (size_t j = 0; j < cols; j++) {
      double d = AT(a, as, i, j) - AT(b, bs, i, j);
      s += d * d;
    }
    rows[i] = s;
  }
  return TWIN_OK;
}

/* One rank's part of the plate. */
typedef struct block {
  MPI_Comm cart;
  int rank, size, dims[2], coords[2];
  size_t n[2]; /* interior cells per axis */
  twin_context *ctx;
  twin_array *field[2], *inner[2]; /* (n0 + 2) x (n1 + 2), and its interior view */
  twin_array *rows;                /* per-row squared change, for the residual */
  twin_mpi_halo *halo[2];
  twin_kernel *jacobi, *change;
} block;

static int fail(const block *b, const char *what, twin_status s) {
  fprintf(stderr, "heat: rank %d: %s: %s\n  %s\n  %s\n", b->rank, what, twin_status_name(s),
          twin_mpi_last_error(), twin_last_error());
  MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

static twin_status kernels(block *b) {
  twin_program *prog;
  twin_status s = twin_program_new(b->ctx, source, NULL, &prog);
  if (s == TWIN_ERR_UNSUPPORTED) { /* the host backend */
    s = twin_kernel_new_host(b->ctx, "jacobi", jacobi_host, NULL, &b->jacobi);
    return s == TWIN_OK ? twin_kernel_new_host(b->ctx, "change", change_host, NULL, &b->change) : s;
  }
  if (s == TWIN_OK)
    s = twin_kernel_new(prog, "jacobi", &b->jacobi);
  if (s == TWIN_OK)
    s = twin_kernel_new(prog, "change", &b->change);
  twin_program_unref(prog);
  return s;
}

/* The block's starting values: 0, and 100 in the ghost row above the plate's top edge. */
static twin_status fields(block *b) {
  size_t shape[] = {b->n[0] + 2, b->n[1] + 2}, cells = shape[0] * shape[1];
  double *start = calloc(cells, sizeof *start);
  for (size_t j = 1; b->coords[0] == 0 && j <= b->n[1]; j++)
    start[j] = 100.0;
  twin_slice interior[] = {{1, -1, 1}, {1, -1, 1}};
  twin_status s = TWIN_OK;
  for (int f = 0; f < 2 && s == TWIN_OK; f++) {
    s = twin_array_from_host(b->ctx, TWIN_F64, 2, shape, start, &b->field[f]);
    if (s == TWIN_OK)
      s = twin_array_slice(b->field[f], interior, &b->inner[f]);
    if (s == TWIN_OK)
      s = twin_mpi_halo_new(b->field[f], b->cart, 1, &b->halo[f]);
  }
  free(start);
  return s == TWIN_OK ? twin_array_new(b->ctx, TWIN_F64, 1, &b->n[0], &b->rows) : s;
}

static void setup(block *b, size_t n) {
  int periods[] = {0, 0};
  MPI_Comm_size(MPI_COMM_WORLD, &b->size);
  MPI_Dims_create(b->size, 2, b->dims);
  MPI_Cart_create(MPI_COMM_WORLD, 2, b->dims, periods, 0, &b->cart);
  MPI_Comm_rank(b->cart, &b->rank);
  MPI_Cart_coords(b->cart, b->rank, 2, b->coords);
  for (int k = 0; k < 2; k++) {
    if (n % (size_t)b->dims[k] != 0) {
      fprintf(stderr, "heat: N = %zu is not divisible by the grid's %d\n", n, b->dims[k]);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    b->n[k] = n / (size_t)b->dims[k];
  }
  twin_status s = twin_context_new(NULL, &b->ctx);
  if (s != TWIN_OK)
    fail(b, "twin_context_new", s);
  if ((s = kernels(b)) != TWIN_OK)
    fail(b, "making the kernels", s);
  if ((s = fields(b)) != TWIN_OK)
    fail(b, "making the fields", s);
}

/* Prints what one exchange on rank 0 moved between host and device, against its strips. */
static void print_exchange(const block *b, int cur, const twin_stats *before) {
  twin_stats after;
  size_t sent, received;
  twin_context_stats(b->ctx, &after);
  twin_mpi_halo_bytes(b->halo[cur], &sent, &received);
  printf("rank 0, one exchange: strips %zu bytes out, %zu in; moved to the host %llu, to the "
         "device %llu\n",
         sent, received, (unsigned long long)(after.bytes_to_host - before->bytes_to_host),
         (unsigned long long)(after.bytes_to_device - before->bytes_to_device));
}

/* One step: the current field's ghosts, then the other field's interior from it. */
static twin_status step(block *b, int cur, bool measure) {
  twin_stats before;
  twin_context_stats(b->ctx, &before);
  twin_status s = twin_mpi_halo_exchange(b->halo[cur]);
  if (s == TWIN_OK && measure && b->rank == 0)
    print_exchange(b, cur, &before);
  twin_arg args[] = {twin_arg_view(b->field[cur], TWIN_READ),
                     twin_arg_view(b->inner[cur ^ 1], TWIN_WRITE)};
  return s == TWIN_OK ? twin_kernel_launch(b->jacobi, 2, b->n, NULL, 2, args) : s;
}

/* The root of the summed squared change of the last step, over the whole plate. */
static double residual(block *b, int cur, twin_status *s) {
  twin_arg args[] = {twin_arg_view(b->inner[cur], TWIN_READ),
                     twin_arg_view(b->inner[cur ^ 1], TWIN_READ),
                     twin_arg_array(b->rows, TWIN_WRITE)};
  double *rows = malloc(b->n[0] * sizeof *rows), local = 0, global = 0;
  *s = twin_kernel_launch(b->change, 1, b->n, NULL, 3, args);
  if (*s == TWIN_OK)
    *s = twin_array_read(b->rows, rows, b->n[0] * sizeof *rows);
  for (size_t i = 0; *s == TWIN_OK && i < b->n[0]; i++)
    local += rows[i];
  free(rows);
  MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, b->cart);
  return sqrt(global);
}

/* The view of the plate where rank r's block goes. */
static twin_status place_of(const block *b, twin_array *plate, int r, twin_array **out) {
  int c[2];
  MPI_Cart_coords(b->cart, r, 2, c);
  twin_slice place[2];
  for (int k = 0; k < 2; k++)
    place[k] = (twin_slice){(ptrdiff_t)((size_t)c[k] * b->n[k]),
                            (ptrdiff_t)((size_t)(c[k] + 1) * b->n[k]), 1};
  return twin_array_slice(plate, place, out);
}

/* Rank 0 receives every block into its place in one N x N array; its own it copies. */
static twin_status gather(block *b, int cur, twin_array *plate) {
  if (b->rank != 0)
    return twin_mpi_send(b->inner[cur], 0, 99, b->cart);
  twin_status s = TWIN_OK;
  for (int r = 0; r < b->size && s == TWIN_OK; r++) {
    twin_array *dst = NULL;
    s = place_of(b, plate, r, &dst);
    if (s == TWIN_OK)
      s = r == 0 ? twin_copy(dst, b->inner[cur]) : twin_mpi_recv(dst, r, 99, b->cart);
    twin_array_unref(dst);
  }
  return s;
}

/* FNV-1a over the plate's bytes, and two figures a reader can follow. */
static void report(twin_array *plate, size_t n) {
  size_t bytes = n * n * sizeof(double);
  double *p = malloc(bytes), heat = 0;
  if (twin_array_read(plate, p, bytes) != TWIN_OK)
    return;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < bytes; i++)
    h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
  for (size_t i = 0; i < n * n; i++)
    heat += p[i];
  printf("plate: hash %016llx; 10 cells below the hot edge's middle %.6f; mean %.6f\n",
         (unsigned long long)h, p[9 * n + n / 2], heat / (double)(n * n));
  free(p);
}

static void finish(block *b) {
  for (int f = 0; f < 2; f++) {
    twin_mpi_halo_free(b->halo[f]);
    twin_array_unref(b->inner[f]);
    twin_array_unref(b->field[f]);
  }
  twin_array_unref(b->rows);
  twin_kernel_unref(b->jacobi);
  twin_kernel_unref(b->change);
  twin_context_unref(b->ctx);
  MPI_Comm_free(&b->cart);
}

static void run(block *b, int steps) {
  int cur = 0;
  twin_status s = TWIN_OK;
  for (int i = 1; i <= steps; i++, cur ^= 1) {
    if ((s = step(b, cur, i == steps / 2)) != TWIN_OK)
      fail(b, "a step", s);
    double r = i % 100 == 0 ? residual(b, cur ^ 1, &s) : 0;
    if (s != TWIN_OK)
      fail(b, "the residual", s);
    if (i % 100 == 0 && b->rank == 0)
      printf("step %4d: residual %.6e\n", i, r);
  }
  twin_array *plate = NULL;
  size_t n = b->n[0] * (size_t)b->dims[0], shape[] = {n, n};
  if (b->rank == 0 && (s = twin_array_new(b->ctx, TWIN_F64, 2, shape, &plate)) != TWIN_OK)
    fail(b, "the plate", s);
  if ((s = gather(b, cur, plate)) != TWIN_OK)
    fail(b, "gathering the plate", s);
  if (b->rank == 0)
    report(plate, n);
  twin_array_unref(plate);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  size_t n = argc > 1 ? (size_t)atol(argv[1]) : 240;
  int steps = argc > 2 ? atoi(argv[2]) : 500;
  block b = {0};
  setup(&b, n);
  if (b.rank == 0) {
    const twin_device_info *dev = twin_context_device(b.ctx);
    printf("heat: %zu x %zu plate on %d x %d ranks, each on %s (%s), %d steps\n", n, n, b.dims[0],
           b.dims[1], dev->spec, twin_context_is_zero_copy(b.ctx) ? "one copy" : "two copies",
           steps);
  }
  run(&b, steps);
  finish(&b);
  MPI_Finalize();
  return 0;
}

/* twin_kernel_launch: checks the launch (launch_check.c), opens each array's access through the
 * coherence layer once with the union of the modes it is passed with, then binds the arguments
 * by the convention of kernels/twin_kernel.h and enqueues the kernel (kernel.c), or calls a
 * host kernel's function on the host memory, and closes the accesses. Uses launch_check.c and
 * kernel.c; nothing below calls back here. */
#include <stdio.h>

#include "../backends/backend.h"
#include "objects.h"

static const char launch_fn[] = "twin_kernel_launch";

/* Puts "twin_kernel_launch (file:line): " and `what` in front of the current message. */
static twin_status launch_failed(twin_status s, twin__site site, const char *what) {
  if (!site.file)
    return twin__fail_prefix(s, "%s: %s", launch_fn, what);
  return twin__fail_prefix(s, "%s (%s:%d): %s", launch_fn, site.file, site.line, what);
}

/* One array object of a launch, opened once with the union of the modes it is passed with. */
typedef struct bound_array {
  twin_array *a;
  twin_access mode;
  int first_arg;       /* for messages */
  void *mem;           /* its side's memory from twin__open_for_op */
  twin__dirty *before; /* a write to a two-copy buffer: the map before, to undo a failure */
} bound_array;

/* What one argument binds besides its array's memory: the values its kernel parameters are
 * set from, which must stay in place until the enqueue has read them. */
typedef struct bound_arg {
  int array; /* index into the launch's arrays, -1 for none */
  int64_t offset;
  int64_t shape[8], strides[8];
} bound_arg;

/* Arguments whose bookkeeping a launch keeps on the stack, and two-copy written arrays whose
 * map it keeps without allocating. */
#define STACK_ARGS 16
#define STACK_BEFORES 2

/* The per-launch bookkeeping, each array of its own type: on the stack for up to STACK_ARGS
 * arguments, else in one block from twin__malloc. */
typedef struct launch {
  const char *fn;
  twin__site site; /* the caller's */
  twin_kernel *k;
  twin__side_id side;
  int nargs, narrays;
  const twin_arg *args;
  bound_array *arrays;        /* nargs entries, narrays used */
  bound_arg *bound;           /* nargs */
  twin__kvalue *values;       /* 4 * nargs: a device kernel's parameter values */
  void **data;                /* nargs: a host kernel's pointer per argument */
  twin__dirty *befores;       /* from twin__malloc when more than STACK_BEFORES are needed */
  twin__dirty *stack_befores; /* STACK_BEFORES on the caller's stack */
} launch;

/* ---- Opening the arrays ---- */

static void collect(launch *l) {
  l->narrays = 0;
  for (int i = 0; i < l->nargs; i++) {
    const twin_arg *arg = &l->args[i];
    l->bound[i].array = -1;
    if (!twin__arg_is_array(arg->kind))
      continue;
    int j = 0;
    while (j < l->narrays && l->arrays[j].a != arg->array)
      j++;
    if (j == l->narrays)
      l->arrays[l->narrays++] = (bound_array){arg->array, 0, i, NULL, NULL};
    l->arrays[j].mode |= arg->access;
    l->bound[i].array = j;
  }
}

/* A write to a buffer with two copies records the map it changes, to undo it on failure. */
static bool needs_undo(const bound_array *x) {
  const twin__buffer *b = x->a->buf;
  return (x->mode & TWIN_WRITE) && b->layout == TWIN__TWO_COPIES;
}

static twin_status give_befores(launch *l) {
  int n = 0;
  for (int j = 0; j < l->narrays; j++)
    n += needs_undo(&l->arrays[j]);
  if (n == 0)
    return TWIN_OK;
  twin__dirty *room = l->stack_befores;
  if (n > STACK_BEFORES && !(room = l->befores = twin__malloc((size_t)n * sizeof *room)))
    return launch_failed(twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for bookkeeping"),
                         l->site, "");
  for (int j = 0, m = 0; j < l->narrays; j++)
    if (needs_undo(&l->arrays[j]))
      l->arrays[j].before = &room[m++];
  return TWIN_OK;
}

/* Closes arrays[0..n) in reverse; failed: undo their write marking. */
static void close_arrays(launch *l, int n, bool failed) {
  for (int j = n - 1; j >= 0; j--)
    twin__close_for_op(l->arrays[j].a, l->side, failed ? l->arrays[j].before : NULL);
}

/* Read-only arrays first, then written ones: a read of a view brings its range up to date
 * before a write-only access of an overlapping view marks it newer on this side. */
static void order_reads_first(launch *l) {
  for (int j = 1; j < l->narrays; j++)
    for (int m = j; m > 0 && l->arrays[m].mode == TWIN_READ && l->arrays[m - 1].mode != TWIN_READ;
         m--) {
      bound_array t = l->arrays[m];
      l->arrays[m] = l->arrays[m - 1];
      l->arrays[m - 1] = t;
    }
  for (int i = 0; i < l->nargs; i++)
    if (l->bound[i].array >= 0)
      for (int j = 0; j < l->narrays; j++)
        if (l->arrays[j].a == l->args[i].array)
          l->bound[i].array = j;
}

static twin_status open_arrays(launch *l) {
  if (l->narrays > 1)
    order_reads_first(l);
  twin_status s = give_befores(l);
  for (int j = 0; s == TWIN_OK && j < l->narrays; j++) {
    bound_array *x = &l->arrays[j];
    char arg[32];
    snprintf(arg, sizeof arg, "argument %d", x->first_arg);
    twin__opener who = {l->fn, arg, l->site};
    s = twin__open_for_op(x->a, l->side, x->mode, &who, x->before, &x->mem);
    if (s != TWIN_OK)
      close_arrays(l, j, true);
  }
  return s;
}

/* ---- A device kernel ---- */

/* The values of an array argument's parameters: its memory and offset, then a view's shape and
 * strides. Returns how many. */
static int array_values(launch *l, int i, twin__kvalue *values) {
  const twin_array *a = l->args[i].array;
  bound_arg *b = &l->bound[i];
  b->offset = (int64_t)a->offset;
  values[0] = (twin__kvalue){sizeof(void *), &l->arrays[b->array].mem, false, &a->buf->track};
  values[1] = (twin__kvalue){sizeof b->offset, &b->offset, false, NULL};
  if (l->args[i].kind == TWIN_ARG_ARRAY)
    return 2;
  for (int d = 0; d < 8; d++) {
    b->shape[d] = d < a->ndim ? (int64_t)a->shape[d] : 1;
    b->strides[d] = d < a->ndim ? (int64_t)a->strides[d] : 0;
  }
  values[2] = (twin__kvalue){sizeof b->shape, b->shape, false, NULL};
  values[3] = (twin__kvalue){sizeof b->strides, b->strides, false, NULL};
  return 4;
}

static int fill_values(launch *l) {
  int n = 0;
  for (int i = 0; i < l->nargs; i++) {
    const twin_arg *arg = &l->args[i];
    if (arg->kind == TWIN_ARG_SCALAR)
      l->values[n++] = (twin__kvalue){twin_dtype_size(arg->dtype), &arg->value, false, NULL};
    else if (arg->kind == TWIN_ARG_LOCAL)
      l->values[n++] = (twin__kvalue){arg->local_bytes, NULL, false, NULL};
    else
      n += array_values(l, i, &l->values[n]);
  }
  return n;
}

/* Names the parameter a failed clSetKernelArg was for. */
static void append_failed_value(const launch *l, int value) {
  int j = 0;
  for (int i = 0; i < l->nargs; i++) {
    int n = twin__arg_binds(l->args[i].kind);
    if (value < j + n) {
      twin__fail_append(" for parameter %d '%s' of kernel %s, bound by argument %d", value,
                        l->k->params[value].name, l->k->name, i);
      return;
    }
    j += n;
  }
}

static twin_status enqueue(launch *l, int work_dim, const size_t *global, const size_t *local) {
  int nvalues = fill_values(l), failed_value = -1;
  twin_status s =
      twin__kernel_enqueue(l->k, l->values, nvalues, work_dim, global, local, &failed_value);
  if (s == TWIN_OK)
    return TWIN_OK;
  if (failed_value >= 0)
    append_failed_value(l, failed_value);
  char what[TWIN__CAUSE_MAX];
  snprintf(what, sizeof what, "kernel %s: ", l->k->name);
  return launch_failed(s, l->site, what);
}

/* ---- A host kernel ---- */

/* The host address of a's element 0 within the memory its open host access gave. */
static void *host_element0(const twin_array *a, void *mem) {
  size_t item = twin_dtype_size(a->dtype), lo, hi;
  if (a->buf->layout != TWIN__SHARED)
    return (char *)mem + a->offset * item;
  twin__array_extent(a, &lo, &hi);
  return (char *)a->mapped + (a->offset * item - lo);
}

/* A host kernel's failure, reported as the launch's. A message its function set during the call
 * (a twin call inside it failed; twin__fail_count tells) is kept as the cause; an older one,
 * unrelated, is not. */
static twin_status host_failed(const launch *l, twin_status s, unsigned long failures_before) {
  bool own = twin__fail_count() != failures_before;
  char what[TWIN__CAUSE_MAX];
  snprintf(what, sizeof what, "host kernel %s returned %s%s", l->k->name, twin_status_name(s),
           own ? ": " : "");
  if (own)
    return launch_failed(s, l->site, what);
  twin__fail(s, "%s and set no message", what);
  return launch_failed(s, l->site, "");
}

/* Sets l->data[i] for each argument: an array's element 0, a scalar's value, a scratch block
 * for local memory. *done is how many were set, whose scratch blocks the caller frees. */
static twin_status host_data(launch *l, int *done) {
  for (*done = 0; *done < l->nargs; (*done)++) {
    int i = *done;
    const twin_arg *arg = &l->args[i];
    if (twin__arg_is_array(arg->kind))
      l->data[i] = host_element0(arg->array, l->arrays[l->bound[i].array].mem);
    else if (arg->kind == TWIN_ARG_SCALAR)
      l->data[i] = (void *)&arg->value;
    else if (!(l->data[i] = twin__malloc(arg->local_bytes)))
      return launch_failed(twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                                      "argument %d: no memory for %zu bytes of local memory", i,
                                      arg->local_bytes),
                           l->site, "");
  }
  return TWIN_OK;
}

static twin_status run_host(launch *l, int work_dim, const size_t *global, const size_t *local) {
  twin_host_launch hl = {work_dim, {0, 0, 0}, {0, 0, 0}, l->nargs, l->args, l->data};
  for (int d = 0; d < work_dim; d++) {
    hl.global[d] = global[d];
    hl.local[d] = local ? local[d] : 0;
  }
  int done;
  twin_status s = host_data(l, &done);
  if (s == TWIN_OK) {
    unsigned long failures = twin__fail_count();
    s = l->k->host_fn(&hl, l->k->host_user);
    if (s != TWIN_OK)
      s = host_failed(l, s, failures);
  }
  while (done-- > 0)
    if (l->args[done].kind == TWIN_ARG_LOCAL)
      twin__free(l->data[done]);
  return s;
}

/* ---- Launching ---- */

static twin_status run(launch *l, int work_dim, const size_t *global, const size_t *local) {
  collect(l);
  twin_status s = open_arrays(l);
  if (s != TWIN_OK)
    return s;
  if (l->k->host_fn) {
    s = run_host(l, work_dim, global, local);
    close_arrays(l, l->narrays, false); /* what the function wrote counts, even on failure */
  } else {
    s = enqueue(l, work_dim, global, local);
    close_arrays(l, l->narrays, s != TWIN_OK);
  }
  return s;
}

/* Bookkeeping for more than STACK_ARGS arguments: one block, cut into the launch's typed
 * arrays (every element size is a multiple of 8 bytes, so each array starts aligned). */
static void *heap_room(launch *l) {
  size_t n = (size_t)l->nargs;
  size_t each = 4 * sizeof *l->values + sizeof *l->bound + sizeof *l->arrays + sizeof *l->data;
  char *block = twin__malloc(n * each);
  if (!block)
    return NULL;
  l->values = (twin__kvalue *)block;
  l->bound = (bound_arg *)(block + n * 4 * sizeof *l->values);
  l->arrays = (bound_array *)((char *)l->bound + n * sizeof *l->bound);
  l->data = (void **)((char *)l->arrays + n * sizeof *l->arrays);
  return block;
}

twin_status twin_kernel_launch_at(twin_kernel *k, int work_dim, const size_t *global,
                                  const size_t *local, int nargs, const twin_arg *args,
                                  const char *file, int line) {
  twin__site site = {file, line};
  size_t items = 0;
  twin_status s = twin__launch_check(k, work_dim, global, local, nargs, args, &items);
  if (s != TWIN_OK)
    return launch_failed(s, site, "");
  if (items == 0)
    return TWIN_OK;
  bound_array arrays[STACK_ARGS];
  bound_arg bound[STACK_ARGS];
  twin__kvalue values[4 * STACK_ARGS];
  void *data[STACK_ARGS];
  twin__dirty befores[STACK_BEFORES];
  launch l = {launch_fn, site,   k,    k->host_fn ? TWIN__HOST : TWIN__DEVICE,
              nargs,     0,      args, arrays,
              bound,     values, data, NULL,
              befores};
  void *heap = NULL;
  if (nargs > STACK_ARGS && !(heap = heap_room(&l)))
    return launch_failed(
        twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for %d arguments", nargs), site, "");
  s = run(&l, work_dim, global, local);
  twin__free(l.befores);
  twin__free(heap);
  return s;
}

twin_status(twin_kernel_launch)(twin_kernel *k, int work_dim, const size_t *global,
                                const size_t *local, int nargs, const twin_arg *args) {
  return twin_kernel_launch_at(k, work_dim, global, local, nargs, args, NULL, 0);
}

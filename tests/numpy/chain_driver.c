/* Runs chains of twin view calls and copies described on stdin, one command a line, and prints
 * one line per command: the status name, and for reads the values. tests/numpy/oracle.py
 * writes the chains, runs this once per backend group and checks every line against NumPy.
 *
 * usage: chain_driver SPEC   (SPEC as in TWIN_TEST_BACKENDS: host, opencl, opencl+copy)
 *
 * Commands (R: a register number 0..63; DT: i8 u8 ... f64; N in a slice: None):
 *   base R DT NDIM SHAPE... VALUES...   twin_array_from_host (floats in C's %a or decimal)
 *   zeros R DT NDIM SHAPE...            twin_array_zeros
 *   slice R SRC (START STOP STEP)...    twin_array_slice, one triple per axis of SRC
 *   index R SRC AXIS I                  twin_array_index
 *   transpose R SRC PERM...             twin_array_transpose
 *   reshape R SRC NDIM SHAPE...         twin_array_reshape
 *   broadcast R SRC NDIM SHAPE...       twin_array_broadcast_to
 *   copy DST SRC                        twin_copy
 *   read R                              twin_array_read: "TWIN_OK v0 v1 ..."
 *   devread R                           twin_array_copy (on the device), then read the copy
 *   reset                               unrefs every register: "TWIN_OK ARRAYS BUFFERS" alive */
#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twin.h"

#define REGS 64

static twin_context *ctx;
static twin_array *reg[REGS];
static jmp_buf skip_command; /* a command naming an empty register prints EMPTY and is skipped */

static const char *next(void) {
  const char *t = strtok(NULL, " \t\n");
  if (!t) {
    fprintf(stderr, "chain_driver: a command ends too early\n");
    exit(2);
  }
  return t;
}

static long long num(void) {
  return strtoll(next(), NULL, 0);
}

static int reg_arg(void) {
  long long r = num();
  if (r < 0 || r >= REGS) {
    fprintf(stderr, "chain_driver: register %lld is outside 0..%d\n", r, REGS - 1);
    exit(2);
  }
  return (int)r;
}

/* A register's array. An empty one (its call failed) skips the command: "EMPTY R". */
static twin_array *arg_array(void) {
  int r = reg_arg();
  if (!reg[r]) {
    printf("EMPTY %d\n", r);
    longjmp(skip_command, 1);
  }
  return reg[r];
}

static twin_dtype dtype_arg(void) {
  const char *t = next();
  for (int d = 0; d < TWIN_DTYPE_COUNT; d++)
    if (strcmp(t, twin_dtype_name((twin_dtype)d)) == 0)
      return (twin_dtype)d;
  fprintf(stderr, "chain_driver: unknown dtype %s\n", t);
  exit(2);
}

static int shape_arg(size_t *shape) {
  int ndim = (int)num();
  for (int i = 0; i < ndim && i < TWIN_MAX_DIMS; i++)
    shape[i] = (size_t)strtoull(next(), NULL, 0); /* TWIN_INFER is 2^64 - 1 */
  return ndim;
}

/* Parses one element of dtype d from text into p. */
static void parse_value(twin_dtype d, const char *t, void *p) {
  switch (d) {
  case TWIN_I8:
    *(int8_t *)p = (int8_t)strtoll(t, NULL, 0);
    break;
  case TWIN_U8:
    *(uint8_t *)p = (uint8_t)strtoull(t, NULL, 0);
    break;
  case TWIN_I16:
    *(int16_t *)p = (int16_t)strtoll(t, NULL, 0);
    break;
  case TWIN_U16:
    *(uint16_t *)p = (uint16_t)strtoull(t, NULL, 0);
    break;
  case TWIN_I32:
    *(int32_t *)p = (int32_t)strtoll(t, NULL, 0);
    break;
  case TWIN_U32:
    *(uint32_t *)p = (uint32_t)strtoull(t, NULL, 0);
    break;
  case TWIN_I64:
    *(int64_t *)p = (int64_t)strtoll(t, NULL, 0);
    break;
  case TWIN_U64:
    *(uint64_t *)p = (uint64_t)strtoull(t, NULL, 0);
    break;
  case TWIN_F32:
    *(float *)p = strtof(t, NULL);
    break;
  case TWIN_F64:
    *(double *)p = strtod(t, NULL);
    break;
  }
}

static void print_value(twin_dtype d, const void *p) {
  switch (d) {
  case TWIN_I8:
    printf(" %d", *(const int8_t *)p);
    break;
  case TWIN_U8:
    printf(" %u", *(const uint8_t *)p);
    break;
  case TWIN_I16:
    printf(" %d", *(const int16_t *)p);
    break;
  case TWIN_U16:
    printf(" %u", *(const uint16_t *)p);
    break;
  case TWIN_I32:
    printf(" %" PRId32, *(const int32_t *)p);
    break;
  case TWIN_U32:
    printf(" %" PRIu32, *(const uint32_t *)p);
    break;
  case TWIN_I64:
    printf(" %" PRId64, *(const int64_t *)p);
    break;
  case TWIN_U64:
    printf(" %" PRIu64, *(const uint64_t *)p);
    break;
  case TWIN_F32:
    printf(" %a", (double)*(const float *)p);
    break;
  case TWIN_F64:
    printf(" %a", *(const double *)p);
    break;
  }
}

/* Stores the array a call made (*made, read after the call returned) in register r, dropping
 * what it held, and prints the status. */
static void result(twin_status s, int r, twin_array *const *made) {
  twin_array *a = *made;
  if (s == TWIN_OK) {
    twin_array_unref(reg[r]);
    reg[r] = a;
    printf("TWIN_OK\n");
  } else {
    printf("%s %s\n", twin_status_name(s), twin_last_error());
  }
}

static void cmd_base(bool zeros) {
  int r = reg_arg();
  twin_dtype d = dtype_arg();
  size_t shape[TWIN_MAX_DIMS], n = 1;
  int ndim = shape_arg(shape);
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  twin_array *a = NULL;
  if (zeros) {
    result(twin_array_zeros(ctx, d, ndim, shape, &a), r, &a);
    return;
  }
  unsigned char *data = malloc(n * twin_dtype_size(d) + 1);
  for (size_t i = 0; i < n; i++)
    parse_value(d, next(), data + i * twin_dtype_size(d));
  result(twin_array_from_host(ctx, d, ndim, shape, data, &a), r, &a);
  free(data);
}

static ptrdiff_t bound_arg(void) {
  const char *t = next();
  return strcmp(t, "N") == 0 ? TWIN_NONE : (ptrdiff_t)strtoll(t, NULL, 0);
}

static void cmd_slice(void) {
  int r = reg_arg();
  twin_array *src = arg_array();
  twin_slice sl[TWIN_MAX_DIMS];
  for (int i = 0; i < twin_array_ndim(src); i++) {
    sl[i].start = bound_arg();
    sl[i].stop = bound_arg();
    sl[i].step = bound_arg();
  }
  twin_array *a = NULL;
  result(twin_array_slice(src, sl, &a), r, &a);
}

static void cmd_view(const char *cmd) {
  int r = reg_arg();
  twin_array *src = arg_array(), *a = NULL;
  size_t shape[TWIN_MAX_DIMS];
  if (strcmp(cmd, "index") == 0) {
    int axis = (int)num();
    result(twin_array_index(src, axis, (ptrdiff_t)num(), &a), r, &a);
  } else if (strcmp(cmd, "transpose") == 0) {
    int perm[TWIN_MAX_DIMS];
    for (int i = 0; i < twin_array_ndim(src); i++)
      perm[i] = (int)num();
    result(twin_array_transpose(src, perm, &a), r, &a);
  } else if (strcmp(cmd, "reshape") == 0) {
    int ndim = shape_arg(shape);
    result(twin_array_reshape(src, ndim, shape, &a), r, &a);
  } else {
    int ndim = shape_arg(shape);
    result(twin_array_broadcast_to(src, ndim, shape, &a), r, &a);
  }
}

static void print_read(twin_array *a) {
  size_t n = twin_array_size(a), item = twin_dtype_size(twin_array_dtype(a));
  unsigned char *data = malloc(n * item + 1);
  twin_status s = twin_array_read(a, data, n * item);
  if (s != TWIN_OK) {
    printf("%s %s\n", twin_status_name(s), twin_last_error());
  } else {
    printf("TWIN_OK");
    for (size_t i = 0; i < n; i++)
      print_value(twin_array_dtype(a), data + i * item);
    printf("\n");
  }
  free(data);
}

static void cmd_devread(void) {
  twin_array *c = NULL;
  twin_status s = twin_array_copy(arg_array(), &c);
  if (s != TWIN_OK) {
    printf("%s %s\n", twin_status_name(s), twin_last_error());
    return;
  }
  print_read(c);
  twin_array_unref(c);
}

static void cmd_reset(void) {
  for (int i = 0; i < REGS; i++) {
    twin_array_unref(reg[i]);
    reg[i] = NULL;
  }
  twin_stats st;
  twin_status s = twin_context_stats(ctx, &st);
  printf("%s %zu %zu\n", twin_status_name(s), st.arrays, st.buffers);
}

static void run(char *line) {
  const char *cmd = strtok(line, " \t\n");
  if (!cmd)
    return;
  if (strcmp(cmd, "base") == 0 || strcmp(cmd, "zeros") == 0) {
    cmd_base(cmd[0] == 'z');
  } else if (strcmp(cmd, "slice") == 0) {
    cmd_slice();
  } else if (strcmp(cmd, "copy") == 0) {
    twin_array *dst = arg_array();
    twin_status s = twin_copy(dst, arg_array());
    printf("%s %s\n", twin_status_name(s), s ? twin_last_error() : "");
  } else if (strcmp(cmd, "read") == 0) {
    print_read(arg_array());
  } else if (strcmp(cmd, "devread") == 0) {
    cmd_devread();
  } else if (strcmp(cmd, "reset") == 0) {
    cmd_reset();
  } else if (strcmp(cmd, "index") == 0 || strcmp(cmd, "transpose") == 0 ||
             strcmp(cmd, "reshape") == 0 || strcmp(cmd, "broadcast") == 0) {
    cmd_view(cmd);
  } else {
    fprintf(stderr, "chain_driver: unknown command %s\n", cmd);
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: chain_driver SPEC (host, opencl, opencl+copy)\n");
    return 2;
  }
  char device[64];
  snprintf(device, sizeof device, "%s", argv[1]);
  char *plus = strchr(device, '+');
  twin_context_options opt = {.device = device, .coherence = TWIN_COHERENCE_AUTO};
  if (plus) {
    *plus = 0;
    opt.coherence = strcmp(plus + 1, "copy") == 0 ? TWIN_COHERENCE_COPY : TWIN_COHERENCE_AUTO;
  }
  if (twin_context_new_with(&opt, &ctx) != TWIN_OK) {
    fprintf(stderr, "chain_driver: cannot open %s: %s\n", argv[1], twin_last_error());
    return 2;
  }
  static char line[1 << 20];
  while (fgets(line, sizeof line, stdin)) {
    if (setjmp(skip_command) == 0)
      run(line);
    fflush(stdout);
  }
  cmd_reset();
  twin_context_unref(ctx);
  return 0;
}

/* User programs and kernels: the per-context program cache, kernel objects (OpenCL C through
 * the backend, or a C function on the host), and twin_kernel_launch, which checks arguments
 * against the kernel's parameters, opens each array's access through the coherence layer,
 * binds the arguments by the convention of kernels/twin_kernel.h and enqueues the kernel. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../backends/backend.h"
#include "internal.h"

struct twin_program {
  atomic_size_t refs;        /* the application's references; the cache entry is not one */
  twin_context *ctx;         /* held while refs > 0 */
  struct twin_program *next; /* in ctx->programs, under ctx->programs_lock */
  char *source, *options;    /* the cache key; options "" for none */
  void *handle;              /* the backend's program */
};

/* A kernel parameter with what twin reads from its type. */
typedef struct param_info {
  twin__param p;
  int elem; /* the twin_dtype its type (a pointer's pointee) is exactly; -1: none */
  bool pointer;
  bool offset_type; /* long or ulong: an array's element offset */
  bool long8;       /* a view's shape or strides */
} param_info;

/* What a parameter was last set to, so that a launch sets only what changed (a kernel keeps
 * its argument values between launches). */
typedef struct last_value {
  bool valid;
  size_t size;
  unsigned char bytes[64]; /* the value; unused for local memory (value NULL) */
  bool local;
} last_value;

struct twin_kernel {
  atomic_size_t refs;
  twin_context *ctx;     /* held */
  twin_program *program; /* a reference; NULL for a host kernel */
  pthread_mutex_t lock;  /* held across setting the arguments and enqueuing, and for last */
  void *handle;          /* the backend's kernel */
  int nparams;
  param_info *params;
  last_value *last;     /* nparams entries */
  size_t group_limit;   /* CL_KERNEL_WORK_GROUP_SIZE; 0: none known */
  uint64_t own_local;   /* CL_KERNEL_LOCAL_MEM_SIZE: its own __local variables, in bytes */
  twin_host_fn host_fn; /* a host kernel's function, else NULL */
  void *host_user;
  char name[];
};

/* ---- Programs ---- */

/* With ctx->programs_lock held: the cached program for the key, with one more reference. The
 * first reference of a cached program takes a hold on the context again. */
static twin_program *lookup_locked(twin_context *ctx, const char *source, const char *options) {
  for (twin_program *p = ctx->programs; p; p = p->next)
    if (strcmp(p->source, source) == 0 && strcmp(p->options, options) == 0) {
      if (atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed) == 0)
        twin__context_hold(ctx);
      return p;
    }
  return NULL;
}

static twin_program *lookup(twin_context *ctx, const char *source, const char *options) {
  twin__spin_lock(&ctx->programs_lock);
  twin_program *p = lookup_locked(ctx, source, options);
  twin__spin_unlock(&ctx->programs_lock);
  return p;
}

static void free_program(twin_context *ctx, twin_program *p) {
  if (p->handle)
    ctx->ops->program_free(ctx, p->handle);
  twin__free(p->source);
  twin__free(p->options);
  twin__free(p);
}

/* Caches p (built, one reference) unless another thread cached the same key meanwhile: then
 * p goes and the cached one comes back with a reference. */
static twin_program *insert(twin_context *ctx, twin_program *p) {
  twin__spin_lock(&ctx->programs_lock);
  twin_program *other = lookup_locked(ctx, p->source, p->options);
  if (!other) {
    p->next = ctx->programs;
    ctx->programs = p;
  }
  twin__spin_unlock(&ctx->programs_lock);
  if (!other)
    return p;
  twin__context_release(ctx);
  free_program(ctx, p);
  return other;
}

static twin_status program_new(const char *fn, twin_context *ctx, const char *source,
                               const char *options, const char *label, twin_program **out) {
  if (!options)
    options = "";
  twin_program *p = lookup(ctx, source, options);
  if (p) {
    *out = p;
    return TWIN_OK;
  }
  p = twin__calloc(1, sizeof *p);
  if (p) {
    p->source = twin__strdup(source);
    p->options = twin__strdup(options);
  }
  if (!p || !p->source || !p->options) {
    if (p)
      free_program(ctx, p);
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a program", fn);
  }
  twin_status s = ctx->ops->program_build(ctx, source, label, options, &p->handle);
  if (s != TWIN_OK) {
    free_program(ctx, p);
    return s;
  }
  p->ctx = twin__context_hold(ctx);
  atomic_init(&p->refs, 1);
  *out = insert(ctx, p);
  return TWIN_OK;
}

static twin_status check_program_args(const char *fn, twin_context *ctx, const void *source,
                                      twin_program **out) {
  if (!ctx || !source || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !ctx      ? "ctx"
                      : !source ? "the source"
                                : "out");
  if (!ctx->ops->program_build)
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "%s: the %s backend runs no OpenCL C; run a C "
                      "function on twin arrays with twin_kernel_new_host instead",
                      fn, ctx->ops->name);
  return TWIN_OK;
}

twin_status twin_program_new(twin_context *ctx, const char *source, const char *build_options,
                             twin_program **out) {
  static const char fn[] = "twin_program_new";
  twin_status s = check_program_args(fn, ctx, source, out);
  return s == TWIN_OK ? program_new(fn, ctx, source, build_options, "source", out) : s;
}

/* Reads a whole file into a NUL-terminated string from twin__malloc. */
static twin_status read_file(const char *fn, const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: cannot open \"%s\": %s", fn, path,
                      strerror(errno));
  size_t cap = 4096, n = 0;
  char *text = twin__malloc(cap);
  while (text) {
    n += fread(text + n, 1, cap - 1 - n, f);
    if (n < cap - 1)
      break;
    char *bigger = twin__malloc(cap * 2);
    if (bigger)
      memcpy(bigger, text, n);
    twin__free(text);
    text = bigger;
    cap *= 2;
  }
  bool failed = ferror(f);
  fclose(f);
  if (!text)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory to read \"%s\"", fn, path);
  if (failed) {
    twin__free(text);
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: cannot read \"%s\"", fn, path);
  }
  text[n] = '\0';
  *out = text;
  return TWIN_OK;
}

twin_status twin_program_new_from_file(twin_context *ctx, const char *path,
                                       const char *build_options, twin_program **out) {
  static const char fn[] = "twin_program_new_from_file";
  char *source = NULL;
  twin_status s = check_program_args(fn, ctx, path, out);
  if (s == TWIN_OK)
    s = read_file(fn, path, &source);
  if (s == TWIN_OK)
    s = program_new(fn, ctx, source, build_options, path, out);
  twin__free(source);
  return s;
}

twin_program *twin_program_ref(twin_program *prog) {
  if (prog)
    atomic_fetch_add_explicit(&prog->refs, 1, memory_order_relaxed);
  return prog;
}

void twin_program_unref(twin_program *prog) {
  /* The program stays in its context's cache; only the hold on the context goes. */
  if (prog && atomic_fetch_sub_explicit(&prog->refs, 1, memory_order_acq_rel) == 1)
    twin__context_release(prog->ctx);
}

void twin__programs_release(twin_context *ctx) {
  twin_program *p = ctx->programs;
  while (p) {
    twin_program *next = p->next;
    free_program(ctx, p);
    p = next;
  }
  ctx->programs = NULL;
}

/* ---- Kernels ---- */

/* The OpenCL C spellings of each twin_dtype, with the words of a type name joined without
 * spaces, since devices report "unsigned int", "unsignedint" (the specification removes
 * whitespace) or "uint". In OpenCL C, char is signed and long is 64 bits. */
static const struct {
  const char *name;
  twin_dtype dtype;
} type_names[] = {
    {"char", TWIN_I8},
    {"signedchar", TWIN_I8},
    {"uchar", TWIN_U8},
    {"unsignedchar", TWIN_U8},
    {"short", TWIN_I16},
    {"shortint", TWIN_I16},
    {"signedshort", TWIN_I16},
    {"signedshortint", TWIN_I16},
    {"ushort", TWIN_U16},
    {"unsignedshort", TWIN_U16},
    {"unsignedshortint", TWIN_U16},
    {"int", TWIN_I32},
    {"signed", TWIN_I32},
    {"signedint", TWIN_I32},
    {"uint", TWIN_U32},
    {"unsigned", TWIN_U32},
    {"unsignedint", TWIN_U32},
    {"long", TWIN_I64},
    {"longint", TWIN_I64},
    {"signedlong", TWIN_I64},
    {"signedlongint", TWIN_I64},
    {"ulong", TWIN_U64},
    {"unsignedlong", TWIN_U64},
    {"unsignedlongint", TWIN_U64},
    {"float", TWIN_F32},
    {"double", TWIN_F64},
};

/* The twin_dtype a joined type name is exactly, or -1 (vectors, half, bool, size_t, structs,
 * typedef names: anything whose size or meaning twin cannot vouch for). */
static int dtype_named(const char *joined) {
  for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
    if (strcmp(type_names[i].name, joined) == 0)
      return (int)type_names[i].dtype;
  return -1;
}

/* The OpenCL C name of a dtype, for messages: "float" for TWIN_F32. */
static const char *cl_type_name(twin_dtype dtype) {
  for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
    if (type_names[i].dtype == dtype)
      return type_names[i].name;
  return "?";
}

/* Words a device may leave in a type name that do not change the type: qualifiers and
 * address spaces (the specification says it reports neither, but not every device obeys). */
static bool is_qualifier(const char *word, size_t len) {
  static const char *const words[] = {
      "const",    "volatile", "restrict", "__restrict", "__global", "global",    "__constant",
      "constant", "__local",  "local",    "__private",  "private",  "__generic", "generic"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strlen(words[i]) == len && strncmp(words[i], word, len) == 0)
      return true;
  return false;
}

/* Reads a type name ("uint*", "unsigned int *", "__global const float * restrict") into its
 * base type's words joined without spaces (qualifiers dropped) and its count of '*'. Returns
 * -1 for a name twin cannot read: a type word after a '*', or too long. */
static int parse_type(const char *type, char *joined, size_t cap) {
  size_t n = 0;
  int stars = 0;
  joined[0] = '\0';
  for (const char *c = type; *c;) {
    if (*c == ' ' || *c == '\t') {
      c++;
      continue;
    }
    if (*c == '*') {
      stars++;
      c++;
      continue;
    }
    size_t len = strcspn(c, " \t*");
    if (!is_qualifier(c, len)) {
      if (stars > 0 || n + len >= cap)
        return -1;
      memcpy(joined + n, c, len);
      joined[n += len] = '\0';
    }
    c += len;
  }
  return stars;
}

static void classify(const twin__param *p, param_info *out) {
  char joined[sizeof p->type];
  int stars = parse_type(p->type, joined, sizeof joined);
  out->p = *p;
  out->pointer = stars > 0 || (stars < 0 && strchr(p->type, '*'));
  out->elem = stars == 0 || stars == 1 ? dtype_named(joined) : -1;
  out->offset_type = stars == 0 && (out->elem == TWIN_I64 || out->elem == TWIN_U64);
  out->long8 = stars == 0 && strcmp(joined, "long8") == 0;
}

static twin_kernel *kernel_object(twin_context *ctx, const char *name) {
  twin_kernel *k = twin__calloc(1, sizeof *k + strlen(name) + 1);
  if (!k)
    return NULL;
  if (pthread_mutex_init(&k->lock, NULL) != 0) {
    twin__free(k);
    return NULL;
  }
  atomic_init(&k->refs, 1);
  k->ctx = ctx;
  strcpy(k->name, name);
  return k;
}

/* A kernel whose parameters the device does not describe could be given anything: twin
 * refuses to make it rather than trust every launch. */
static twin_status check_described(const twin_kernel *k, const twin__kernel_desc *d) {
  for (int i = 0; i < d->nparams; i++)
    if (d->params[i].space == TWIN__SPACE_UNKNOWN)
      return twin__fail(TWIN_ERR_UNSUPPORTED,
                        "twin_kernel_new: kernel %s: device \"%s\" gives no argument "
                        "information for parameter %d (clGetKernelArgInfo), so twin cannot "
                        "check what a launch binds to it, and makes no kernel it cannot check",
                        k->name, k->ctx->device.name, i);
  return TWIN_OK;
}

/* Creates the backend's kernel and reads its parameters and limits. */
static twin_status create_kernel(twin_kernel *k, twin_program *prog) {
  twin_context *ctx = prog->ctx;
  twin__kernel_desc d = {NULL, 0, 0, 0};
  twin_status s = ctx->ops->kernel_create(ctx, prog->handle, k->name, &k->handle, &d);
  if (s != TWIN_OK)
    return s;
  k->nparams = d.nparams;
  k->group_limit = d.work_group_size;
  k->own_local = d.local_bytes;
  size_t n = k->nparams ? (size_t)k->nparams : 1;
  s = check_described(k, &d);
  if (s == TWIN_OK) {
    k->params = twin__calloc(n, sizeof *k->params);
    k->last = twin__calloc(n, sizeof *k->last);
    if (!k->params || !k->last)
      s = twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_kernel_new: no memory for parameters");
  }
  for (int i = 0; s == TWIN_OK && i < k->nparams; i++)
    classify(&d.params[i], &k->params[i]);
  twin__free(d.params);
  if (s != TWIN_OK) {
    twin__free(k->params);
    twin__free(k->last);
    ctx->ops->kernel_free(ctx, k->handle);
  }
  return s;
}

twin_status twin_kernel_new(twin_program *prog, const char *name, twin_kernel **out) {
  static const char fn[] = "twin_kernel_new";
  if (!prog || !name || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !prog   ? "prog"
                      : !name ? "name"
                              : "out");
  twin_kernel *k = kernel_object(prog->ctx, name);
  if (!k)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a kernel", fn);
  twin_status s = create_kernel(k, prog);
  if (s != TWIN_OK) {
    pthread_mutex_destroy(&k->lock);
    twin__free(k);
    return s;
  }
  k->program = twin_program_ref(prog);
  twin__context_hold(k->ctx);
  *out = k;
  return TWIN_OK;
}

twin_status twin_kernel_new_host(twin_context *ctx, const char *name, twin_host_fn fn, void *user,
                                 twin_kernel **out) {
  if (!ctx || !name || !fn || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_kernel_new_host: %s is NULL",
                      !ctx    ? "ctx"
                      : !name ? "name"
                      : !fn   ? "fn"
                              : "out");
  twin_kernel *k = kernel_object(ctx, name);
  if (!k)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_kernel_new_host: no memory for a "
                                                   "kernel");
  k->host_fn = fn;
  k->host_user = user;
  twin__context_hold(ctx);
  *out = k;
  return TWIN_OK;
}

twin_kernel *twin_kernel_ref(twin_kernel *k) {
  if (k)
    atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
  return k;
}

void twin_kernel_unref(twin_kernel *k) {
  if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
    return;
  twin_context *ctx = k->ctx;
  if (k->handle)
    ctx->ops->kernel_free(ctx, k->handle);
  twin__free(k->params);
  twin__free(k->last);
  pthread_mutex_destroy(&k->lock);
  twin_program_unref(k->program);
  twin__free(k);
  twin__context_release(ctx);
}

const char *twin_kernel_name(const twin_kernel *k) {
  return k ? k->name : NULL;
}

/* The backend's handles behind a program and a kernel (twin_opencl.h). */
void *twin__program_handle(const twin_program *prog) {
  return prog ? prog->handle : NULL;
}

void *twin__kernel_handle(const twin_kernel *k) {
  return k ? k->handle : NULL;
}

/* ---- Checking a launch ----
 * The checks return messages without the public call in front; twin_kernel_launch_at puts it
 * there with the caller's file and line (launch_failed). */

static const char launch_fn[] = "twin_kernel_launch";

/* Puts "twin_kernel_launch (file:line): " and `what` in front of the current message. */
static twin_status launch_failed(twin_status s, twin__site site, const char *what) {
  if (!site.file)
    return twin__fail_prefix(s, "%s: %s", launch_fn, what);
  return twin__fail_prefix(s, "%s (%s:%d): %s", launch_fn, site.file, site.line, what);
}

static const char *access_name(twin_access a) {
  return a == TWIN_READ ? "TWIN_READ" : a == TWIN_WRITE ? "TWIN_WRITE" : "TWIN_READ_WRITE";
}

static bool is_array(twin_arg_kind kind) {
  return kind == TWIN_ARG_ARRAY || kind == TWIN_ARG_VIEW;
}

/* Kernel parameters an argument binds (see twin_kernel.h). */
static int binds(twin_arg_kind kind) {
  return kind == TWIN_ARG_ARRAY ? 2 : kind == TWIN_ARG_VIEW ? 4 : 1;
}

static twin_status check_array_arg(const twin_kernel *k, int i, const twin_arg *arg) {
  const twin_array *a = arg->array;
  twin__debug_check(a, launch_fn);
  if (!a)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: the array is NULL", i);
  const twin_context *actx = a->buf->ctx;
  if (actx != k->ctx)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: the array belongs to another context (%s) than kernel %s "
                      "(%s)",
                      i, actx->device.spec, k->name, k->ctx->device.spec);
  if (arg->access != TWIN_READ && arg->access != TWIN_WRITE && arg->access != TWIN_READ_WRITE)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: access is %d, not TWIN_READ, TWIN_WRITE or TWIN_READ_WRITE", i,
                      (int)arg->access);
  if ((arg->access & TWIN_WRITE) && a->read_only)
    return twin__fail(TWIN_ERR_READ_ONLY,
                      "argument %d: the array is a broadcast view (some elements alias each "
                      "other) and cannot be written",
                      i);
  if (arg->kind == TWIN_ARG_ARRAY && !twin__is_contiguous(a))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: the array is not C-contiguous; pass it with twin_arg_view "
                      "(shape and strides too) or make it contiguous",
                      i);
  if (!k->host_fn && a->dtype == TWIN_F64 && !actx->device.fp64)
    return twin__fail(TWIN_ERR_UNSUPPORTED,
                      "argument %d: device \"%s\" has no fp64 support for an f64 array", i,
                      actx->device.name);
  return TWIN_OK;
}

static twin_status check_arg(const twin_kernel *k, int i, const twin_arg *arg) {
  switch (arg->kind) {
  case TWIN_ARG_ARRAY:
  case TWIN_ARG_VIEW:
    return check_array_arg(k, i, arg);
  case TWIN_ARG_SCALAR:
    if (!twin__dtype_valid(arg->dtype))
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: dtype %d is not a twin_dtype", i,
                        (int)arg->dtype);
    return TWIN_OK;
  case TWIN_ARG_LOCAL:
    if (arg->local_bytes == 0)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: local memory of 0 bytes", i);
    return TWIN_OK;
  }
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "argument %d: kind %d is not a twin_arg_kind", i,
                    (int)arg->kind);
}

/* The most work items a launch may have: the largest signed value of the size_t where the
 * kernel runs (CL_DEVICE_ADDRESS_BITS wide on the device, the host's for a host kernel), which
 * get_global_id and twin_kernel.h's long index arithmetic hold. Larger sizes are nearly always
 * a negative count converted to size_t. *bits is that width, 0 for the host's. */
static size_t global_bound(const twin_kernel *k, unsigned *bits) {
  unsigned host_bits = 8 * sizeof(size_t);
  *bits = k->host_fn ? 0 : k->ctx->device.address_bits;
  if (*bits == 0 || *bits > host_bits) {
    *bits = 0;
    return SIZE_MAX >> 1;
  }
  return SIZE_MAX >> (host_bits - *bits + 1);
}

/* "4294967296 x 4294967296 x 4" */
static const char *sizes_text(const size_t *sizes, int n, char *buf, size_t cap) {
  size_t used = 0;
  buf[0] = '\0';
  for (int d = 0; d < n && used < cap; d++)
    used += (size_t)snprintf(buf + used, cap - used, d ? " x %zu" : "%zu", sizes[d]);
  return buf;
}

/* Refuses a global size (dim >= 0) or the product of all (dim -1) for exceeding bound. */
static twin_status global_refused(const twin_kernel *k, int work_dim, const size_t *global, int dim,
                                  size_t bound, unsigned bits) {
  char why[256], text[96];
  if (bits)
    snprintf(why, sizeof why,
             "the largest signed size of device \"%s\", whose CL_DEVICE_ADDRESS_BITS = %u",
             k->ctx->device.name, bits);
  else
    snprintf(why, sizeof why, "the largest signed size of the host");
  if (dim >= 0)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "global[%d] = %zu exceeds %zu work items (%s)",
                      dim, global[dim], bound, why);
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "the global work items, %s, exceed %zu (%s)",
                    sizes_text(global, work_dim, text, sizeof text), bound, why);
}

/* Each global size and their product within global_bound; *items is the product. */
static twin_status check_global(const twin_kernel *k, int work_dim, const size_t *global,
                                size_t *items) {
  unsigned bits;
  size_t bound = global_bound(k, &bits), n = 1;
  bool over = false;
  for (int d = 0; d < work_dim; d++) {
    if (global[d] > bound)
      return global_refused(k, work_dim, global, d, bound, bits);
    over = over || twin__mul_overflows(n, global[d], &n);
  }
  if (over || n > bound)
    return global_refused(k, work_dim, global, -1, bound, bits);
  *items = n;
  return TWIN_OK;
}

static twin_status check_launch(const twin_kernel *k, int work_dim, const size_t *global,
                                const size_t *local, int nargs, const twin_arg *args,
                                size_t *items) {
  if (!k || !global || (nargs > 0 && !args))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s is NULL",
                      !k        ? "the kernel"
                      : !global ? "global"
                                : "args");
  if (work_dim < 1 || work_dim > 3)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "work_dim is %d, outside 1..3", work_dim);
  if (nargs < 0)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "nargs is %d", nargs);
  for (int d = 0; local && d < work_dim; d++)
    if (local[d] == 0 || global[d] % local[d])
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "global[%d] = %zu is not a multiple of local[%d] = %zu", d, global[d], d,
                        local[d]);
  twin_status s = check_global(k, work_dim, global, items);
  for (int i = 0; s == TWIN_OK && i < nargs; i++)
    s = check_arg(k, i, &args[i]);
  return s;
}

/* ---- Checking a device launch against the kernel and the device ---- */

/* "an f32 array passed TWIN_READ", "a u32 scalar", "local memory". */
static const char *arg_text(const twin_arg *arg, char *buf, size_t cap) {
  if (is_array(arg->kind))
    snprintf(buf, cap, "%s %s passed %s", twin_dtype_name(arg->array->dtype),
             arg->kind == TWIN_ARG_ARRAY ? "array" : "view", access_name(arg->access));
  else if (arg->kind == TWIN_ARG_SCALAR)
    snprintf(buf, cap, "%s scalar", twin_dtype_name(arg->dtype));
  else
    snprintf(buf, cap, "%zu bytes of local memory", arg->local_bytes);
  return buf;
}

static const char *space_text(twin__space s) {
  static const char *names[] = {"", "__global ", "__constant ", "__local ", ""};
  return names[s];
}

/* Refuses argument i at parameter j, naming both and saying why. */
static twin_status mismatch(const twin_kernel *k, int i, const twin_arg *arg, int j,
                            const char *why) {
  const twin__param *p = &k->params[j].p;
  char text[96];
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                    "argument %d (%s) does not fit parameter %d '%s' of kernel %s (%s%s%s): %s", i,
                    arg_text(arg, text, sizeof text), j, p->name, k->name, space_text(p->space),
                    p->is_const ? "const " : "", p->type[0] ? p->type : "a type name too long",
                    why);
}

/* Refuses a parameter whose type is not exactly `dtype`: a pointer's pointee for an array, the
 * value's type for a scalar. */
static twin_status type_mismatch(const twin_kernel *k, int i, const twin_arg *arg, int j,
                                 twin_dtype dtype) {
  const param_info *p = &k->params[j];
  const char *what = is_array(arg->kind) ? "element type" : "type";
  char why[384];
  if (p->elem >= 0)
    snprintf(why, sizeof why, "the %ss differ (the parameter's is %s, the argument's %s)", what,
             twin_dtype_name((twin_dtype)p->elem), twin_dtype_name(dtype));
  else
    snprintf(why, sizeof why,
             "%s %s %s binds only %s%s; twin refuses other %ss (vectors, half, bool, size_t, "
             "structs, typedef names), which the kernel would read in units of another size",
             dtype == TWIN_U8 || dtype == TWIN_U16 || dtype == TWIN_U32 || dtype == TWIN_U64 ? "a"
                                                                                             : "an",
             twin_dtype_name(dtype), is_array(arg->kind) ? "array" : "scalar", cl_type_name(dtype),
             is_array(arg->kind) ? "*" : "", what);
  return mismatch(k, i, arg, j, why);
}

static twin_status check_array_params(const twin_kernel *k, int i, const twin_arg *arg, int j) {
  const param_info *p = &k->params[j];
  if ((p->p.space != TWIN__SPACE_GLOBAL && p->p.space != TWIN__SPACE_CONSTANT) || !p->pointer)
    return mismatch(k, i, arg, j,
                    "an array binds a __global or __constant pointer, then its offset (see "
                    "twin_kernel.h)");
  if (p->elem != (int)arg->array->dtype)
    return type_mismatch(k, i, arg, j, arg->array->dtype);
  if ((arg->access & TWIN_WRITE) && p->p.is_const)
    return mismatch(k, i, arg, j,
                    "the kernel cannot write through a pointer to const; pass TWIN_READ or drop "
                    "the const");
  if (arg->access == TWIN_READ && !p->p.is_const)
    return mismatch(k, i, arg, j,
                    "an array passed TWIN_READ binds a pointer to const, so the kernel cannot "
                    "write it unseen; declare it const or pass TWIN_READ_WRITE");
  static const char *const what[] = {"its element offset, a long", "its shape, a long8",
                                     "its strides, a long8"};
  for (int m = 1; m < binds(arg->kind); m++) {
    const param_info *q = &k->params[j + m];
    if (q->p.space != TWIN__SPACE_PRIVATE || (m == 1 ? !q->offset_type : !q->long8)) {
      char why[96];
      snprintf(why, sizeof why, "the array binds %s, here", what[m - 1]);
      return mismatch(k, i, arg, j + m, why);
    }
  }
  return TWIN_OK;
}

static twin_status check_binding(const twin_kernel *k, int i, const twin_arg *arg, int j) {
  const param_info *p = &k->params[j];
  if (is_array(arg->kind))
    return check_array_params(k, i, arg, j);
  if (arg->kind == TWIN_ARG_LOCAL)
    return p->p.space == TWIN__SPACE_LOCAL
               ? TWIN_OK
               : mismatch(k, i, arg, j, "local memory binds a __local pointer");
  if (p->p.space != TWIN__SPACE_PRIVATE || p->pointer)
    return mismatch(k, i, arg, j, "a scalar binds a value parameter");
  if (p->elem != (int)arg->dtype)
    return type_mismatch(k, i, arg, j, arg->dtype);
  return TWIN_OK;
}

static twin_status check_params(const twin_kernel *k, int nargs, const twin_arg *args) {
  int j = 0, total = 0;
  for (int i = 0; i < nargs; i++)
    total += binds(args[i].kind);
  for (int i = 0; i < nargs && j + binds(args[i].kind) <= k->nparams; i++) {
    twin_status s = check_binding(k, i, &args[i], j);
    if (s != TWIN_OK)
      return s;
    j += binds(args[i].kind);
  }
  if (total == k->nparams)
    return TWIN_OK;
  return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                    "kernel %s has %d parameters, but the %d arguments bind %d (an array binds "
                    "2: pointer and offset; a view 4: pointer, offset, shape and strides; a "
                    "scalar or local memory 1)",
                    k->name, k->nparams, nargs, total);
}

/* The work-group: each local size within the device's per-dimension limit, and their product
 * within the device's and the kernel's own work-group limits. Zero limits are unknown. */
static twin_status check_local_sizes(const twin_kernel *k, int work_dim, const size_t *local) {
  const twin_device_info *dev = &k->ctx->device;
  size_t n = 1;
  bool over = false;
  char text[96];
  for (int d = 0; d < work_dim; d++) {
    size_t limit = dev->max_work_item_sizes[d];
    if (limit && local[d] > limit)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "local[%d] = %zu exceeds CL_DEVICE_MAX_WORK_ITEM_SIZES[%d] = %zu of "
                        "device \"%s\"",
                        d, local[d], d, limit, dev->name);
    over = over || twin__mul_overflows(n, local[d], &n);
  }
  sizes_text(local, work_dim, text, sizeof text);
  if (dev->max_work_group_size && (over || n > dev->max_work_group_size))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "the work-group, local %s, exceeds CL_DEVICE_MAX_WORK_GROUP_SIZE = %zu "
                      "work items of device \"%s\"",
                      text, dev->max_work_group_size, dev->name);
  if (k->group_limit && (over || n > k->group_limit))
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "the work-group, local %s, exceeds CL_KERNEL_WORK_GROUP_SIZE = %zu, the "
                      "most work items kernel %s runs with on device \"%s\"",
                      text, k->group_limit, k->name, dev->name);
  return TWIN_OK;
}

/* Local memory: the kernel's own __local variables and every local argument, together within
 * the device's CL_DEVICE_LOCAL_MEM_SIZE. The argument that goes over is named. */
static twin_status check_local_memory(const twin_kernel *k, int nargs, const twin_arg *args) {
  const twin_device_info *dev = &k->ctx->device;
  uint64_t limit = dev->local_mem_bytes, total = k->own_local;
  for (int i = 0; limit && i < nargs; i++) {
    if (args[i].kind != TWIN_ARG_LOCAL)
      continue;
    uint64_t before = total;
    if (!__builtin_add_overflow(before, (uint64_t)args[i].local_bytes, &total) && total <= limit)
      continue;
    if (before == 0)
      return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                        "argument %d: %zu bytes of local memory exceed CL_DEVICE_LOCAL_MEM_SIZE "
                        "= %llu of device \"%s\"",
                        i, args[i].local_bytes, (unsigned long long)limit, dev->name);
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT,
                      "argument %d: %zu bytes of local memory, with the %llu bytes before it "
                      "(kernel %s's own __local variables, CL_KERNEL_LOCAL_MEM_SIZE = %llu, and "
                      "earlier local arguments), exceed CL_DEVICE_LOCAL_MEM_SIZE = %llu of device "
                      "\"%s\"",
                      i, args[i].local_bytes, (unsigned long long)before, k->name,
                      (unsigned long long)k->own_local, (unsigned long long)limit, dev->name);
  }
  return TWIN_OK;
}

/* What only a device kernel is checked for: its parameters and the device's limits. */
static twin_status check_device_launch(const twin_kernel *k, int work_dim, const size_t *local,
                                       int nargs, const twin_arg *args) {
  twin_status s = check_params(k, nargs, args);
  if (s == TWIN_OK && local)
    s = check_local_sizes(k, work_dim, local);
  if (s == TWIN_OK)
    s = check_local_memory(k, nargs, args);
  return s;
}

/* ---- Opening the arrays ---- */

/* One array object of a launch, opened once with the union of the modes it is passed with. */
typedef struct bound_array {
  twin_array *a;
  twin_access mode;
  int first_arg;       /* for messages */
  void *mem;           /* its side's memory from twin__open_for_op */
  twin__dirty *before; /* a write to a two-copy buffer: the map before, to undo a failure */
} bound_array;

/* What one argument binds besides its array's memory. */
typedef struct bound_arg {
  int array; /* index into the launch's arrays, -1 for none */
  int64_t offset;
  int64_t shape[8], strides[8];
  void *data; /* a host kernel's pointer for it */
} bound_arg;

/* The per-launch bookkeeping: on the stack for up to STACK_ARGS arguments. */
#define STACK_ARGS 16

typedef struct launch {
  const char *fn;
  twin__site site; /* the caller's */
  twin_kernel *k;
  twin__side_id side;
  int nargs, narrays;
  const twin_arg *args;
  bound_array *arrays;
  bound_arg *bound;
  twin__kvalue *values;
  twin__dirty *befores;       /* from twin__malloc when more than STACK_BEFORES are needed */
  twin__dirty *stack_befores; /* STACK_BEFORES on the caller's stack */
} launch;

/* Two-copy written arrays whose map a launch keeps without allocating. */
#define STACK_BEFORES 2

static void collect(launch *l) {
  l->narrays = 0;
  for (int i = 0; i < l->nargs; i++) {
    const twin_arg *arg = &l->args[i];
    l->bound[i].array = -1;
    if (!is_array(arg->kind))
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

/* ---- Launching ---- */

static int fill_values(launch *l) {
  int n = 0;
  for (int i = 0; i < l->nargs; i++) {
    const twin_arg *arg = &l->args[i];
    bound_arg *b = &l->bound[i];
    if (arg->kind == TWIN_ARG_SCALAR) {
      l->values[n++] = (twin__kvalue){twin_dtype_size(arg->dtype), &arg->value, false, NULL};
      continue;
    }
    if (arg->kind == TWIN_ARG_LOCAL) {
      l->values[n++] = (twin__kvalue){arg->local_bytes, NULL, false, NULL};
      continue;
    }
    const twin_array *a = arg->array;
    b->offset = (int64_t)a->offset;
    l->values[n++] =
        (twin__kvalue){sizeof(void *), &l->arrays[b->array].mem, false, &a->buf->track};
    l->values[n++] = (twin__kvalue){sizeof b->offset, &b->offset, false, NULL};
    if (arg->kind == TWIN_ARG_ARRAY)
      continue;
    for (int d = 0; d < 8; d++) {
      b->shape[d] = d < a->ndim ? (int64_t)a->shape[d] : 1;
      b->strides[d] = d < a->ndim ? (int64_t)a->strides[d] : 0;
    }
    l->values[n++] = (twin__kvalue){sizeof b->shape, b->shape, false, NULL};
    l->values[n++] = (twin__kvalue){sizeof b->strides, b->strides, false, NULL};
  }
  return n;
}

/* Names the parameter a failed clSetKernelArg was for. */
static void append_failed_value(const launch *l, int value) {
  int j = 0;
  for (int i = 0; i < l->nargs; i++) {
    int n = binds(l->args[i].kind);
    if (value < j + n) {
      twin__fail_append(" for parameter %d '%s' of kernel %s, bound by argument %d", value,
                        l->k->params[value].p.name, l->k->name, i);
      return;
    }
    j += n;
  }
}

/* memcmp(a, b, n) == 0 for the few bytes of a kernel argument, without a library call. */
static bool same_bytes(const unsigned char *a, const unsigned char *b, size_t n) {
  unsigned char diff = 0;
  for (size_t i = 0; i < n; i++)
    diff |= a[i] ^ b[i];
  return diff == 0;
}

/* With the kernel's lock held: marks the values the kernel holds already. */
static void mark_same(twin_kernel *k, twin__kvalue *values, int n) {
  for (int i = 0; i < n; i++) {
    const last_value *v = &k->last[i];
    values[i].same = v->valid && v->size == values[i].size && v->local == !values[i].value &&
                     (!values[i].value || same_bytes(v->bytes, values[i].value, v->size));
  }
}

/* With the kernel's lock held: remembers what was set (nothing is known after a failure). */
static void remember(twin_kernel *k, const twin__kvalue *values, int n, bool ok) {
  for (int i = 0; i < n; i++) {
    last_value *v = &k->last[i];
    v->valid = ok && values[i].size <= sizeof v->bytes;
    if (!v->valid || values[i].same)
      continue;
    v->size = values[i].size;
    v->local = !values[i].value;
    if (values[i].value)
      memcpy(v->bytes, values[i].value, v->size);
  }
}

static twin_status enqueue(launch *l, int work_dim, const size_t *global, const size_t *local) {
  twin_context *ctx = l->k->ctx;
  int nvalues = fill_values(l), failed_value = -1;
  pthread_mutex_lock(&l->k->lock);
  mark_same(l->k, l->values, nvalues);
  twin_status s = ctx->ops->kernel_enqueue(ctx, l->k->handle, l->values, nvalues, work_dim, global,
                                           local, &failed_value);
  remember(l->k, l->values, nvalues, s == TWIN_OK);
  pthread_mutex_unlock(&l->k->lock);
  if (s == TWIN_OK)
    return TWIN_OK;
  if (failed_value >= 0)
    append_failed_value(l, failed_value);
  char what[TWIN__CAUSE_MAX];
  snprintf(what, sizeof what, "kernel %s: ", l->k->name);
  return launch_failed(s, l->site, what);
}

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

static twin_status run_host(launch *l, int work_dim, const size_t *global, const size_t *local) {
  twin_host_launch hl = {work_dim, {0, 0, 0}, {0, 0, 0}, l->nargs, l->args, NULL};
  void **data = (void **)l->values; /* the values' room is unused on the host: reuse it */
  twin_status s = TWIN_OK;
  for (int d = 0; d < work_dim; d++) {
    hl.global[d] = global[d];
    hl.local[d] = local ? local[d] : 0;
  }
  int i = 0;
  for (; i < l->nargs && s == TWIN_OK; i++) {
    const twin_arg *arg = &l->args[i];
    if (is_array(arg->kind))
      data[i] = host_element0(arg->array, l->arrays[l->bound[i].array].mem);
    else if (arg->kind == TWIN_ARG_SCALAR)
      data[i] = (void *)&arg->value;
    else if (!(data[i] = twin__malloc(arg->local_bytes)))
      s = launch_failed(twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY,
                                   "argument %d: no memory for %zu bytes of local memory", i,
                                   arg->local_bytes),
                        l->site, "");
  }
  hl.data = data;
  if (s == TWIN_OK) {
    unsigned long failures = twin__fail_count();
    s = l->k->host_fn(&hl, l->k->host_user);
    if (s != TWIN_OK)
      s = host_failed(l, s, failures);
  }
  while (i-- > 0)
    if (l->args[i].kind == TWIN_ARG_LOCAL)
      twin__free(data[i]);
  return s;
}

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

twin_status twin_kernel_launch_at(twin_kernel *k, int work_dim, const size_t *global,
                                  const size_t *local, int nargs, const twin_arg *args,
                                  const char *file, int line) {
  twin__site site = {file, line};
  size_t items = 0;
  twin_status s = check_launch(k, work_dim, global, local, nargs, args, &items);
  if (s == TWIN_OK && !k->host_fn)
    s = check_device_launch(k, work_dim, local, nargs, args);
  if (s != TWIN_OK)
    return launch_failed(s, site, "");
  if (items == 0)
    return TWIN_OK;
  bound_array arrays[STACK_ARGS];
  bound_arg bound[STACK_ARGS];
  twin__kvalue values[4 * STACK_ARGS];
  twin__dirty befores[STACK_BEFORES];
  launch l = {launch_fn, site,   k,    k->host_fn ? TWIN__HOST : TWIN__DEVICE,
              nargs,     0,      args, arrays,
              bound,     values, NULL, befores};
  void *heap = NULL;
  if (nargs > STACK_ARGS) {
    size_t each = sizeof *arrays + sizeof *bound + 4 * sizeof *values;
    if (!(heap = twin__malloc((size_t)nargs * each)))
      return launch_failed(
          twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "no memory for %d arguments", nargs), site, "");
    l.values = heap;
    l.bound = (bound_arg *)(l.values + 4 * nargs);
    l.arrays = (bound_array *)(l.bound + nargs);
  }
  s = run(&l, work_dim, global, local);
  twin__free(l.befores);
  twin__free(heap);
  return s;
}

twin_status(twin_kernel_launch)(twin_kernel *k, int work_dim, const size_t *global,
                                const size_t *local, int nargs, const twin_arg *args) {
  return twin_kernel_launch_at(k, work_dim, global, local, nargs, args, NULL, 0);
}

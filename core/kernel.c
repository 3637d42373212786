/* Kernel objects: a kernel of a user program (through the backend) or a C function run on the
 * host; what twin reads from each parameter's OpenCL C type name; and the argument values a
 * kernel holds between launches, so that a launch sets only what changed. Uses program.c;
 * launch_check.c and launch.c use this file. */
#include <string.h>

#include "../backends/backend.h"
#include "objects.h"

/* What a parameter was last set to (a kernel keeps its argument values between launches). */
struct twin__arg_state {
  bool valid;
  size_t size;
  unsigned char bytes[64]; /* the value; unused for local memory (value NULL) */
  bool local;
};

/* ---- Type names ---- */

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

const char *twin__kernel_type_name(twin_dtype dtype) {
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

static twin__param_type classify(const twin__param *p) {
  char joined[sizeof p->type];
  int stars = parse_type(p->type, joined, sizeof joined);
  twin__param_type t;
  t.pointer = stars > 0 || (stars < 0 && strchr(p->type, '*'));
  t.elem = stars == 0 || stars == 1 ? dtype_named(joined) : -1;
  t.offset_type = stars == 0 && (t.elem == TWIN_I64 || t.elem == TWIN_U64);
  t.long8 = stars == 0 && strcmp(joined, "long8") == 0;
  return t;
}

/* ---- Kernel objects ---- */

static twin_kernel *kernel_object(twin_context *ctx, const char *name) {
  twin_kernel *k = twin__calloc(1, sizeof *k + strlen(name) + 1);
  if (!k)
    return NULL;
  if (pthread_mutex_init(&k->lock, NULL) != 0) {
    twin__free(k);
    return NULL;
  }
  twin__ref_init(&k->refs);
  k->ctx = ctx;
  strcpy(k->name, name);
  return k;
}

/* Frees what a kernel object holds of its own (not its references). */
static void free_kernel(twin_kernel *k) {
  if (k->handle)
    k->ctx->ops->kernel_free(k->ctx, k->handle);
  twin__free((void *)k->params);
  twin__free(k->types);
  twin__free(k->state);
  pthread_mutex_destroy(&k->lock);
  twin__free(k);
}

/* A kernel whose parameters the device does not describe could be given anything: twin
 * refuses to make it rather than trust every launch. */
static twin_status check_described(const twin_kernel *k) {
  for (int i = 0; i < k->nparams; i++)
    if (k->params[i].space == TWIN__SPACE_UNKNOWN)
      return twin__fail(TWIN_ERR_UNSUPPORTED,
                        "twin_kernel_new: kernel %s: device \"%s\" gives no argument "
                        "information for parameter %d (clGetKernelArgInfo), so twin cannot "
                        "check what a launch binds to it, and makes no kernel it cannot check",
                        k->name, k->ctx->device.name, i);
  return TWIN_OK;
}

/* Creates the backend's kernel and reads its parameters and limits; on failure free_kernel
 * frees what was made. */
static twin_status create_kernel(twin_kernel *k, void *program) {
  twin__kernel_desc d = {NULL, 0, 0, 0};
  twin_status s = k->ctx->ops->kernel_create(k->ctx, program, k->name, &k->handle, &d);
  if (s != TWIN_OK)
    return s;
  k->params = d.params;
  k->nparams = d.nparams;
  k->group_limit = d.work_group_size;
  k->own_local = d.local_bytes;
  s = check_described(k);
  if (s != TWIN_OK)
    return s;
  size_t n = k->nparams ? (size_t)k->nparams : 1;
  k->types = twin__calloc(n, sizeof *k->types);
  k->state = twin__calloc(n, sizeof *k->state);
  if (!k->types || !k->state)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "twin_kernel_new: no memory for parameters");
  for (int i = 0; i < k->nparams; i++)
    k->types[i] = classify(&k->params[i]);
  return TWIN_OK;
}

twin_status twin_kernel_new(twin_program *prog, const char *name, twin_kernel **out) {
  static const char fn[] = "twin_kernel_new";
  if (!prog || !name || !out)
    return twin__fail(TWIN_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                      !prog   ? "prog"
                      : !name ? "name"
                              : "out");
  twin_kernel *k = kernel_object(twin__program_context(prog), name);
  if (!k)
    return twin__fail(TWIN_ERR_OUT_OF_HOST_MEMORY, "%s: no memory for a kernel", fn);
  twin_status s = create_kernel(k, twin__program_handle(prog));
  if (s != TWIN_OK) {
    free_kernel(k);
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
    twin__ref_get(&k->refs);
  return k;
}

void twin_kernel_unref(twin_kernel *k) {
  if (!k || !twin__ref_put(&k->refs))
    return;
  twin_context *ctx = k->ctx;
  twin_program *prog = k->program;
  free_kernel(k);
  twin_program_unref(prog);
  twin__context_release(ctx);
}

const char *twin_kernel_name(const twin_kernel *k) {
  return k ? k->name : NULL;
}

void *twin__kernel_handle(const twin_kernel *k) {
  return k ? k->handle : NULL;
}

/* ---- Argument values between launches ---- */

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
    const struct twin__arg_state *v = &k->state[i];
    values[i].same = v->valid && v->size == values[i].size && v->local == !values[i].value &&
                     (!values[i].value || same_bytes(v->bytes, values[i].value, v->size));
  }
}

/* With the kernel's lock held: remembers what was set (nothing is known after a failure). */
static void remember(twin_kernel *k, const twin__kvalue *values, int n, bool ok) {
  for (int i = 0; i < n; i++) {
    struct twin__arg_state *v = &k->state[i];
    v->valid = ok && values[i].size <= sizeof v->bytes;
    if (!v->valid || values[i].same)
      continue;
    v->size = values[i].size;
    v->local = !values[i].value;
    if (values[i].value)
      memcpy(v->bytes, values[i].value, v->size);
  }
}

twin_status twin__kernel_enqueue(twin_kernel *k, twin__kvalue *values, int nvalues, int work_dim,
                                 const size_t *global, const size_t *local, int *failed_value) {
  twin_context *ctx = k->ctx;
  pthread_mutex_lock(&k->lock);
  mark_same(k, values, nvalues);
  twin_status s = ctx->ops->kernel_enqueue(ctx, k->handle, values, nvalues, work_dim, global, local,
                                           failed_value);
  remember(k, values, nvalues, s == TWIN_OK);
  pthread_mutex_unlock(&k->lock);
  return s;
}

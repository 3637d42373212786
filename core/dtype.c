/* Element types. */
#include "ground.h"

/* The sizes are in ground.h (twin__item_size), inline for the array paths. */
static const char *const names[TWIN_DTYPE_COUNT] = {
    [TWIN_I8] = "i8",   [TWIN_U8] = "u8",   [TWIN_I16] = "i16", [TWIN_U16] = "u16",
    [TWIN_I32] = "i32", [TWIN_U32] = "u32", [TWIN_I64] = "i64", [TWIN_U64] = "u64",
    [TWIN_F32] = "f32", [TWIN_F64] = "f64",
};

size_t twin_dtype_size(twin_dtype dtype) {
  return twin__dtype_valid(dtype) ? twin__item_size(dtype) : 0;
}

const char *twin_dtype_name(twin_dtype dtype) {
  return twin__dtype_valid(dtype) ? names[dtype] : NULL;
}

/* Element types. */
#include "ground.h"

static const struct {
  const char *name;
  size_t size;
} dtypes[TWIN_DTYPE_COUNT] = {
    [TWIN_I8] = {"i8", 1},   [TWIN_U8] = {"u8", 1},   [TWIN_I16] = {"i16", 2},
    [TWIN_U16] = {"u16", 2}, [TWIN_I32] = {"i32", 4}, [TWIN_U32] = {"u32", 4},
    [TWIN_I64] = {"i64", 8}, [TWIN_U64] = {"u64", 8}, [TWIN_F32] = {"f32", 4},
    [TWIN_F64] = {"f64", 8},
};

bool twin__dtype_valid(twin_dtype dtype) {
  /* Compared as unsigned so a negative value from a cast is rejected too. */
  return (unsigned)dtype < TWIN_DTYPE_COUNT;
}

size_t twin_dtype_size(twin_dtype dtype) {
  return twin__dtype_valid(dtype) ? dtypes[dtype].size : 0;
}

const char *twin_dtype_name(twin_dtype dtype) {
  return twin__dtype_valid(dtype) ? dtypes[dtype].name : NULL;
}

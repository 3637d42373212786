/* twin_mpi_datatype: an MPI derived datatype for any view, relative to its element 0. */
#include <limits.h>
#include <stdlib.h>

#include "internal.h"

MPI_Datatype twin_mpi_element_type(twin_dtype dtype) {
  switch (dtype) {
  case TWIN_I8:
    return MPI_INT8_T;
  case TWIN_U8:
    return MPI_UINT8_T;
  case TWIN_I16:
    return MPI_INT16_T;
  case TWIN_U16:
    return MPI_UINT16_T;
  case TWIN_I32:
    return MPI_INT32_T;
  case TWIN_U32:
    return MPI_UINT32_T;
  case TWIN_I64:
    return MPI_INT64_T;
  case TWIN_U64:
    return MPI_UINT64_T;
  case TWIN_F32:
    return MPI_FLOAT;
  case TWIN_F64:
    return MPI_DOUBLE;
  }
  return MPI_DATATYPE_NULL;
}

/* Open MPI 4.1 packs an hvector of byte stride -1 wrongly (u8 a[::-1] comes out as a[0],
 * a[1], ... read past the view; over a wider inner type the blocks come out shifted), whatever
 * the type inside it; no other stride was seen to fail in 200000 random nested hvectors. Such
 * an axis is a list of displacements instead, which it packs right. */
static int reversed_bytes(size_t n, MPI_Datatype inner, MPI_Datatype *out) {
  MPI_Aint *d = malloc(n * sizeof *d);
  if (!d)
    return MPI_ERR_NO_MEM;
  for (size_t i = 0; i < n; i++)
    d[i] = -(MPI_Aint)i;
  int err = MPI_Type_create_hindexed_block((int)n, 1, d, inner, out);
  free(d);
  return err;
}

static int axis_type(size_t n, ptrdiff_t stride, MPI_Datatype inner, MPI_Datatype *out) {
  if (stride == -1)
    return reversed_bytes(n, inner, out);
  return MPI_Type_create_hvector((int)n, 1, (MPI_Aint)stride, inner, out);
}

/* From the innermost axis out: a run with the element's stride is one contiguous block, every
 * other axis an hvector of the type inside it with the axis's signed byte stride (the
 * hvector's first block sits at offset 0, so element 0 stays at offset 0). Sets *out only on
 * success, having freed what it made otherwise. */
static int build(const twin_mpi__layout *l, MPI_Datatype element, MPI_Datatype *out) {
  if (l->empty)
    return MPI_Type_contiguous(0, element, out);
  int k = l->n - 1, run = 1;
  if (k >= 0 && l->stride[k] == (ptrdiff_t)l->elem)
    run = (int)l->shape[k--];
  MPI_Datatype t;
  int err = MPI_Type_contiguous(run, element, &t);
  for (; k >= 0 && err == MPI_SUCCESS; k--) {
    MPI_Datatype inner = t;
    err = axis_type(l->shape[k], l->stride[k], inner, &t);
    MPI_Type_free(&inner);
  }
  if (err == MPI_SUCCESS)
    *out = t;
  return err;
}

twin_status twin_mpi_datatype(const twin_array *a, MPI_Datatype *out) {
  if (!a || !out)
    return twin_mpi__fail(TWIN_ERR_INVALID_ARGUMENT, "twin_mpi_datatype: %s is NULL",
                          a ? "out" : "a");
  twin_mpi__layout l;
  twin_mpi__layout_of(a, &l);
  for (int k = 0; k < l.n; k++)
    if (l.shape[k] > INT_MAX)
      return twin_mpi__fail(TWIN_ERR_OVERFLOW,
                            "twin_mpi_datatype: a: an axis of %zu elements after merging "
                            "exceeds MPI's int count (%d)",
                            l.shape[k], INT_MAX);
  MPI_Datatype t = MPI_DATATYPE_NULL;
  int err = build(&l, twin_mpi_element_type(twin_array_dtype(a)), &t);
  if (err == MPI_SUCCESS) {
    err = MPI_Type_commit(&t);
    if (err != MPI_SUCCESS)
      MPI_Type_free(&t);
  }
  if (err != MPI_SUCCESS)
    return twin_mpi__fail_mpi(err, "twin_mpi_datatype: building the type");
  *out = t;
  return TWIN_OK;
}

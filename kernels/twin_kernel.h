/* twin_kernel.h: helpers for OpenCL C kernels that take twin arrays as arguments.
 *
 * twin prepends this header to every program it builds (twin_program_new), so a kernel source
 * may use these macros without including it; including it as well is harmless. It is also
 * installed beside twin.h, for programs built by other means.
 *
 * How twin_kernel_launch binds its arguments, in order, to the kernel's parameters (offsets
 * and strides are in elements, index arithmetic is in long):
 *
 *   twin_arg_array(a, access)  ->  T *x, long x_offset                       (a is C-contiguous)
 *   twin_arg_view(a, access)   ->  T *x, long x_offset, long8 x_shape, long8 x_strides
 *   twin_arg_f32(v), ...       ->  one parameter of that type: float, int, ulong, ...
 *   twin_arg_local(bytes)      ->  __local T *scratch
 *
 * x is the start of the array's whole buffer on the device, so element 0 of the array is
 * x[x_offset]; element (i, j, ...) of a view is x[x_offset + i * x_strides.s0 + j * x_strides.s1
 * + ...]. Strides may be negative (a reversed view) or zero, and need not be in C order (a
 * transposed view). Axes beyond the view's last have shape 1 and stride 0.
 *
 * The pointer must be __global or __constant. An array passed with TWIN_READ must point to
 * const data (`__global const float *x`) and an array passed for writing must not, so that a
 * kernel cannot write an array behind the coherence layer's back. T is exactly the array's
 * element type, spelled as OpenCL C does:
 *
 *   i8 char (signed char)   i16 short    i32 int    i64 long    f32 float
 *   u8 uchar                u16 ushort   u32 uint   u64 ulong   f64 double
 *
 * (unsigned char, unsigned int, ... are the same types). Vectors (float4), half, bool, size_t,
 * structs and typedef names are refused even where their size would fit, since the kernel
 * would index the array in units of another size; a scalar binds only a parameter of exactly
 * its type as well. twin checks all of this against the kernel's own argument information,
 * and makes no kernel on a device that gives none. To process several elements at once, load
 * them with vload4(i, TWIN_PTR(x)) and store them with vstore4(v, i, TWIN_PTR(x)).
 *
 * Example:
 *
 *   __kernel void scale(TWIN_VIEW(__global const float, src), TWIN_VIEW(__global float, dst),
 *                       float factor) {
 *     long i = get_global_id(0), j = get_global_id(1);
 *     TWIN_AT2(dst, i, j) = factor * TWIN_AT2(src, i, j);
 *   }
 */
#ifndef TWIN_KERNEL_H
#define TWIN_KERNEL_H

/* Parameter declarations: TWIN_ARRAY(__global const float, x) declares `x` and `x_offset`;
 * TWIN_VIEW also `x_shape` and `x_strides`. */
#define TWIN_ARRAY(T, name) T *name, long name##_offset
#define TWIN_VIEW(T, name) T *name, long name##_offset, long8 name##_shape, long8 name##_strides

/* Element i of an array bound with twin_arg_array (contiguous), and a pointer to element 0. */
#define TWIN_AT(name, i) (name)[(name##_offset) + (long)(i)]
#define TWIN_PTR(name) ((name) + (name##_offset))

/* The length and the stride of axis k (a literal digit, 0..7) of a view. */
#define TWIN_DIM(name, k) (name##_shape.s##k)
#define TWIN_STRIDE(name, k) (name##_strides.s##k)

/* The buffer index of a view's element at (i), (i, j), (i, j, k) or (i, j, k, l). */
#define TWIN_INDEX1(name, i) ((name##_offset) + (long)(i) * name##_strides.s0)
#define TWIN_INDEX2(name, i, j) (TWIN_INDEX1(name, i) + (long)(j) * name##_strides.s1)
#define TWIN_INDEX3(name, i, j, k) (TWIN_INDEX2(name, i, j) + (long)(k) * name##_strides.s2)
#define TWIN_INDEX4(name, i, j, k, l) (TWIN_INDEX3(name, i, j, k) + (long)(l) * name##_strides.s3)

/* The element itself, to read or assign. */
#define TWIN_AT1(name, i) (name)[TWIN_INDEX1(name, i)]
#define TWIN_AT2(name, i, j) (name)[TWIN_INDEX2(name, i, j)]
#define TWIN_AT3(name, i, j, k) (name)[TWIN_INDEX3(name, i, j, k)]
#define TWIN_AT4(name, i, j, k, l) (name)[TWIN_INDEX4(name, i, j, k, l)]

#endif /* TWIN_KERNEL_H */

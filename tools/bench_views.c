/* View creation cost: no device work, one small host object per view. */
#include <stdio.h>

#include "bench.h"

/* Creating and dropping views: no device work, one small host object. */
void bench_views(twin_context *ctx) {
  size_t shape[] = {4096, 4096};
  twin_array *a, *v;
  bench_check(twin_array_new(ctx, TWIN_F32, 2, shape, &a), "twin_array_new");
  twin_slice col[] = {TWIN_ALL, {100, 101, 1}};
  double slice_ns, transpose_ns, create_ns, malloc_ns;
  TIME_NS(slice_ns, 7, 200000, {
    twin_array_slice(a, col, &v);
    twin_array_unref(v);
  });
  TIME_NS(transpose_ns, 7, 200000, {
    twin_array_transpose(a, NULL, &v);
    twin_array_unref(v);
  });
  size_t small[] = {16};
  TIME_NS(create_ns, 7, 100000, {
    twin_array_new(ctx, TWIN_F32, 1, small, &v);
    twin_array_unref(v);
  });
  /* The floor: one malloc+free of an object the size of a view. */
  void *(*volatile alloc)(size_t) = malloc; /* volatile: the compiler must not elide it */
  TIME_NS(malloc_ns, 7, 200000, free(alloc(192)));
  twin_array_unref(a);
  printf("\n## Views (host only; no device work)\n\n");
  printf("| operation | ns per op | x malloc+free |\n| --- | --- | --- |\n");
  printf("| slice a[:, 100] + unref | %.1f | %.2f |\n", slice_ns, slice_ns / malloc_ns);
  printf("| transpose + unref | %.1f | %.2f |\n", transpose_ns, transpose_ns / malloc_ns);
  printf("| array_new (16 f32, lazy) + unref | %.1f | %.2f |\n", create_ns, create_ns / malloc_ns);
  printf("| malloc(192) + free | %.1f | 1.00 |\n", malloc_ns);
}

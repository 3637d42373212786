#include "bench.h"
void bench_copy(twin_context *ctx) { (void)ctx; }

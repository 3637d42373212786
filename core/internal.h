/* Every private declaration of core, for the tests: the layered headers, bottom to top.
 * core/ and backends/ include only their own layer's header (scripts/check-layers.py checks
 * it): ground.h, then backends/backend.h and context.h, then storage.h, then objects.h. Never
 * installed. */
#ifndef TWIN_INTERNAL_H
#define TWIN_INTERNAL_H

#include "ground.h"
#include "context.h"
#include "../backends/backend.h"
#include "storage.h"
#include "objects.h"

#endif /* TWIN_INTERNAL_H */

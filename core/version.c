/* The library's version, from meson.build (the same version gives the SONAME). */
#include "ground.h"
#include "twin_config.h"

const char *twin_version(void) {
  return TWIN_VERSION;
}

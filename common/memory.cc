#include "common/memory.h"

#include <malloc.h>

#include <cstdlib>

namespace datashare {

void limit_malloc_arenas(int arenas) {
  if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
  mallopt(M_ARENA_MAX, arenas);
}

}  // namespace datashare

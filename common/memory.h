#pragma once
// Process-wide allocator settings for the long-running binaries (operator, sidecar, gateway).

namespace datashare {

// glibc gives each thread that allocates its own heap arena (up to 8 × cores), and an arena
// keeps the memory its thread freed. cpprestsdk's and Asio's pool threads each parse a few
// responses and then hold ~2 MiB apiece: for the informer benchmark (P8) that was more than the
// cache itself. Two arenas keep contention low for this project's few busy threads and the RSS
// close to what is in use. Call first thing in main(); the MALLOC_ARENA_MAX environment
// variable, when set, wins.
void limit_malloc_arenas(int arenas = 2);

}  // namespace datashare

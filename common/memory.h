#pragma once
// Process-wide allocator settings for the long-running binaries (operator, sidecar, gateway).

#include <cstddef>

namespace datashare {

// glibc gives each thread that allocates its own heap arena (up to 8 × cores), and an arena
// keeps the memory its thread freed. cpprestsdk's and Asio's pool threads each parse a few
// responses and then hold ~2 MiB apiece: for the informer benchmark (P8) that was more than the
// cache itself. Two arenas keep contention low for this project's few busy threads and the RSS
// close to what is in use. Call first thing in main(); the MALLOC_ARENA_MAX environment
// variable, when set, wins.
void limit_malloc_arenas(int arenas = 2);

// Unmaps from this process the pages of program code (the executable's and the libraries'
// read-only, executable file mappings) that are resident now, typically because start-up ran
// them: a page touched once is mapped with its neighbours (the kernel's fault-around, 64 KiB),
// and they stay counted in the RSS although an idle process never runs them again. The pages
// stay in the page cache; code that runs later is mapped again by a minor fault. Mappings
// holding private (copied-on-write) pages are left alone. Returns the bytes that were resident.
// Linux only; a no-op elsewhere or when /proc is not readable.
std::size_t release_code_pages();

}  // namespace datashare

#pragma once
// Process-wide allocator settings for the long-running binaries (operator, sidecar, gateway).

#include <cstddef>
#include <string>

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

// Hands the free memory of every malloc arena back to the kernel (glibc's malloc_trim): after a
// phase that allocated much and freed it (a replica's bootstrap: its staged table files and
// filter; a read index's build), glibc keeps the freed pages mapped, in the RSS, for allocations
// to come. Costs a pass over the arenas' free lists (milliseconds); call it after such a phase,
// not on a hot path. Returns whether any memory was released.
bool release_free_memory();

// The memory this process may use: the limit of its memory cgroup (v2 `memory.max`, v1
// `memory.limit_in_bytes`; in a Kubernetes pod, the container's `resources.limits.memory`), or
// the machine's physical memory (`MemTotal`) when there is no limit or it is larger. Each root is
// where the files are read from (tests point them at a directory of their own): `proc` holds
// `self/cgroup` and `meminfo`, `cgroup` the cgroup file system. The cgroup is looked up at the
// path /proc/self/cgroup names, then at the root of the mount (a container without a cgroup
// namespace sees its own cgroup there). Returns 0 when nothing is readable.
struct memory_roots {
  std::string proc = "/proc";
  std::string cgroup = "/sys/fs/cgroup";
};
std::size_t memory_limit(const memory_roots& roots = {});

}  // namespace datashare

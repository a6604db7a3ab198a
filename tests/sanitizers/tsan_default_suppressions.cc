// ThreadSanitizer suppressions compiled into the binaries that use RocksDB (TSan reads them
// through __tsan_default_suppressions, so they apply whatever TSAN_OPTIONS says). Each entry
// says why it is not a race of ours.
//
// race:rocksdb:: — Debian's librocksdb is not built with TSan. Its memtable is a lock-free skip
// list whose nodes are published with std::atomic release stores inside the uninstrumented
// library, so TSan sees the readers' memcmp of a key (in Get/iterators) but not the
// synchronisation that orders it after the writer's memcpy. Every report of this kind has RocksDB
// frames on both sides; our own code touches RocksDB only through store::kv.
extern "C" const char* __tsan_default_suppressions() {
  return "race:rocksdb::\n";
}

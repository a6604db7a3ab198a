#pragma once
// The reflector's cache (kube-rs `reflector::store`, client-go's Indexer): the objects of one
// kind as last seen, keyed by "namespace/name", with secondary indexes.

#include <functional>
#include <memory>
#include <memory_resource>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "operator/kube/client.h"
#include "operator/runtime/watcher.h"

namespace datashare::runtime {

using object_ptr = std::shared_ptr<const kube::json>;

// The values an object is indexed under (for example its namespace, or its owners' uids).
using index_func = std::function<std::vector<std::string>(const kube::json&)>;

// Built-in indexes.
inline constexpr const char* kNamespaceIndex = "namespace";
inline constexpr const char* kOwnerIndex = "owner-uid";  // metadata.ownerReferences[].uid

// What one write changed, for event handlers. old/now are null for adds/deletes.
struct store_change {
  object_ptr old;
  object_ptr now;
};

// One writer (the informer's thread), many readers on any thread.
//
// Objects are kept packed (MessagePack), not as parsed JSON trees: a parsed ConfigMap costs about
// three times its JSON size in nodes and small allocations, packed it costs less than its JSON
// (bench/operator, P8). Readers get a freshly unpacked, immutable copy (shared_ptr<const json>)
// that stays valid while the cache moves on; unpacking a typical object takes microseconds,
// which is small beside a reconcile.
class store {
 public:
  store();

  // Before the first write only.
  void add_index(const std::string& name, index_func f);

  object_ptr get(const std::string& key) const;
  std::vector<object_ptr> list() const;
  std::vector<object_ptr> by_index(const std::string& index, const std::string& value) const;
  // Without unpacking anything (a reader that keeps its own parsed copies checks them against
  // the resourceVersion): "" when the key is not stored.
  std::string resource_version(const std::string& key) const;
  std::vector<std::string> keys() const;
  std::vector<std::string> keys_by_index(const std::string& index, const std::string& value) const;
  size_t size() const;
  // True once the first full list has been stored.
  bool has_synced() const;

  // Writer side: applies a watcher event and tells `on_change` (when set) what changed, one
  // object at a time: a full list can change every object at init_done, and materialising
  // them all at once would cost several times the cache itself. Objects are stored as given:
  // transform them before.
  void apply(watcher_event&& event, const std::function<void(const store_change&)>& on_change = {});

 private:
  struct entry {
    std::pmr::vector<uint8_t> packed;
    std::pmr::string resource_version;
  };
  using entry_map = std::pmr::unordered_map<std::string, entry>;
  entry pack(const kube::json& object);
  static object_ptr unpack(const entry& e);
  void index_locked(const std::string& key, const kube::json& object, bool add);

  mutable std::shared_mutex mu_;
  // The cached objects live in pools of their own, apart from the short-lived allocations of
  // parsing list pages and events: mixed in one heap, those leave the heap fragmented and the
  // RSS far above what the cache holds. Allocated and freed by the writer only (see apply()).
  std::pmr::unsynchronized_pool_resource pool_{std::pmr::pool_options{0, 8192}};
  entry_map objects_{&pool_};
  std::unordered_map<std::string, index_func> index_funcs_;
  // index name → value → keys
  std::unordered_map<std::string, std::unordered_map<std::string, std::unordered_set<std::string>>> indexes_;
  bool synced_ = false;
  // A list in progress, built aside and swapped in at init_done (writer thread only).
  entry_map building_{&pool_};
};

// The default transform: drops metadata.managedFields, which only the server needs and which is
// often larger than the rest of the object.
void strip_managed_fields(kube::json& object);

}  // namespace datashare::runtime

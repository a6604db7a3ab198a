#pragma once
// The reflector's cache (kube-rs `reflector::store`, client-go's Indexer): the objects of one
// kind as last seen, keyed by "namespace/name", with secondary indexes.

#include <functional>
#include <memory>
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

// One writer (the informer's thread), many readers on any thread. Objects are immutable once
// stored (shared_ptr<const json>), so readers keep what they got while the cache moves on.
class store {
 public:
  store();

  // Before the first write only.
  void add_index(const std::string& name, index_func f);

  object_ptr get(const std::string& key) const;
  std::vector<object_ptr> list() const;
  std::vector<object_ptr> by_index(const std::string& index, const std::string& value) const;
  size_t size() const;
  // True once the first full list has been stored.
  bool has_synced() const;

  // Writer side: applies a watcher event and returns what changed (a full list can change many
  // objects at once, at init_done). Objects are stored as given: transform them before.
  std::vector<store_change> apply(watcher_event&& event);

 private:
  void index_locked(const std::string& key, const kube::json& object, bool add);

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, object_ptr> objects_;
  std::unordered_map<std::string, index_func> index_funcs_;
  // index name → value → keys
  std::unordered_map<std::string, std::unordered_map<std::string, std::unordered_set<std::string>>> indexes_;
  bool synced_ = false;
  // A list in progress, built aside and swapped in at init_done (writer thread only).
  std::unordered_map<std::string, object_ptr> building_;
};

// The default transform: drops metadata.managedFields, which only the server needs and which is
// often larger than the rest of the object.
void strip_managed_fields(kube::json& object);

}  // namespace datashare::runtime

#include "operator/runtime/store.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include "operator/kube/json_access.h"

namespace datashare::runtime {
namespace {

std::vector<std::string> namespace_values(const kube::json& o) {
  std::string ns = kube::namespace_of(o);
  if (ns.empty()) return {};
  return {ns};
}

std::vector<std::string> owner_values(const kube::json& o) {
  std::vector<std::string> out;
  auto m = o.find("metadata");
  if (m == o.end() || !m->is_object()) return out;
  auto refs = m->find("ownerReferences");
  if (refs == m->end() || !refs->is_array()) return out;
  for (const auto& r : *refs) {
    if (r.is_object() && r.contains("uid") && r["uid"].is_string()) out.push_back(r["uid"].get<std::string>());
  }
  return out;
}

std::string resource_version_of(const kube::json& o) {
  auto m = o.find("metadata");
  if (m == o.end() || !m->is_object()) return {};
  return kube::string_member(*m, "resourceVersion");
}

}  // namespace

void strip_managed_fields(kube::json& object) {
  if (auto m = object.find("metadata"); m != object.end() && m->is_object()) m->erase("managedFields");
}

store::store() {
  index_funcs_[kNamespaceIndex] = namespace_values;
  index_funcs_[kOwnerIndex] = owner_values;
}

void store::add_index(const std::string& name, index_func f) {
  std::unique_lock lock(mu_);
  index_funcs_[name] = std::move(f);
}

store::entry store::pack(const kube::json& object) {
  thread_local std::vector<uint8_t> scratch;
  scratch.clear();
  kube::json::to_msgpack(object, scratch);
  entry e{std::pmr::vector<uint8_t>(scratch.begin(), scratch.end(), &pool_),
          std::pmr::string(resource_version_of(object), &pool_)};
  return e;
}

object_ptr store::unpack(const entry& e) {
  return std::make_shared<const kube::json>(kube::json::from_msgpack(e.packed));
}

object_ptr store::get(const std::string& key) const {
  std::shared_lock lock(mu_);
  auto it = objects_.find(key);
  return it == objects_.end() ? nullptr : unpack(it->second);
}

std::vector<object_ptr> store::list() const {
  std::shared_lock lock(mu_);
  std::vector<object_ptr> out;
  out.reserve(objects_.size());
  for (const auto& [k, v] : objects_) out.push_back(unpack(v));
  return out;
}

std::vector<object_ptr> store::by_index(const std::string& index, const std::string& value) const {
  std::shared_lock lock(mu_);
  std::vector<object_ptr> out;
  auto idx = indexes_.find(index);
  if (idx == indexes_.end()) return out;
  auto keys = idx->second.find(value);
  if (keys == idx->second.end()) return out;
  for (const auto& k : keys->second) {
    if (auto it = objects_.find(k); it != objects_.end()) out.push_back(unpack(it->second));
  }
  return out;
}

std::string store::resource_version(const std::string& key) const {
  std::shared_lock lock(mu_);
  auto it = objects_.find(key);
  return it == objects_.end() ? std::string() : std::string(it->second.resource_version);
}

std::vector<std::string> store::keys() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  out.reserve(objects_.size());
  for (const auto& [k, v] : objects_) out.push_back(k);
  return out;
}

std::vector<std::string> store::keys_by_index(const std::string& index, const std::string& value) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  auto idx = indexes_.find(index);
  if (idx == indexes_.end()) return out;
  auto keys = idx->second.find(value);
  if (keys == idx->second.end()) return out;
  for (const auto& k : keys->second)
    if (objects_.count(k) != 0) out.push_back(k);
  return out;
}

size_t store::size() const {
  std::shared_lock lock(mu_);
  return objects_.size();
}

bool store::has_synced() const {
  std::shared_lock lock(mu_);
  return synced_;
}

void store::index_locked(const std::string& key, const kube::json& object, bool add) {
  for (const auto& [name, f] : index_funcs_) {
    auto& index = indexes_[name];
    for (const auto& value : f(object)) {
      if (add) {
        index[value].insert(key);
      } else if (auto it = index.find(value); it != index.end()) {
        it->second.erase(key);
        if (it->second.empty()) index.erase(it);
      }
    }
  }
}

void store::apply(watcher_event&& event, const std::function<void(const store_change&)>& on_change) {
  switch (event.type) {
    case watcher_event_type::init_begin:
      building_.clear();
      return;
    case watcher_event_type::init_apply: {
      std::string key = kube::object_key(event.object);
      building_[key] = pack(event.object);
      return;
    }
    case watcher_event_type::init_done: {
      // Swap the new list in whole, then report what differs from the old view (client-go's
      // Replace: objects missing from the list were deleted while we were not watching).
      {
        std::unique_lock lock(mu_);
        objects_.swap(building_);
        indexes_.clear();
        for (const auto& [key, e] : objects_) index_locked(key, *unpack(e), true);
        synced_ = true;
      }
      const entry_map& old_view = building_;  // the writer alone mutates: reading needs no lock
      if (on_change) {
        // In key order, as the server lists them (the maps' order is a hash's): a controller
        // then meets the objects of one namespace, and names that sort together (the policies
        // of one product, say), together, and its status writes for a group coalesce.
        std::vector<const std::string*> keys;
        keys.reserve(objects_.size() + old_view.size());
        for (const auto& [key, old] : old_view)
          if (!objects_.contains(key)) keys.push_back(&key);
        for (const auto& [key, now] : objects_) keys.push_back(&key);
        std::sort(keys.begin(), keys.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
        for (const std::string* key : keys) {
          auto was = old_view.find(*key);
          auto it = objects_.find(*key);
          if (it == objects_.end()) {
            on_change({unpack(was->second), nullptr});
          } else if (was == old_view.end()) {
            on_change({nullptr, unpack(it->second)});
          } else if (was->second.resource_version != it->second.resource_version) {
            on_change({unpack(was->second), unpack(it->second)});
          }
        }
      }
      building_.clear();
      return;
    }
    case watcher_event_type::apply: {
      std::string key = kube::object_key(event.object);
      auto now = std::make_shared<const kube::json>(std::move(event.object));
      object_ptr old;
      {
        std::unique_lock lock(mu_);
        entry packed = pack(*now);
        if (auto it = objects_.find(key); it != objects_.end()) {
          old = unpack(it->second);
          index_locked(key, *old, false);
        }
        objects_[key] = std::move(packed);
        index_locked(key, *now, true);
      }
      if (on_change) on_change({old, now});
      return;
    }
    case watcher_event_type::remove: {
      std::string key = kube::object_key(event.object);
      object_ptr old;
      {
        std::unique_lock lock(mu_);
        if (auto it = objects_.find(key); it != objects_.end()) {
          old = unpack(it->second);
          index_locked(key, *old, false);
          objects_.erase(it);
        }
      }
      // Deleted before we ever saw it: the event's own copy is the last state.
      if (!old) old = std::make_shared<const kube::json>(std::move(event.object));
      if (on_change) on_change({old, nullptr});
      return;
    }
  }
}

}  // namespace datashare::runtime

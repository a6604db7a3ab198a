#pragma once
// Finalizer helpers: what a controller checks and writes to keep an object from being deleted
// until it has cleaned up after it.
//
// Writes are JSON merge patches (client::merge_patch) rather than server-side apply, so they do
// not depend on which field manager owns the rest of the object. metadata.finalizers is a list,
// and a merge patch replaces a list whole: a patch computed from a stale copy would drop a
// finalizer another controller added meanwhile. So every patch carries the object's
// metadata.resourceVersion, which the API server checks like an update's: if the object changed
// since it was read, the patch fails with errc::conflict and the caller re-reads and tries again
// (the usual reconcile retry). The patches are computed, not sent, so they are testable alone:
//
//   if (auto patch = add_finalizer(object, kFinalizer)) client.merge_patch(kind, ns, name, *patch);

#include <optional>
#include <string_view>

#include "operator/kube/client.h"

namespace datashare::runtime {

bool has_finalizer(const kube::json& object, std::string_view finalizer);

// metadata.deletionTimestamp is set: the object is waiting for its finalizers to be removed.
bool is_being_deleted(const kube::json& object);

// The merge patch that adds `finalizer` (appended, keeping the others in order), guarded by the
// object's resourceVersion; nullopt when the object already has it. An object without a
// resourceVersion (never stored) gets an unguarded patch.
std::optional<kube::json> add_finalizer(const kube::json& object, std::string_view finalizer);

// The merge patch that removes `finalizer`, guarded the same way; nullopt when it is not there.
// When it was the last one the list is removed (null), which the API server stores as no
// finalizers and, for an object being deleted, lets the deletion complete.
std::optional<kube::json> remove_finalizer(const kube::json& object, std::string_view finalizer);

}  // namespace datashare::runtime

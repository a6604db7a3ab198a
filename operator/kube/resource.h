#pragma once
// Which REST collection an object lives in: group, version, plural and scope. The client works
// on any resource (core or CRD) through these, with objects as JSON.

#include <string>

namespace datashare::kube {

struct resource_kind {
  std::string group;    // "" for the core group
  std::string version;  // "v1"
  std::string plural;   // "configmaps"
  std::string kind;     // "ConfigMap"
  bool namespaced = true;

  std::string api_version() const { return group.empty() ? version : group + "/" + version; }

  // "/api/v1/namespaces/<ns>/configmaps"; for a namespaced kind an empty namespace means all
  // namespaces ("/api/v1/configmaps").
  std::string collection_path(const std::string& ns) const;
  // collection_path(ns) + "/" + name (name escaped).
  std::string object_path(const std::string& ns, const std::string& name) const;
  // "configmaps" or "leases.coordination.k8s.io", as kubectl and RBAC name it.
  std::string qualified_name() const { return group.empty() ? plural : plural + "." + group; }
};

// Kinds the runtime itself uses.
namespace resources {
extern const resource_kind config_maps;
extern const resource_kind secrets;
extern const resource_kind namespaces;
extern const resource_kind leases;
extern const resource_kind events;
extern const resource_kind deployments;
extern const resource_kind services;
extern const resource_kind custom_resource_definitions;
}  // namespace resources

// Percent-encodes a path segment or query value (RFC 3986 unreserved characters pass).
std::string url_escape(const std::string& s);

}  // namespace datashare::kube

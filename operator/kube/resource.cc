#include "operator/kube/resource.h"

namespace datashare::kube {

std::string url_escape(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string resource_kind::collection_path(const std::string& ns) const {
  std::string path = group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  if (namespaced && !ns.empty()) path += "/namespaces/" + url_escape(ns);
  return path + "/" + plural;
}

std::string resource_kind::object_path(const std::string& ns, const std::string& name) const {
  return collection_path(ns) + "/" + url_escape(name);
}

namespace resources {
const resource_kind config_maps{"", "v1", "configmaps", "ConfigMap", true};
const resource_kind secrets{"", "v1", "secrets", "Secret", true};
const resource_kind namespaces{"", "v1", "namespaces", "Namespace", false};
const resource_kind leases{"coordination.k8s.io", "v1", "leases", "Lease", true};
const resource_kind events{"events.k8s.io", "v1", "events", "Event", true};
const resource_kind deployments{"apps", "v1", "deployments", "Deployment", true};
const resource_kind services{"", "v1", "services", "Service", true};
const resource_kind custom_resource_definitions{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                                "CustomResourceDefinition", false};
}  // namespace resources

}  // namespace datashare::kube

#pragma once
// Where the operator finds its API server and credentials, as client-go does:
//   --kubeconfig flag → $KUBECONFIG (a ':'-separated list, merged) → in-cluster service
//   account → ~/.kube/config.
// Everything is resolved into a rest_config: plain data, no I/O left except re-reading a
// rotating bearer token file. Errors name the file and the field.

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace datashare::kube {

// The config could not be loaded. what() is "<source>: <field>: <problem>".
class config_error : public std::runtime_error {
 public:
  config_error(std::string source, std::string field, const std::string& problem);
  const std::string& source() const { return source_; }
  const std::string& field() const { return field_; }

 private:
  std::string source_;
  std::string field_;
};

struct tls_config {
  std::string ca_pem;           // empty: the system trust store
  std::string client_cert_pem;  // empty: no client certificate
  std::string client_key_pem;
  bool insecure_skip_verify = false;
  std::string server_name;  // SNI / verification name override (tls-server-name)
};

struct rest_config {
  std::string server;  // "https://host:port" (no trailing slash)
  tls_config tls;
  std::string bearer_token;       // static token, or the last one read from bearer_token_file
  std::string bearer_token_file;  // re-read when it changes (service-account tokens rotate)
  std::string username;           // basic auth, rarely used
  std::string password;
  std::string default_namespace = "default";
  std::string source;  // where this came from, for messages ("kubeconfig /path (context x)")
};

// Reads a kubeconfig file (or several, merged with client-go's rule: the first file to define a
// name or current-context wins). `context` overrides current-context.
rest_config load_kubeconfig(const std::vector<std::string>& paths, const std::optional<std::string>& context = {});

// Parses kubeconfig text; relative file references resolve against `base_dir`.
rest_config parse_kubeconfig(const std::string& yaml_text, const std::string& source, const std::string& base_dir,
                             const std::optional<std::string>& context = {});

// Service-account credentials mounted into a pod. `sa_dir` holds token, ca.crt and namespace.
rest_config in_cluster_config(const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// The environment the resolution reads; injectable for tests.
struct config_environment {
  std::function<std::optional<std::string>(const std::string&)> getenv;
  std::function<bool(const std::string&)> file_exists;
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
};
config_environment process_environment();

// The client-go resolution order. `kubeconfig_flag` is the --kubeconfig value, if given.
rest_config resolve_config(const std::optional<std::string>& kubeconfig_flag,
                           const std::optional<std::string>& context = {},
                           const config_environment& env = process_environment());

}  // namespace datashare::kube

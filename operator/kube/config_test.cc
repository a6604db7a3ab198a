#include "operator/kube/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "common/base64.h"

namespace datashare::kube {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kubeconfig-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  // What load_kubeconfig says about a malformed file.
  std::string error_of(const std::string& text) {
    auto path = write("bad.yaml", text);
    try {
      load_kubeconfig({path});
    } catch (const config_error& e) {
      EXPECT_THAT(e.what(), HasSubstr(path)) << "the message must name the file";
      return e.what();
    }
    ADD_FAILURE() << "expected a config_error for:\n" << text;
    return {};
  }

  fs::path dir_;
};

constexpr const char* kInline = R"(apiVersion: v1
kind: Config
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: Q0EtUEVN
users:
- name: u1
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: u2
  user:
    token: abc
contexts:
- name: one
  context: {cluster: c1, user: u1, namespace: team-a}
- name: two
  context: {cluster: c1, user: u2}
current-context: one
)";

TEST_F(KubeconfigTest, ReadsInlineDataOfTheCurrentContext) {
  rest_config cfg = load_kubeconfig({write("config", kInline)});
  EXPECT_EQ(cfg.server, "https://127.0.0.1:6443");  // trailing slash removed
  EXPECT_EQ(cfg.tls.ca_pem, "CA-PEM");
  EXPECT_EQ(cfg.tls.client_cert_pem, "CERT");
  EXPECT_EQ(cfg.tls.client_key_pem, "KEY");
  EXPECT_EQ(cfg.default_namespace, "team-a");
  EXPECT_TRUE(cfg.bearer_token.empty());
}

TEST_F(KubeconfigTest, AnExplicitContextOverridesCurrentContext) {
  rest_config cfg = load_kubeconfig({write("config", kInline)}, std::string("two"));
  EXPECT_EQ(cfg.bearer_token, "abc");
  EXPECT_TRUE(cfg.tls.client_cert_pem.empty());
  EXPECT_EQ(cfg.default_namespace, "default");
}

TEST_F(KubeconfigTest, ResolvesRelativeFilesAgainstTheKubeconfigDirectory) {
  write("ca.crt", "CA-FROM-FILE");
  write("tls.crt", "CERT-FROM-FILE");
  write("tls.key", "KEY-FROM-FILE");
  write("token", "tok-from-file\n");
  auto path = write("config", R"(
clusters: [{name: c, cluster: {server: "https://k:443", certificate-authority: ca.crt}}]
users:
- {name: cert, user: {client-certificate: tls.crt, client-key: tls.key}}
- {name: tok, user: {tokenFile: token}}
contexts: [{name: a, context: {cluster: c, user: cert}}, {name: b, context: {cluster: c, user: tok}}]
current-context: a
)");
  rest_config a = load_kubeconfig({path});
  EXPECT_EQ(a.tls.ca_pem, "CA-FROM-FILE");
  EXPECT_EQ(a.tls.client_cert_pem, "CERT-FROM-FILE");
  EXPECT_EQ(a.tls.client_key_pem, "KEY-FROM-FILE");
  rest_config b = load_kubeconfig({path}, std::string("b"));
  EXPECT_EQ(b.bearer_token, "tok-from-file");
  EXPECT_EQ(b.bearer_token_file, (dir_ / "token").string());
}

TEST_F(KubeconfigTest, InsecureSkipVerify) {
  auto path = write("config", R"(
clusters: [{name: c, cluster: {server: "https://k:443", insecure-skip-tls-verify: true}}]
contexts: [{name: a, context: {cluster: c}}]
current-context: a
)");
  EXPECT_TRUE(load_kubeconfig({path}).tls.insecure_skip_verify);
}

TEST_F(KubeconfigTest, MergesSeveralFilesFirstDefinitionWins) {
  auto first = write("first", R"(
clusters: [{name: c, cluster: {server: "https://first:1"}}]
contexts: [{name: a, context: {cluster: c}}]
current-context: a
)");
  auto second = write("second", R"(
clusters: [{name: c, cluster: {server: "https://second:2"}}, {name: d, cluster: {server: "https://d:3"}}]
contexts: [{name: b, context: {cluster: d}}]
current-context: b
)");
  EXPECT_EQ(load_kubeconfig({first, second}).server, "https://first:1");
  EXPECT_EQ(load_kubeconfig({first, second}, std::string("b")).server, "https://d:3");
}

TEST_F(KubeconfigTest, MalformedFilesNameTheFieldAtFault) {
  EXPECT_THAT(error_of("clusters: [\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(error_of("- a\n- b\n"), HasSubstr("must be a mapping"));
  EXPECT_THAT(error_of("kind: Pod\n"), HasSubstr("kind: must be Config"));
  EXPECT_THAT(error_of("clusters: {}\n"), HasSubstr("clusters: must be a list"));
  EXPECT_THAT(error_of("clusters: [{cluster: {server: https://x}}]\n"), HasSubstr("clusters[0].name: is required"));
  EXPECT_THAT(error_of("contexts: [{name: a, context: {cluster: c}}]\n"), HasSubstr("current-context: not set"));
  EXPECT_THAT(error_of("contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: zz\n"),
              HasSubstr("context \"zz\" not found"));
  EXPECT_THAT(error_of("contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"),
              HasSubstr("contexts[0].context.cluster: cluster \"c\" not found"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {}}]\ncontexts: [{name: a, context: {cluster: c}}]\n"
                       "current-context: a\n"),
              HasSubstr("clusters[0].cluster.server: is required"));
  EXPECT_THAT(
      error_of("clusters: [{name: c, cluster: {server: ftp://x}}]\ncontexts: [{name: a, context: {cluster: c}}]\n"
               "current-context: a\n"),
      HasSubstr("clusters[0].cluster.server: must start with https://"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x, certificate-authority-data: '!!'}}]\n"
                       "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"),
              HasSubstr("clusters[0].cluster.certificate-authority-data: not valid base64"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x, certificate-authority: /nonexistent/ca}}]\n"
                       "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"),
              HasSubstr("clusters[0].cluster.certificate-authority: cannot read file /nonexistent/ca"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x, insecure-skip-tls-verify: maybe}}]\n"
                       "contexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n"),
              HasSubstr("insecure-skip-tls-verify: must be true or false"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x}}]\n"
                       "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n"
                       "contexts: [{name: a, context: {cluster: c, user: u}}]\ncurrent-context: a\n"),
              HasSubstr("users[0].user.client-key: a client certificate needs both"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x}}]\n"
                       "contexts: [{name: a, context: {cluster: c, user: nobody}}]\ncurrent-context: a\n"),
              HasSubstr("user \"nobody\" not found"));
  EXPECT_THAT(error_of("clusters: [{name: c, cluster: {server: https://x}}]\n"
                       "users: [{name: u, user: {exec: {command: aws}}}]\n"
                       "contexts: [{name: a, context: {cluster: c, user: u}}]\ncurrent-context: a\n"),
              HasSubstr("users[0].user.exec: credential plugins are not supported"));
}

TEST_F(KubeconfigTest, AMissingFileIsNamed) {
  try {
    load_kubeconfig({(dir_ / "absent").string()});
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("absent: cannot read file"));
  }
}

// resolve_config follows client-go: flag, then KUBECONFIG, then in-cluster, then ~/.kube/config.
class ResolveConfigTest : public KubeconfigTest {
 protected:
  config_environment env() {
    config_environment e;
    e.getenv = [this](const std::string& k) -> std::optional<std::string> {
      auto it = vars_.find(k);
      if (it == vars_.end()) return std::nullopt;
      return it->second;
    };
    e.file_exists = [](const std::string& p) { return fs::exists(p); };
    e.service_account_dir = (dir_ / "sa").string();
    return e;
  }
  std::string config_for(const std::string& server) {
    return "clusters: [{name: c, cluster: {server: \"" + server +
           "\"}}]\ncontexts: [{name: a, context: {cluster: c}}]\ncurrent-context: a\n";
  }
  std::map<std::string, std::string> vars_;
};

TEST_F(ResolveConfigTest, FlagWinsOverEverything) {
  auto flag = write("flag", config_for("https://flag:1"));
  vars_["KUBECONFIG"] = write("env", config_for("https://env:1"));
  EXPECT_EQ(resolve_config(flag, {}, env()).server, "https://flag:1");
}

TEST_F(ResolveConfigTest, KubeconfigListSkipsMissingEntries) {
  auto present = write("env", config_for("https://env:1"));
  vars_["KUBECONFIG"] = (dir_ / "missing").string() + ":" + present;
  EXPECT_EQ(resolve_config({}, {}, env()).server, "https://env:1");
  vars_["KUBECONFIG"] = (dir_ / "missing").string();
  EXPECT_THROW(resolve_config({}, {}, env()), config_error);
}

TEST_F(ResolveConfigTest, FallsBackToHomeKubeConfig) {
  fs::create_directories(dir_ / "home/.kube");
  write("home/.kube/config", config_for("https://home:1"));
  vars_["HOME"] = (dir_ / "home").string();
  EXPECT_EQ(resolve_config({}, {}, env()).server, "https://home:1");
}

TEST_F(ResolveConfigTest, NothingFoundSaysWhatToDo) {
  vars_["HOME"] = (dir_ / "nohome").string();
  try {
    resolve_config({}, {}, env());
    FAIL() << "expected config_error";
  } catch (const config_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("pass --kubeconfig"));
  }
}

}  // namespace
}  // namespace datashare::kube

// Bad input never crashes the sidecar nor touches the stored data: malformed config files are
// refused with every problem and its path; malformed HTTP gets a 4xx; poison events go to the
// dead-letter topic with their reason and the stream goes on.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sidecar/integration/harness.h"

namespace datashare::sidecar::itest {
namespace {

TEST(SidecarBadInputTest, MalformedConfigFilesAreRefusedWithEveryProblem) {
  const scoped_dir tmp("badconfig");
  struct bad_file {
    std::string text;
    std::vector<std::string> expected;  // lines the error output must hold
  };
  std::vector<bad_file> files = {
      {"", {"(file): the file must be a YAML mapping"}},
      {"version: 1\nkafka: [", {"(file): not valid YAML at line"}},
      {"version: 7\nparticipate: [{product: p}]\n", {"version: unsupported schema version 7"}},
      {"version: 1\ndataDir: /d\nkafka: {bootstrapServers: k}\nlisten: {data: {address: 0.0.0.0, port: 8090}}\n"
       "subscribe:\n  - policy: p\n    namespace: n\n    product: " +
           products_yaml() +
           "\n    topic: t\n    group: g\n    mode: event\n    fields: [id, ratng, supplierEmail]\n    maxLag: later\n",
       {"listen.data.address: the data API binds to loopback only",
        "subscribe[0].fields[1]: unknown field \"ratng\" (product fields: id, name, price, supplierEmail)",
        "subscribe[0].fields[2]: field \"supplierEmail\" is restricted", "subscribe[0].maxLag: not a duration"}},
  };
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::string path = tmp.path() + "/bad" + std::to_string(i) + ".yaml";
    std::ofstream(path) << files[i].text;
    auto r = run_command(sidecar_binary() + " --config " + path + " 2>&1");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    for (const auto& line : files[i].expected)
      EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
  auto missing = run_command(sidecar_binary() + " --config " + tmp.path() + "/nope.yaml 2>&1");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("cannot read config file"), std::string::npos);
  auto usage = run_command(sidecar_binary() + " --bogus 2>&1");
  EXPECT_EQ(usage.exit_code, 2);
}

TEST(SidecarBadInputTest, PoisonEventsAndMalformedRequestsLeaveTheDataAlone) {
  const std::string kafka = bootstrap();
  const std::string topic = unique_name("itest.poison.products");
  create_topic(kafka, topic, 1);
  const scoped_dir tmp("poison");
  const std::uint16_t port = free_port();
  sidecar_process sidecar(tmp.path(), "version: 1\nkafka: {bootstrapServers: \"" + kafka +
                                          "\"}\nlisten: {data: {address: 127.0.0.1, port: " + std::to_string(port) +
                                          "}}\nsubscribe:\n  - policy: poison\n    namespace: orders\n    product: " +
                                          products_yaml() + "\n    topic: " + topic + "\n    group: " + topic +
                                          ".g\n    mode: event\n    fields: [id, name, price]\n    store: memory\n"
                                          "    maxEventBytes: 1024\n");
  sidecar.start();
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/readyz").status == 200; }, std::chrono::seconds(60)))
      << sidecar.log();
  auto kcat = [&](const std::string& key_and_value, const std::string& headers, bool keyed = true) {
    std::string cmd = "printf '%s' '" + key_and_value + "' | kcat -P -b " + kafka + " -t " + topic +
                      (keyed ? " -K '|'" : "") + " " + headers + " 2>&1";
    auto r = run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  };
  kcat(R"(keep|{"id":"keep","name":"Kept","price":1})", "-H datashare_version=5");
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/keep").status == 200; },
                         std::chrono::seconds(30)));
  const std::string kept = http_call(port, "GET", "/v1/data/products/keep").body;

  kcat("keep|this is not json", "-H datashare_version=6");
  kcat(R"(keep|{"id":"keep","name":"no version"})", "");
  kcat(R"(keep|{"id":"keep","price":"free"})", "-H datashare_version=7");
  kcat(R"({"id":"nokey"})", "-H datashare_version=1", /*keyed=*/false);
  kcat("keep|{\"name\":\"" + std::string(2000, 'x') + "\"}", "-H datashare_version=8");
  kcat(R"(after|{"id":"after","name":"After"})", "-H datashare_version=1");
  ASSERT_TRUE(wait_until([&] { return http_call(port, "GET", "/v1/data/products/after").status == 200; },
                         std::chrono::seconds(30)))
      << sidecar.log();
  EXPECT_EQ(http_call(port, "GET", "/v1/data/products/keep").body, kept);
  auto status = nlohmann::json::parse(http_call(port, "GET", "/readyz").body);
  EXPECT_EQ(status["replicas"][0]["dlqTotal"], 5) << status.dump();
  EXPECT_NE(http_call(port, "GET", "/metrics")
                .body.find("datashare_replica_dlq_total{policy=\"poison\",product=\"products\"} 5"),
            std::string::npos);

  command_result dlq;
  ASSERT_TRUE(wait_until(
      [&] {
        dlq = run_command("kcat -C -b " + kafka + " -t " + topic + ".dlq -o beginning -e -q -J 2>&1");
        return std::count(dlq.output.begin(), dlq.output.end(), '\n') >= 5;
      },
      std::chrono::seconds(30)))
      << dlq.output;
  for (const char* reason : {"value is not JSON", "missing datashare_version header",
                             "field \\\"price\\\": expected number, got string", "key missing", "oversized: "}) {
    EXPECT_NE(dlq.output.find(reason), std::string::npos) << reason << "\n" << dlq.output;
  }
  EXPECT_NE(dlq.output.find("datashare_dlq_reason"), std::string::npos);

  // Malformed HTTP: each answered with a 4xx on its own connection, the sidecar stays up.
  namespace net = boost::asio;
  for (const std::string& bytes :
       {std::string("NOT HTTP AT ALL\r\n\r\n"), std::string("GET /v1/data/products/%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET /v1/data/products?limit=-3 HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET / HTTP/1.1\r\nX: ") + std::string(40000, 'a') + "\r\n\r\n",
        std::string("PUT /v1/data/products/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"a\":")}) {
    net::io_context ioc;
    net::ip::tcp::socket s(ioc);
    s.connect({net::ip::make_address("127.0.0.1"), port});
    net::write(s, net::buffer(bytes));
    char buf[512] = {};
    boost::system::error_code ec;
    std::size_t n = s.read_some(net::buffer(buf), ec);
    std::string answer(buf, n);
    EXPECT_EQ(answer.rfind("HTTP/1.1 4", 0), 0u) << bytes.substr(0, 40) << " → " << answer;
  }
  EXPECT_TRUE(sidecar.running());
  EXPECT_EQ(http_call(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(http_call(port, "GET", "/v1/data/products/keep").body, kept);
  sidecar.kill(SIGTERM);
  EXPECT_EQ(sidecar.wait(), 0) << sidecar.log();
}

}  // namespace
}  // namespace datashare::sidecar::itest

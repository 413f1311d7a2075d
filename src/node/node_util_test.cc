#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "node/data_dir.h"
#include "node/machine.h"

using namespace shoal;
using namespace shoal::node;

namespace {
std::string temp_dir() {
  char tmpl[] = "/tmp/shoal-node-test-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}
}  // namespace

TEST_CASE("node id is created once and kept") {
  std::string dir = temp_dir() + "/a/b";
  REQUIRE(prepare_data_dir(dir).ok());
  auto id = load_or_create_node_id(dir);
  REQUIRE(id.ok());
  CHECK(is_valid_node_id(*id));
  auto again = load_or_create_node_id(dir);
  REQUIRE(again.ok());
  CHECK(*again == *id);
  std::ofstream(dir + "/node_id") << "not-an-id\n";
  auto bad = load_or_create_node_id(dir);
  CHECK(!bad.ok());
  CHECK(bad.status().message().find("node_id") != std::string::npos);
}

TEST_CASE("token is created with mode 0600 and validated on read") {
  std::string dir = temp_dir();
  std::string path = dir + "/token";
  auto secret = load_or_create_token(path);
  REQUIRE(secret.ok());
  CHECK(secret->size() == kTokenBytes);
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto read = read_token_file(path);
  REQUIRE(read.ok());
  CHECK(*read == *secret);
  std::ofstream(path) << "abcd\n";
  auto short_token = read_token_file(path);
  CHECK(!short_token.ok());
  CHECK(short_token.status().message().find("64 hex characters") != std::string::npos);
  std::ofstream(path) << std::string(64, 'z') << "\n";
  CHECK(!read_token_file(path).ok());
  CHECK(read_token_file(dir + "/missing").status().code() == Status::Code::kNotFound);
}

TEST_CASE("unwritable data dir gets a clear error") {
  Status s = prepare_data_dir("/proc/shoal-not-writable");
  CHECK(!s.ok());
  CHECK(s.message().find("/proc/shoal-not-writable") != std::string::npos);
}

TEST_CASE("sizes, resources, labels and addresses parse or explain") {
  CHECK(*parse_bytes("1024") == 1024);
  CHECK(*parse_bytes("512MiB") == 512ull << 20);
  CHECK(*parse_bytes("4G") == 4ull << 30);
  CHECK(!parse_bytes("4X").ok());
  CHECK(!parse_bytes("-1").ok());
  CHECK(!parse_bytes("").ok());
  auto r = parse_resource("tpu=2.5");
  REQUIRE(r.ok());
  CHECK(r->first == "tpu");
  CHECK(r->second == 2.5);
  CHECK(!parse_resource("tpu").ok());
  CHECK(!parse_resource("tpu=-1").ok());
  CHECK(!parse_resource("tpu=nan").ok());
  CHECK(!parse_resource("=3").ok());
  auto l = parse_label("zone=eu-1");
  REQUIRE(l.ok());
  CHECK(l->second == "eu-1");
  CHECK(!parse_label("zone").ok());
  auto hp = parse_host_port("10.0.0.1:7401", 7400);
  REQUIRE(hp.ok());
  CHECK(hp->first == "10.0.0.1");
  CHECK(hp->second == 7401);
  CHECK(parse_host_port("node1", 7400)->second == 7400);
  CHECK(parse_host_port("[::1]:9", 7400)->first == "::1");
  CHECK(!parse_host_port("host:0", 7400).ok());
  CHECK(!parse_host_port("host:99999", 7400).ok());
  CHECK(!parse_host_port(":7400", 7400).ok());
  CHECK(!parse_host_port("host:", 7400).ok());
}

TEST_CASE("machine detection finds something") {
  CHECK(detect_cpus() >= 1);
  CHECK(detect_memory_bytes() > 0);
}

TEST_CASE("discovery files list live nodes only") {
  std::string dir = temp_dir();
  ::setenv("SHOAL_RUNTIME_DIR", dir.c_str(), 1);
  REQUIRE(write_discovery_file(7401, {"127.0.0.1:7401", "/t", "/d", ::getpid()}).ok());
  REQUIRE(write_discovery_file(7402, {"127.0.0.1:7402", "/t", "/d", 999999999}).ok());
  auto nodes = find_local_nodes();
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0].address == "127.0.0.1:7401");
  remove_discovery_file(7401);
  CHECK(find_local_nodes().empty());
  ::unsetenv("SHOAL_RUNTIME_DIR");
}

TEST_CASE("a data dir is locked by one process at a time") {
  std::string dir = temp_dir();
  auto first = lock_data_dir(dir);
  REQUIRE(first.ok());
  // flock locks belong to the open file description: a second open in the
  // same process conflicts just as another process would.
  auto second = lock_data_dir(dir);
  CHECK(!second.ok());
  CHECK(second.status().message().find("in use by another shoal process") != std::string::npos);
  CHECK(second.status().message().find(std::to_string(::getpid())) != std::string::npos);
  ::close(*first);
  auto third = lock_data_dir(dir);
  CHECK(third.ok());
  if (third.ok()) ::close(*third);
}

// `shoalctl kv get|put|del|list|watch`.
#include <cinttypes>
#include "base/json.h"
#include <cstdio>
#include <string>

#include "base/crypto.h"
#include "cli/commands.h"
#include "cli/ctl_support.h"
#include "meta/codec.h"
#include "meta/types.h"

namespace shoal::cli {

int exit_status(const Status& result) {
  if (result.ok()) return kExitOk;
  std::fprintf(stderr, "shoalctl: %s\n", result.message().c_str());
  return kExitRuntimeError;
}

std::string json_escape(std::string_view s) { return json_quote(s); }

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "shoalctl: %s\n", message.c_str());
  return kExitRuntimeError;
}

std::string lease_hex(int64_t lease) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, static_cast<uint64_t>(lease));
  return buf;
}

std::string kv_json(const meta::KeyValue& kv) {
  return "{\"key\":" + json_escape(kv.key) + ",\"value\":" + json_escape(kv.value) +
         ",\"create_revision\":" + std::to_string(kv.create_revision) +
         ",\"mod_revision\":" + std::to_string(kv.mod_revision) + ",\"version\":" + std::to_string(kv.version) +
         ",\"lease\":\"" + (kv.lease ? lease_hex(kv.lease) : std::string()) + "\"}";
}

// Sends one request and decodes the response.
Status send_request(const CtlOptions& options, const meta::Request& request, meta::Response& response) {
  auto bytes = meta::encode_request(request);
  if (!bytes.ok()) return bytes.status();
  return with_node(options, [&](rpc::Node::Client& node) {
    auto req = node.kvRequest();
    req.setRequest(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes->data()), bytes->size()));
    return req.send().then([&](capnp::Response<rpc::Node::KvResults> r) -> Status {
      auto data = r.getResponse();
      auto decoded = meta::decode_response(std::string_view(reinterpret_cast<const char*>(data.begin()), data.size()));
      if (!decoded.ok()) return Status::internal("the node sent an unreadable response: " + decoded.status().message());
      response = std::move(*decoded);
      return {};
    });
  }, false);
}

meta::RequestId fresh_request_id() {
  uint64_t id = 0;
  while (id == 0) secure_random(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&id), sizeof(id)));
  return {id, 1};
}

class PrintingWatcher final : public rpc::Watcher::Server {
 public:
  PrintingWatcher(bool json, kj::Own<kj::PromiseFulfiller<Status>> done) : json_(json), done_(kj::mv(done)) {}

 protected:
  kj::Promise<void> events(EventsContext context) override {
    for (auto e : context.getParams().getEvents()) {
      std::string key(reinterpret_cast<const char*>(e.getKey().begin()), e.getKey().size());
      std::string value(reinterpret_cast<const char*>(e.getValue().begin()), e.getValue().size());
      bool del = e.getType() == 1;
      if (json_) {
        std::printf("{\"type\":\"%s\",\"key\":%s,\"value\":%s,\"mod_revision\":%" PRId64 ",\"version\":%" PRId64
                    "}\n",
                    del ? "delete" : "put", json_escape(key).c_str(), json_escape(value).c_str(), e.getModRevision(),
                    e.getVersion());
      } else if (del) {
        std::printf("DELETE %s (revision %" PRId64 ")\n", key.c_str(), e.getModRevision());
      } else {
        std::printf("PUT %s = %s (revision %" PRId64 ")\n", key.c_str(), value.c_str(), e.getModRevision());
      }
    }
    std::fflush(stdout);
    return kj::READY_NOW;
  }
  kj::Promise<void> cancelled(CancelledContext context) override {
    done_->fulfill(Status::cancelled(std::string("the node ended the watch: ") +
                                     context.getParams().getReason().cStr()));
    return kj::READY_NOW;
  }

 private:
  bool json_;
  kj::Own<kj::PromiseFulfiller<Status>> done_;
};

int run_watch(const CtlOptions& options, const KvCommand& command) {
  std::string key = command.key.empty() ? std::string(1, '\0') : command.key;
  std::string end = command.key.empty() ? std::string(1, '\0') : meta::prefix_range_end(command.key);
  Status result = with_node(options, [&](rpc::Node::Client& node) -> kj::Promise<Status> {
    auto paf = kj::newPromiseAndFulfiller<Status>();
    rpc::Watcher::Client watcher = kj::heap<PrintingWatcher>(command.json, kj::mv(paf.fulfiller));
    auto req = node.watchRequest();
    req.setKey(kj::arrayPtr(reinterpret_cast<const kj::byte*>(key.data()), key.size()));
    req.setRangeEnd(kj::arrayPtr(reinterpret_cast<const kj::byte*>(end.data()), end.size()));
    req.setStartRevision(command.revision);
    req.setWatcher(kj::mv(watcher));
    return req.send().then([done = kj::mv(paf.promise)](capnp::Response<rpc::Node::WatchResults> r) mutable {
      std::fprintf(stderr, "watching %s (store revision %" PRId64 "); Ctrl-C stops\n", "", r.getRevision());
      return done.attach(r.getHandle());
    });
  }, true);
  if (!result.ok()) return fail(result.message());
  return kExitOk;
}

}  // namespace

int run_kv(const CtlOptions& options, const KvCommand& command) {
  if (command.op == KvCommand::Op::kWatch) return run_watch(options, command);
  meta::Request request;
  switch (command.op) {
    case KvCommand::Op::kGet:
      request.body = meta::RangeRequest::single(command.key);
      break;
    case KvCommand::Op::kPut: {
      meta::PutRequest put;
      put.key = command.key;
      put.value = command.value;
      if (!command.lease.empty()) {
        uint64_t lease = 0;
        if (std::sscanf(command.lease.c_str(), "%" SCNx64, &lease) != 1 || lease == 0) {
          return fail("--lease " + command.lease + ": not a hexadecimal lease id");
        }
        put.lease = static_cast<int64_t>(lease);
      }
      request.id = fresh_request_id();
      request.body = std::move(put);
      break;
    }
    case KvCommand::Op::kDelete: {
      meta::DeleteRangeRequest del;
      del.key = command.key;
      if (command.prefix) del.range_end = meta::prefix_range_end(command.key);
      request.id = fresh_request_id();
      request.body = std::move(del);
      break;
    }
    case KvCommand::Op::kList: {
      meta::RangeRequest range = command.key.empty() ? meta::RangeRequest::all() : meta::RangeRequest::prefix(command.key);
      range.limit = command.limit;
      range.keys_only = command.keys_only;
      request.body = std::move(range);
      break;
    }
    default:
      return kExitUsage;
  }
  meta::Response response;
  Status sent = send_request(options, request, response);
  if (!sent.ok()) return fail(sent.message());
  if (!response.status.ok()) return fail(response.status.message());

  switch (command.op) {
    case KvCommand::Op::kGet: {
      const auto* range = std::get_if<meta::RangeResponse>(&response.body);
      if (range == nullptr) return fail("the node sent a response of the wrong kind");
      if (range->kvs.empty()) {
        std::fprintf(stderr, "shoalctl: %s: no such key\n", command.key.c_str());
        return kExitRuntimeError;
      }
      if (command.json) {
        std::printf("%s\n", kv_json(range->kvs[0]).c_str());
      } else {
        std::fwrite(range->kvs[0].value.data(), 1, range->kvs[0].value.size(), stdout);
        std::printf("\n");
      }
      return kExitOk;
    }
    case KvCommand::Op::kPut:
      std::printf("OK (revision %" PRId64 ")\n", response.revision);
      return kExitOk;
    case KvCommand::Op::kDelete: {
      const auto* del = std::get_if<meta::DeleteRangeResponse>(&response.body);
      if (del == nullptr) return fail("the node sent a response of the wrong kind");
      std::printf("%" PRId64 " deleted (revision %" PRId64 ")\n", del->deleted, response.revision);
      return kExitOk;
    }
    case KvCommand::Op::kList: {
      const auto* range = std::get_if<meta::RangeResponse>(&response.body);
      if (range == nullptr) return fail("the node sent a response of the wrong kind");
      if (command.json) {
        std::string out = "{\"revision\":" + std::to_string(response.revision) +
                          ",\"count\":" + std::to_string(range->count) +
                          ",\"more\":" + (range->more ? "true" : "false") + ",\"kvs\":[";
        for (size_t i = 0; i < range->kvs.size(); ++i) {
          if (i) out += ",";
          out += kv_json(range->kvs[i]);
        }
        std::printf("%s]}\n", out.c_str());
      } else {
        for (const auto& kv : range->kvs) {
          if (command.keys_only) {
            std::printf("%s\n", kv.key.c_str());
          } else {
            std::printf("%s = %s\n", kv.key.c_str(), kv.value.c_str());
          }
        }
        if (range->more) {
          std::fprintf(stderr, "(%zu of %" PRId64 " keys shown; use --limit or a longer prefix)\n",
                       range->kvs.size(), range->count);
        }
      }
      return kExitOk;
    }
    default:
      return kExitUsage;
  }
}

}  // namespace shoal::cli

#include "jobs/http_api.h"

#include <capnp/compat/json.h>
#include <capnp/message.h>
#include <kj/compat/http.h>
#include <kj/debug.h>

#include <cmath>

#include "base/crypto.h"
#include "base/log.h"
#include "jobs/job_service.h"
#include "jobs/log_file.h"
#include "jobs/zip_reader.h"
#include "loop/loop.h"
#include "loop/tcp.h"

namespace shoal::jobs {

namespace {

using capnp::json::Value;

std::string error_json(const std::string& message) { return "{\"error\":" + json_string(message) + "}"; }

int http_status_of(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument: return 400;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kAlreadyExists: return 409;
    case Status::Code::kResourceExhausted: return 400;
    case Status::Code::kUnauthenticated: return 401;
    default: return 503;
  }
}

const char* status_text(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 408: return "Request Timeout";
    default: return "Service Unavailable";
  }
}

Result<std::string> text_of(Value::Reader v, const std::string& field) {
  if (!v.isString()) return Status::invalid_argument(field + " must be a string");
  return std::string(v.getString().cStr());
}

Result<double> number_of(Value::Reader v, const std::string& field) {
  if (!v.isNumber() || !std::isfinite(v.getNumber())) return Status::invalid_argument(field + " must be a number");
  return v.getNumber();
}

Result<std::map<std::string, std::string>> string_map(Value::Reader v, const std::string& field) {
  std::map<std::string, std::string> out;
  if (v.isNull()) return out;
  if (!v.isObject()) return Status::invalid_argument(field + " must be an object of strings");
  for (auto f : v.getObject()) {
    auto value = f.getValue();
    if (!value.isString()) {
      return Status::invalid_argument(field + "." + std::string(f.getName().cStr()) + " must be a string");
    }
    out[f.getName().cStr()] = value.getString().cStr();
  }
  return out;
}

// A Ray Jobs submission -> Spec. The entrypoint is split into an argv like a
// shell would split words, but nothing is expanded or interpreted.
// `working_dir`: the package URI of runtime_env.working_dir, if any.
Result<Spec> spec_of(Value::Reader body, std::string& working_dir) {
  if (!body.isObject()) return Status::invalid_argument("the body must be a JSON object");
  Spec spec;
  bool have_entrypoint = false;
  for (auto f : body.getObject()) {
    std::string name = f.getName().cStr();
    auto v = f.getValue();
    if (name == "entrypoint") {
      auto t = text_of(v, name);
      if (!t.ok()) return t.status();
      auto argv = split_command(*t);
      if (!argv.ok()) return argv.status();
      spec.argv = std::move(*argv);
      spec.entrypoint = *t;
      have_entrypoint = true;
    } else if (name == "submission_id" || name == "job_id") {
      if (v.isNull()) continue;
      auto t = text_of(v, name);
      if (!t.ok()) return t.status();
      spec.submission_id = *t;
    } else if (name == "entrypoint_num_cpus" || name == "entrypoint_num_gpus") {
      if (v.isNull()) continue;
      auto n = number_of(v, name);
      if (!n.ok()) return n.status();
      (name == "entrypoint_num_cpus" ? spec.cpus : spec.gpus) = *n;
    } else if (name == "entrypoint_memory") {
      if (v.isNull()) continue;
      auto n = number_of(v, name);
      if (!n.ok()) return n.status();
      if (*n < 0 || *n > 1e15) return Status::invalid_argument("entrypoint_memory must be 0 to 1e15 bytes");
      spec.memory_bytes = static_cast<uint64_t>(*n);
    } else if (name == "entrypoint_resources") {
      if (v.isNull()) continue;
      if (!v.isObject()) return Status::invalid_argument("entrypoint_resources must be an object of numbers");
      for (auto r : v.getObject()) {
        auto n = number_of(r.getValue(), "entrypoint_resources." + std::string(r.getName().cStr()));
        if (!n.ok()) return n.status();
        spec.custom[r.getName().cStr()] = *n;
      }
    } else if (name == "metadata") {
      auto m = string_map(v, name);
      if (!m.ok()) return m.status();
      spec.metadata = std::move(*m);
    } else if (name == "runtime_env") {
      if (v.isNull()) continue;
      if (!v.isObject()) return Status::invalid_argument("runtime_env must be an object");
      for (auto r : v.getObject()) {
        std::string key = r.getName().cStr();
        if (key == "env_vars") {
          auto m = string_map(r.getValue(), "runtime_env.env_vars");
          if (!m.ok()) return m.status();
          spec.env = std::move(*m);
        } else if (key == "working_dir") {
          // Ray's clients upload the directory as a zip first (PUT
          // /api/packages/...) and send its URI here.
          if (r.getValue().isNull()) continue;
          auto uri = text_of(r.getValue(), "runtime_env.working_dir");
          if (!uri.ok()) return uri.status();
          auto key = package_key(*uri);
          if (!key.ok()) {
            return Status::invalid_argument("runtime_env.working_dir must name an uploaded package (PUT "
                                            "/api/packages/gcs/<name>.zip first): " + key.status().message());
          }
          working_dir = *uri;
        } else {
          return Status::invalid_argument("runtime_env." + key + " is not supported (only env_vars and working_dir)");
        }
      }
    } else if (!v.isNull()) {
      // Ray clients send every field they know, unset ones as null: those
      // are ignored; a value shoal cannot honour is refused.
      return Status::invalid_argument("unknown field '" + name + "'");
    }
  }
  if (!have_entrypoint) return Status::invalid_argument("entrypoint is required");
  SHOAL_RETURN_IF_ERROR(validate_spec(spec));
  return spec;
}

}  // namespace

class JobsHttpService final : public kj::HttpService {
 public:
  JobsHttpService(JobService& jobs, std::string token, kj::HttpHeaderTable& table, kj::HttpHeaderId authorization,
                  kj::Timer& timer)
      : jobs_(jobs), token_(std::move(token)), table_(table), authorization_(authorization), timer_(timer) {}

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders& headers,
                            kj::AsyncInputStream& body, Response& response) override {
    KJ_IF_MAYBE(auth, headers.get(authorization_)) {
      std::string value = auth->cStr();
      std::string expected = "Bearer " + token_;
      bool ok = constant_time_equal(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value.data()), value.size()),
                                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(expected.data()),
                                                             expected.size()));
      if (!ok) return send(response, 401, error_json("wrong token: send Authorization: Bearer <the cluster token>"));
    } else {
      return send(response, 401, error_json("missing token: send Authorization: Bearer <the cluster token>"));
    }
    std::string path = url.cStr();
    size_t q = path.find('?');
    if (q != std::string::npos) path.resize(q);
    // Ray's JobSubmissionClient checks the server version first.
    if (path == "/api/version" && method == kj::HttpMethod::GET) {
      return send(response, 200,
                  "{\"version\":\"4\",\"ray_version\":\"shoal\",\"ray_commit\":\"shoal\",\"session_name\":\"shoal\"}");
    }
    const std::string packages = "/api/packages/";
    if (path.rfind(packages, 0) == 0) return package(method, path.substr(packages.size()), body, response);
    const std::string prefix = "/api/jobs";
    if (path.rfind(prefix, 0) != 0) return send(response, 404, error_json("no such endpoint: " + path));
    std::string rest = path.substr(prefix.size());
    if (!rest.empty() && rest[0] == '/') rest.erase(0, 1);
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    std::string id = rest;
    std::string action;
    size_t slash = rest.find('/');
    if (slash != std::string::npos) {
      id = rest.substr(0, slash);
      action = rest.substr(slash + 1);
    }
    if (id.empty()) {
      if (method == kj::HttpMethod::POST) {
        return read_body(body, response, [this, &response](std::string text) { return submit(text, response); });
      }
      if (method == kj::HttpMethod::GET) {
        return jobs_.list(std::nullopt).then([this, &response](Result<std::vector<Record>> records) {
          if (!records.ok()) return send(response, http_status_of(records.status()), error_json(records.status().message()));
          std::string out = "[";
          for (size_t i = 0; i < records->size(); ++i) out += (i ? "," : "") + record_json((*records)[i]);
          return send(response, 200, out + "]");
        });
      }
      return send(response, 405, error_json("use GET or POST on /api/jobs/"));
    }
    if (action.empty() && method == kj::HttpMethod::GET) {
      return jobs_.get(id).then([this, &response](Result<Record> r) {
        if (!r.ok()) return send(response, http_status_of(r.status()), error_json(r.status().message()));
        return send(response, 200, record_json(*r));
      });
    }
    if (action.empty() && method == kj::HttpMethod::DELETE) {
      return jobs_.remove(id).then([this, &response](Result<bool> r) {
        if (!r.ok()) return send(response, http_status_of(r.status()), error_json(r.status().message()));
        return send(response, 200, std::string("{\"deleted\":") + (*r ? "true" : "false") + "}");
      });
    }
    if (action == "stop" && method == kj::HttpMethod::POST) {
      return jobs_.stop_job(id).then([this, &response](Result<bool> r) {
        if (!r.ok()) return send(response, http_status_of(r.status()), error_json(r.status().message()));
        return send(response, 200, std::string("{\"stopped\":") + (*r ? "true" : "false") + "}");
      });
    }
    if (action == "logs" && method == kj::HttpMethod::GET) {
      return jobs_.logs(id, -1, kLogReadBytesMax, 0).then([this, &response](Result<LogsResult> r) {
        if (!r.ok()) return send(response, http_status_of(r.status()), error_json(r.status().message()));
        return send(response, 200, "{\"logs\":" + json_string(r->data) + "}");
      });
    }
    return send(response, 404, error_json("no such endpoint: " + std::string(kj::str(method).cStr()) + " " + path));
  }

 private:
  kj::Promise<void> submit(const std::string& text, Response& response) {
    capnp::MallocMessageBuilder message;
    auto root = message.initRoot<Value>();
    capnp::JsonCodec codec;
    codec.setMaxNestingDepth(16);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { codec.decodeRaw(kj::arrayPtr(text.data(), text.size()), root); })) {
      return send(response, 400, error_json(std::string("malformed JSON: ") + e->getDescription().cStr()));
    }
    std::string working_dir;
    auto spec = spec_of(root.asReader(), working_dir);
    if (!spec.ok()) return send(response, 400, error_json(spec.status().message()));
    kj::Promise<Result<std::vector<File>>> files = Result<std::vector<File>>(std::vector<File>{});
    if (!working_dir.empty()) {
      files = jobs_.get_package(working_dir).then([working_dir](Result<std::vector<File>> got) -> Result<std::vector<File>> {
        if (!got.ok()) {
          return Status(got.status().code() == Status::Code::kNotFound ? Status::Code::kInvalidArgument
                                                                       : got.status().code(),
                        "runtime_env.working_dir: " + got.status().message());
        }
        if (got->empty()) return Status::invalid_argument("runtime_env.working_dir: package " + working_dir + " is empty");
        return got;
      });
    }
    return files.then([this, &response, spec = std::move(*spec)](Result<std::vector<File>> files) mutable {
      if (!files.ok()) return send(response, http_status_of(files.status()), error_json(files.status().message()));
      return jobs_.submit(std::move(spec), std::move(*files)).then([this, &response](Result<std::vector<std::string>> ids) {
        if (!ids.ok()) return send(response, http_status_of(ids.status()), error_json(ids.status().message()));
        std::string id = ids->empty() ? std::string() : (*ids)[0];
        return send(response, 200, "{\"job_id\":" + json_string(id) + ",\"submission_id\":" + json_string(id) + "}");
      });
    });
  }

  // Ray's package store, for runtime_env.working_dir: GET says whether a
  // package was uploaded (200 or 404), PUT uploads one (a zip of the
  // directory's files, at most kWorkingDirBytesMax of them).
  kj::Promise<void> package(kj::HttpMethod method, std::string rest, kj::AsyncInputStream& body, Response& response) {
    std::string uri;
    size_t slash = rest.find('/');
    if (slash != std::string::npos) uri = rest.substr(0, slash) + "://" + rest.substr(slash + 1);
    auto key = package_key(uri);
    if (!key.ok()) return send(response, 400, error_json(key.status().message()));
    if (method == kj::HttpMethod::GET) {
      return jobs_.get_package(uri).then([this, &response](Result<std::vector<File>> got) {
        if (!got.ok()) return send(response, http_status_of(got.status()), error_json(got.status().message()));
        return send(response, 200, "{\"exists\":true,\"files\":" + std::to_string(got->size()) + "}");
      });
    }
    if (method == kj::HttpMethod::PUT) {
      return read_body(body, response, [this, &response, uri](std::string bytes) -> kj::Promise<void> {
        auto files = unzip_files(bytes);
        if (!files.ok()) return send(response, 400, error_json(files.status().message()));
        size_t count = files->size();
        return jobs_.put_package(uri, std::move(*files)).then([this, &response, count](Status put) {
          if (!put.ok()) return send(response, http_status_of(put), error_json(put.message()));
          return send(response, 200, "{\"uploaded\":true,\"files\":" + std::to_string(count) + "}");
        });
      });
    }
    return send(response, 405, error_json("use GET or PUT on /api/packages/<protocol>/<name>"));
  }

  // The whole body (at most kHttpBodyBytesMax, within kHttpBodyTimeout), then `then`.
  template <typename Then>
  kj::Promise<void> read_body(kj::AsyncInputStream& body, Response& response, Then then) {
    return timer_.timeoutAfter(kHttpBodyTimeout, body.readAllBytes(kHttpBodyBytesMax))
        .then(
            [then = kj::mv(then)](kj::Array<kj::byte> bytes) mutable {
              return then(std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size()));
            },
            [this, &response](kj::Exception&& e) {
              if (e.getType() == kj::Exception::Type::OVERLOADED) {
                return send(response, 408, error_json("the body did not arrive within " +
                                                      std::to_string(kHttpBodyTimeout / kj::SECONDS) + " s"));
              }
              return send(response, 413, error_json("the body is larger than " + std::to_string(kHttpBodyBytesMax) +
                                                    " bytes or broken"));
            });
  }

  kj::Promise<void> send(Response& response, int code, std::string body) {
    kj::HttpHeaders headers(table_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    auto stream = response.send(static_cast<uint>(code), status_text(code), headers, body.size());
    auto promise = stream->write(body.data(), body.size());
    return promise.attach(kj::mv(stream), kj::mv(body));
  }

  JobService& jobs_;
  std::string token_;
  kj::HttpHeaderTable& table_;
  kj::HttpHeaderId authorization_;
  kj::Timer& timer_;
};

struct HttpApi::Impl {
  loop::Loop& loop;
  JobService& jobs;
  std::string token;
  kj::HttpHeaderTable::Builder builder;
  kj::HttpHeaderId authorization;
  kj::Own<kj::HttpHeaderTable> table;
  kj::Own<JobsHttpService> service;
  kj::Own<kj::HttpServer> server;
  kj::Own<loop::TcpListener> listener;
  kj::Maybe<kj::Promise<void>> listen_task;
  size_t connections = 0;
  kj::Own<kj::TaskSet::ErrorHandler> connection_errors;
  kj::Own<kj::TaskSet> connection_tasks;

  Impl(loop::Loop& l, JobService& j, std::string t)
      : loop(l), jobs(j), token(std::move(t)), authorization(builder.add("Authorization")) {
    table = builder.build();
    service = kj::heap<JobsHttpService>(jobs, token, *table, authorization, loop.timer());
    kj::HttpServerSettings settings;
    settings.headerTimeout = 15 * kj::SECONDS;
    settings.pipelineTimeout = 5 * kj::SECONDS;
    server = kj::heap<kj::HttpServer>(loop.timer(), *table, *service, settings);
    connection_errors = kj::heap<ConnectionErrors>();
    connection_tasks = kj::heap<kj::TaskSet>(*connection_errors);
  }
  ~Impl() {
    listen_task = nullptr;
    connection_tasks = nullptr;
    server = nullptr;
    listener = nullptr;
  }

  struct ConnectionErrors final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override {
      SHOAL_LOG_DEBUG("Jobs REST API connection: {}", e.getDescription().cStr());
    }
  };

  // Accepts connections for ever; beyond kHttpConnectionsMax open ones a new
  // connection gets a short 503 and is closed, so a flood of idle clients
  // cannot exhaust the node's file descriptors or memory.
  kj::Promise<void> accept_loop() {
    return listener->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
      if (connections >= kHttpConnectionsMax) {
        static const std::string kBusy =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            "Content-Length: " + std::to_string(busy_body().size()) + "\r\n\r\n" + busy_body();
        // The answer, then our end closed; the request is read and dropped
        // until the client closes, so that closing with unread bytes does
        // not reset the connection before the client reads the answer.
        auto& s = *stream;
        auto answered = s.write(kBusy.data(), kBusy.size()).then([&s]() {
          s.shutdownWrite();
          return discard_until_eof(s, kj::heapArray<kj::byte>(4096));
        });
        connection_tasks->add(loop.timer().timeoutAfter(5 * kj::SECONDS, kj::mv(answered)).attach(kj::mv(stream)));
      } else {
        ++connections;
        connection_tasks->add(server->listenHttp(kj::mv(stream)).attach(kj::defer([this] { --connections; })));
      }
      return accept_loop();
    });
  }

  static kj::Promise<void> discard_until_eof(kj::AsyncIoStream& s, kj::Array<kj::byte> buffer) {
    auto read = s.tryRead(buffer.begin(), 1, buffer.size());
    return read.then([&s, buffer = kj::mv(buffer)](size_t n) mutable -> kj::Promise<void> {
      if (n == 0) return kj::READY_NOW;
      return discard_until_eof(s, kj::mv(buffer));
    });
  }

  static const std::string& busy_body() {
    static const std::string body = error_json("too many open connections to the Jobs REST API (" +
                                               std::to_string(kHttpConnectionsMax) + "); try again");
    return body;
  }
};

HttpApi::HttpApi(loop::Loop& loop, JobService& jobs, std::string token_secret)
    : impl_(std::make_unique<Impl>(loop, jobs, to_hex(std::span<const uint8_t>(
                                                  reinterpret_cast<const uint8_t*>(token_secret.data()),
                                                  token_secret.size())))) {}

HttpApi::~HttpApi() = default;

Status HttpApi::listen(const std::string& host, uint16_t port) {
  auto listener = loop::TcpListener::listen(impl_->loop, host, port);
  if (!listener.ok()) {
    return Status(listener.status().code(), "cannot listen for the Jobs REST API on " + host + ":" +
                                                std::to_string(port) + " (--http-port; 0 turns it off): " +
                                                listener.status().message());
  }
  impl_->listener = kj::mv(*listener);
  impl_->listen_task = impl_->accept_loop().eagerlyEvaluate([](kj::Exception&& e) {
    SHOAL_LOG_ERROR("Jobs REST API listener stopped: {}", e.getDescription().cStr());
  });
  SHOAL_LOG_INFO("Jobs REST API on http://{}:{}/api/jobs/", host, port);
  return {};
}

}  // namespace shoal::jobs

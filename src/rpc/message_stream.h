// A capnp::MessageStream over a kj::AsyncIoStream that remembers why reading
// failed (for the log line when a peer sends garbage), can tell when every
// write handed to it has finished (so an error reply is delivered before the
// server closes the connection), and can cap the bytes a peer may send (so an
// unauthenticated peer cannot make the server buffer kMessageBytesMax).
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>

#include <cstddef>
#include <string>
#include <vector>

namespace shoal::rpc {

// Passes everything through to `inner`, but fails reads once more than the
// read budget has been received (while a budget is set).
class ReadBudgetStream final : public kj::AsyncIoStream {
 public:
  explicit ReadBudgetStream(kj::AsyncIoStream& inner) : inner_(inner) {}

  // nullptr: unlimited from now on.
  void set_read_budget(kj::Maybe<uint64_t> bytes_max) { read_budget_ = bytes_max; }
  // Bytes received while a budget was set (reads without one are not counted).
  uint64_t bytes_read() const { return bytes_read_; }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_.write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_.write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_.whenWriteDisconnected(); }
  void shutdownWrite() override { inner_.shutdownWrite(); }
  void abortRead() override { inner_.abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner_.getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner_.setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner_.getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner_.getpeername(addr, length);
  }
  kj::Maybe<int> getFd() const override { return inner_.getFd(); }

 private:
  kj::AsyncIoStream& inner_;
  kj::Maybe<uint64_t> read_budget_;
  uint64_t bytes_read_ = 0;
};

class TrackedMessageStream final : public capnp::MessageStream {
 public:
  // `stream` must outlive this object.
  explicit TrackedMessageStream(kj::AsyncIoStream& stream);
  ~TrackedMessageStream();

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fd_space, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratch_space) override;
  kj::Promise<void> writeMessage(
      kj::ArrayPtr<const int> fds,
      kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override;
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  // Idempotent: the first call shuts down the write side, later ones do nothing.
  kj::Promise<void> end() override;

  // Caps the bytes the peer may send from the start of the connection
  // (nullptr: unlimited). A read beyond it fails the connection.
  void set_read_budget(kj::Maybe<uint64_t> bytes_max) { budget_.set_read_budget(bytes_max); }

  // Resolves once no write is in progress.
  kj::Promise<void> when_writes_done();
  // Empty until a read failed; then the reason (e.g. "Message is too large").
  const std::string& read_error() const { return read_error_; }
  uint64_t messages_read() const { return messages_read_; }

 private:
  kj::Promise<void> track_write(kj::Promise<void> write);
  void write_finished();

  ReadBudgetStream budget_;
  capnp::AsyncIoMessageStream inner_;
  size_t writes_pending_ = 0;
  bool ended_ = false;
  uint64_t messages_read_ = 0;
  std::string read_error_;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> idle_waiters_;
};

}  // namespace shoal::rpc

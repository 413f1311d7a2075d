#include "rpc/message_stream.h"

#include <kj/debug.h>

#include "base/assert.h"

namespace shoal::rpc {

kj::Promise<size_t> ReadBudgetStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  // No budget (the usual case once authenticated): no continuation, which
  // would cost a promise node per read.
  if (read_budget_ == nullptr) return inner_.tryRead(buffer, min_bytes, max_bytes);
  return inner_.tryRead(buffer, min_bytes, max_bytes).then([this](size_t n) -> size_t {
    bytes_read_ += n;
    KJ_IF_MAYBE (budget, read_budget_) {
      if (bytes_read_ > *budget) {
        kj::throwFatalException(kj::Exception(
            kj::Exception::Type::FAILED, __FILE__, __LINE__,
            kj::str("peer sent more than ", *budget, " bytes before authenticating")));
      }
    }
    return n;
  });
}

TrackedMessageStream::TrackedMessageStream(kj::AsyncIoStream& stream)
    : budget_(stream), inner_(budget_) {}

TrackedMessageStream::~TrackedMessageStream() = default;

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> TrackedMessageStream::tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fd_space, capnp::ReaderOptions options,
    kj::ArrayPtr<capnp::word> scratch_space) {
  return inner_.tryReadMessage(fd_space, options, scratch_space)
      .then(
          [this](kj::Maybe<capnp::MessageReaderAndFds>&& message) {
            if (message != nullptr) ++messages_read_;
            return kj::mv(message);
          },
          [this](kj::Exception&& exception) -> kj::Maybe<capnp::MessageReaderAndFds> {
            read_error_ = exception.getDescription().cStr();
            kj::throwFatalException(kj::mv(exception));
          });
}

kj::Promise<void> TrackedMessageStream::writeMessage(
    kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
  return track_write(inner_.writeMessage(fds, segments));
}

kj::Promise<void> TrackedMessageStream::writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) {
  return track_write(inner_.writeMessages(messages));
}

kj::Maybe<int> TrackedMessageStream::getSendBufferSize() { return inner_.getSendBufferSize(); }

kj::Promise<void> TrackedMessageStream::end() {
  if (ended_) return kj::READY_NOW;
  ended_ = true;
  return inner_.end();
}

kj::Promise<void> TrackedMessageStream::when_writes_done() {
  if (writes_pending_ == 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  idle_waiters_.push_back(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

kj::Promise<void> TrackedMessageStream::track_write(kj::Promise<void> write) {
  ++writes_pending_;
  // The deferred call runs when the write finishes, fails or is cancelled.
  return write.attach(kj::defer([this]() { write_finished(); }));
}

void TrackedMessageStream::write_finished() {
  SHOAL_ASSERT(writes_pending_ > 0, writes_pending_);
  --writes_pending_;
  if (writes_pending_ != 0) return;
  auto waiters = kj::mv(idle_waiters_);
  idle_waiters_.clear();
  for (auto& waiter : waiters) waiter->fulfill();
}

}  // namespace shoal::rpc

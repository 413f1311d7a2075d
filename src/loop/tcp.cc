#include "loop/tcp.h"

#include <kj/debug.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/log.h"
#include "shoal/detail/copy.h"

namespace shoal::loop {
namespace {

std::string address_name(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos && host.front() != '[') {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

Result<sockaddr_storage> parse_address(const std::string& host_in, uint16_t port) {
  std::string host = host_in;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  sockaddr_storage storage{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&storage)) == 0) {
    return storage;
  }
  if (uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&storage)) == 0) {
    return storage;
  }
  return Status::invalid_argument("'" + host_in +
                                  "' is not a numeric IPv4/IPv6 address or 'localhost'");
}

kj::Exception disconnected(std::string what, int uv_error) {
  return KJ_EXCEPTION(DISCONNECTED, kj::str(what.c_str(), ": ", uv_strerror(uv_error)));
}

constexpr size_t kDirectBufBytesMax = size_t{1} << 30;

template <typename Func>
void guarded(const char* where, Func&& func) {
  KJ_IF_MAYBE(exception, kj::runCatchingExceptions(kj::fwd<Func>(func))) {
    SHOAL_LOG_ERROR("loop: exception in libuv callback {}: {}", where,
                    kj::str(*exception).cStr());
  }
}

}  // namespace

namespace detail {

class TcpConn;

// The promise of a write handed to libuv straight from the caller's buffers
// (kj keeps them alive until the promise resolves or is dropped). Dropped
// before libuv is done with them, it closes the connection: libuv never
// touches a closed socket's buffers again.
class DirectWrite {
 public:
  DirectWrite(kj::PromiseFulfiller<void>& fulfiller, TcpConn* conn);
  ~DirectWrite() noexcept(false);
  KJ_DISALLOW_COPY(DirectWrite);
  // From the connection: libuv finished (or the connection failed).
  void finish(kj::Maybe<kj::Exception> error);

 private:
  kj::PromiseFulfiller<void>& fulfiller_;
  TcpConn* conn_;  // null once finished
};

// The kj face of a connection. Owns nothing from libuv: TcpConn outlives it.
class UvTcpStream final : public kj::AsyncIoStream {
 public:
  UvTcpStream(Loop& loop, TcpConn* conn);
  ~UvTcpStream() noexcept(false);

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;
  void getpeername(struct sockaddr* addr, uint* length) override;
  kj::Maybe<int> getFd() const override;

 private:
  Loop& loop_;
  TcpConn* conn_;
};

// One uv_tcp_t with its read buffer, write cork and pending operations.
// Allocated with make_unique and released to libuv: freed by the close
// callback of its last handle, so libuv callbacks never see freed memory.
class TcpConn final : public Flushable, public Closeable {
 public:
  explicit TcpConn(Loop& loop) : loop_(loop) {
    SHOAL_ASSERT(uv_tcp_init(loop.uv(), &tcp_) == 0);
    tcp_.data = this;
    handles_open_ = 1;
    loop_.add_closeable(this);
  }
  ~TcpConn() { loop_.remove_closeable(this); }

  static TcpConn* create(Loop& loop) { return std::make_unique<TcpConn>(loop).release(); }

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  Loop& loop() { return loop_; }

  // --- connect ---------------------------------------------------------------
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(const sockaddr* addr, std::string name) {
    name_ = std::move(name);
    auto paf = kj::newPromiseAndFulfiller<kj::Own<kj::AsyncIoStream>>();
    connect_fulfiller_ = kj::mv(paf.fulfiller);
    connect_req_.data = this;
    int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, &TcpConn::on_connect);
    if (rc < 0) {
      close_now();
      return disconnected("connect to " + name_, rc);
    }
    return kj::mv(paf.promise);
  }

  // After connect or accept: Nagle off, start reading.
  void start() {
    uv_tcp_nodelay(&tcp_, 1);
    start_reading();
  }
  void set_owned(bool owned) { owned_ = owned; }

  // --- reads -------------------------------------------------------------------
  kj::Promise<size_t> try_read(kj::byte* buffer, size_t min_bytes, size_t max_bytes) {
    if (read_ && read_->fulfiller->isWaiting()) {
      return KJ_EXCEPTION(FAILED, "tryRead() while another read is pending");
    }
    read_.reset();
    size_t n = take_buffered(buffer, max_bytes);
    if (n >= min_bytes || eof_) return n;
    KJ_IF_MAYBE(error, read_error_) { return kj::cp(*error); }
    auto paf = kj::newPromiseAndFulfiller<size_t>();
    read_.emplace(PendingRead{buffer, min_bytes, max_bytes, n, kj::mv(paf.fulfiller)});
    start_reading();
    return kj::mv(paf.promise);
  }

  void abort_read() {
    if (read_error_ == nullptr) read_error_ = KJ_EXCEPTION(DISCONNECTED, "abortRead() called");
    uv_read_stop(stream());
    reading_ = false;
    int fd = -1;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) == 0) ::shutdown(fd, SHUT_RD);
    deliver();
  }

  // --- writes ------------------------------------------------------------------
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
    KJ_IF_MAYBE(error, write_error_) { return kj::cp(*error); }
    if (write_shut_) return KJ_EXCEPTION(FAILED, "write() after shutdownWrite()");
    if ((write_ && write_->fulfiller->isWaiting()) || direct_ != nullptr) {
      return KJ_EXCEPTION(FAILED, "write() while another write is pending");
    }
    write_.reset();
    size_t total = 0;
    for (auto piece : pieces) total += piece.size();
    if (total >= kDirectWriteBytes) return write_direct(pieces);
    PendingWrite pending{pieces, 0, 0, kj::Own<kj::PromiseFulfiller<void>>(), {}};
    bool all_buffered = copy_in(pending);
    KJ_IF_MAYBE(error, write_error_) { return kj::cp(*error); }
    if (all_buffered) return kj::READY_NOW;
    // Over kWriteBufferedBytesMax: keep the rest (the caller keeps `pieces`
    // and their bytes alive until the promise resolves) and wait for libuv.
    pending.pieces_copy = kj::heapArray(pieces);
    pending.pieces = pending.pieces_copy;
    auto paf = kj::newPromiseAndFulfiller<void>();
    pending.fulfiller = kj::mv(paf.fulfiller);
    write_.emplace(kj::mv(pending));
    return kj::mv(paf.promise);
  }

  // A large write goes to libuv from the caller's buffers, after what is
  // corked; its promise resolves when libuv has written all of it.
  kj::Promise<void> write_direct(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
    flush();
    KJ_IF_MAYBE(error, write_error_) { return kj::cp(*error); }
    std::vector<uv_buf_t> bufs;
    bufs.reserve(pieces.size());
    for (auto piece : pieces) {
      // uv_buf_init takes an unsigned length: pieces over 1 GiB go in parts.
      for (size_t at = 0; at < piece.size(); at += kDirectBufBytesMax) {
        size_t n = std::min(kDirectBufBytesMax, piece.size() - at);
        bufs.push_back(uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(piece.begin() + at)),
                                   static_cast<unsigned>(n)));
      }
    }
    loop_.count_stream_write();
    size_t first = 0;
    if (writes_in_flight_ == 0) {
      // As in flush(): what the socket takes now costs no loop iteration.
      int n = uv_try_write(stream(), bufs.data(), static_cast<unsigned>(bufs.size()));
      if (n == UV_EAGAIN) n = 0;
      if (n < 0) {
        fail_writes(disconnected("write to " + name_, n));
        return kj::cp(KJ_ASSERT_NONNULL(write_error_));
      }
      size_t written = static_cast<size_t>(n);
      while (first < bufs.size() && written >= bufs[first].len) written -= bufs[first++].len;
      if (first == bufs.size()) return kj::READY_NOW;
      bufs[first].base += written;
      bufs[first].len -= written;
    }
    auto request = std::make_unique<WriteRequest>();
    request->conn = this;
    request->direct = true;
    request->req.data = request.get();
    int rc = uv_write(&request->req, stream(), bufs.data() + first, static_cast<unsigned>(bufs.size() - first),
                      &TcpConn::on_write);
    if (rc < 0) {
      fail_writes(disconnected("write to " + name_, rc));
      return kj::cp(KJ_ASSERT_NONNULL(write_error_));
    }
    ++writes_in_flight_;
    (void)request.release();  // owned by libuv until on_write
    return kj::newAdaptedPromise<void, DirectWrite>(this);
  }

  void set_direct(DirectWrite* direct) { direct_ = direct; }

  // The caller dropped a direct write's promise before libuv wrote it: its
  // buffers may go now, so the socket must never be written from them again.
  void direct_write_cancelled() {
    direct_ = nullptr;
    SHOAL_LOG_DEBUG("loop: a write to {} was cancelled midway; closing the connection", name_);
    fail_writes(KJ_EXCEPTION(DISCONNECTED, kj::str("write to ", name_.c_str(), " cancelled midway")));
    close_now();
  }

  kj::Promise<void> when_write_disconnected() {
    if (write_error_ != nullptr) return kj::READY_NOW;
    if (disconnect_fork_ == nullptr) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      disconnect_fulfiller_ = kj::mv(paf.fulfiller);
      disconnect_fork_ = paf.promise.fork();
    }
    return KJ_ASSERT_NONNULL(disconnect_fork_).addBranch();
  }

  void shutdown_write() {
    if (write_shut_ || write_error_ != nullptr) return;
    write_shut_ = true;
    flush();
    shutdown_req_.data = this;
    int rc = uv_shutdown(&shutdown_req_, stream(), &TcpConn::on_shutdown);
    if (rc < 0) {
      SHOAL_LOG_DEBUG("loop: shutdownWrite on {} failed: {}", name_, uv_strerror(rc));
    } else {
      shutdown_pending_ = true;
    }
  }

  void flush() override {
    flush_scheduled_ = false;
    early_flushed_ = false;
    if (cork_.empty() || closed_) return;
    loop_.count_stream_write();
    size_t skip = 0;
    if (writes_in_flight_ == 0) {
      // Write synchronously when nothing is queued: uv_write would cost an
      // epoll_ctl and an extra loop iteration for its callback every time.
      uv_buf_t buf = uv_buf_init(cork_.data(), static_cast<unsigned>(cork_.size()));
      int n = uv_try_write(stream(), &buf, 1);
      if (n == UV_EAGAIN) n = 0;
      if (n < 0) {
        fail_writes(disconnected("write to " + name_, n));
        return;
      }
      skip = static_cast<size_t>(n);
      buffered_bytes_ -= skip;
      if (skip == cork_.size()) {
        cork_.clear();
        return;
      }
    }
    auto request = std::make_unique<WriteRequest>();
    request->data.swap(cork_);
    request->skip = skip;
    if (!spare_.empty()) {
      cork_.swap(spare_.back());
      spare_.pop_back();
    }
    request->conn = this;
    request->req.data = request.get();
    uv_buf_t buf = uv_buf_init(request->data.data() + skip,
                               static_cast<unsigned>(request->data.size() - skip));
    int rc = uv_write(&request->req, stream(), &buf, 1, &TcpConn::on_write);
    if (rc < 0) {
      buffered_bytes_ -= request->data.size() - skip;
      fail_writes(disconnected("write to " + name_, rc));
      return;
    }
    ++writes_in_flight_;
    (void)request.release();  // owned by libuv until on_write
  }

  // --- stream object gone ----------------------------------------------------
  void release_owner() {
    owned_ = false;
    read_.reset();
    write_.reset();
    disconnect_fulfiller_ = kj::Own<kj::PromiseFulfiller<void>>();
    disconnect_fork_ = nullptr;
    uv_read_stop(stream());
    reading_ = false;
    flush();
    loop_.cancel_flush(this);
    if (closed_) {
      // Closed while still ours (a direct write was cancelled): freed here
      // if libuv is done with the handle, else by on_close.
      if (handles_open_ == 0) std::unique_ptr<TcpConn> owned(this);
      return;
    }
    if (writes_in_flight_ == 0 && !shutdown_pending_) {
      close_now();
      return;
    }
    // Let buffered bytes reach the peer, but not forever.
    SHOAL_ASSERT(uv_timer_init(loop_.uv(), &linger_) == 0);
    linger_.data = this;
    ++handles_open_;
    uv_timer_start(&linger_, &TcpConn::on_linger, kCloseLingerMs, 0);
    lingering_ = true;
  }

  void close_now() override {
    if (closed_) return;
    closed_ = true;
    // Later reads and writes of a stream still pointing here fail clearly.
    auto closed = KJ_EXCEPTION(DISCONNECTED, kj::str("connection to ", name_.c_str(), " closed"));
    if (read_error_ == nullptr && !eof_) read_error_ = kj::cp(closed);
    if (write_error_ == nullptr) write_error_ = kj::cp(closed);
    if (read_ && read_->fulfiller->isWaiting()) read_->fulfiller->reject(kj::cp(closed));
    read_.reset();
    write_.reset();
    connect_fulfiller_ = kj::Own<kj::PromiseFulfiller<kj::Own<kj::AsyncIoStream>>>();
    disconnect_fulfiller_ = kj::Own<kj::PromiseFulfiller<void>>();
    disconnect_fork_ = nullptr;
    finish_direct(kj::mv(closed));
    loop_.cancel_flush(this);
    close_handle(reinterpret_cast<uv_handle_t*>(&tcp_));
    if (lingering_) close_handle(reinterpret_cast<uv_handle_t*>(&linger_));
  }

  int fd() const {
    int fd = -1;
    uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd);
    return fd;
  }
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

 private:
  struct PendingRead {
    kj::byte* buffer;
    size_t min_bytes;
    size_t max_bytes;
    size_t filled;
    kj::Own<kj::PromiseFulfiller<size_t>> fulfiller;
  };
  struct PendingWrite {
    kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces;
    size_t piece_index;
    size_t offset;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
    kj::Array<kj::ArrayPtr<const kj::byte>> pieces_copy;
  };
  struct WriteRequest {
    uv_write_t req{};
    TcpConn* conn = nullptr;
    std::vector<char> data;
    size_t skip = 0;      // bytes already written by uv_try_write
    bool direct = false;  // from the caller's buffers (write_direct), not `data`
  };

  void close_handle(uv_handle_t* handle) {
    if (uv_is_closing(handle)) return;
    uv_close(handle, &TcpConn::on_close);
  }

  static void on_close(uv_handle_t* handle) {
    auto* conn = static_cast<TcpConn*>(handle->data);
    // A stream object still pointing here frees it in release_owner().
    if (--conn->handles_open_ == 0 && !conn->owned_) std::unique_ptr<TcpConn> owned(conn);
  }

  static void on_linger(uv_timer_t* timer) {
    auto* conn = static_cast<TcpConn*>(timer->data);
    SHOAL_LOG_DEBUG("loop: dropping unsent bytes to {} after {} ms", conn->name_, kCloseLingerMs);
    conn->close_now();
  }

  static void on_connect(uv_connect_t* req, int status) {
    auto* conn = static_cast<TcpConn*>(req->data);
    guarded("connect", [&]() { conn->finish_connect(status); });
  }

  void finish_connect(int status) {
    auto fulfiller = kj::mv(connect_fulfiller_);
    if (closed_) return;
    if (fulfiller.get() == nullptr || !fulfiller->isWaiting()) {
      close_now();  // the connect promise was dropped
      return;
    }
    if (status < 0) {
      fulfiller->reject(disconnected("connect to " + name_, status));
      close_now();
      return;
    }
    start();
    fulfiller->fulfill(kj::heap<UvTcpStream>(loop_, this));
  }

  // -- read internals --
  size_t buffered() const { return read_end_ - read_begin_; }

  size_t take_buffered(kj::byte* out, size_t max_bytes) {
    size_t n = std::min(max_bytes, buffered());
    if (n > 0) {
      std::memcpy(out, read_buffer_.data() + read_begin_, n);
      read_begin_ += n;
      if (read_begin_ == read_end_) read_begin_ = read_end_ = 0;
      if (!reading_ && owned_ && buffered() < kReadBufferedBytesMax) start_reading();
    }
    return n;
  }

  void start_reading() {
    if (reading_ || eof_ || read_error_ != nullptr || closed_) return;
    if (uv_read_start(stream(), &TcpConn::on_alloc, &TcpConn::on_read) == 0) reading_ = true;
  }

  void stop_reading() {
    if (!reading_) return;
    uv_read_stop(stream());
    reading_ = false;
  }

  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    static_cast<TcpConn*>(handle->data)->alloc(buf);
  }

  void alloc(uv_buf_t* buf) {
    // Large pending read with nothing buffered: read straight into it.
    // Nothing can drop the read between alloc and on_read (same libuv call).
    if (read_ && read_->fulfiller->isWaiting() && buffered() == 0 &&
        read_->max_bytes - read_->filled >= kReadChunkBytes) {
      direct_read_ = true;
      size_t room = read_->max_bytes - read_->filled;
      *buf = uv_buf_init(reinterpret_cast<char*>(read_->buffer + read_->filled),
                         static_cast<unsigned>(std::min<size_t>(room, 1u << 30)));
      return;
    }
    direct_read_ = false;
    if (read_begin_ > 0 && read_buffer_.size() - read_end_ < kReadChunkBytes) {
      std::memmove(read_buffer_.data(), read_buffer_.data() + read_begin_, buffered());
      read_end_ -= read_begin_;
      read_begin_ = 0;
    }
    if (read_buffer_.size() < read_end_ + kReadChunkBytes) {
      shoal::detail::resize_uninitialized(read_buffer_, read_end_ + kReadChunkBytes);
    }
    *buf = uv_buf_init(read_buffer_.data() + read_end_,
                       static_cast<unsigned>(read_buffer_.size() - read_end_));
  }

  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) {
    auto* conn = static_cast<TcpConn*>(stream->data);
    guarded("read", [&]() { conn->handle_read(nread); });
  }

  void handle_read(ssize_t nread) {
    if (nread == 0) return;  // EAGAIN
    if (nread > 0) {
      if (direct_read_) {
        read_->filled += static_cast<size_t>(nread);
      } else {
        read_end_ += static_cast<size_t>(nread);
      }
    } else if (nread == UV_EOF) {
      eof_ = true;
      stop_reading();
    } else {
      read_error_ = disconnected("read from " + name_, static_cast<int>(nread));
      stop_reading();
      signal_disconnect();
    }
    direct_read_ = false;
    if (!owned_) {
      stop_reading();
      return;
    }
    deliver();
    if (buffered() >= kReadBufferedBytesMax) stop_reading();
  }

  void deliver() {
    if (!read_) return;
    PendingRead& read = *read_;
    if (!read.fulfiller->isWaiting()) {
      read_.reset();
      return;
    }
    read.filled += take_buffered(read.buffer + read.filled, read.max_bytes - read.filled);
    if (read.filled >= read.min_bytes || eof_) {
      auto fulfiller = kj::mv(read.fulfiller);
      size_t filled = read.filled;
      read_.reset();
      fulfiller->fulfill(kj::cp(filled));
      return;
    }
    KJ_IF_MAYBE(error, read_error_) {
      auto fulfiller = kj::mv(read.fulfiller);
      read_.reset();
      fulfiller->reject(kj::cp(*error));
    }
  }

  // -- write internals --
  // Copies as much of `pending` as the bound allows into the cork; true when
  // all of it is buffered.
  bool copy_in(PendingWrite& pending) {
    while (pending.piece_index < pending.pieces.size() && write_error_ == nullptr) {
      auto piece = pending.pieces[pending.piece_index];
      size_t room = kWriteBufferedBytesMax - buffered_bytes_;
      if (room == 0) break;
      size_t n = std::min(room, piece.size() - pending.offset);
      const char* from = reinterpret_cast<const char*>(piece.begin()) + pending.offset;
      cork_.insert(cork_.end(), from, from + n);
      buffered_bytes_ += n;
      pending.offset += n;
      if (pending.offset == piece.size()) {
        ++pending.piece_index;
        pending.offset = 0;
      }
      if (cork_.size() >= kCorkFlushBytes) {
        flush();
      } else if (!early_flushed_ && cork_.size() >= kCorkEarlyFlushBytes && writes_in_flight_ == 0) {
        flush();
        early_flushed_ = true;  // once per turn: flush() from the loop clears it
      }
    }
    if (!cork_.empty() && !flush_scheduled_ && write_error_ == nullptr) {
      flush_scheduled_ = true;
      loop_.schedule_flush(this);
    }
    return pending.piece_index == pending.pieces.size() && write_error_ == nullptr;
  }

  static void on_write(uv_write_t* req, int status) {
    std::unique_ptr<WriteRequest> request(static_cast<WriteRequest*>(req->data));
    TcpConn* conn = request->conn;
    size_t bytes = request->data.size() - request->skip;
    if (request->direct) {
      guarded("write", [&]() { conn->finish_direct_write(status); });
      return;
    }
    guarded("write", [&]() { conn->finish_write(std::move(request->data), bytes, status); });
  }

  void finish_direct_write(int status) {
    --writes_in_flight_;
    if (status < 0 && status != UV_ECANCELED) {
      fail_writes(disconnected("write to " + name_, status));
    } else if (status == 0) {
      finish_direct(nullptr);
    }
    maybe_finish_linger();
  }

  void finish_direct(kj::Maybe<kj::Exception> error) {
    if (direct_ == nullptr) return;
    DirectWrite* direct = direct_;
    direct_ = nullptr;
    direct->finish(kj::mv(error));
  }

  void finish_write(std::vector<char>&& data, size_t bytes, int status) {
    --writes_in_flight_;
    buffered_bytes_ -= bytes;
    if (spare_.empty() && data.capacity() <= kCorkFlushBytes * 2) {
      data.clear();
      spare_.push_back(std::move(data));
    }
    if (status < 0 && status != UV_ECANCELED) {
      fail_writes(disconnected("write to " + name_, status));
    }
    if (write_) {
      // Take it out: copy_in() may fail the stream, which clears write_.
      PendingWrite pending = kj::mv(*write_);
      write_.reset();
      if (!pending.fulfiller->isWaiting()) {
        // Cancelled by the caller: its bytes may be gone; drop the rest.
      } else if (copy_in(pending)) {
        pending.fulfiller->fulfill();
      } else if (write_error_ != nullptr) {
        pending.fulfiller->reject(kj::cp(KJ_ASSERT_NONNULL(write_error_)));
      } else {
        write_.emplace(kj::mv(pending));
      }
    }
    maybe_finish_linger();
  }

  void fail_writes(kj::Exception&& error) {
    if (write_error_ == nullptr) write_error_ = kj::mv(error);
    buffered_bytes_ -= cork_.size();
    cork_.clear();
    finish_direct(kj::cp(KJ_ASSERT_NONNULL(write_error_)));
    if (write_) {
      auto fulfiller = kj::mv(write_->fulfiller);
      write_.reset();
      if (fulfiller->isWaiting()) fulfiller->reject(kj::cp(KJ_ASSERT_NONNULL(write_error_)));
    }
    signal_disconnect();
  }

  void signal_disconnect() {
    if (disconnect_fulfiller_.get() != nullptr && disconnect_fulfiller_->isWaiting()) {
      disconnect_fulfiller_->fulfill();
    }
  }

  static void on_shutdown(uv_shutdown_t* req, int status) {
    auto* conn = static_cast<TcpConn*>(req->data);
    guarded("shutdown", [&]() {
      conn->shutdown_pending_ = false;
      if (status < 0 && status != UV_ECANCELED) {
        SHOAL_LOG_DEBUG("loop: shutdown of {} failed: {}", conn->name_, uv_strerror(status));
      }
      conn->maybe_finish_linger();
    });
  }

  void maybe_finish_linger() {
    if (lingering_ && writes_in_flight_ == 0 && !shutdown_pending_) close_now();
  }

  Loop& loop_;
  uv_tcp_t tcp_{};
  uv_timer_t linger_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  int handles_open_ = 0;
  bool owned_ = false;  // a UvTcpStream points at us
  bool closed_ = false;
  bool lingering_ = false;
  std::string name_;
  kj::Own<kj::PromiseFulfiller<kj::Own<kj::AsyncIoStream>>> connect_fulfiller_;

  // Grown without zero-filling (detail::resize_uninitialized): libuv writes
  // what it reads, and an idle connection's 64 KiB chunk stays untouched
  // memory (a zeroed one kept 64 KiB resident per connection).
  std::string read_buffer_;
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
  bool reading_ = false;
  bool direct_read_ = false;
  bool eof_ = false;
  kj::Maybe<kj::Exception> read_error_;
  std::optional<PendingRead> read_;

  std::vector<char> cork_;
  std::vector<std::vector<char>> spare_;
  size_t buffered_bytes_ = 0;  // corked + handed to libuv, not yet written
  size_t writes_in_flight_ = 0;
  bool flush_scheduled_ = false;
  bool early_flushed_ = false;  // this turn's early flush (kCorkEarlyFlushBytes) is done
  bool write_shut_ = false;
  bool shutdown_pending_ = false;
  kj::Maybe<kj::Exception> write_error_;
  std::optional<PendingWrite> write_;
  DirectWrite* direct_ = nullptr;  // the write_direct() libuv is sending, if any
  kj::Own<kj::PromiseFulfiller<void>> disconnect_fulfiller_;
  kj::Maybe<kj::ForkedPromise<void>> disconnect_fork_;
};

DirectWrite::DirectWrite(kj::PromiseFulfiller<void>& fulfiller, TcpConn* conn)
    : fulfiller_(fulfiller), conn_(conn) {
  conn_->set_direct(this);
}

DirectWrite::~DirectWrite() noexcept(false) {
  if (conn_ != nullptr) conn_->direct_write_cancelled();
}

void DirectWrite::finish(kj::Maybe<kj::Exception> error) {
  conn_ = nullptr;
  KJ_IF_MAYBE(e, error) {
    fulfiller_.reject(kj::mv(*e));
  } else {
    fulfiller_.fulfill();
  }
}

UvTcpStream::UvTcpStream(Loop& loop, TcpConn* conn) : loop_(loop), conn_(conn) {
  conn_->set_owned(true);
  loop_.add_live_object();
}

UvTcpStream::~UvTcpStream() noexcept(false) {
  conn_->release_owner();
  loop_.remove_live_object();
}

kj::Promise<size_t> UvTcpStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  return conn_->try_read(static_cast<kj::byte*>(buffer), min_bytes, max_bytes);
}

kj::Promise<void> UvTcpStream::write(const void* buffer, size_t size) {
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return conn_->write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> UvTcpStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return conn_->write(pieces);
}

kj::Promise<void> UvTcpStream::whenWriteDisconnected() { return conn_->when_write_disconnected(); }

void UvTcpStream::shutdownWrite() { conn_->shutdown_write(); }

void UvTcpStream::abortRead() { conn_->abort_read(); }

void UvTcpStream::getsockopt(int level, int option, void* value, uint* length) {
  socklen_t socklen = *length;
  KJ_SYSCALL(::getsockopt(conn_->fd(), level, option, value, &socklen));
  *length = socklen;
}

void UvTcpStream::setsockopt(int level, int option, const void* value, uint length) {
  KJ_SYSCALL(::setsockopt(conn_->fd(), level, option, value, length));
}

void UvTcpStream::getsockname(struct sockaddr* addr, uint* length) {
  int len = static_cast<int>(*length);
  int rc = uv_tcp_getsockname(conn_->tcp(), addr, &len);
  KJ_REQUIRE(rc == 0, "getsockname failed", uv_strerror(rc));
  *length = static_cast<uint>(len);
}

void UvTcpStream::getpeername(struct sockaddr* addr, uint* length) {
  int len = static_cast<int>(*length);
  int rc = uv_tcp_getpeername(conn_->tcp(), addr, &len);
  KJ_REQUIRE(rc == 0, "getpeername failed", uv_strerror(rc));
  *length = static_cast<uint>(len);
}

kj::Maybe<int> UvTcpStream::getFd() const {
  int fd = conn_->fd();
  if (fd < 0) return nullptr;
  return fd;
}

// A listening uv_tcp_t; freed by its close callback.
class TcpServer final : public Closeable {
 public:
  explicit TcpServer(Loop& loop) : loop_(loop) {
    SHOAL_ASSERT(uv_tcp_init(loop.uv(), &tcp_) == 0);
    tcp_.data = this;
    loop_.add_closeable(this);
  }
  ~TcpServer() { loop_.remove_closeable(this); }
  static TcpServer* create(Loop& loop) { return std::make_unique<TcpServer>(loop).release(); }

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  void set_owner(TcpListener* owner) { owner_ = owner; }

  int listen() { return uv_listen(stream(), kListenBacklog, &TcpServer::on_connection); }

  void close_now() override {
    owner_ = nullptr;
    auto* handle = reinterpret_cast<uv_handle_t*>(&tcp_);
    if (uv_is_closing(handle)) return;
    uv_close(handle, [](uv_handle_t* h) {
      std::unique_ptr<TcpServer> owned(static_cast<TcpServer*>(h->data));
    });
  }

 private:
  static void on_connection(uv_stream_t* stream, int status) {
    auto* server = static_cast<TcpServer*>(stream->data);
    if (status < 0) {
      SHOAL_LOG_WARN("loop: accept failed: {}", uv_strerror(status));
      return;
    }
    if (server->owner_ == nullptr) return;
    guarded("connection", [&]() { server->owner_->on_connection(); });
  }

  Loop& loop_;
  uv_tcp_t tcp_{};
  TcpListener* owner_ = nullptr;
};

}  // namespace detail

kj::Promise<kj::Own<kj::AsyncIoStream>> connect_tcp(Loop& loop, const std::string& host,
                                                     uint16_t port) {
  auto address = parse_address(host, port);
  if (!address.ok()) {
    return KJ_EXCEPTION(FAILED, kj::str("connect: ", address.status().message().c_str()));
  }
  detail::TcpConn* conn = detail::TcpConn::create(loop);
  return conn->connect(reinterpret_cast<const sockaddr*>(&address.value()),
                       address_name(host, port));
}

Result<kj::Own<TcpListener>> TcpListener::listen(Loop& loop, const std::string& host,
                                                 uint16_t port) {
  auto address = parse_address(host, port);
  if (!address.ok()) return address.status();
  detail::TcpServer* server = detail::TcpServer::create(loop);
  int rc = uv_tcp_bind(server->tcp(), reinterpret_cast<const sockaddr*>(&address.value()), 0);
  if (rc == 0) rc = server->listen();
  if (rc < 0) {
    server->close_now();
    return Status::unavailable("listen on " + address_name(host, port) + ": " + uv_strerror(rc));
  }
  return kj::heap<TcpListener>(Passkey{}, loop, server);
}

TcpListener::TcpListener(Passkey, Loop& loop, detail::TcpServer* server)
    : loop_(loop), server_(server) {
  server_->set_owner(this);
  loop_.add_live_object();
}

TcpListener::~TcpListener() noexcept(false) {
  server_->close_now();
  loop_.remove_live_object();
}

kj::Promise<kj::Own<kj::AsyncIoStream>> TcpListener::accept() {
  if (accept_fulfiller_.get() != nullptr && accept_fulfiller_->isWaiting()) {
    return KJ_EXCEPTION(FAILED, "accept() while another accept is pending");
  }
  if (connection_waiting_) return kj::evalNow([&]() { return take_connection(); });
  auto paf = kj::newPromiseAndFulfiller<kj::Own<kj::AsyncIoStream>>();
  accept_fulfiller_ = kj::mv(paf.fulfiller);
  return kj::mv(paf.promise);
}

void TcpListener::on_connection() {
  // libuv stops watching the socket until uv_accept() is called, so at most
  // one connection waits here; the rest wait in the kernel backlog.
  connection_waiting_ = true;
  if (accept_fulfiller_.get() != nullptr && accept_fulfiller_->isWaiting()) {
    auto fulfiller = kj::mv(accept_fulfiller_);
    kj::Own<kj::AsyncIoStream> stream;
    KJ_IF_MAYBE(exception, kj::runCatchingExceptions([&]() { stream = take_connection(); })) {
      fulfiller->reject(kj::mv(*exception));
      return;
    }
    fulfiller->fulfill(kj::mv(stream));
  }
}

kj::Own<kj::AsyncIoStream> TcpListener::take_connection() {
  connection_waiting_ = false;
  detail::TcpConn* conn = detail::TcpConn::create(loop_);
  int rc = uv_accept(server_->stream(), conn->stream());
  if (rc < 0) {
    conn->close_now();
    kj::throwFatalException(disconnected("accept", rc));
  }
  sockaddr_storage peer{};
  int len = sizeof(peer);
  char text[INET6_ADDRSTRLEN] = "?";
  uint16_t peer_port = 0;
  if (uv_tcp_getpeername(conn->tcp(), reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    if (peer.ss_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&peer);
      uv_ip4_name(in, text, sizeof(text));
      peer_port = ntohs(in->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
      uv_ip6_name(in6, text, sizeof(text));
      peer_port = ntohs(in6->sin6_port);
    }
  }
  conn->set_name(address_name(text, peer_port));
  conn->start();
  return kj::heap<detail::UvTcpStream>(loop_, conn);
}

uint TcpListener::getPort() {
  sockaddr_storage addr{};
  int len = sizeof(addr);
  if (uv_tcp_getsockname(server_->tcp(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

void TcpListener::getsockopt(int level, int option, void* value, uint* length) {
  int fd = -1;
  KJ_REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(server_->tcp()), &fd) == 0);
  socklen_t socklen = *length;
  KJ_SYSCALL(::getsockopt(fd, level, option, value, &socklen));
  *length = socklen;
}

void TcpListener::setsockopt(int level, int option, const void* value, uint length) {
  int fd = -1;
  KJ_REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(server_->tcp()), &fd) == 0);
  KJ_SYSCALL(::setsockopt(fd, level, option, value, length));
}

void TcpListener::getsockname(struct sockaddr* addr, uint* length) {
  int len = static_cast<int>(*length);
  int rc = uv_tcp_getsockname(server_->tcp(), addr, &len);
  KJ_REQUIRE(rc == 0, "getsockname failed", uv_strerror(rc));
  *length = static_cast<uint>(len);
}

}  // namespace shoal::loop

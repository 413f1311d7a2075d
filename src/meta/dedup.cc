#include "meta/dedup.h"

#include "base/assert.h"
#include "meta/codec.h"

namespace shoal::meta {

namespace {

constexpr size_t kEntryOverheadBytes = 96;  // map node, deque slot and fields

std::string describe(const RequestId& id) {
  return "request id (client " + std::to_string(id.client_id) + ", seq " + std::to_string(id.seq) +
         ")";
}

}  // namespace

DedupTable::DedupTable(DedupLimits limits) : limits_(limits) {
  SHOAL_ASSERT(limits_.entries_max > 0 && limits_.clients_max > 0, limits_.entries_max,
               limits_.clients_max);
}

size_t DedupTable::entry_bytes(const Entry& e) { return kEntryOverheadBytes + e.response.size(); }

std::optional<Response> DedupTable::check(const RequestId& id, uint64_t fingerprint,
                                          int64_t revision) const {
  SHOAL_ASSERT(!id.empty());
  Response out;
  out.revision = revision;
  auto it = entries_.find({id.client_id, id.seq});
  if (it != entries_.end()) {
    const Entry& e = it->second;
    if (e.fingerprint != fingerprint) {
      out.status = Status::invalid_argument(describe(id) +
                                            " was already used by a different request; use a new "
                                            "seq (or a new client id) for every request");
      return out;
    }
    if (!e.kept) {
      out.status = Status::already_exists(
          describe(id) + " was already applied at revision " + std::to_string(e.revision) +
          "; its " + std::to_string(e.response_size) + "-byte response exceeded the " +
          std::to_string(limits_.response_bytes_max) + "-byte retention limit and was not kept");
      return out;
    }
    auto original = decode_response(e.response);
    SHOAL_ASSERT(original.ok(), original.status().to_string());
    return std::move(*original);
  }
  auto mark = watermarks_.find(id.client_id);
  if (mark != watermarks_.end() && id.seq <= mark->second.seq) {
    out.status = Status::invalid_argument(
        describe(id) + " is at or below seq " + std::to_string(mark->second.seq) +
        ", whose response is no longer kept, so it may already have been applied; read the "
        "current state instead of retrying, and increase seq with every request");
    return out;
  }
  return std::nullopt;
}

void DedupTable::record(const RequestId& id, uint64_t fingerprint, const Response& response) {
  SHOAL_ASSERT(!id.empty());
  Entry e;
  e.fingerprint = fingerprint;
  e.revision = response.revision;
  std::string encoded = encode_response(response);
  e.response_size = encoded.size();
  e.kept = encoded.size() <= limits_.response_bytes_max;
  if (e.kept) e.response = std::move(encoded);
  insert({id.client_id, id.seq}, std::move(e));
  evict();
}

void DedupTable::insert(const Key& key, Entry entry) {
  bytes_ += entry_bytes(entry);
  bool inserted = entries_.emplace(key, std::move(entry)).second;
  SHOAL_ASSERT(inserted, key.first, key.second);
  order_.push_back(key);
}

void DedupTable::raise_watermark(uint64_t client, uint64_t seq) {
  auto it = watermarks_.find(client);
  if (it == watermarks_.end()) {
    it = watermarks_.emplace(client, Watermark{}).first;
  } else {
    stamps_.erase(it->second.stamp);
  }
  it->second.seq = std::max(it->second.seq, seq);
  it->second.stamp = next_stamp_++;
  stamps_.emplace(it->second.stamp, client);
  while (watermarks_.size() > limits_.clients_max) {
    auto oldest = stamps_.begin();
    watermarks_.erase(oldest->second);
    stamps_.erase(oldest);
  }
}

void DedupTable::evict() {
  while (!order_.empty() && (entries_.size() > limits_.entries_max || bytes_ > limits_.bytes_max)) {
    Key key = order_.front();
    order_.pop_front();
    auto it = entries_.find(key);
    SHOAL_ASSERT(it != entries_.end(), key.first, key.second);
    bytes_ -= entry_bytes(it->second);
    entries_.erase(it);
    raise_watermark(key.first, key.second);
  }
}

void DedupTable::write(ByteWriter& out) const {
  out.put_varint(order_.size());
  for (const Key& key : order_) {
    const Entry& e = entries_.at(key);
    out.put_varint(key.first);
    out.put_varint(key.second);
    out.put_varint(e.fingerprint);
    out.put_signed(e.revision);
    out.put_varint(e.response_size);
    out.put_u8(e.kept ? 1 : 0);
    if (e.kept) out.put_bytes(e.response);
  }
  out.put_varint(stamps_.size());
  for (const auto& [stamp, client] : stamps_) {
    out.put_varint(client);
    out.put_varint(watermarks_.at(client).seq);
  }
}

Status DedupTable::read(ByteReader& in) {
  DedupTable fresh(limits_);
  size_t count = 0;
  SHOAL_RETURN_IF_ERROR(in.get_count(count, 6, "dedup entries"));
  if (count > limits_.entries_max) {
    return Status::invalid_argument(
        "snapshot holds " + std::to_string(count) + " request ids but this node keeps at most " +
        std::to_string(limits_.entries_max) + "; every member must run with the same meta limits");
  }
  for (size_t i = 0; i < count; ++i) {
    Key key;
    Entry e;
    uint8_t kept = 0;
    SHOAL_RETURN_IF_ERROR(in.get_varint(key.first, "dedup client id"));
    SHOAL_RETURN_IF_ERROR(in.get_varint(key.second, "dedup seq"));
    SHOAL_RETURN_IF_ERROR(in.get_varint(e.fingerprint, "dedup fingerprint"));
    SHOAL_RETURN_IF_ERROR(in.get_non_negative(e.revision, "dedup revision"));
    SHOAL_RETURN_IF_ERROR(in.get_varint(e.response_size, "dedup response size"));
    SHOAL_RETURN_IF_ERROR(in.get_u8(kept, "dedup kept flag"));
    if (key.first == 0 || kept > 1 || fresh.entries_.count(key) != 0) {
      return Status::invalid_argument("snapshot has a bad or repeated request id entry");
    }
    e.kept = kept == 1;
    if (e.kept != (e.response_size <= limits_.response_bytes_max)) {
      return Status::invalid_argument(
          "snapshot request id entry disagrees with the retention limit");
    }
    if (e.kept) {
      SHOAL_RETURN_IF_ERROR(in.get_bytes(e.response, limits_.response_bytes_max, "dedup response"));
      if (e.response.size() != e.response_size) {
        return Status::invalid_argument("snapshot request id entry has a wrong response size");
      }
      auto decoded = decode_response(e.response);
      if (!decoded.ok()) {
        return Status::invalid_argument("snapshot holds a bad kept response: " +
                                        decoded.status().message());
      }
    }
    fresh.insert(key, std::move(e));
  }
  if (fresh.bytes_ > limits_.bytes_max) {
    return Status::invalid_argument(
        "snapshot's kept responses exceed this node's byte limit; "
        "every member must run with the same meta limits");
  }
  SHOAL_RETURN_IF_ERROR(in.get_count(count, 2, "dedup watermarks"));
  if (count > limits_.clients_max) {
    return Status::invalid_argument("snapshot holds more client watermarks than this node keeps");
  }
  for (size_t i = 0; i < count; ++i) {
    uint64_t client = 0;
    uint64_t seq = 0;
    SHOAL_RETURN_IF_ERROR(in.get_varint(client, "watermark client id"));
    SHOAL_RETURN_IF_ERROR(in.get_varint(seq, "watermark seq"));
    if (client == 0 || fresh.watermarks_.count(client) != 0) {
      return Status::invalid_argument("snapshot has a bad or repeated client watermark");
    }
    fresh.raise_watermark(client, seq);
  }
  *this = std::move(fresh);
  return {};
}

}  // namespace shoal::meta

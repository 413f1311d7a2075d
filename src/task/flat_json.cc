#include "task/flat_json.h"

#include "base/json.h"

#include <cstdint>

namespace shoal::detail {

namespace {


class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  Result<std::map<std::string, std::string>> object() {
    std::map<std::string, std::string> out;
    skip_space();
    if (!take('{')) return error("expected '{'");
    skip_space();
    if (take('}')) return finish(std::move(out));
    for (;;) {
      skip_space();
      auto key = string();
      if (!key.ok()) return key.status();
      skip_space();
      if (!take(':')) return error("expected ':' after a key");
      skip_space();
      Result<std::string> value = peek() == '"' ? string() : literal();
      if (!value.ok()) return value.status();
      out[*key] = std::move(*value);
      skip_space();
      if (take('}')) return finish(std::move(out));
      if (!take(',')) return error("expected ',' or '}'");
    }
  }

 private:
  Result<std::map<std::string, std::string>> finish(std::map<std::string, std::string> out) {
    skip_space();
    if (at_ != text_.size()) return error("unexpected text after the object");
    return out;
  }

  Result<std::string> string() {
    if (!take('"')) return error("expected a string");
    std::string out;
    while (at_ < text_.size()) {
      char c = text_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return error("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) break;
      char e = text_[at_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (at_ + 4 > text_.size()) return error("short \\u escape");
          uint32_t code = 0;
          for (int i = 0; i < 4; ++i) {
            char h = text_[at_++];
            code <<= 4;
            if (h >= '0' && h <= '9') code |= h - '0';
            else if (h >= 'a' && h <= 'f') code |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') code |= h - 'A' + 10;
            else return error("bad \\u escape");
          }
          // Basic plane only (the writer escapes control bytes alone).
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xc0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3f));
          } else {
            out += static_cast<char>(0xe0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (code & 0x3f));
          }
          break;
        }
        default:
          return error("bad escape");
      }
    }
    return error("unterminated string");
  }

  Result<std::string> literal() {
    std::size_t start = at_;
    while (at_ < text_.size()) {
      char c = text_[at_];
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '+' ||
                c == '.' || c == 'E';
      if (!ok) break;
      ++at_;
    }
    if (at_ == start) return error("expected a string, number, true, false or null");
    return std::string(text_.substr(start, at_ - start));
  }

  void skip_space() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\t' || text_[at_] == '\r'))
      ++at_;
  }
  char peek() const { return at_ < text_.size() ? text_[at_] : '\0'; }
  bool take(char c) {
    if (peek() != c) return false;
    ++at_;
    return true;
  }
  Status error(const std::string& what) const {
    return Status::invalid_argument("JSON record: " + what + " at byte " + std::to_string(at_));
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace

std::string flat_json(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out = "{";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out += ',';
    out += json_quote(fields[i].first);
    out += ':';
    out += json_quote(fields[i].second);
  }
  out += '}';
  return out;
}

Result<std::map<std::string, std::string>> parse_flat_json(std::string_view text) {
  return Reader(text).object();
}

}  // namespace shoal::detail

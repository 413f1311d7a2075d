#include "cli/config_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

namespace shoal::cli {
namespace {

constexpr size_t kConfigFileBytesMax = 1 << 20;
constexpr size_t kArrayItemsMax = 4096;

bool is_bare_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// A cursor over the whole text that knows its line number.
class Parser {
 public:
  Parser(std::string_view text, const std::string& file) : text_(text), file_(file) {}

  Result<std::vector<ConfigEntry>> run();

 private:
  Status error(const std::string& message) const {
    return Status::invalid_argument(file_ + ":" + std::to_string(line_) + ": " + message);
  }
  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return done() ? '\0' : text_[pos_]; }
  void advance() {
    if (text_[pos_] == '\n') ++line_;
    ++pos_;
  }
  void skip_blanks() {
    while (!done() && (peek() == ' ' || peek() == '\t')) advance();
  }
  // Skips blanks, comments and newlines (inside arrays).
  void skip_blanks_and_lines() {
    for (;;) {
      skip_blanks();
      if (peek() == '#') {
        while (!done() && peek() != '\n') advance();
      }
      if (peek() == '\n' || peek() == '\r') {
        advance();
        continue;
      }
      return;
    }
  }
  // After a value or header: blanks, an optional comment, then end of line.
  Status expect_line_end() {
    skip_blanks();
    if (peek() == '#') {
      while (!done() && peek() != '\n') advance();
    }
    if (peek() == '\r') advance();
    if (done()) return {};
    if (peek() != '\n') return error(std::string("unexpected '") + peek() + "' after the value");
    advance();
    return {};
  }

  Result<std::string> parse_key();
  Status parse_header();
  Status parse_scalar(ConfigKind& kind, std::string& value);
  Result<std::string> parse_basic_string();
  Result<std::string> parse_literal_string();
  Status parse_number_or_bool(ConfigKind& kind, std::string& value);
  Status parse_value(ConfigEntry& entry);

  std::string_view text_;
  const std::string& file_;
  size_t pos_ = 0;
  int line_ = 1;
  std::string section_;
  std::set<std::string> sections_seen_;
};

Result<std::string> Parser::parse_key() {
  if (peek() == '"') return parse_basic_string();
  if (peek() == '\'') return parse_literal_string();
  std::string key;
  while (!done() && is_bare_key_char(peek())) {
    key += peek();
    advance();
  }
  if (key.empty()) return error(std::string("expected a key, found '") + peek() + "'");
  if (peek() == '.')
    return error("dotted keys such as '" + key + ".…' are not supported; use a [section]");
  return key;
}

Status Parser::parse_header() {
  advance();  // '['
  if (peek() == '[') return error("arrays of tables ([[...]]) are not supported");
  skip_blanks();
  auto name = parse_key();
  if (!name.ok()) return name.status();
  skip_blanks();
  if (peek() != ']') return error("expected ']' to close the table header [" + *name);
  advance();
  if (!sections_seen_.insert(*name).second) return error("table [" + *name + "] appears twice");
  section_ = *name;
  return expect_line_end();
}

Result<std::string> Parser::parse_basic_string() {
  advance();  // '"'
  if (text_.substr(pos_, 2) == "\"\"")
    return error("multi-line strings (\"\"\") are not supported");
  std::string out;
  for (;;) {
    if (done() || peek() == '\n') return error("unterminated string");
    char c = peek();
    advance();
    if (c == '"') return out;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (done()) return error("unterminated string");
    char e = peek();
    advance();
    switch (e) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'u':
      case 'U': {
        size_t digits = e == 'u' ? 4 : 8;
        if (pos_ + digits > text_.size()) return error("short \\" + std::string(1, e) + " escape");
        uint32_t code = 0;
        for (size_t i = 0; i < digits; i++) {
          char h = peek();
          if (!std::isxdigit(static_cast<unsigned char>(h))) return error("bad \\u escape");
          code = code * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                       ? h - '0'
                                                       : (std::tolower(h) - 'a' + 10));
          advance();
        }
        if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
          return error("bad unicode escape");
        if (code < 0x80) {
          out += static_cast<char>(code);
        } else if (code < 0x800) {
          out += static_cast<char>(0xc0 | (code >> 6));
          out += static_cast<char>(0x80 | (code & 0x3f));
        } else if (code < 0x10000) {
          out += static_cast<char>(0xe0 | (code >> 12));
          out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
          out += static_cast<char>(0x80 | (code & 0x3f));
        } else {
          out += static_cast<char>(0xf0 | (code >> 18));
          out += static_cast<char>(0x80 | ((code >> 12) & 0x3f));
          out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
          out += static_cast<char>(0x80 | (code & 0x3f));
        }
        break;
      }
      default:
        return error(std::string("unknown escape \\") + e + " in a string");
    }
  }
}

Result<std::string> Parser::parse_literal_string() {
  advance();  // '\''
  if (text_.substr(pos_, 2) == "''") return error("multi-line strings (''') are not supported");
  std::string out;
  for (;;) {
    if (done() || peek() == '\n') return error("unterminated string");
    char c = peek();
    advance();
    if (c == '\'') return out;
    out += c;
  }
}

Status Parser::parse_number_or_bool(ConfigKind& kind, std::string& value) {
  std::string word;
  while (!done() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '+' ||
                     peek() == '-' || peek() == '.' || peek() == '_')) {
    word += peek();
    advance();
  }
  if (word.empty()) {
    if (peek() == '{') return error("inline tables ({...}) are not supported");
    return error(std::string("expected a value, found '") +
                 (done() || peek() == '\n' ? std::string("end of line") : std::string(1, peek())) +
                 "'");
  }
  if (word == "true" || word == "false") {
    kind = ConfigKind::kBoolean;
    value = word;
    return {};
  }
  std::string digits;
  for (char c : word) {
    if (c != '_') digits += c;
  }
  size_t start = (digits[0] == '+' || digits[0] == '-') ? 1 : 0;
  bool all_digits = digits.size() > start;
  for (size_t i = start; i < digits.size(); i++)
    all_digits = all_digits && std::isdigit(static_cast<unsigned char>(digits[i]));
  if (all_digits) {
    kind = ConfigKind::kInteger;
    value = digits[0] == '+' ? digits.substr(1) : digits;
    return {};
  }
  char* end = nullptr;
  errno = 0;
  std::strtod(digits.c_str(), &end);
  bool is_float = end != nullptr && *end == '\0' && errno == 0 &&
                  digits.find_first_of(".eE") != std::string::npos &&
                  std::isdigit(static_cast<unsigned char>(digits[start]));
  if (is_float) {
    kind = ConfigKind::kFloat;
    value = digits;
    return {};
  }
  return error("'" + word + "' is not a value: strings need quotes (\"" + word + "\")");
}

Status Parser::parse_scalar(ConfigKind& kind, std::string& value) {
  if (peek() == '"' || peek() == '\'') {
    auto text = peek() == '"' ? parse_basic_string() : parse_literal_string();
    if (!text.ok()) return text.status();
    kind = ConfigKind::kString;
    value = *text;
    return {};
  }
  return parse_number_or_bool(kind, value);
}

Status Parser::parse_value(ConfigEntry& entry) {
  if (peek() != '[') {
    entry.values.emplace_back();
    return parse_scalar(entry.kind, entry.values.back());
  }
  advance();  // '['
  entry.kind = ConfigKind::kArray;
  bool first = true;
  for (;;) {
    skip_blanks_and_lines();
    if (done()) return error("unterminated array for '" + entry.key + "'");
    if (peek() == ']') {
      advance();
      return {};
    }
    if (peek() == '[') return error("nested arrays are not supported ('" + entry.key + "')");
    ConfigKind kind;
    std::string value;
    SHOAL_RETURN_IF_ERROR(parse_scalar(kind, value));
    if (!first && kind != entry.element_kind) {
      return error("'" + entry.key + "' mixes " +
                   std::string(config_kind_name(entry.element_kind)) + " and " +
                   std::string(config_kind_name(kind)) + " in one array");
    }
    if (entry.values.size() >= kArrayItemsMax)
      return error("'" + entry.key + "' has too many items");
    entry.element_kind = kind;
    entry.values.push_back(std::move(value));
    first = false;
    skip_blanks_and_lines();
    if (peek() == ',') {
      advance();
    } else if (peek() != ']') {
      return error("expected ',' or ']' in the array for '" + entry.key + "'");
    }
  }
}

Result<std::vector<ConfigEntry>> Parser::run() {
  std::vector<ConfigEntry> entries;
  std::set<std::pair<std::string, std::string>> seen;
  if (text_.find('\0') != std::string_view::npos)
    return error("the file holds NUL bytes; is it a text file?");
  for (;;) {
    skip_blanks_and_lines();
    if (done()) return entries;
    if (peek() == '[') {
      SHOAL_RETURN_IF_ERROR(parse_header());
      continue;
    }
    ConfigEntry entry;
    entry.line = line_;
    entry.section = section_;
    auto key = parse_key();
    if (!key.ok()) return key.status();
    entry.key = *key;
    skip_blanks();
    if (peek() != '=') return error("expected '=' after the key '" + entry.key + "'");
    advance();
    skip_blanks();
    SHOAL_RETURN_IF_ERROR(parse_value(entry));
    SHOAL_RETURN_IF_ERROR(expect_line_end());
    if (!seen.insert({entry.section, entry.key}).second) {
      line_ = entry.line;
      return error("'" + entry.key + "' is set twice");
    }
    entries.push_back(std::move(entry));
  }
}

}  // namespace

std::string_view config_kind_name(ConfigKind kind) {
  switch (kind) {
    case ConfigKind::kString:
      return "a string";
    case ConfigKind::kInteger:
      return "an integer";
    case ConfigKind::kFloat:
      return "a number";
    case ConfigKind::kBoolean:
      return "a boolean";
    case ConfigKind::kArray:
      return "an array";
  }
  return "a value";
}

Result<std::vector<ConfigEntry>> parse_config(std::string_view text, const std::string& file) {
  return Parser(text, file).run();
}

Result<std::vector<ConfigEntry>> read_config_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::invalid_argument(path +
                                    ": cannot read the config file: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::invalid_argument(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kConfigFileBytesMax) {
    ::close(fd);
    return Status::invalid_argument(path + ": larger than " + std::to_string(kConfigFileBytesMax) +
                                    " bytes");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved = errno;
      ::close(fd);
      return Status::invalid_argument(path + ": cannot read the config file: " +
                                      (n < 0 ? std::strerror(saved) : "it shrank while reading"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return parse_config(text, path);
}

}  // namespace shoal::cli

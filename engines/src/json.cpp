#include "rtdetr/json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>

#include "rtdetr/error.hpp"

namespace rtdetr::json {

namespace {

const char* type_name(Value::Type type) {
  switch (type) {
    case Value::Type::Null: return "null";
    case Value::Type::Bool: return "a boolean";
    case Value::Type::Number: return "a number";
    case Value::Type::String: return "a string";
    case Value::Type::Array: return "an array";
    case Value::Type::Object: return "an object";
  }
  return "unknown";
}

[[noreturn]] void wrong_type(const char* what, const char* wanted, Value::Type got) {
  throw Error(std::string(what) + " should be " + wanted + ", found " + type_name(got));
}

void append_utf8(std::string& out, std::uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

}  // namespace

// Recursive descent over the RFC 8259 grammar. Nesting is capped so that a hostile file cannot exhaust the stack.
class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Value document() {
    Value value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected text after the JSON value");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 200;

  [[noreturn]] void fail(const std::string& why) const {
    throw Error("invalid JSON at byte " + std::to_string(pos_) + ": " + why);
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool consume(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void expect_word(const char* word) {
    for (const char* p = word; *p; ++p, ++pos_) {
      if (pos_ >= text_.size() || text_[pos_] != *p) fail(std::string("expected '") + word + "'");
    }
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("nested too deeply");
    skip_space();
    if (pos_ >= text_.size()) fail("unexpected end of text");
    Value value;
    const char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      value.type_ = Value::Type::Object;
      if (consume('}')) return value;
      do {
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] != '"') fail("expected a member name");
        std::string key = parse_string();
        if (!consume(':')) fail("expected ':'");
        value.object_[key] = parse_value(depth + 1);
      } while (consume(','));
      if (!consume('}')) fail("expected ',' or '}'");
    } else if (c == '[') {
      ++pos_;
      value.type_ = Value::Type::Array;
      if (consume(']')) return value;
      do {
        value.array_.push_back(parse_value(depth + 1));
      } while (consume(','));
      if (!consume(']')) fail("expected ',' or ']'");
    } else if (c == '"') {
      value.type_ = Value::Type::String;
      value.string_ = parse_string();
    } else if (c == 't') {
      expect_word("true");
      value.type_ = Value::Type::Bool;
      value.boolean_ = true;
    } else if (c == 'f') {
      expect_word("false");
      value.type_ = Value::Type::Bool;
    } else if (c == 'n') {
      expect_word("null");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      value.type_ = Value::Type::Number;
      value.number_ = parse_number();
    } else {
      fail(std::string("unexpected character '") + c + "'");
    }
    return value;
  }

  double parse_number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      if (pos_ == from) fail("malformed number");
    };
    if (text_[pos_] == '-') ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      digits();
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      digits();
    }
    double out = 0.0;
    // from_chars is locale-independent, unlike strtod.
    const auto result = std::from_chars(text_.data() + start, text_.data() + pos_, out);
    if (result.ec != std::errc() || result.ptr != text_.data() + pos_) fail("number out of range");
    return out;
  }

  std::uint32_t hex4() {
    if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
    std::uint32_t code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') code |= static_cast<std::uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') code |= static_cast<std::uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') code |= static_cast<std::uint32_t>(h - 'A' + 10);
      else fail("bad \\u escape");
    }
    return code;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) fail("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) fail("unterminated escape");
      const char e = text_[pos_++];
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
          std::uint32_t code = hex4();
          if (code >= 0xD800 && code < 0xDC00) {
            // Python's json.dumps writes non-BMP class names as surrogate pairs.
            if (pos_ + 2 > text_.size() || text_[pos_] != '\\' || text_[pos_ + 1] != 'u') fail("lone surrogate");
            pos_ += 2;
            const std::uint32_t low = hex4();
            if (low < 0xDC00 || low >= 0xE000) fail("bad surrogate pair");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          } else if (code >= 0xDC00 && code < 0xE000) {
            fail("lone surrogate");
          }
          append_utf8(out, code);
          break;
        }
        default: fail("unknown escape");
      }
    }
  }

  const std::string& text_;
  std::size_t pos_ = 0;
};

Value Value::parse(const std::string& text) { return Parser(text).document(); }

bool Value::as_bool(const char* what) const {
  if (type_ != Type::Bool) wrong_type(what, "a boolean", type_);
  return boolean_;
}

double Value::as_number(const char* what) const {
  if (type_ != Type::Number) wrong_type(what, "a number", type_);
  return number_;
}

std::int64_t Value::as_int(const char* what) const {
  const double v = as_number(what);
  if (std::floor(v) != v || std::fabs(v) > 9.0e15) throw Error(std::string(what) + " should be an integer");
  return static_cast<std::int64_t>(v);
}

const std::string& Value::as_string(const char* what) const {
  if (type_ != Type::String) wrong_type(what, "a string", type_);
  return string_;
}

const std::vector<Value>& Value::as_array(const char* what) const {
  if (type_ != Type::Array) wrong_type(what, "an array", type_);
  return array_;
}

const Value* Value::find(const std::string& key) const {
  if (type_ != Type::Object) return nullptr;
  const auto it = object_.find(key);
  return it == object_.end() ? nullptr : &it->second;
}

std::string quote(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

namespace {
template <typename T>
std::string shortest(T value) {
  // JSON has no NaN or infinity: null keeps the output valid JSON for strict readers.
  if (!std::isfinite(value)) return "null";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}
}  // namespace

std::string number(float value) { return shortest(value); }
std::string number(double value) { return shortest(value); }

}  // namespace rtdetr::json

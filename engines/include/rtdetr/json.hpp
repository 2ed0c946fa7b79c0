// A small JSON reader/writer: enough for the export sidecar and the CLI's --json output.
//
// Written here rather than taken from a third-party library so that the engines need nothing beyond
// ONNX Runtime (or TensorRT), libpng and libjpeg.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace rtdetr::json {

class Value {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  Value() = default;
  static Value parse(const std::string& text);  // throws rtdetr::Error with the byte offset of the fault

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  // Accessors throw rtdetr::Error naming `what` when the value has another type.
  bool as_bool(const char* what) const;
  double as_number(const char* what) const;
  std::int64_t as_int(const char* what) const;  // also rejects non-integral numbers
  const std::string& as_string(const char* what) const;
  const std::vector<Value>& as_array(const char* what) const;

  // Object member or nullptr; members keep no order (the sidecar never depends on it).
  const Value* find(const std::string& key) const;

 private:
  friend class Parser;
  Type type_ = Type::Null;
  bool boolean_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Value> array_;
  std::map<std::string, Value> object_;
};

// JSON string literal (quotes and escapes included); `text` is taken as UTF-8 and passed through.
std::string quote(const std::string& text);

// Shortest text that reads back as the same float: scores and boxes print exactly what was computed.
std::string number(float value);
std::string number(double value);

}  // namespace rtdetr::json

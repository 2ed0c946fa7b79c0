// The one exception type for problems a user can fix (bad file, foreign model, missing sidecar).
#pragma once

#include <stdexcept>
#include <string>

namespace rtdetr {

// Messages are single lines so that a CLI can print them as they are and exit non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace rtdetr

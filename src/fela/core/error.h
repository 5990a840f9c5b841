// fela::Error, the one exception type of the library, and the checks that throw it.
// Messages start with the op or component in brackets: "[rmsnorm] x has 3 columns, g has 4".
// Library code throws; only the CLI catches, prints one line and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fela {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throws fela::Error with the pieces concatenated: fail("[op] bad size ", n).
template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

}  // namespace fela

// FELA_CHECK(cond, "[op] message", values...): throws fela::Error when cond is false.
#define FELA_CHECK(cond, ...)                  \
  do {                                         \
    if (!(cond)) ::fela::fail(__VA_ARGS__);    \
  } while (0)

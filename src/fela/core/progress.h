// A one-line progress bar on stderr for long work (prepare, train, eval): fraction done, rate,
// ETA and a caller-supplied status such as the loss. Redraws at most ~10 times a second and
// only when stderr is a terminal; otherwise prints a plain line every `log_every` seconds so
// that logs stay readable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace fela {

class Progress {
 public:
  // total: units of work (steps, bytes, ...); unit: name for the rate ("tok", "B", ...).
  Progress(std::string label, int64_t total, std::string unit = "", double log_every = 10.0);
  ~Progress();
  // Sets the amount done (absolute), the amount for the rate (e.g. tokens), and a status text.
  void update(int64_t done, double rate_units = -1, const std::string& status = "");
  void finish(const std::string& status = "");
  double elapsed() const;

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  double rate_units_ = 0, log_every_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace fela

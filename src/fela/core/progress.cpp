#include "fela/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace fela {

namespace {
std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600),
                  (long long)(t / 60 % 60), (long long)(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}
std::string format_rate(double r) {
  char buf[32];
  if (r >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", r / 1e6);
  else if (r >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", r / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.1f", r);
  return buf;
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit, double log_every)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      log_every_(log_every),
      tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, double rate_units, const std::string& status) {
  done_ = done;
  if (rate_units >= 0) rate_units_ = rate_units;
  if (!status.empty()) status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.1 : log_every_)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  if (!status.empty()) status_ = status;
  draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  const double t = elapsed();
  const double frac = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 0.0;
  const double eta = frac > 0 ? t * (1 - frac) / frac : NAN;
  std::string line = label_;
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = int(frac * kWidth);
    line += " [" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "]";
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, " %lld/%lld", (long long)done_, (long long)total_);
  line += buf;
  if (!unit_.empty() && t > 0) line += " " + format_rate(rate_units_ / t) + " " + unit_ + "/s";
  line += " " + format_duration(t) + (final ? "" : "<" + format_duration(eta));
  if (!status_.empty()) line += " " + status_;
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace fela

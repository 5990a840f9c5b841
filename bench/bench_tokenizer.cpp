// Encode throughput of the gpt2 tokenizer on tiny Shakespeare, on one core and on all cores.
// Usage: bench_tokenizer [input.txt] (default data/tinyshakespeare/input.txt, then
// ../shared/data/tinyshakespeare/input.txt, relative to the working directory or the binary).
// The text is encoded whole (one thread) and as documents split at blank lines (one thread, then
// all cores through encode_batch). Each case: one warm-up run, then the median of several runs
// timed with steady_clock. Prints a markdown table.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fela/core/error.h"
#include "fela/core/threads.h"
#include "fela/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

std::string find_input(int argc, char** argv) {
  if (argc > 1) return argv[1];
  std::vector<fs::path> bases = {fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) bases.push_back(exe.parent_path() / "..");
  for (const auto& base : bases)
    for (const char* rel :
         {"data/tinyshakespeare/input.txt", "../shared/data/tinyshakespeare/input.txt"})
      if (fs::is_regular_file(base / rel)) return (base / rel).lexically_normal().string();
  fela::fail(
      "[bench_tokenizer] cannot find data/tinyshakespeare/input.txt; pass the path as argument");
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FELA_CHECK(in, "[bench_tokenizer] cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return in ? one : "unknown";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

// Median seconds of runs calls of f, after one warm-up call.
double median_seconds(const std::function<void()>& f, int runs) {
  f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string path = find_input(argc, argv);
    const std::string text = read_all(path);
    const std::string vocab_dir = fela::default_vocab_dir();
    const auto tok = fela::make_tokenizer("gpt2", vocab_dir);

    // Documents: paragraphs split after each blank line (every byte lands in exactly one).
    std::vector<std::string_view> docs;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find("\n\n", pos);
      end = end == std::string::npos ? text.size() : end + 2;
      docs.emplace_back(text.data() + pos, end - pos);
      pos = end;
    }
    const int cores = int(std::thread::hardware_concurrency());
    const int runs = 9;
    const std::string load = load_average();  // other work on the machine skews the timings
    const double mb = double(text.size()) / 1e6;

    struct Row {
      std::string input;
      int threads;
      double seconds;
      size_t tokens;
    };
    std::vector<Row> rows;
    size_t tokens = 0;
    fela::set_num_threads(1);
    double s = median_seconds([&] { tokens = tok->encode(text).size(); }, runs);
    rows.push_back({"whole text", 1, s, tokens});
    auto batch = [&] {
      tokens = 0;
      for (const auto& ids : tok->encode_batch(docs)) tokens += ids.size();
    };
    s = median_seconds(batch, runs);
    rows.push_back({std::to_string(docs.size()) + " documents", 1, s, tokens});
    fela::set_num_threads(cores);
    s = median_seconds(batch, runs);
    rows.push_back({std::to_string(docs.size()) + " documents", fela::num_threads(), s, tokens});

    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::localtime(&now));
    std::printf("gpt2 tokenizer encode throughput, %s (%.2f MB), %s\n", path.c_str(), mb, date);
    std::printf(
        "CPU: %s, %d cores, load average %s at the start; median of %d runs after a "
        "warm-up\n\n",
        cpu_model().c_str(), cores, load.c_str(), runs);
    std::printf("| input | threads | tokens | bytes/token | median ms | MB/s |\n");
    std::printf("|---|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows)
      std::printf("| %s | %d | %zu | %.3f | %.1f | %.2f |\n", r.input.c_str(), r.threads, r.tokens,
                  double(text.size()) / double(r.tokens), r.seconds * 1e3, mb / r.seconds);
    return 0;
  } catch (const fela::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}

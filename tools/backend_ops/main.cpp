// backend_ops: runs every CUDA op, forward and backward, on fresh random inputs at several shapes
// (odd sizes included) and compares each output with the CPU oracle (ops::Impl::Ref in double)
// computed from the same bf16-rounded inputs. Prints one markdown table row per output and exits
// non-zero on any miss, NaN or overwritten guard. check.h states the error and tolerance.
//
// Usage: backend_ops [--seed N] [--quick] [--only NAME[,NAME...]]
//   --seed N   rerun with the inputs of an earlier run (default: a fresh seed, printed)
//   --quick    only the shapes of at most 2^20 elements (for compute-sanitizer)
//   --only     only the named groups (linear, rmsnorm, fno, gla, ...)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>

#include "check.h"
#include "fela/core/cuda.h"
#include "fela/core/error.h"

using namespace fela;
using namespace fela::backend_ops;

int main(int argc, char** argv) {
  uint64_t seed = std::random_device{}() ^
                  uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = "," + std::string(argv[++i]) + ",";
    } else {
      std::fprintf(stderr, "usage: backend_ops [--seed N] [--quick] [--only NAME[,NAME...]]\n");
      return 2;
    }
  }
  std::vector<Group> gs = groups();
  std::sort(gs.begin(), gs.end(), [](const Group& a, const Group& b) { return a.order < b.order; });
  std::erase_if(gs, [&](const Group& g) {
    return !only.empty() && only.find("," + std::string(g.name) + ",") == std::string::npos;
  });
  try {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "backend_ops: no CUDA device\n");
      return 1;
    }
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    std::printf("backend_ops: CUDA ops against the CPU oracle (Impl::Ref, double)\n");
    std::printf("device: %s; date: %s; seed: %llu\n", cuda::device_description().c_str(), date,
                (unsigned long long)seed);
    std::printf(
        "error = ||gpu - oracle|| / ||oracle||; tol = 2 x naive + %.0e, naive = oracle "
        "rounded once to the output's dtype\n",
        kFloor);
    std::string legend;
    for (const Group& g : gs) {
      if (!legend.empty()) legend += ", ";
      legend += g.shapes;
    }
    std::printf("shapes: %s\n\n", legend.c_str());
    std::printf(
        "| op | shape | direction | output | rel. error | naive | tolerance | NaN | "
        "guards | result |\n|---|---|---|---|---|---|---|---|---|---|\n");
    Rng rng(seed);
    Context ctx{rng, quick};
    for (const Group& g : gs) g.run(ctx);
  } catch (const Error& e) {
    std::fprintf(stderr, "backend_ops: %s\n", e.what());
    return 1;
  }
  int failed = 0;
  for (const Row& r : rows()) failed += !r.pass();
  std::printf("\n%zu checks, %d failed\n", rows().size(), failed);
  return failed ? 1 : 0;
}

// GPU speed of the GLA core (ops/gla.h) at FELA's head sizes, printed as markdown tables.
//   bench_gla [--runs N] [--quick]
// Rows: fela-small heads (H 12, Dk 32, Dv 64) and fela-1b heads (H 16, Dk 64, Dv 128) at
// B x N = 8 x 1024 and long sequences; then generation steps (N = 1, state updated in place).
// Times: median over N calls (default 20), each between its own pair of CUDA events, after 3
// warm-up calls. Forward: o and the final state from a zero state; backward: dq, dk, dv, da.
// TFLOP/s counts the multiply-adds of the chunked form (64-token chunks, T = 64 * 65 / 2 score
// pairs per chunk), 2 flops each: forward 2 L Dk Dv + T (Dk + Dv) per chunk of L tokens and
// head, backward 5 L Dk Dv + T (3 Dk + 2 Dv); not the extra tensor-core products of the
// kernels' split operands (two or three per product), nor their recomputed passes.
// --quick: the two smallest rows only.
#include "fela/ops/gla.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "fela/core/bf16.h"
#include "fela/core/cuda.h"
#include "fela/core/rng.h"
#include "fela/core/tensor.h"

using namespace fela;

namespace {

constexpr int64_t kChunk = 64;

// The model's decay gate of N(0, 1) draws: logsigmoid(x) / 16, computed without overflow.
double decay_of(double x) {
  return (x < 0 ? x - std::log1p(std::exp(x)) : -std::log1p(std::exp(-x))) / 16;
}

// Median of reps calls after 3 warm-up calls.
double time_ms(const std::function<void()>& fn, int reps) {
  return bench::median_ms([&](int) { fn(); }, 3, reps);
}

struct Heads {
  const char* config;
  int64_t H, Dk, Dv;
};

// Multiply-adds of the chunked form over B x N tokens (see the top of the file).
double chunk_macs(int64_t B, int64_t N, const Heads& h, bool backward) {
  double macs = 0;
  for (int64_t t0 = 0; t0 < N; t0 += kChunk) {
    const double L = double(std::min(kChunk, N - t0)), T = L * (L + 1) / 2;
    const double dkdv = double(h.Dk) * double(h.Dv);
    macs += backward ? 5 * L * dkdv + T * double(3 * h.Dk + 2 * h.Dv)
                     : 2 * L * dkdv + T * double(h.Dk + h.Dv);
  }
  return macs * double(B * h.H);
}

void bench_row(const Heads& h, int64_t B, int64_t N, int runs, Rng& rng) {
  const Shape sk{B, N, h.H, h.Dk}, sv{B, N, h.H, h.Dv}, ss{B, h.H, h.Dk, h.Dv};
  Array q = bench::random_device(DType::BF16, sk, rng),
        k = bench::random_device(DType::BF16, sk, rng);
  Array v = bench::random_device(DType::BF16, sv, rng),
        a = bench::random_device(DType::F32, sk, rng, decay_of);
  Array d_o = bench::random_device(DType::BF16, sv, rng);
  Array o = Array::empty(DType::BF16, sv, Device::Cuda),
        st = Array::empty(DType::F32, ss, Device::Cuda);
  Array dq = Array::empty(DType::BF16, sk, Device::Cuda),
        dk = Array::empty(DType::BF16, sk, Device::Cuda);
  Array dv = Array::empty(DType::BF16, sv, Device::Cuda),
        da = Array::empty(DType::F32, sk, Device::Cuda);
  const double scale = 1.0 / std::sqrt(double(h.Dk));
  const double fwd =
      time_ms([&] { ops::gla_forward(o, st, q, k, v, a, Tensor(), scale, kChunk); }, runs);
  const double bwd =
      time_ms([&] { ops::gla_backward(dq, dk, dv, da, d_o, q, k, v, a, scale, kChunk); }, runs);
  const double ff = 2 * chunk_macs(B, N, h, false), fb = 2 * chunk_macs(B, N, h, true);
  std::printf("| %s | %lld | %lld | %lld | %lld | %lld | %.3f | %.3f | %.1f | %.1f |\n", h.config,
              (long long)B, (long long)N, (long long)h.H, (long long)h.Dk, (long long)h.Dv, fwd,
              bwd, ff / fwd * 1e-9, fb / bwd * 1e-9);
  std::fflush(stdout);
}

void bench_step(const Heads& h, int64_t B, int runs, Rng& rng) {
  const Shape sk{B, 1, h.H, h.Dk}, sv{B, 1, h.H, h.Dv}, ss{B, h.H, h.Dk, h.Dv};
  Array q = bench::random_device(DType::BF16, sk, rng),
        k = bench::random_device(DType::BF16, sk, rng);
  Array v = bench::random_device(DType::BF16, sv, rng),
        a = bench::random_device(DType::F32, sk, rng, decay_of);
  Array st = bench::random_device(DType::F32, ss, rng),
        o = Array::empty(DType::BF16, sv, Device::Cuda);
  const double scale = 1.0 / std::sqrt(double(h.Dk));
  const double ms = time_ms([&] { ops::gla_forward(o, st, q, k, v, a, st, scale, kChunk); }, runs);
  // The step reads and writes the state once: the bytes that bound it.
  const double gbs = 2.0 * double(ss.numel()) * 4 / (ms * 1e-3) * 1e-9;
  std::printf("| %s | %lld | %lld | %lld | %lld | %.1f | %.0f |\n", h.config, (long long)B,
              (long long)h.H, (long long)h.Dk, (long long)h.Dv, ms * 1e3, gbs);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: bench_gla [--runs N] [--quick]\n");
      return 2;
    }
  }
  try {
    if (cuda::device_count() == 0) {
      std::fprintf(stderr, "bench_gla: no CUDA device\n");
      return 1;
    }
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    std::printf("bench_gla: GLA core on the GPU (ops/gla.h), median of %d calls after warm-up\n",
                runs);
    std::printf("device: %s; date: %s\n\n", cuda::device_description().c_str(), date);
    const Heads small{"fela-small", 12, 32, 64}, big{"fela-1b", 16, 64, 128};
    Rng rng(1);
    std::printf(
        "| heads | B | N | H | Dk | Dv | forward ms | backward ms | forward TFLOP/s | backward "
        "TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
    struct Row {
      const Heads* h;
      int64_t B, N;
    };
    std::vector<Row> rows = {{&small, 8, 1024}, {&big, 8, 1024}};
    if (!quick) {
      rows.push_back({&small, 2, 16384});
      rows.push_back({&big, 2, 4096});
      rows.push_back({&big, 1, 16384});
    }
    for (const Row& r : rows) bench_row(*r.h, r.B, r.N, runs, rng);
    std::printf(
        "\nGeneration step (N = 1, state in place):\n\n| heads | B | H | Dk | Dv | step us | state "
        "GB/s |\n|---|---|---|---|---|---|---|\n");
    for (const Heads* h : {&small, &big})
      for (int64_t B : {1, 8}) bench_step(*h, B, runs, rng);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_gla: %s\n", e.what());
    return 1;
  }
  return 0;
}

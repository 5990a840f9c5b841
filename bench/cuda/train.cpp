// bench_train: training throughput on one GPU. For each case it builds the model on the GPU
// (bf16 compute, fp32 master weights), runs warm-up steps, then times full optimizer steps
// (forward, loss, backward, gradient norm, AdamW) on random tokens, and prints a markdown table:
// tokens/s, MFU, model TFLOP/s and peak memory. Also prints the card's measured bf16 GEMM rate.
//
// MFU = 6 x params x tokens/s / (bf16 GEMM rate measured here: an 8192^3 cuBLASLt product).
// "model TFLOP/s" counts the FLOPs of `fela info` (train_flops: 3 x forward, with the mixers'
// own FLOPs: FNO as its direct sum 2 M d per token, GLA's chunked form, the tied head).
//
// Usage: bench_train [--steps K] [--warmup W] [--case NAME:BxN[:recompute]]...
//   default cases: fela-small 8x1024, 32x1024, 2x16384; fela-1b 1x4096, 1x16384 (without and
//   with recompute). After the timed steps, as many again run with a wait for the GPU after each
//   phase, for the phase table (forward, loss: head + cross-entropy and its gradient, backward,
//   optimizer: gradient norm + AdamW); those waits make the phases add up to a little more.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "fela/core/cuda.h"
#include "fela/core/rng.h"
#include "fela/model/config.h"
#include "fela/model/model.h"
#include "fela/model/stats.h"
#include "fela/ops/linear.h"
#include "fela/train/adamw.h"

using namespace fela;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// bf16 GEMM rate of the card: y[n, n] = x[n, n] W[n, n] through the same cuBLASLt path as the
// model's linears (fp32 accumulation, bf16 output).
double gemm_tflops(int64_t n) {
  Array x = Array::zeros(DType::BF16, {n, n}, Device::Cuda);
  Array w = Array::zeros(DType::BF16, {n, n}, Device::Cuda);
  Array y = Array::zeros(DType::BF16, {n, n}, Device::Cuda);
  for (int i = 0; i < 3; ++i) ops::linear_forward(y, x, w);
  cuda::synchronize();
  const int reps = 20;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) ops::linear_forward(y, x, w);
  cuda::synchronize();
  return 2.0 * double(n) * double(n) * double(n) * reps / seconds_since(t0) / 1e12;
}

struct Case {
  std::string config;
  int64_t B, N;
  bool recompute;
};

Case parse_case(const std::string& s) {
  Case c{};
  char name[64] = {0}, flag[32] = {0};
  long long b = 0, n = 0;
  const int got = std::sscanf(s.c_str(), "%63[^:]:%lldx%lld:%31s", name, &b, &n, flag);
  FELA_CHECK(got >= 3 && b > 0 && n > 0, "[bench_train] bad case '", s,
             "' (expected NAME:BxN or NAME:BxN:recompute)");
  c.config = name, c.B = b, c.N = n, c.recompute = got == 4 && std::strcmp(flag, "recompute") == 0;
  return c;
}

struct Result {
  double tok_s = 0, step_ms = 0, loss = 0;
  double phase_ms[4] = {0, 0, 0, 0};  // forward, loss, backward, optimizer
  size_t peak = 0, device_used = 0;
};

Result run_case(const Case& k, int warmup, int steps) {
  cuda::reset_peak_memory();
  const size_t base = cuda::memory_stats().current;
  const Config c = load_config(k.config, {});
  Model m(c, DType::BF16, ops::Impl::Fast, Device::Cuda);
  m.init(1);
  m.set_recompute(k.recompute);
  AdamW adam(m.table(), DType::F32, {}, Device::Cuda);
  Rng rng(7);
  const int64_t R = k.B * k.N, V = c.vocab_size();
  std::vector<int32_t> in(R), tgt(R);
  Result r;
  // Fresh random tokens each step, as a data loader would hand them over.
  auto next_batch = [&] {
    for (int64_t i = 0; i < R; ++i) in[i] = int32_t(rng.next_u64() % uint64_t(V));
    for (int64_t i = 0; i < R; ++i) tgt[i] = int32_t(rng.next_u64() % uint64_t(V));
  };
  // One optimizer step; after(p) runs at the end of phase p (forward, loss, backward, optimizer).
  auto step = [&](const std::function<void(int)>& after) {
    m.zero_grad();
    m.forward(in.data(), k.B, k.N);
    after(0);
    r.loss = m.loss(tgt.data(), 1.0);
    after(1);
    m.backward();
    after(2);
    const double norm = adam.grad_norm(m.grads());
    adam.step(m.params(), m.grads(), 1e-4, clip_scale(norm, 1.0), m.shadow());
    after(3);
  };
  const auto no_wait = [](int) {};
  for (int i = 0; i < warmup; ++i) next_batch(), step(no_wait);
  cuda::synchronize();
  const auto t0 = Clock::now();
  for (int i = 0; i < steps; ++i) next_batch(), step(no_wait);
  cuda::synchronize();
  const double t = seconds_since(t0);
  r.tok_s = double(R) * steps / t;
  r.step_ms = 1e3 * t / steps;
  // Phases, each followed by a wait for the GPU.
  Clock::time_point tp;
  const auto lap = [&](int phase) {
    cuda::synchronize();
    r.phase_ms[phase] += 1e3 * seconds_since(tp) / steps;
    tp = Clock::now();
  };
  for (int i = 0; i < steps; ++i) {
    next_batch();
    tp = Clock::now();
    step(lap);
  }
  const cuda::MemoryStats ms = cuda::memory_stats();
  r.peak = ms.peak - base;
  r.device_used = ms.device_total - ms.device_free;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int warmup = 3, steps = 10;
  std::vector<Case> cases;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--steps" && i + 1 < argc) {
        steps = std::atoi(argv[++i]);
      } else if (a == "--warmup" && i + 1 < argc) {
        warmup = std::atoi(argv[++i]);
      } else if (a == "--case" && i + 1 < argc) {
        cases.push_back(parse_case(argv[++i]));
      } else {
        std::fprintf(
            stderr,
            "usage: bench_train [--steps K] [--warmup W] [--case NAME:BxN[:recompute]]...\n");
        return 2;
      }
    }
    FELA_CHECK(steps >= 1 && warmup >= 0, "[bench_train] --steps must be >= 1, --warmup >= 0");
    if (cases.empty())
      cases = {{"fela-small", 8, 1024, false},  {"fela-small", 32, 1024, false},
               {"fela-small", 2, 16384, false}, {"fela-1b", 1, 4096, false},
               {"fela-1b", 1, 16384, false},    {"fela-1b", 1, 16384, true}};
    FELA_CHECK(cuda::device_count() > 0, "[bench_train] no CUDA device");
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    const double peak = gemm_tflops(8192);
    std::printf("device: %s; date: %s\n", cuda::device_description().c_str(), date);
    std::printf("bf16 GEMM 8192^3 (cuBLASLt): %.1f TFLOP/s\n", peak);
    std::printf("timed: %d steps after %d warm-up steps; MFU = 6 x params x tok/s / GEMM rate\n\n",
                steps, warmup);
    std::printf(
        "| model | batch | recompute | tok/s | MFU %% | model TFLOP/s | step ms | peak MiB | "
        "device used MiB | loss |\n|---|---|---|---|---|---|---|---|---|---|\n");
    std::vector<std::string> phases;
    for (const Case& k : cases) {
      const Config c = load_config(k.config, {});
      const ModelStats st = model_stats(c, k.N);
      const Result r = run_case(k, warmup, steps);
      char line[256];
      std::snprintf(line, sizeof line, "| %s | %lldx%lld | %s | %.1f | %.1f | %.1f | %.1f |\n",
                    k.config.c_str(), (long long)k.B, (long long)k.N, k.recompute ? "yes" : "no",
                    r.phase_ms[0], r.phase_ms[1], r.phase_ms[2], r.phase_ms[3]);
      phases.push_back(line);
      const double mfu = 6.0 * double(st.params) * r.tok_s / (peak * 1e12);
      std::printf("| %s | %lldx%lld | %s | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f | %.3f |\n",
                  k.config.c_str(), (long long)k.B, (long long)k.N, k.recompute ? "yes" : "no",
                  r.tok_s, 100 * mfu, st.train_flops * r.tok_s / 1e12, r.step_ms,
                  double(r.peak) / (1 << 20), double(r.device_used) / (1 << 20), r.loss);
      std::fflush(stdout);
    }
    std::printf(
        "\nphases (ms per step, a wait after each)\n\n| model | batch | recompute | forward | loss "
        "| backward | optimizer |\n|---|---|---|---|---|---|---|\n");
    for (const std::string& p : phases) std::printf("%s", p.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}

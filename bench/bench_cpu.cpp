// CPU speed of training and generation, printed as a markdown table.
//   build/release/bench_cpu [--threads T] [--quick]
// Rows: `tiny` and a ~10M-parameter byte-level FELA (d 384, 6 layers, 6 heads, taps 128).
// Training tokens/s is the median over timed steps (forward + loss + backward + AdamW) after
// warm-up; "of sgemm" is 6 x params x tokens/s divided by the sgemm FLOP/s measured here on a
// 2048^3 product (OpenBLAS, same threads). Generation tokens/s is the recurrent step (B = 1)
// after a 64-token prefill.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" char* openblas_get_corename(void);

#include "fela/core/rng.h"
#include "fela/core/threads.h"
#include "fela/model/model.h"
#include "fela/train/adamw.h"

using namespace fela;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double sgemm_flops(int reps) {
  const int n = 2048;
  std::vector<float> a(size_t(n) * n, 1.0f), b(size_t(n) * n, 0.5f), c(size_t(n) * n);
  std::vector<double> t;
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a.data(), n, b.data(), n,
                0.f, c.data(), n);
    if (r > 0) t.push_back(seconds(t0));  // first call warms up
  }
  return 2.0 * n * n * double(n) / median(t);
}

struct Row {
  std::string name;
  int64_t params, B, N;
  double train_tps, gen_tps;
};

Row bench(const std::string& name, const Config& c, int64_t B, int64_t N, int steps) {
  Model m(c);
  m.init(0);
  AdamW adam(m.table(), DType::F32, {});
  Rng rng(1);
  std::vector<int32_t> tok(B * N), tgt(B * N);
  for (auto& t : tok) t = int32_t(rng.below(c.vocab_size()));
  for (auto& t : tgt) t = int32_t(rng.below(c.vocab_size()));
  std::vector<double> times;
  for (int s = 0; s < steps + 2; ++s) {
    const auto t0 = Clock::now();
    m.zero_grad();
    m.forward(tok.data(), B, N);
    m.loss(tgt.data(), 1.0);
    m.backward();
    clip_grad_norm(m.grads(), 1.0);
    adam.step(m.params(), m.grads(), 1e-3);
    if (s >= 2) times.push_back(seconds(t0));  // two warm-up steps
  }
  const double train_tps = double(B * N) / median(times);

  InferenceState st = m.new_state(1);
  Array logits = Array::empty(DType::F32, {1, c.vocab_size()});
  m.prefill(st, tok.data(), 64, logits);
  const int gen = 256;
  int32_t next = 1;
  m.step(st, &next, logits);  // warm-up
  const auto t0 = Clock::now();
  for (int i = 0; i < gen; ++i) m.step(st, &next, logits);
  return {name, m.table().total(), B, N, train_tps, gen / seconds(t0)};
}

}  // namespace

int main(int argc, char** argv) {
  select_blas_kernels(argv);
  int threads = 0;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--quick"))
      quick = true;
  }
  set_num_threads(threads);
  const double peak = sgemm_flops(quick ? 2 : 5);
  std::vector<Row> rows;
  rows.push_back(bench("tiny", named_config("tiny"), 8, 256, quick ? 3 : 10));
  rows.push_back(bench("fela-10M (d384 L6 H6 M128)",
                       load_config("tiny", {"name=\"fela-10m\"", "d_model=384", "n_layers=6",
                                            "n_heads=6", "taps=128"}),
                       8, 256, quick ? 2 : 6));
  std::printf(
      "CPU: %u hardware threads, fela threads %d, OpenBLAS kernels %s; sgemm 2048^3: "
      "%.1f GFLOP/s\n\n",
      std::thread::hardware_concurrency(), num_threads(), openblas_get_corename(), peak / 1e9);
  std::printf(
      "| model | params | batch x seq | train tok/s | 6*P*tok/s GFLOP/s | of sgemm | generate "
      "tok/s |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double f = 6.0 * double(r.params) * r.train_tps;
    std::printf("| %s | %.2fM | %lldx%lld | %.0f | %.1f | %.0f%% | %.0f |\n", r.name.c_str(),
                r.params / 1e6, (long long)r.B, (long long)r.N, r.train_tps, f / 1e9,
                100.0 * f / peak, r.gen_tps);
  }
  return 0;
}

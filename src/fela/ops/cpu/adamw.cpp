// AdamW and the squared gradient norm on the CPU.
// The update is the trainer's original AdamW loop (constants rounded to T once, the same
// expressions in the same order), run over the gaps and the decay ranges in turn, so that a CPU
// run's numbers do not change; a gradient scaled here by grad_scale equals the gradient that the
// old separate clipping pass stored. The norm sums fixed chunks in parallel and adds the chunk
// sums in order: the same bits whatever the thread count.
#include "fela/ops/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace fela::ops::cpu {

namespace {
constexpr int64_t kNormChunk = int64_t(1) << 15;

// One segment of elements that share a weight decay wd.
template <class T>
void update_segment(T* p, const T* g, T* m, T* v, int64_t n, const AdamWHyper& h, double wd,
                    double bc1, double bc2) {
  const T tb1 = T(h.beta1), tb2 = T(h.beta2), step = T(h.lr / bc1), inv_bc2 = T(1.0 / bc2),
          teps = T(h.eps);
  const T decay = T(1.0 - h.lr * wd), scale = T(h.grad_scale);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i] * scale;
    m[i] = tb1 * m[i] + (T(1) - tb1) * gi;
    v[i] = tb2 * v[i] + (T(1) - tb2) * gi * gi;
    p[i] = p[i] * decay - step * m[i] / (std::sqrt(v[i] * inv_bc2) + teps);
  }
}
}  // namespace

template <class T>
void adamw_update(T* p, const T* g, T* m, T* v, int64_t n, const DecayRange* decay, int64_t ndecay,
                  const AdamWHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.t));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.t));
  auto segment = [&](int64_t begin, int64_t end, double wd) {
    if (end > begin)
      update_segment(p + begin, g + begin, m + begin, v + begin, end - begin, h, wd, bc1, bc2);
  };
  int64_t done = 0;
  for (int64_t k = 0; k < ndecay; ++k) {
    segment(done, decay[k].begin, 0.0);
    segment(decay[k].begin, decay[k].end, h.weight_decay);
    done = decay[k].end;
  }
  segment(done, n, 0.0);
}

template <class T>
double grad_norm_sq(const T* g, int64_t n) {
  const int64_t chunks = (n + kNormChunk - 1) / kNormChunk;
  std::vector<double> part(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kNormChunk, end = std::min(n, begin + kNormChunk);
    double s[4] = {0, 0, 0, 0};  // four chains: the adds overlap, the order stays fixed
    int64_t i = begin;
    for (; i + 4 <= end; i += 4)
      for (int j = 0; j < 4; ++j) s[j] += double(g[i + j]) * double(g[i + j]);
    for (; i < end; ++i) s[0] += double(g[i]) * double(g[i]);
    part[size_t(c)] = (s[0] + s[1]) + (s[2] + s[3]);
  }
  double ss = 0;
  for (double x : part) ss += x;
  return ss;
}

FELA_INSTANTIATE_FLOAT(adamw_update)
FELA_INSTANTIATE_FLOAT(grad_norm_sq)

}  // namespace fela::ops::cpu

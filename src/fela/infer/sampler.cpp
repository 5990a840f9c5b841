#include "fela/infer/sampler.h"

#include <algorithm>
#include <cmath>

#include "fela/core/error.h"

namespace fela {

void validate(const SamplerOptions& o) {
  FELA_CHECK(std::isfinite(o.temperature) && o.temperature >= 0,
             "[sample] --temperature must be >= 0, got ", o.temperature);
  FELA_CHECK(o.top_k >= 0, "[sample] --top-k must be >= 0, got ", o.top_k);
  FELA_CHECK(o.top_p > 0 && o.top_p <= 1, "[sample] --top-p must be in (0, 1], got ", o.top_p);
}

int32_t Sampler::sample(const float* logits, int64_t V, const std::vector<int32_t>& banned) {
  cand_.clear();
  cand_.reserve(V);
  for (int64_t v = 0; v < V; ++v) cand_.push_back({logits[v], int32_t(v)});
  for (int32_t b : banned)
    if (b >= 0 && b < V) cand_[b].first = -INFINITY;
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (opt_.temperature == 0) return std::min_element(cand_.begin(), cand_.end(), by_logit)->second;

  size_t n = cand_.size();
  if (opt_.top_k > 0 && size_t(opt_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + opt_.top_k, cand_.end(), by_logit);
    n = size_t(opt_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // softmax over the n best at the temperature, in double
  const double mx = cand_[0].first;
  std::vector<double> p(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    p[i] = std::isfinite(cand_[i].first) ? std::exp((cand_[i].first - mx) / opt_.temperature) : 0;
    sum += p[i];
  }
  if (opt_.top_p < 1) {  // smallest prefix whose mass reaches top_p
    double acc = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      acc += p[i] / sum;
      if (acc >= opt_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p[i];
  }
  double r = rng_.uniform() * sum;
  for (size_t i = 0; i < n; ++i) {
    r -= p[i];
    if (r < 0) return cand_[i].second;
  }
  return cand_[n - 1].second;
}

}  // namespace fela

// Next-token sampling from logits: temperature, top-k, top-p (nucleus), and tokens banned
// for now (end-of-text before --min-length). Temperature 0 is greedy.
#pragma once
#include <cstdint>
#include <vector>

#include "fela/core/rng.h"

namespace fela {

struct SamplerOptions {
  double temperature = 0.8;
  int64_t top_k = 0;   // 0: no limit
  double top_p = 1.0;  // (0, 1]
};

// Throws fela::Error naming the option when a value is out of range.
void validate(const SamplerOptions& o);

class Sampler {
 public:
  Sampler(SamplerOptions opt, uint64_t seed) : opt_(opt), rng_(seed) { validate(opt_); }
  // logits [V]; banned ids get probability 0. Returns the sampled id.
  int32_t sample(const float* logits, int64_t V, const std::vector<int32_t>& banned = {});

 private:
  SamplerOptions opt_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace fela

// What `fela info` reports about a configuration: parameter counts by part, FLOPs per token for
// training and for generation, and the bytes of recurrent state per sequence.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>

#include "fela/model/config.h"

namespace fela {

struct ModelStats {
  int64_t params = 0;
  int64_t matmul_params = 0;          // weights used in matrix products per token (incl. head)
  double forward_flops = 0;           // per token at seq_len, parallel form
  double train_flops = 0;             // per token: forward + backward (3 x forward)
  double generate_flops = 0;          // per generated token at context seq_len, recurrent form
  int64_t state_bytes_fixed = 0;      // FNO rings + GLA states (fp32), independent of context
  int64_t state_bytes_per_token = 0;  // attention KV cache growth (fp32)
};

// FLOP conventions (one multiply-add = 2 FLOPs): matrix products 2 x weights; FNO mixer as its
// direct causal sum, 2 M d per token (an FFT computes the same sum in fewer operations for long
// sequences); GLA chunked form H (4 Dk Dv + chunk (Dk + Dv)); causal attention 2 N d on
// average over a length-N sequence in training, 4 t d per step at context t.
ModelStats model_stats(const Config& c, int64_t seq_len);
nlohmann::json model_info_json(const Config& c, int64_t seq_len);

}  // namespace fela

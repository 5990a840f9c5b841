// Scoring for validation and `fela eval`: summed loss, target tokens and the UTF-8 bytes those
// targets cover (SPEC §7: bits per byte = loss_sum / ln 2 / bytes).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "fela/data/dataset.h"
#include "fela/model/model.h"

namespace fela {

struct EvalTotals {
  double loss_sum = 0, bytes = 0;
  int64_t tokens = 0, windows = 0;
  double loss() const;
  double bpb() const;  // 0 when no bytes were covered
};

// Adds the scores of nb windows of n tokens (inputs, targets [nb, n]; targets < 0 ignored).
void score_windows(Model& m, const int32_t* inputs, const int32_t* targets, int64_t nb, int64_t n,
                   const std::vector<int64_t>& token_bytes, EvalTotals& t);

// Scores the first `windows` evaluation windows of length seq of a split, batch at a time,
// calling on_batch after each batch (for progress).
void score_dataset(Model& m, const Dataset& ds, const std::vector<int64_t>& token_bytes,
                   int64_t seq, int64_t batch, int64_t windows, EvalTotals& t,
                   const std::function<void(const EvalTotals&)>& on_batch = {});

}  // namespace fela

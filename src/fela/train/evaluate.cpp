#include "fela/train/evaluate.h"

#include <algorithm>
#include <cmath>

namespace fela {

double EvalTotals::loss() const { return tokens > 0 ? loss_sum / double(tokens) : 0.0; }
double EvalTotals::bpb() const { return bytes > 0 ? loss_sum / std::log(2.0) / bytes : 0.0; }

void score_windows(Model& m, const int32_t* inputs, const int32_t* targets, int64_t nb, int64_t n,
                   const std::vector<int64_t>& token_bytes, EvalTotals& t) {
  for (int64_t i = 0; i < nb * n; ++i)
    if (targets[i] >= 0) t.bytes += double(token_bytes[targets[i]]);
  m.forward(inputs, nb, n);
  double s = 0;
  int64_t c = 0;
  m.loss(targets, 0.0, &s, &c);
  t.loss_sum += s, t.tokens += c, t.windows += nb;
}

void score_dataset(Model& m, const Dataset& ds, const std::vector<int64_t>& token_bytes,
                   int64_t seq, int64_t batch, int64_t windows, EvalTotals& t,
                   const std::function<void(const EvalTotals&)>& on_batch) {
  std::vector<int32_t> in(batch * seq), tgt(batch * seq);
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t nb = std::min(batch, windows - w0);
    for (int64_t b = 0; b < nb; ++b) ds.eval_window(w0 + b, seq, &in[b * seq], &tgt[b * seq]);
    score_windows(m, in.data(), tgt.data(), nb, seq, token_bytes, t);
    if (on_batch) on_batch(t);
  }
}

}  // namespace fela

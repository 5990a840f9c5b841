// fela eval: loss, perplexity and bits per byte of a checkpoint over a text file or a prepared
// data directory, in windows of --context tokens, printed as one JSON object.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "fela/core/error.h"
#include "fela/core/progress.h"
#include "fela/core/threads.h"
#include "fela/data/dataset.h"
#include "fela/model/checkpoint.h"
#include "fela/train/evaluate.h"

namespace fela::cli {

namespace {
struct EvalArgs {
  std::string checkpoint, text, data, split = "val", device = "cpu";
  int64_t context = 1024, batch = 4;
  int threads = 0;
};

// Scores windows of `ids` (inputs ids[w*N .. w*N+n), targets one ahead), each from a fresh
// context, batching windows of equal length.
void score_sequence(Model& m, const std::vector<int32_t>& ids, int64_t N, int64_t batch,
                    const std::vector<int64_t>& token_bytes, EvalTotals& t, Progress& bar) {
  const int64_t predicted = int64_t(ids.size()) - 1;
  const int64_t full = predicted / N, rest = predicted % N;
  std::vector<int32_t> in, tgt;
  auto run = [&](int64_t w0, int64_t nb, int64_t n) {
    in.resize(nb * n), tgt.resize(nb * n);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t i = 0; i < n; ++i) {
        in[b * n + i] = ids[(w0 + b) * N + i];
        tgt[b * n + i] = ids[(w0 + b) * N + i + 1];
      }
    score_windows(m, in.data(), tgt.data(), nb, n, token_bytes, t);
    bar.update(t.windows);
  };
  for (int64_t w0 = 0; w0 < full; w0 += batch) run(w0, std::min(batch, full - w0), N);
  if (rest > 0) run(full, 1, rest);
}

void run_eval(const EvalArgs& a) {
  set_num_threads(a.threads);
  FELA_CHECK(a.context >= 1, "[eval] --context must be positive, got ", a.context);
  FELA_CHECK(a.batch >= 1, "[eval] --batch must be positive, got ", a.batch);
  FELA_CHECK(a.text.empty() != a.data.empty(), "[eval] give exactly one of --text and --data");
  const Device device = parse_device(a.device);
  auto model = load_checkpoint(a.checkpoint, compute_dtype(device), device);
  const Config& c = model->config();
  auto tok = tokenizer_for(c.vocab);
  const std::vector<int64_t> token_bytes = token_byte_lengths(*tok);
  EvalTotals t;
  if (!a.text.empty()) {
    const std::string text = read_text_arg(a.text);
    FELA_CHECK(!text.empty(), "[eval] ", a.text, " is empty");
    std::vector<int32_t> ids = {tok->eos_id()};  // as in training, end-of-text starts a document
    const auto body = tok->encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    const int64_t windows = (int64_t(ids.size()) - 1 + a.context - 1) / a.context;
    Progress bar("eval", windows, "", 10.0);
    score_sequence(*model, ids, a.context, a.batch, token_bytes, t, bar);
    bar.finish();
  } else {
    Dataset ds(a.data, a.split);
    FELA_CHECK(ds.vocab_name() == c.vocab, "[eval] the model's vocabulary is '", c.vocab, "' but ",
               a.data, " was prepared with '", ds.vocab_name(), "'");
    const int64_t windows = ds.num_eval_windows(a.context);
    Progress bar("eval", windows, "", 10.0);
    score_dataset(*model, ds, token_bytes, a.context, a.batch, windows, t,
                  [&](const EvalTotals& e) { bar.update(e.windows); });
    bar.finish();
  }
  FELA_CHECK(t.tokens > 0, "[eval] nothing to score");
  const double loss = t.loss();
  const nlohmann::json out = {
      {"loss", loss},        {"perplexity", std::exp(loss)}, {"bpb", t.bpb()},
      {"tokens", t.tokens},  {"bytes", int64_t(t.bytes)},    {"windows", t.windows},
      {"context", a.context}};
  std::printf("%s\n", out.dump().c_str());
}
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Loss, perplexity and bits per byte of a checkpoint. The text is tokenized with the "
      "end-of-text token prepended (no <bos>: training never shows one; end-of-text precedes "
      "every document), then cut into windows of --context tokens, each scored from a fresh "
      "state; a text shorter than the context is one window.");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint or training run directory")
      ->required();
  auto* text = cmd->add_option("--text", a->text, "UTF-8 text file to score ('-' = stdin)");
  auto* data = cmd->add_option("--data", a->data, "Directory written by 'fela prepare'");
  text->excludes(data);
  cmd->add_option("--split", a->split, "Split of --data to score")->capture_default_str();
  cmd->add_option("--context", a->context, "Tokens per window")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Windows per forward pass")->capture_default_str();
  add_device_option(cmd, a->device);
  add_threads_option(cmd, a->threads);
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace fela::cli

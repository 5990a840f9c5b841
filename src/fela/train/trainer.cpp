#include "fela/train/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fela/core/progress.h"
#include "fela/core/rng.h"
#include "fela/core/threads.h"
#include "fela/data/dataset.h"
#include "fela/io/atomic_file.h"
#include "fela/model/checkpoint.h"
#include "fela/ops/dropout.h"
#include "fela/tokenizer/tokenizer.h"
#include "fela/train/adamw.h"
#include "fela/train/evaluate.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace fela {

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

void validate(const TrainOptions& o) {
  FELA_CHECK(!o.data.empty(), "[train] --data is required");
  FELA_CHECK(!o.out.empty(), "[train] --out is required");
  FELA_CHECK(o.steps >= 1, "[train] --steps must be positive, got ", o.steps);
  FELA_CHECK(o.batch >= 1, "[train] --batch must be positive, got ", o.batch);
  FELA_CHECK(o.seq >= 1, "[train] --seq must be positive, got ", o.seq);
  FELA_CHECK(o.accum >= 1, "[train] --accum must be positive, got ", o.accum);
  FELA_CHECK(o.warmup >= 0, "[train] --warmup must be >= 0, got ", o.warmup);
  FELA_CHECK(std::isfinite(o.lr) && o.lr > 0, "[train] --lr must be positive, got ", o.lr);
  FELA_CHECK(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1,
             "[train] --min-lr-ratio must be in [0, 1]");
  FELA_CHECK(o.weight_decay >= 0, "[train] --weight-decay must be >= 0, got ", o.weight_decay);
  FELA_CHECK(o.grad_clip >= 0, "[train] --grad-clip must be >= 0 (0 = off), got ", o.grad_clip);
  FELA_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
             "[train] AdamW betas must be in [0, 1)");
  FELA_CHECK(o.eval_every >= 0 && o.save_every >= 0 && o.eval_batches >= 1,
             "[train] --eval-every and --save-every must be >= 0, --eval-batches >= 1");
  FELA_CHECK(o.time_limit >= 0, "[train] --time-limit must be >= 0");
}

json rng_to_json(const Rng& r) {
  const Rng::State s = r.state();
  return json::array({s.s[0], s.s[1], s.s[2], s.s[3]});
}
Rng rng_from_json(const json& j) {
  Rng r;
  Rng::State s;
  for (int i = 0; i < 4; ++i) s.s[i] = j.at(i).get<uint64_t>();
  r.set_state(s);
  return r;
}

// Keeps the metrics rows of steps <= step (a resumed run rewrites what came after).
void truncate_metrics(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::istringstream in(io::read_file(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || j["step"].get<int64_t>() > step) continue;
    kept += line + "\n";
  }
  io::write_file_atomic(path, kept);
}

}  // namespace

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}
bool stop_requested() { return g_stop.load(); }
void request_stop() { g_stop.store(true); }

TrainResult train(const TrainOptions& opt) {
  validate(opt);
  set_num_threads(opt.threads);
  const std::string ckpt_dir = opt.out + "/checkpoint", metrics_path = opt.out + "/metrics.jsonl";
  const bool have_ckpt = fs::exists(ckpt_dir + "/config.json") || fs::exists(ckpt_dir + ".old");
  FELA_CHECK(opt.resume || !have_ckpt, "[train] ", opt.out,
             " already holds a checkpoint: pass --resume to continue it, or choose another --out");
  FELA_CHECK(!opt.resume || have_ckpt, "[train] --resume: no checkpoint in ", opt.out);

  Dataset train_set(opt.data, "train"), val_set(opt.data, "val");
  FELA_CHECK(train_set.num_tokens() > opt.seq, "[train] --seq ", opt.seq,
             " needs more tokens than the training split has (", train_set.num_tokens(), ")");
  FELA_CHECK(val_set.num_tokens() >= 2, "[train] the validation split of ", opt.data,
             " is empty (prepare with a larger --val-fraction)");
  const Device device = parse_device(opt.device);
  const DType dtype = compute_dtype(device);
  std::unique_ptr<Model> model;
  if (opt.resume) {
    model = load_checkpoint(ckpt_dir, dtype, device);
  } else {
    model = std::make_unique<Model>(load_config(opt.config, opt.overrides), dtype, ops::Impl::Fast,
                                    device);
    model->init(opt.seed);
  }
  model->set_recompute(opt.recompute);
  const Config& c = model->config();
  FELA_CHECK(c.vocab == train_set.vocab_name() && c.vocab_size() == train_set.vocab_size(),
             "[train] the model's vocabulary is '", c.vocab, "' but ", opt.data,
             " was prepared with '", train_set.vocab_name(), "'");
  auto tokenizer = make_tokenizer(c.vocab, c.vocab == "gpt2" ? default_vocab_dir() : "");
  const std::vector<int64_t> token_bytes = token_byte_lengths(*tokenizer);

  AdamW adam(model->table(), model->params().dtype(),
             {opt.beta1, opt.beta2, 1e-8, opt.weight_decay}, model->device());
  Rng data_rng(opt.seed * 0x2545f4914f6cdd1dull + 1);
  int64_t step = 0, tokens_seen = 0;
  if (opt.resume) {
    FELA_CHECK(checkpoint_has_training_state(ckpt_dir), "[train] --resume: ", ckpt_dir,
               " has no optimizer state (was it saved by training?)");
    const json tj = json::parse(io::read_file(ckpt_dir + "/trainer.json"));
    step = tj.at("step").get<int64_t>();
    tokens_seen = tj.at("tokens_seen").get<int64_t>();
    data_rng = rng_from_json(tj.at("data_rng"));
    adam.load_state(io::SafetensorsReader(ckpt_dir + "/optimizer.safetensors",
                                          "[checkpoint] optimizer.safetensors"));
    adam.set_steps(tj.at("adam_steps").get<int64_t>());
    truncate_metrics(metrics_path, step);
    std::fprintf(stderr, "resuming %s at step %lld\n", opt.out.c_str(), (long long)step);
  }
  fs::create_directories(opt.out);
  std::FILE* metrics = std::fopen(metrics_path.c_str(), "a");
  FELA_CHECK(metrics, "[train] cannot write ", metrics_path);
  auto log_row = [&](const json& row) {
    std::fprintf(metrics, "%s\n", row.dump().c_str());
    std::fflush(metrics);
  };

  auto save = [&](int64_t at_step) {
    TrainingState ts;
    ts.optimizer = adam.state_tensors();
    ts.trainer = {{"step", at_step},
                  {"tokens_seen", tokens_seen},
                  {"adam_steps", adam.steps()},
                  {"data_rng", rng_to_json(data_rng)},
                  {"seed", opt.seed},
                  {"data", opt.data}};
    save_checkpoint(ckpt_dir, *model, &ts);
  };

  const int64_t B = opt.batch, N = opt.seq;
  std::vector<int32_t> in(B * N), tgt(B * N);
  Progress bar("train", opt.steps, "tok", opt.progress ? 10.0 : 1e9);
  const auto t_start = std::chrono::steady_clock::now();
  TrainResult res;
  double tokens_this_run = 0;
  while (step < opt.steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = lr_at(step, opt.steps, opt.warmup, opt.lr, opt.lr * opt.min_lr_ratio);
    model->zero_grad();
    double loss = 0;
    for (int64_t micro = 0; micro < opt.accum; ++micro) {
      train_set.sample_batch(data_rng, B, N, in.data(), tgt.data());
      // dropout masks: a pure function of (seed, step, micro-batch), so a resume redraws them
      model->set_training(true, ops::dropout_hash(opt.seed, uint64_t(step * opt.accum + micro)));
      model->forward(in.data(), B, N);
      loss += model->loss(tgt.data(), 1.0 / double(opt.accum)) / double(opt.accum);
      model->backward();
    }
    model->set_training(false);
    const double grad_norm = adam.grad_norm(model->grads());
    adam.step(model->params(), model->grads(), lr, clip_scale(grad_norm, opt.grad_clip),
              model->shadow());  // on the GPU, also the bf16 compute copy of the weights
    ++step;
    tokens_seen += B * N * opt.accum;
    tokens_this_run += double(B * N * opt.accum);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    FELA_CHECK(std::isfinite(loss), "[train] loss became ", loss, " at step ", step,
               " (try a lower --lr)");
    log_row({{"step", step},
             {"loss", loss},
             {"lr", lr},
             {"grad_norm", grad_norm},
             {"tokens_per_s", double(B * N * opt.accum) / dt},
             {"tokens", tokens_seen}});
    res.last_loss = loss;
    char status[96];
    std::snprintf(status, sizeof status, "loss %.4f lr %.2e", loss, lr);
    if (opt.progress) bar.update(step, tokens_this_run, status);

    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const bool out_of_time = opt.time_limit > 0 && elapsed >= opt.time_limit;
    const bool last = step == opt.steps || out_of_time || stop_requested() ||
                      (opt.stop_at > 0 && step >= opt.stop_at);
    if ((opt.eval_every > 0 && step % opt.eval_every == 0) || last) {
      // the first eval_batches x batch windows of the validation split
      EvalTotals e;
      score_dataset(*model, val_set, token_bytes, N, B,
                    std::min(val_set.num_eval_windows(N), opt.eval_batches * B), e);
      FELA_CHECK(e.tokens > 0, "[train] the validation split has no tokens");
      log_row({{"step", step}, {"val_loss", e.loss()}, {"val_bpb", e.bpb()}});
      res.val_loss = e.loss(), res.val_bpb = e.bpb();
      if (opt.verbose) {
        std::printf("step %6lld | loss %.4f | val loss %.4f | val bpb %.4f\n", (long long)step,
                    loss, e.loss(), e.bpb());
        std::fflush(stdout);
      }
    }
    if ((opt.save_every > 0 && step % opt.save_every == 0) || last) save(step);
    if (last) {
      res.interrupted = stop_requested();
      break;
    }
  }
  if (opt.progress) bar.finish();
  std::fclose(metrics);
  res.step = step;
  return res;
}

}  // namespace fela

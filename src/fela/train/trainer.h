// `fela train`: the training loop on the CPU. AdamW with warm-up + cosine schedule, gradient
// clipping and accumulation, periodic validation (loss and bits per byte), checkpoints every
// k steps and at the end (atomic), metrics in <out>/metrics.jsonl, a progress bar, Ctrl-C that
// saves before exiting, and --resume that continues bit-exactly (same losses as a run that was
// never interrupted: parameters, AdamW moments, step and data-sampler state are all restored).
//
// Run directory layout: <out>/checkpoint/ (config.json, model.safetensors,
// optimizer.safetensors, trainer.json) and <out>/metrics.jsonl.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fela {

struct TrainOptions {
  std::string config = "tiny";
  std::vector<std::string> overrides;  // field=value
  std::string data, out;
  int64_t steps = 1000, batch = 8, seq = 256, accum = 1, warmup = 100;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, grad_clip = 1.0;
  double beta1 = 0.9, beta2 = 0.95;
  int64_t eval_every = 100, eval_batches = 16, save_every = 500;
  uint64_t seed = 0;
  int threads = 0;
  std::string device = "cpu";  // cpu, or cuda (bf16 compute, fp32 master weights)
  bool recompute = false;      // recompute activations in backward instead of keeping them
  bool resume = false;
  double time_limit = 0;  // seconds, 0 = none: reaching it ends the run like its last step
  int64_t stop_at = 0;    // end (validate, save) after this step, as an interruption would
  bool progress = true;   // progress bar on stderr
  bool verbose = true;    // a line per validation on stdout
};

struct TrainResult {
  int64_t step = 0;  // steps completed
  double last_loss = 0, val_loss = 0, val_bpb = 0;
  bool interrupted = false;  // stopped by SIGINT/SIGTERM (checkpoint saved)
};

// Validates options (one clear error per bad value) and trains.
TrainResult train(const TrainOptions& opt);

// Signal handling: SIGINT/SIGTERM set a flag that the loop checks between steps.
void install_stop_handlers();
bool stop_requested();
void request_stop();  // as a signal would (tests)

}  // namespace fela

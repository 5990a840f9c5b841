// fela train: see src/fela/train/trainer.h for what a run does and where it writes.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "fela/train/trainer.h"

namespace fela::cli {

void register_train(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model on prepared token shards");
  cmd->add_option("--config", o->config, "Named configuration or JSON file")->capture_default_str();
  cmd->add_option("--set", o->overrides, "Override a config field: --set d_model=128 (repeatable)");
  cmd->add_option("--data", o->data, "Directory written by 'fela prepare'")->required();
  cmd->add_option("--out", o->out, "Run directory: checkpoint/ and metrics.jsonl")->required();
  cmd->add_option("--steps", o->steps, "Optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Sequences per micro-batch")->capture_default_str();
  cmd->add_option("--seq", o->seq, "Tokens per sequence")->capture_default_str();
  cmd->add_option("--accum", o->accum, "Micro-batches per step (gradient accumulation)")
      ->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr-ratio", o->min_lr_ratio, "Final learning rate / peak (cosine)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Linear warm-up steps")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (matrices only)")
      ->capture_default_str();
  cmd->add_option("--beta1", o->beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o->beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--grad-clip", o->grad_clip, "Clip the global gradient norm (0 = off)")
      ->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Validate every k steps (0 = only at the end)")
      ->capture_default_str();
  cmd->add_option("--eval-batches", o->eval_batches, "Validation batches per evaluation")
      ->capture_default_str();
  cmd->add_option("--save-every", o->save_every, "Checkpoint every k steps (0 = only at the end)")
      ->capture_default_str();
  cmd->add_option("--time-limit", o->time_limit, "Stop (validate, save) after this many seconds")
      ->capture_default_str();
  cmd->add_option("--stop-at", o->stop_at, "End after this step as an interruption would")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed for initialisation and data order")
      ->capture_default_str();
  add_device_option(cmd, o->device);
  cmd->add_flag("--recompute", o->recompute,
                "Recompute activations in backward instead of keeping them (less memory)");
  cmd->add_flag("--resume", o->resume, "Continue the run in --out from its checkpoint");
  cmd->add_flag("!--no-progress", o->progress, "No progress bar");
  add_threads_option(cmd, o->threads);
  cmd->callback([o] {
    install_stop_handlers();
    const TrainResult r = train(*o);
    if (r.interrupted) {
      std::fprintf(stderr,
                   "interrupted at step %lld: checkpoint saved in %s/checkpoint; "
                   "continue with --resume\n",
                   (long long)r.step, o->out.c_str());
      std::exit(130);
    }
  });
}

}  // namespace fela::cli

// fela generate: load a checkpoint, prefill the prompt in parallel, then sample token by token
// with the O(1) recurrent step, streaming text to stdout. Speeds go to stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli_util.h"
#include "commands.h"
#include "fela/core/threads.h"
#include "fela/infer/sampler.h"
#include "fela/model/checkpoint.h"

namespace fela::cli {

namespace {
struct GenerateArgs {
  std::string checkpoint, prompt, prompt_file, stop, device = "cpu";
  int64_t max_tokens = 200, min_length = 0;
  SamplerOptions sampler;
  uint64_t seed = 0;
  int threads = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_generate(const GenerateArgs& a) {
  set_num_threads(a.threads);
  validate(a.sampler);
  FELA_CHECK(a.max_tokens >= 0, "[generate] --max-tokens must be >= 0");
  FELA_CHECK(a.min_length >= 0, "[generate] --min-length must be >= 0");
  const Device device = parse_device(a.device);
  auto model = load_checkpoint(a.checkpoint, compute_dtype(device), device);
  const Config& c = model->config();
  auto tok = tokenizer_for(c.vocab);
  const std::string prompt = a.prompt_file.empty() ? a.prompt : read_text_arg(a.prompt_file);

  // The end-of-text token starts every document in training, so it starts the prompt too.
  std::vector<int32_t> ids = {tok->eos_id()};
  const std::vector<int32_t> body = tok->encode(prompt);
  ids.insert(ids.end(), body.begin(), body.end());

  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  const int64_t V = c.vocab_size();
  // The model writes logits on its device; the sampler reads a host copy.
  Array logits = Array::empty(DType::F32, {1, V});
  Array dev_logits = device == Device::Cpu ? Array() : Array::empty(DType::F32, {1, V}, device);
  const Tensor model_logits = device == Device::Cpu ? logits.view() : dev_logits.view();
  auto fetch = [&] {
    if (device != Device::Cpu) tensor_copy(logits, dev_logits);
  };
  InferenceState state = model->new_state(1);
  auto t0 = std::chrono::steady_clock::now();
  model->prefill(state, ids.data(), int64_t(ids.size()), model_logits);
  fetch();
  const double t_prompt = seconds_since(t0);

  Sampler sampler(a.sampler, a.seed);
  std::string generated;
  int64_t n = 0;
  t0 = std::chrono::steady_clock::now();
  for (; n < a.max_tokens; ++n) {
    std::vector<int32_t> banned;
    if (n < a.min_length) banned.push_back(tok->eos_id());
    const int32_t next = sampler.sample(logits.data<float>(), V, banned);
    if (next == tok->eos_id()) break;
    const std::string piece = tok->decode(std::span<const int32_t>(&next, 1));
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    generated += piece;
    if (!a.stop.empty() && generated.find(a.stop) != std::string::npos) {
      ++n;
      break;
    }
    if (n + 1 < a.max_tokens) {
      model->step(state, &next, model_logits);
      fetch();
    }
  }
  const double t_gen = seconds_since(t0);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(
      stderr,
      "prompt: %zu tokens in %.3f s (%.1f tok/s); generated: %lld tokens in %.3f s (%.1f tok/s)\n",
      ids.size(), t_prompt, double(ids.size()) / std::max(t_prompt, 1e-9), (long long)n, t_gen,
      double(n) / std::max(t_gen, 1e-9));
}
}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd =
      app.add_subcommand("generate", "Generate text from a checkpoint (streams to stdout)");
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint or training run directory")
      ->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text (the end-of-text token is prepended)");
  cmd->add_option("--prompt-file", a->prompt_file, "Read the prompt from a file ('-' = stdin)");
  cmd->add_option("--max-tokens", a->max_tokens, "Tokens to generate at most")
      ->capture_default_str();
  cmd->add_option("--min-length", a->min_length, "Tokens before end-of-text may end the text")
      ->capture_default_str();
  cmd->add_option("--temperature", a->sampler.temperature, "Sampling temperature (0 = greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", a->sampler.top_k, "Sample among the k most likely (0 = all)")
      ->capture_default_str();
  cmd->add_option("--top-p", a->sampler.top_p, "Nucleus sampling mass in (0, 1]")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  cmd->add_option("--stop", a->stop, "Stop once this text has been generated");
  add_device_option(cmd, a->device);
  add_threads_option(cmd, a->threads);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace fela::cli

// FELA vs FANformer vs transformer, tiny-sized and byte-level, trained on the embedded corpus
// for the same number of tokens; prints a markdown table of validation bits per byte and
// training tokens/s (wall time of the run, its final evaluation included).
//   build/release/bench_compare [--steps S] [--threads T]
// Every model: d 64, 4 layers, 4 heads, batch 16 x 128 tokens, AdamW lr 3e-3 with 30 warm-up
// steps and cosine decay, seed 1; validation over the last 10% of tiny Shakespeare (32 batches).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "fela/core/threads.h"
#include "fela/data/prepare.h"
#include "fela/model/params.h"
#include "fela/train/trainer.h"

using namespace fela;
namespace fs = std::filesystem;

namespace {
std::string find_corpus() {
  for (const char* p : {"data/tinyshakespeare/input.txt", "../data/tinyshakespeare/input.txt",
                        "../../data/tinyshakespeare/input.txt"})
    if (fs::exists(p)) return p;
  std::fprintf(stderr, "bench_compare: run from the repository root (data/tinyshakespeare)\n");
  std::exit(1);
}

struct Model {
  const char* name;
  std::vector<std::string> overrides;
};
}  // namespace

int main(int argc, char** argv) {
  select_blas_kernels(argv);
  int64_t steps = 400;
  int threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = std::atoll(argv[++i]);
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = std::atoi(argv[++i]);
  }
  set_num_threads(threads);
  const fs::path root =
      fs::temp_directory_path() / ("fela_bench_compare_" + std::to_string(getpid()));
  fs::remove_all(root);
  PrepareOptions po;
  po.inputs = {find_corpus()};
  po.out_dir = (root / "data").string();
  po.val_fraction = 0.1;
  prepare_data(po, *make_tokenizer("bytes", ""), {});

  const std::vector<Model> models = {
      {"FELA (SSSL, taps 64)", {"pattern=\"SSSL\"", "taps=64"}},
      {"FANformer (A: FAN, CoLA r16, HybridNorm, gated, GQA 2, dropout 0.1)",
       {"pattern=\"A\"", "n_kv_heads=2", "fan_p=0.15", "cola_rank=16", "hybrid_norm=true",
        "gated_residual=true", "dropout=0.1"}},
      {"transformer (AAAA)", {"pattern=\"AAAA\""}},
  };
  const int64_t B = 16, N = 128;
  std::printf(
      "Models: d 64, 4 layers, 4 heads, bytes vocabulary; %lld steps x %lld x %lld = "
      "%lld tokens each; %u hardware threads\n\n",
      (long long)steps, (long long)B, (long long)N, (long long)(steps * B * N),
      std::thread::hardware_concurrency());
  std::printf("| model | params | val loss | val bpb | train tok/s |\n|---|---|---|---|---|\n");
  int k = 0;
  for (const Model& m : models) {
    TrainOptions o;
    o.config = "tiny";
    o.overrides = m.overrides;
    o.data = po.out_dir;
    o.out = (root / ("run" + std::to_string(k++))).string();
    o.steps = steps, o.batch = B, o.seq = N, o.lr = 3e-3, o.warmup = 30;
    o.eval_every = 0, o.eval_batches = 32, o.save_every = 0, o.seed = 1, o.threads = threads;
    o.progress = false, o.verbose = false;
    const auto t0 = std::chrono::steady_clock::now();
    const TrainResult r = train(o);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t params = ParamTable(load_config("tiny", m.overrides)).total();
    std::printf("| %s | %.3fM | %.4f | %.4f | %.0f |\n", m.name, params / 1e6, r.val_loss,
                r.val_bpb, double(steps * B * N) / sec);
    std::fflush(stdout);
  }
  fs::remove_all(root);
  return 0;
}

// fela info: parameters per part, FLOPs per token and recurrent-state bytes of a configuration
// or of a checkpoint, printed as JSON.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "fela/core/error.h"
#include "fela/model/checkpoint.h"
#include "fela/model/config.h"
#include "fela/model/stats.h"

namespace fela::cli {

namespace {
struct InfoArgs {
  std::string config, checkpoint;
  std::vector<std::string> overrides;
  int64_t seq = 1024;
};
}  // namespace

void register_info(CLI::App& app) {
  auto args = std::make_shared<InfoArgs>();
  CLI::App* cmd =
      app.add_subcommand("info", "Describe a model configuration or checkpoint as JSON");
  auto* cfg = cmd->add_option("--config", args->config,
                              "Named configuration (tiny, fela-small, fela-byte, fela-1b, "
                              "transformer-small, transformer-1b) or a JSON file");
  auto* ckpt = cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint directory");
  cfg->excludes(ckpt);
  cmd->add_option("--set", args->overrides, "Override a field: --set d_model=128 (repeatable)");
  cmd->add_option("--seq", args->seq, "Sequence length for FLOPs and state size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->callback([args] {
    Config c;
    if (!args->checkpoint.empty()) {
      FELA_CHECK(args->overrides.empty(), "[info] --set applies to --config only");
      c = load_checkpoint(args->checkpoint)->config();  // loading validates every tensor
    } else {
      c = load_config(args->config.empty() ? "tiny" : args->config, args->overrides);
    }
    std::printf("%s\n", model_info_json(c, args->seq).dump(2).c_str());
  });
}

}  // namespace fela::cli

// Each subcommand registers itself on the root CLI11 app; main() dispatches and turns any
// fela::Error into one line on stderr and a non-zero exit.
#pragma once
#include <CLI/CLI.hpp>

namespace fela::cli {

void register_info(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_generate(CLI::App& app);
void register_train(CLI::App& app);
void register_eval(CLI::App& app);
void register_prepare(CLI::App& app);

}  // namespace fela::cli

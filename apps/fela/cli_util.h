// Small pieces shared by the subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "fela/tokenizer/tokenizer.h"

namespace fela::cli {

// Adds --threads (0 = all cores) to a subcommand.
void add_threads_option(CLI::App* cmd, int& threads);
// --device cpu|cuda (default cpu): where the model computes.
void add_device_option(CLI::App* cmd, std::string& device);
// The tokenizer of a vocabulary name ("bytes" or "gpt2", whose files come from data/bpe).
std::unique_ptr<Tokenizer> tokenizer_for(const std::string& vocab);
// The whole of a file, or of standard input for "-".
std::string read_text_arg(const std::string& path);

}  // namespace fela::cli

#include "cli_util.h"

#include <iostream>
#include <iterator>

#include "fela/io/atomic_file.h"

namespace fela::cli {

void add_device_option(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device,
                  "cpu, or cuda (bf16 compute; fp32 master weights when training)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
}

void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("--threads", threads, "CPU threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
}

std::unique_ptr<Tokenizer> tokenizer_for(const std::string& vocab) {
  return make_tokenizer(vocab, vocab == "gpt2" ? default_vocab_dir() : "");
}

std::string read_text_arg(const std::string& path) {
  if (path == "-") {
    std::cin >> std::noskipws;
    return std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  return io::read_file(path);
}

}  // namespace fela::cli

// fela tokenize: UTF-8 text on stdin -> JSON array of ids on stdout; --decode the reverse.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "fela/core/error.h"

namespace fela::cli {

namespace {
struct TokenizeArgs {
  std::string vocab = "gpt2";
  bool decode = false, special = false;
};

void run_tokenize(const TokenizeArgs& a) {
  auto tok = tokenizer_for(a.vocab);
  const std::string input = read_text_arg("-");
  if (!a.decode) {
    const auto ids = a.special ? tok->encode_with_special(input) : tok->encode(input);
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return;
  }
  const auto j = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  FELA_CHECK(j.is_array(), "[tokenize] --decode expects a JSON array of token ids on stdin");
  std::vector<int32_t> ids;
  for (const auto& v : j) {
    FELA_CHECK(v.is_number_integer(), "[tokenize] --decode: ", v.dump(), " is not a token id");
    const int64_t id = v.get<int64_t>();
    FELA_CHECK(id >= 0 && id < tok->vocab_size(), "[tokenize] id ", id, " out of range [0, ",
               tok->vocab_size(), ")");
    ids.push_back(int32_t(id));
  }
  const std::string text = tok->decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
}
}  // namespace

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Text on stdin -> token ids (JSON), or --decode");
  cmd->add_option("--vocab", a->vocab, "Vocabulary: gpt2 or bytes")
      ->capture_default_str()
      ->check(CLI::IsMember({"gpt2", "bytes"}));
  cmd->add_flag("--decode", a->decode, "Read a JSON array of ids, print the text");
  cmd->add_flag("--special", a->special, "Map special-token text (<|endoftext|>) to its id");
  cmd->callback([a] { run_tokenize(*a); });
}

}  // namespace fela::cli

// fela prepare: tokenise a text corpus into train/val token shards for `fela train` and
// `fela eval` (src/fela/data/prepare.h, docs/data-format.md), with a progress bar on stderr
// and a small summary table on stdout.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli_util.h"
#include "commands.h"
#include "fela/core/progress.h"
#include "fela/core/threads.h"
#include "fela/data/prepare.h"

namespace fela::cli {

namespace {
struct PrepareArgs {
  std::string vocab;
  PrepareOptions opt;
  int threads = 0;
};

void print_summary(const PrepareSummary& s) {
  std::printf("prepared %s: vocab %s (V=%lld), %lld input file%s%s\n", s.out_dir.c_str(),
              s.vocab.c_str(), (long long)s.vocab_size, (long long)s.files, s.files == 1 ? "" : "s",
              s.single_document_split ? "; one document, cut into train and val" : "");
  std::printf("%-6s %10s %14s %14s %12s %7s\n", "split", "documents", "text bytes", "tokens",
              "bytes/token", "shards");
  for (const auto& [name, sp] : {std::pair{"train", &s.train}, std::pair{"val", &s.val}})
    std::printf("%-6s %10lld %14lld %14lld %12.4f %7lld\n", name, (long long)sp->documents,
                (long long)sp->text_bytes, (long long)sp->tokens, sp->bytes_per_token(),
                (long long)sp->shards);
}
}  // namespace

void register_prepare(CLI::App& app) {
  auto a = std::make_shared<PrepareArgs>();
  CLI::App* cmd = app.add_subcommand(
      "prepare",
      "Tokenise text into train/val token shards. INPUT: text files (one document each), JSON "
      "Lines files (.jsonl/.json, one document per line in its \"text\" field), either "
      "optionally zstd-compressed (.zst), or directories searched recursively for .txt, .md, "
      ".json, .jsonl (and .zst) files. Each document is preceded by the end-of-text token.");
  cmd->add_option("--vocab", a->vocab, "Vocabulary: bytes or gpt2")->required();
  cmd->add_option("--out", a->opt.out_dir,
                  "Output directory (created; a previous prepare output there is replaced)")
      ->required();
  cmd->add_option("--val-fraction", a->opt.val_fraction,
                  "Fraction of documents for validation (one document: of its bytes)")
      ->capture_default_str();
  cmd->add_option("--seed", a->opt.seed, "Seed of the train/val split")->capture_default_str();
  cmd->add_option("--shard-tokens", a->opt.shard_tokens, "Tokens per shard file at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_threads_option(cmd, a->threads);
  cmd->add_option("inputs", a->opt.inputs, "Text, JSONL or .zst files, or directories")->required();
  cmd->callback([a] {
    set_num_threads(a->threads);
    const auto tok = tokenizer_for(a->vocab);
    std::unique_ptr<Progress> bar;
    const PrepareSummary s = prepare_data(a->opt, *tok, [&](const PrepareProgress& p) {
      if (!bar) bar = std::make_unique<Progress>("prepare: input bytes", p.input_total, "tok");
      bar->update(p.input_done, double(p.tokens),
                  std::to_string(p.documents) + " docs " + std::to_string(p.tokens) + " tok");
    });
    if (bar) bar->finish();
    print_summary(s);
  });
}

}  // namespace fela::cli

// `fela prepare`: a text corpus (corpus.h) to token shards (shard.h) in a directory that
// Dataset (dataset.h) reads; the full description is docs/data-format.md.
//
// Documents are read in order, tokenised in parallel batches (Tokenizer::encode_batch, OpenMP
// over documents), and written in their original order, each preceded by the eos id, to the
// train or the val split. Documents without text are skipped. The output is deterministic:
// the same inputs, vocabulary and seed give the same bytes whatever the thread count.
//
// Split: a document goes to val when u(text) < val_fraction, where u is a 64-bit hash of its
// bytes mixed with the seed, mapped to [0, 1) (identical documents land in the same split).
// When val would stay empty although val_fraction > 0 and there are two or more documents,
// the train document with the smallest u moves to val (when the train split still fits in
// one shard, which every small corpus does). A corpus of one document is cut instead: val is
// the last val_fraction of its bytes (at least one), starting at a line start (the first at
// or after the cut point, else the last before it, else the cut point moved forward to a
// UTF-8 character start); train is the rest. Both parts count as one document.
//
// Output: out_dir/train_NNN.bin and out_dir/val_NNN.bin (each split at least one shard, at
// most shard_tokens tokens per shard; a document may continue in the next shard) and
// out_dir/meta.json. Everything is written into a sibling staging directory that replaces
// out_dir only when complete (io::replace_directory_atomic): an error leaves no trace, and
// an existing out_dir is only replaced when it is empty or a previous prepare output.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fela/tokenizer/tokenizer.h"

namespace fela {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files and directories (corpus.h)
  std::string out_dir;
  double val_fraction = 0.05;  // in [0, 1]
  uint64_t seed = 0;
  int64_t shard_tokens = int64_t(1) << 28;  // at most this many tokens per shard (256Mi)
  int64_t batch_bytes = int64_t(32) << 20;  // text per tokenisation batch (bounds memory)
};

struct SplitSummary {
  int64_t documents = 0, text_bytes = 0, tokens = 0, shards = 0;
  // Text bytes per non-eos token (0 when the split has no text).
  double bytes_per_token() const;
};

struct PrepareSummary {
  std::string out_dir, vocab;
  int64_t vocab_size = 0;
  int64_t files = 0;
  bool single_document_split = false;
  SplitSummary train, val;
};

// Progress, reported after every batch: input bytes read (compressed bytes for .zst) of
// input_total, and documents and tokens so far.
struct PrepareProgress {
  int64_t input_done = 0, input_total = 0, documents = 0, tokens = 0;
};

// Runs the whole preparation with tok (see the top of this file). Errors: fela::Error
// "[prepare] ..." (bad option, missing input, empty corpus, bad JSON line with FILE:LINE,
// refused output directory), "[io] ..." for write failures.
PrepareSummary prepare_data(const PrepareOptions& opt, const Tokenizer& tok,
                            const std::function<void(const PrepareProgress&)>& progress = {});

}  // namespace fela

// A prepared data split for training and evaluation: the shards of DIR/{train,val}_NNN.bin
// listed in DIR/meta.json (written by `fela prepare`, docs/data-format.md), memory-mapped and
// validated when opened, and read as one stream of T tokens t_0 .. t_{T-1} (the shards
// concatenated in order). Each document in the stream is preceded by the eos id.
//
// Training draws random windows with sample_batch: deterministic given the Rng state, so that
// a run resumed with the saved Rng draws the same batches. Evaluation walks sequential,
// non-overlapping windows: window i has inputs t_{iN} .. t_{iN+N-1} and targets one ahead,
// t_{iN+1} .. t_{iN+N}. The last window may run past the end of the stream: a target past
// t_{T-1} is -1 (no prediction: skip it in the loss and in the byte count) and an input past
// t_{T-1} is the eos id (a valid id, so that the model can run on it). Over
// all windows every token t_1 .. t_{T-1} is a target exactly once, so the bits per byte of a
// split are exact when the loss is summed over targets != -1 and the bytes are
// sum token_byte_lengths[target] over the same targets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fela/core/rng.h"
#include "fela/data/shard.h"
#include "fela/tokenizer/tokenizer.h"

namespace fela {

class Dataset {
 public:
  // Opens split "train" or "val" of a directory written by `fela prepare`; checks every shard
  // (shard.h) and that meta.json, the shard headers and the vocabulary agree.
  // Errors: "[data] ...".
  Dataset(const std::string& dir, const std::string& split);

  const std::string& dir() const { return dir_; }
  const std::string& split() const { return split_; }
  const std::string& vocab_name() const { return vocab_name_; }
  int64_t vocab_size() const { return vocab_size_; }
  int32_t eos_id() const { return eos_id_; }
  int64_t num_tokens() const { return tokens_; }
  int64_t num_documents() const { return documents_; }
  int64_t text_bytes() const { return text_bytes_; }
  int64_t num_shards() const { return int64_t(shards_.size()); }
  // Text bytes per token, eos tokens not counted (0 for a split without text).
  double bytes_per_token() const;

  // Tokens t_begin .. t_{begin+count-1} of the stream into out (they may span shards).
  void read_tokens(int64_t begin, int64_t count, int32_t* out) const;

  // B windows of N + 1 consecutive tokens, each starting at rng.below(T - N) (drawn in order
  // b = 0 .. B-1, one draw each): inputs[b*N + j] = t_{s_b + j}, targets[b*N + j] =
  // t_{s_b + j + 1}. inputs, targets: [B, N]. Needs T >= N + 1.
  void sample_batch(Rng& rng, int64_t B, int64_t N, int32_t* inputs, int32_t* targets) const;

  // ceil((T - 1) / N): the windows that hold every target t_1 .. t_{T-1} once (0 when T < 2).
  int64_t num_eval_windows(int64_t N) const;
  // Window i (see the top of this file). inputs, targets: [N].
  void eval_window(int64_t i, int64_t N, int32_t* inputs, int32_t* targets) const;

 private:
  std::string dir_, split_, vocab_name_;
  int64_t vocab_size_ = 0, tokens_ = 0, documents_ = 0, text_bytes_ = 0;
  int32_t eos_id_ = 0;
  std::vector<MappedShard> shards_;
  std::vector<int64_t> starts_;  // stream position of each shard's first token
};

// The number of text bytes each token id decodes to, [V]: what a target token contributes to
// bits per byte. Special ids (the eos, and the other control ids of the bytes vocabulary)
// count 0. Their sum over a prepared stream equals its text bytes.
std::vector<int64_t> token_byte_lengths(const Tokenizer& tok);

}  // namespace fela

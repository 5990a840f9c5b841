// Opening a prepared split (meta.json + mapped shards), random training windows, sequential
// evaluation windows, and the byte length of every token id for bits per byte.
#include "fela/data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fela/core/error.h"
#include "fela/io/atomic_file.h"

namespace fela {

namespace fs = std::filesystem;
using nlohmann::json;

Dataset::Dataset(const std::string& dir, const std::string& split) : dir_(dir), split_(split) {
  FELA_CHECK(split == "train" || split == "val", "[data] unknown split '", split,
             "' (expected train or val)");
  const std::string meta_path = (fs::path(dir) / "meta.json").string();
  std::error_code ec;
  FELA_CHECK(fs::is_directory(dir, ec), "[data] ", dir, ": no such directory");
  FELA_CHECK(fs::is_regular_file(meta_path, ec), "[data] ", dir,
             ": no meta.json (not a directory written by fela prepare)");
  json meta;
  try {
    meta = json::parse(io::read_file(meta_path));
    FELA_CHECK(meta.value("format_version", 0) == 1, "[data] ", meta_path,
               ": unsupported format_version ", meta.value("format_version", 0), " (expected 1)");
    vocab_name_ = meta.at("vocab").get<std::string>();
    vocab_size_ = meta.at("vocab_size").get<int64_t>();
    eos_id_ = meta.at("eos_id").get<int32_t>();
    const json& s = meta.at("splits").at(split);
    const int64_t want_tokens = s.at("tokens").get<int64_t>();
    const int64_t want_docs = s.at("documents").get<int64_t>();
    const int64_t want_bytes = s.at("text_bytes").get<int64_t>();
    for (const json& name_j : s.at("shards")) {
      const std::string name = name_j.get<std::string>();
      FELA_CHECK(!name.empty() && name.find('/') == std::string::npos, "[data] ", meta_path,
                 ": invalid shard name '", name, "'");
      MappedShard shard((fs::path(dir) / name).string());
      const ShardHeader& h = shard.header();
      FELA_CHECK(h.vocab_name == vocab_name_ && int64_t(h.vocab_size) == vocab_size_ &&
                     int64_t(h.eos_id) == eos_id_,
                 "[data] ", shard.path(), ": vocab '", h.vocab_name, "' (V=", h.vocab_size,
                 ", eos ", h.eos_id, ") does not match meta.json's '", vocab_name_,
                 "' (V=", vocab_size_, ", eos ", eos_id_, ")");
      starts_.push_back(tokens_);
      tokens_ += shard.size();
      documents_ += int64_t(h.doc_count);
      text_bytes_ += int64_t(h.text_bytes);
      shards_.push_back(std::move(shard));
    }
    FELA_CHECK(!shards_.empty(), "[data] ", meta_path, ": split '", split, "' lists no shards");
    FELA_CHECK(tokens_ == want_tokens && documents_ == want_docs && text_bytes_ == want_bytes,
               "[data] ", meta_path, ": split '", split, "' lists ", want_tokens, " tokens, ",
               want_docs, " documents and ", want_bytes, " text bytes but its shards hold ",
               tokens_, ", ", documents_, " and ", text_bytes_);
  } catch (const json::exception& e) {
    fail("[data] ", meta_path, ": ", e.what());
  }
}

double Dataset::bytes_per_token() const {
  const int64_t text_tokens = tokens_ - documents_;
  return text_tokens > 0 ? double(text_bytes_) / double(text_tokens) : 0.0;
}

void Dataset::read_tokens(int64_t begin, int64_t count, int32_t* out) const {
  FELA_CHECK(begin >= 0 && count >= 0 && begin + count <= tokens_, "[data] tokens [", begin, ", ",
             begin + count, ") are outside the ", tokens_, " tokens of split '", split_, "'");
  while (count > 0) {
    const size_t k =
        size_t(std::upper_bound(starts_.begin(), starts_.end(), begin) - starts_.begin()) - 1;
    const MappedShard& s = shards_[k];
    const int64_t off = begin - starts_[k], n = std::min(count, s.size() - off);
    s.copy(off, n, out);
    begin += n, count -= n, out += n;
  }
}

void Dataset::sample_batch(Rng& rng, int64_t B, int64_t N, int32_t* inputs,
                           int32_t* targets) const {
  FELA_CHECK(B >= 1 && N >= 1, "[data] sample_batch needs B >= 1 and N >= 1, got B=", B, " N=", N);
  FELA_CHECK(tokens_ >= N + 1, "[data] split '", split_, "' of ", dir_, " has ", tokens_,
             " tokens, fewer than one window of ", N + 1, " (sequence length + 1)");
  std::vector<int64_t> start(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) start[b] = int64_t(rng.below(uint64_t(tokens_ - N)));
#pragma omp parallel for schedule(static) if (B * N >= (int64_t(1) << 16))
  for (int64_t b = 0; b < B; ++b) {
    read_tokens(start[b], N, inputs + b * N);
    read_tokens(start[b] + 1, N, targets + b * N);
  }
}

int64_t Dataset::num_eval_windows(int64_t N) const {
  FELA_CHECK(N >= 1, "[data] the window length must be positive, got ", N);
  return tokens_ < 2 ? 0 : (tokens_ - 1 + N - 1) / N;
}

void Dataset::eval_window(int64_t i, int64_t N, int32_t* inputs, int32_t* targets) const {
  const int64_t W = num_eval_windows(N);
  FELA_CHECK(i >= 0 && i < W, "[data] eval window ", i, " out of range: split '", split_, "' has ",
             W, " windows of ", N, " tokens");
  const int64_t begin = i * N;
  const int64_t n_in = std::min(N, tokens_ - begin), n_tgt = std::min(N, tokens_ - 1 - begin);
  read_tokens(begin, n_in, inputs);
  std::fill(inputs + n_in, inputs + N, eos_id_);
  read_tokens(begin + 1, n_tgt, targets);
  std::fill(targets + n_tgt, targets + N, -1);
}

std::vector<int64_t> token_byte_lengths(const Tokenizer& tok) {
  const int32_t V = tok.vocab_size();
  std::vector<int64_t> len(static_cast<size_t>(V));
  std::exception_ptr error;  // exceptions must not cross the OpenMP region
#pragma omp parallel for schedule(dynamic, 1024)
  for (int32_t id = 0; id < V; ++id) {
    try {
      const std::string s = tok.decode(std::span<const int32_t>(&id, 1));
      // A special id decodes to a marker text ("<eos>", "<|endoftext|>") that only
      // encode_with_special maps back to it; such ids stand for no text.
      bool special = false;
      if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
        const std::vector<int32_t> with = tok.encode_with_special(s);
        special = with.size() == 1 && with[0] == id && tok.encode(s) != with;
      }
      len[size_t(id)] = special ? 0 : int64_t(s.size());
    } catch (...) {
#pragma omp critical(fela_token_byte_lengths_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return len;
}

}  // namespace fela

// The preparation pipeline: documents from CorpusReader, seeded split, parallel tokenisation in
// order-preserving batches, shards written to a staging directory that replaces the output
// directory at the end (rules in prepare.h).
#include "fela/data/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "fela/core/error.h"
#include "fela/data/corpus.h"
#include "fela/data/dataset.h"
#include "fela/data/shard.h"
#include "fela/io/atomic_file.h"

namespace fela {

namespace fs = std::filesystem;

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// u in [0, 1) from the document's bytes and the seed (FNV-1a, then splitmix64 to spread it).
double split_u(std::string_view text, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : text) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  h = splitmix64(h ^ splitmix64(seed));
  return double(h >> 11) * 0x1.0p-53;
}

// Bytes of a lone document that stay in train (prepare.h: the single-document cut).
size_t single_document_cut(std::string_view text, double f) {
  const size_t n = text.size();
  if (f <= 0 || n < 2) return n;
  if (f >= 1) return 0;
  const size_t val_bytes = std::clamp<size_t>(size_t(std::llround(f * double(n))), 1, n - 1);
  const size_t target = n - val_bytes;  // in [1, n-1]
  if (const size_t p = text.find('\n', target - 1); p != std::string_view::npos && p + 1 < n)
    return p + 1;
  if (target >= 2)
    if (const size_t q = text.rfind('\n', target - 2); q != std::string_view::npos) return q + 1;
  size_t p = target;
  while (p < n && (uint8_t(text[p]) & 0xC0) == 0x80) ++p;
  return p < n ? p : target;
}

std::string strip_slashes(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool is_prepare_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::is_regular_file(p / "meta.json", ec);
}

// Refuses an output directory that holds anything but a previous prepare output.
void check_out_dir(const std::string& out) {
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out, ec);
  if (fs::exists(st)) {
    FELA_CHECK(fs::is_directory(st), "[prepare] ", out, " exists and is not a directory");
    const bool empty = fs::is_empty(out, ec);
    FELA_CHECK(!ec, "[prepare] cannot list ", out, ": ", ec.message());
    FELA_CHECK(empty || is_prepare_dir(out), "[prepare] ", out,
               " is not empty and is not a previous prepare output (no meta.json); refusing "
               "to overwrite it: choose another --out");
  }
  const std::string old = out + ".old";  // replace_directory_atomic's backup name
  FELA_CHECK(!fs::exists(fs::symlink_status(old, ec)) || is_prepare_dir(old), "[prepare] ", old,
             " exists and is not a previous prepare output; move it away (preparing into ", out,
             " would delete it)");
}

// Removes the staging directory and the parents this run created unless the run completed.
struct StagingGuard {
  std::string staging;
  std::vector<fs::path> created;  // outermost first
  bool done = false;
  ~StagingGuard() {
    if (done) return;
    std::error_code ec;
    if (!staging.empty()) fs::remove_all(staging, ec);
    for (auto it = created.rbegin(); it != created.rend(); ++it) fs::remove(*it, ec);
  }
};

// Collects one split's token stream and writes it as shards of at most shard_tokens tokens.
class SplitWriter {
 public:
  SplitWriter(std::string dir, std::string name, ShardHeader base, const std::vector<int64_t>& lens,
              int64_t shard_tokens)
      : dir_(std::move(dir)),
        name_(std::move(name)),
        base_(std::move(base)),
        lens_(lens),
        shard_tokens_(shard_tokens),
        buf_(shard_token_width(base_.vocab_size)) {}

  // Appends eos followed by the document's ids.
  void add(std::span<const int32_t> ids, int64_t text_bytes, double u) {
    const int64_t begin = buf_.size();
    const int32_t eos = int32_t(base_.eos_id);
    append({&eos, 1});
    append(ids);
    sum_.documents += 1;
    sum_.tokens += 1 + int64_t(ids.size());
    sum_.text_bytes += text_bytes;
    if (!flushed_ && u < cand_.u) cand_ = {begin, buf_.size(), text_bytes, u};
  }

  // The train document with the smallest u can move to val while nothing has been written.
  bool has_candidate() const { return !flushed_ && cand_.begin >= 0 && sum_.documents >= 2; }
  std::vector<int32_t> take_candidate(int64_t* text_bytes, double* u) {
    std::vector<int32_t> ids(size_t(cand_.end - cand_.begin - 1));
    buf_.copy(cand_.begin + 1, int64_t(ids.size()), ids.data());  // without the leading eos
    buf_.erase(cand_.begin, cand_.end);
    sum_.documents -= 1;
    sum_.tokens -= cand_.end - cand_.begin;
    sum_.text_bytes -= cand_.text_bytes;
    *text_bytes = cand_.text_bytes;
    *u = cand_.u;
    cand_ = {};
    return ids;
  }

  // Writes what is left; every split has at least one shard, possibly empty.
  void finish() {
    if (buf_.size() > 0 || shards_.empty()) flush();
  }

  const SplitSummary& summary() const { return sum_; }
  const std::vector<std::string>& shards() const { return shards_; }

 private:
  void append(std::span<const int32_t> ids) {
    while (!ids.empty()) {
      const size_t take = std::min<size_t>(ids.size(), size_t(shard_tokens_ - buf_.size()));
      buf_.append(ids.first(take));
      ids = ids.subspan(take);
      if (buf_.size() == shard_tokens_) flush();
    }
  }

  void flush() {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%03zu.bin", name_.c_str(), shards_.size());
    const int64_t n = buf_.size();
    int64_t bytes = 0;
#pragma omp parallel for reduction(+ : bytes) schedule(static)
    for (int64_t i = 0; i < n; ++i) bytes += lens_[size_t(buf_.at(i))];
    ShardHeader h = base_;
    h.text_bytes = uint64_t(bytes);
    write_shard((fs::path(dir_) / name).string(), h, buf_);
    shards_.push_back(name);
    sum_.shards += 1;
    buf_.clear();
    flushed_ = true;
  }

  std::string dir_, name_;
  ShardHeader base_;
  const std::vector<int64_t>& lens_;
  int64_t shard_tokens_;
  PackedTokens buf_;
  SplitSummary sum_;
  std::vector<std::string> shards_;
  bool flushed_ = false;
  struct Candidate {
    int64_t begin = -1, end = -1, text_bytes = 0;
    double u = 2.0;
  } cand_;
};

struct Doc {
  std::string text, source;
  bool val = false;
  double u = 0;
};

}  // namespace

double SplitSummary::bytes_per_token() const {
  const int64_t text_tokens = tokens - documents;
  return text_tokens > 0 ? double(text_bytes) / double(text_tokens) : 0.0;
}

PrepareSummary prepare_data(const PrepareOptions& opt, const Tokenizer& tok,
                            const std::function<void(const PrepareProgress&)>& progress) {
  const double f = opt.val_fraction;
  FELA_CHECK(std::isfinite(f) && f >= 0 && f <= 1,
             "[prepare] --val-fraction must be in [0, 1], got ", f);
  FELA_CHECK(opt.shard_tokens >= 1, "[prepare] shard_tokens must be positive, got ",
             opt.shard_tokens);
  FELA_CHECK(opt.batch_bytes >= 1, "[prepare] batch_bytes must be positive, got ", opt.batch_bytes);
  FELA_CHECK(!opt.out_dir.empty(), "[prepare] no output directory given (--out)");
  FELA_CHECK(!opt.inputs.empty(), "[prepare] no inputs given");
  const std::string out = strip_slashes(opt.out_dir);

  const std::vector<InputFile> files = list_input_files(opt.inputs);
  int64_t input_bytes = 0;
  for (const InputFile& file : files) input_bytes += file.size;
  std::string names;
  for (const std::string& in : opt.inputs) names += (names.empty() ? "" : ", ") + in;
  FELA_CHECK(input_bytes > 0, "[prepare] the corpus is empty: ", names, " holds no bytes");
  check_out_dir(out);

  ShardHeader base;
  base.vocab_size = uint32_t(tok.vocab_size());
  base.eos_id = uint32_t(tok.eos_id());
  base.token_width = shard_token_width(tok.vocab_size());
  base.vocab_name = tok.name();
  const std::vector<int64_t> lens = token_byte_lengths(tok);

  // Staging directory beside out (one file system, so the final rename is atomic).
  StagingGuard guard;
  std::error_code ec;
  for (fs::path p = fs::path(out).parent_path(); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path())
    guard.created.insert(guard.created.begin(), p);
  for (const fs::path& p : guard.created) {
    fs::create_directory(p, ec);
    FELA_CHECK(!ec, "[prepare] cannot create ", p.string(), ": ", ec.message());
  }
  guard.staging = io::staging_dir_for(out);
  fs::create_directory(guard.staging, ec);
  FELA_CHECK(!ec, "[prepare] cannot create ", guard.staging, ": ", ec.message());

  SplitWriter train(guard.staging, "train", base, lens, opt.shard_tokens);
  SplitWriter val(guard.staging, "val", base, lens, opt.shard_tokens);
  CorpusReader reader(files);
  PrepareSummary sum;
  sum.out_dir = out;
  sum.vocab = base.vocab_name;
  sum.vocab_size = base.vocab_size;
  sum.files = int64_t(files.size());

  // One document of look-ahead, empty ones skipped, tells when the corpus has only one.
  Document next;
  auto advance = [&] {
    while (reader.next(next))
      if (!next.text.empty()) return true;
    return false;
  };
  bool have = advance();
  bool first_batch = true;
  int64_t docs_done = 0, tokens_done = 0;
  std::vector<Doc> batch;
  if (progress) progress({reader.bytes_read(), reader.bytes_total(), 0, 0});
  for (;;) {
    batch.clear();
    int64_t batch_bytes = 0;
    while (have && (batch.empty() || batch_bytes < opt.batch_bytes)) {
      batch_bytes += int64_t(next.text.size());
      batch.push_back({std::move(next.text), std::move(next.source)});
      have = advance();
    }
    if (batch.empty()) break;
    if (first_batch && !have && batch.size() == 1) {
      // The only document: cut it so that val gets its tail.
      Doc whole = std::move(batch[0]);
      const size_t cut = single_document_cut(whole.text, f);
      batch.clear();
      if (cut > 0) batch.push_back({whole.text.substr(0, cut), whole.source, false, 0.0});
      if (cut < whole.text.size())
        batch.push_back({whole.text.substr(cut), whole.source, true, 0.0});
      sum.single_document_split = batch.size() == 2;
    } else {
      const int64_t n = int64_t(batch.size());
#pragma omp parallel for schedule(dynamic, 1)
      for (int64_t i = 0; i < n; ++i) {
        batch[i].u = split_u(batch[i].text, opt.seed);
        batch[i].val = batch[i].u < f;
      }
    }
    first_batch = false;

    std::vector<std::string_view> texts;
    for (const Doc& d : batch) texts.push_back(d.text);
    const std::vector<std::vector<int32_t>> ids = tok.encode_batch(texts);
    for (size_t i = 0; i < batch.size(); ++i) {
      // Every id's bytes must add up to the document: the byte counts (bits per byte) rely
      // on it, and an eos inside a document would break the document count.
      int64_t bytes = 0;
      for (const int32_t id : ids[i]) {
        FELA_CHECK(id >= 0 && id < tok.vocab_size() && id != tok.eos_id(), "[prepare] ",
                   batch[i].source, ": the tokenizer produced id ", id,
                   " (outside the vocabulary or the eos id)");
        bytes += lens[size_t(id)];
      }
      FELA_CHECK(bytes == int64_t(batch[i].text.size()), "[prepare] ", batch[i].source,
                 ": the tokens decode to ", bytes, " bytes but the document has ",
                 batch[i].text.size(), " (tokenizer '", tok.name(), "' does not round-trip)");
      (batch[i].val ? val : train).add(ids[i], bytes, batch[i].u);
      docs_done += 1;
      tokens_done += 1 + int64_t(ids[i].size());
    }
    if (progress) progress({reader.bytes_read(), reader.bytes_total(), docs_done, tokens_done});
  }
  FELA_CHECK(docs_done > 0, "[prepare] the corpus is empty: no document in ", names,
             " has any text");

  // A few documents may all miss val by chance: move the one closest to the threshold.
  if (f > 0 && val.summary().documents == 0 && train.has_candidate()) {
    int64_t bytes = 0;
    double u = 0;
    const std::vector<int32_t> moved = train.take_candidate(&bytes, &u);
    val.add(moved, bytes, u);
  }
  train.finish();
  val.finish();
  sum.train = train.summary();
  sum.val = val.summary();

  nlohmann::ordered_json meta;
  meta["format"] = "fela-prepared-tokens";
  meta["format_version"] = 1;
  meta["vocab"] = base.vocab_name;
  meta["vocab_size"] = base.vocab_size;
  meta["eos_id"] = base.eos_id;
  meta["token_width"] = base.token_width;
  meta["val_fraction"] = f;
  meta["seed"] = opt.seed;
  meta["single_document_split"] = sum.single_document_split;
  meta["inputs"] = opt.inputs;
  nlohmann::ordered_json splits;
  for (const auto* w : {&train, &val}) {
    const SplitSummary& s = w->summary();
    splits[w == &train ? "train" : "val"] = {{"documents", s.documents},
                                             {"text_bytes", s.text_bytes},
                                             {"tokens", s.tokens},
                                             {"bytes_per_token", s.bytes_per_token()},
                                             {"shards", w->shards()}};
  }
  meta["splits"] = splits;
  std::vector<std::string> file_names;
  for (const InputFile& file : files) file_names.push_back(file.path);
  meta["files"] = file_names;
  io::write_file_atomic((fs::path(guard.staging) / "meta.json").string(), meta.dump(2) + "\n");

  io::replace_directory_atomic(guard.staging, out);
  guard.done = true;
  return sum;
}

}  // namespace fela

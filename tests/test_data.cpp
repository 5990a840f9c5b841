// Data pipeline: shard format (round trips at both widths, header bytes, every kind of damage),
// the JSON Lines reader, input discovery, prepare over a mixed corpus (text, JSONL, .zst) with
// counts derived from the inputs and documents recovered exactly from the shards, the split
// rules (seeded, single-document cut, non-empty val), multi-shard output, output-directory
// safety, and the Dataset's training and evaluation windows.
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "fela/core/error.h"
#include "fela/core/rng.h"
#include "fela/core/threads.h"
#include "fela/data/corpus.h"
#include "fela/data/dataset.h"
#include "fela/data/prepare.h"
#include "fela/data/shard.h"
#include "fela/io/atomic_file.h"
#include "fela/tokenizer/tokenizer.h"
#include "test_util.h"

using namespace fela;
namespace fs = std::filesystem;

namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string zstd_compress(const std::string& s) {
  std::string out(ZSTD_compressBound(s.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), s.data(), s.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string jsonl_line(const std::string& text) {
  return nlohmann::json({{"id", 1}, {"text", text}}).dump() + "\n";
}

// Expects f() to throw fela::Error whose message contains every piece of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no fela::Error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

const Tokenizer& bytes_tok() {
  static const auto tok = make_bytes_tokenizer();
  return *tok;
}

std::vector<int32_t> all_tokens(const Dataset& d) {
  std::vector<int32_t> t(size_t(d.num_tokens()));
  d.read_tokens(0, d.num_tokens(), t.data());
  return t;
}

// Documents of a bytes-vocabulary stream: text between eos ids (each document starts with eos).
std::vector<std::string> documents_of(const std::vector<int32_t>& t, int32_t eos) {
  std::vector<std::string> docs;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == eos) {
      docs.emplace_back();
      continue;
    }
    EXPECT_FALSE(docs.empty()) << "the stream does not start with eos";
    EXPECT_LT(t[i], 256);
    if (!docs.empty()) docs.back() += char(t[i]);
  }
  return docs;
}

std::string slurp(const std::string& path) { return io::read_file(path); }

// Names in dir whose name contains `part`.
int entries_containing(const std::string& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

// A corpus of every input kind; texts[] holds its non-empty documents in reading order.
struct Corpus {
  std::string dir;
  std::vector<std::string> texts;
  int64_t bytes = 0;
};

Corpus make_corpus(const std::string& tag) {
  Corpus c;
  c.dir = test::temp_dir(tag) + "/corpus";
  auto add_text = [&](const std::string& rel, const std::string& text) {
    write_bytes(c.dir + "/" + rel, text);
  };
  // Reading order is sorted path order: a_plain.txt, b.jsonl, c/notes.md, d.jsonl.zst, e.txt.
  const std::string plain = "First document.\nSecond line\xff\xfe (invalid UTF-8).\n";
  add_text("a_plain.txt", plain);
  const std::vector<std::string> jl = {"json one\n\ttab \"quoted\"", "json two \xe2\x82\xac", "x"};
  add_text("b.jsonl", "\xEF\xBB\xBF" + jsonl_line(jl[0]) + "\n" + jsonl_line(jl[1]) +
                          jsonl_line("") +
                          jsonl_line(jl[2]).substr(0, jsonl_line(jl[2]).size() - 1));
  const std::string md = "# Title\n\nMarkdown body.\n";
  add_text("c/notes.md", md);
  const std::vector<std::string> zl = {"compressed one", std::string(5000, 'z') + "\nend"};
  add_text("d.jsonl.zst", zstd_compress(jsonl_line(zl[0]) + jsonl_line(zl[1])));
  add_text("e.txt", "");                // empty: skipped
  add_text("ignored.bin", "not text");  // not a corpus extension
  add_text(".hidden.txt", "hidden");    // hidden: skipped
  c.texts = {plain, jl[0], jl[1], jl[2], md, zl[0], zl[1]};
  for (const auto& t : c.texts) c.bytes += int64_t(t.size());
  return c;
}

PrepareOptions options(const std::vector<std::string>& inputs, const std::string& out,
                       double f = 0.3, uint64_t seed = 1) {
  PrepareOptions o;
  o.inputs = inputs;
  o.out_dir = out;
  o.val_fraction = f;
  o.seed = seed;
  return o;
}

}  // namespace

// ---- shards ----

TEST(Shard, RoundTripTwoByteTokens) {
  const std::string dir = test::temp_dir("shard2");
  Rng rng(3);
  std::vector<int32_t> ids(1001);
  for (auto& id : ids) id = int32_t(rng.below(261));
  ids[0] = 257;
  ShardHeader h;
  h.vocab_size = 261, h.eos_id = 257, h.text_bytes = 12345, h.vocab_name = "bytes";
  const ShardHeader w = write_shard(dir + "/s.bin", h, ids);
  const int64_t eos = std::count(ids.begin(), ids.end(), 257);
  EXPECT_EQ(w.token_count, 1001u);
  EXPECT_EQ(w.token_width, 2u);
  EXPECT_EQ(int64_t(w.doc_count), eos);

  ShardHeader r;
  EXPECT_EQ(read_shard(dir + "/s.bin", &r), ids);
  EXPECT_EQ(r.version, 1u);
  EXPECT_EQ(r.vocab_size, 261u);
  EXPECT_EQ(r.token_width, 2u);
  EXPECT_EQ(r.eos_id, 257u);
  EXPECT_EQ(r.token_count, 1001u);
  EXPECT_EQ(int64_t(r.doc_count), eos);
  EXPECT_EQ(r.text_bytes, 12345u);
  EXPECT_EQ(r.vocab_name, "bytes");
  EXPECT_EQ(read_shard_header(dir + "/s.bin").token_count, 1001u);

  // The bytes on disk, field by field (shard.h).
  const std::string b = slurp(dir + "/s.bin");
  ASSERT_EQ(b.size(), 64u + 2 * 1001);
  auto u32 = [&](size_t o) {
    uint32_t v;
    std::memcpy(&v, &b[o], 4);
    return v;
  };
  auto u64 = [&](size_t o) {
    uint64_t v;
    std::memcpy(&v, &b[o], 8);
    return v;
  };
  EXPECT_EQ(b.substr(0, 8), "FELATOK1");
  EXPECT_EQ(u32(8), 1u);
  EXPECT_EQ(u32(12), 261u);
  EXPECT_EQ(u32(16), 2u);
  EXPECT_EQ(u32(20), 257u);
  EXPECT_EQ(u64(24), 1001u);
  EXPECT_EQ(int64_t(u64(32)), eos);
  EXPECT_EQ(u64(40), 12345u);
  EXPECT_EQ(b.substr(48, 16), std::string("bytes") + std::string(11, '\0'));
  EXPECT_EQ(uint8_t(b[64]), 257 & 0xff);  // little-endian ids
  EXPECT_EQ(uint8_t(b[65]), 257 >> 8);
}

TEST(Shard, RoundTripFourByteTokens) {
  const std::string dir = test::temp_dir("shard4");
  Rng rng(4);
  for (const int64_t n : {0, 1, 33, 129}) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = int32_t(rng.below(100000));
    if (n > 0) ids.back() = 99999;  // needs more than 16 bits
    ShardHeader h;
    h.vocab_size = 100000, h.eos_id = 5, h.vocab_name = "big";
    write_shard(dir + "/s.bin", h, ids);
    ShardHeader r;
    EXPECT_EQ(read_shard(dir + "/s.bin", &r), ids) << n;
    EXPECT_EQ(r.token_width, 4u);
    EXPECT_EQ(fs::file_size(dir + "/s.bin"), 64u + 4 * uint64_t(n));
    MappedShard m(dir + "/s.bin");
    EXPECT_EQ(m.size(), n);
    if (n > 0) {
      EXPECT_EQ(m.at(n - 1), 99999);
    }
  }
  EXPECT_EQ(shard_token_width(65536), 2u);
  EXPECT_EQ(shard_token_width(65537), 4u);
  EXPECT_EQ(shard_token_width(50257), 2u);
}

TEST(Shard, DamageIsReported) {
  const std::string dir = test::temp_dir("shardbad"), p = dir + "/s.bin";
  const std::vector<int32_t> ids = {257, 1, 2, 3, 257, 4};
  ShardHeader h;
  h.vocab_size = 261, h.eos_id = 257, h.vocab_name = "bytes";
  auto fresh = [&] { write_shard(p, h, ids); };
  auto patch = [&](size_t off, const void* v, size_t n) {
    std::string b = slurp(p);
    std::memcpy(&b[off], v, n);
    write_bytes(p, b);
  };

  fresh();
  fs::resize_file(p, fs::file_size(p) - 1);
  expect_error([&] { MappedShard m(p); }, {"[data] ", p, ": truncated"});
  expect_error([&] { read_shard_header(p); }, {p, "truncated"});
  fs::resize_file(p, 10);
  expect_error([&] { MappedShard m(p); }, {p, "truncated"});
  expect_error([&] { read_shard_header(p); }, {p, "truncated"});

  fresh();
  write_bytes(p, slurp(p) + "xx");
  expect_error([&] { MappedShard m(p); }, {p, "unexpected bytes"});

  fresh();
  patch(0, "FELATOK2", 8);
  expect_error([&] { MappedShard m(p); }, {p, "magic"});

  fresh();
  const uint32_t v2 = 2;
  patch(8, &v2, 4);
  expect_error([&] { MappedShard m(p); }, {p, "version 2"});

  fresh();
  const uint32_t w4 = 4;
  patch(16, &w4, 4);
  expect_error([&] { MappedShard m(p); }, {p, "token width"});

  fresh();
  const uint16_t big = 261;
  patch(64 + 2 * 3, &big, 2);
  expect_error([&] { MappedShard m(p); }, {p, "token id 261 at position 3"});
  expect_error([&] { read_shard(p); }, {p, "token id 261"});

  fresh();
  const uint64_t docs = 3;
  patch(32, &docs, 8);
  expect_error([&] { MappedShard m(p); }, {p, "documents"});

  expect_error([&] { MappedShard m(dir + "/absent.bin"); }, {"absent.bin"});
  // Writing checks ids too, and leaves no file behind.
  const std::vector<int32_t> bad = {1, 300};
  expect_error([&] { write_shard(dir + "/w.bin", h, bad); }, {"token id 300"});
  EXPECT_FALSE(fs::exists(dir + "/w.bin"));
  EXPECT_EQ(entries_containing(dir, "tmp"), 0);
}

// ---- corpus reading ----

TEST(Corpus, JsonLinesText) {
  std::string t, err;
  EXPECT_TRUE(jsonl_text(
      R"({"a": [1, {"b": null}], "text": "x\ny\t\"q\"\\/\u00e9\ud83d\ude00", "n": -1.5e3})", t,
      err))
      << err;
  EXPECT_EQ(t, "x\ny\t\"q\"\\/\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_TRUE(jsonl_text("  {\"text\":\"\xff\xfe raw\"}  \r", t, err))
      << err;  // invalid UTF-8 kept
  EXPECT_EQ(t, "\xff\xfe raw");
  EXPECT_TRUE(jsonl_text(R"({"text": "lone \ud800!"})", t, err)) << err;
  EXPECT_EQ(t, "lone \xed\xa0\x80!");
  EXPECT_TRUE(jsonl_text(R"({"text": "a", "t\u0065xt": "b"})", t, err)) << err;  // last wins
  EXPECT_EQ(t, "b");
  EXPECT_TRUE(jsonl_text(R"({"text": ""})", t, err));
  EXPECT_EQ(t, "");

  EXPECT_FALSE(jsonl_text(R"({"title": "no text"})", t, err));
  EXPECT_EQ(err, "no \"text\" field");
  EXPECT_FALSE(jsonl_text(R"({"text": 5})", t, err));
  EXPECT_EQ(err, "the \"text\" field is not a string");
  EXPECT_FALSE(jsonl_text(R"(["text"])", t, err));
  EXPECT_NE(err.find("not a JSON object"), std::string::npos);
  for (const char* bad : {R"({"text": "open)", R"({"text": "a"} x)", R"({"text" "a"})",
                          R"({"text": "a",})", R"({"text": "\q"})", R"({"x": tru, "text": ""})",
                          R"({"x": [1 2], "text": ""})", R"({"text": "\u12"})"}) {
    EXPECT_FALSE(jsonl_text(bad, t, err)) << bad;
    EXPECT_NE(err.find("invalid JSON at column"), std::string::npos) << bad << ": " << err;
  }
}

TEST(Corpus, ListsInputsInSortedOrder) {
  const Corpus c = make_corpus("list");
  const auto files = list_input_files({c.dir});
  std::vector<std::string> names;
  for (const auto& f : files) names.push_back(fs::relative(f.path, c.dir).string());
  EXPECT_EQ(names, (std::vector<std::string>{"a_plain.txt", "b.jsonl", "c/notes.md", "d.jsonl.zst",
                                             "e.txt"}));
  EXPECT_EQ(files[1].format, InputFormat::Jsonl);
  EXPECT_TRUE(files[3].zstd);
  EXPECT_EQ(files[3].format, InputFormat::Jsonl);
  EXPECT_EQ(files[2].format, InputFormat::Text);
  // A file named directly is read whatever its name.
  EXPECT_EQ(list_input_files({c.dir + "/ignored.bin"}).size(), 1u);
  expect_error([&] { list_input_files({c.dir + "/missing.txt"}); },
               {"[prepare] ", "missing.txt: no such file or directory"});
  const std::string empty_dir = test::temp_dir("emptydir");
  expect_error([&] { list_input_files({empty_dir}); }, {empty_dir, "no .txt"});
}

TEST(Corpus, ReadsEveryDocumentAndReportsBadLines) {
  const Corpus c = make_corpus("read");
  CorpusReader r(list_input_files({c.dir}));
  std::vector<std::string> got;
  for (Document d; r.next(d);)
    if (!d.text.empty()) got.push_back(d.text);
  EXPECT_EQ(got, c.texts);
  EXPECT_EQ(r.bytes_read(), r.bytes_total());

  const std::string dir = test::temp_dir("badline");
  write_bytes(dir + "/x.jsonl", jsonl_line("ok") + "\n" + R"({"title": "x"})" + "\n");
  CorpusReader bad(list_input_files({dir + "/x.jsonl"}));
  Document d;
  EXPECT_TRUE(bad.next(d));
  expect_error([&] { bad.next(d); }, {dir + "/x.jsonl:3: no \"text\" field"});

  // A cut-off .zst stream is an error, not a short document.
  const std::string z = zstd_compress(std::string(100000, 'a') + "b");
  write_bytes(dir + "/cut.txt.zst", z.substr(0, z.size() - 3));
  CorpusReader cut(list_input_files({dir + "/cut.txt.zst"}));
  expect_error([&] { cut.next(d); }, {dir + "/cut.txt.zst"});
}

// ---- prepare ----

TEST(Prepare, MixedCorpusCountsAndContent) {
  const Corpus c = make_corpus("mixed");
  const std::string out = fs::path(c.dir).parent_path() / "out";
  std::vector<PrepareProgress> seen;
  const PrepareSummary s = prepare_data(options({c.dir}, out), bytes_tok(),
                                        [&](const PrepareProgress& p) { seen.push_back(p); });
  const int64_t docs = int64_t(c.texts.size());
  EXPECT_EQ(s.train.documents + s.val.documents, docs);
  EXPECT_EQ(s.train.text_bytes + s.val.text_bytes, c.bytes);
  EXPECT_EQ(s.train.tokens + s.val.tokens, c.bytes + docs);  // one eos per document
  EXPECT_GE(s.val.documents, 1);
  EXPECT_GE(s.train.documents, 1);
  EXPECT_EQ(s.files, 5);
  EXPECT_FALSE(s.single_document_split);
  EXPECT_DOUBLE_EQ(s.train.bytes_per_token(), 1.0);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().input_done, seen.back().input_total);
  EXPECT_EQ(seen.back().documents, docs);

  Dataset train(out, "train"), val(out, "val");
  EXPECT_EQ(train.vocab_name(), "bytes");
  EXPECT_EQ(train.vocab_size(), 261);
  EXPECT_EQ(train.eos_id(), 257);
  EXPECT_EQ(train.num_tokens(), s.train.tokens);
  EXPECT_EQ(train.num_documents(), s.train.documents);
  EXPECT_EQ(train.text_bytes(), s.train.text_bytes);
  EXPECT_DOUBLE_EQ(train.bytes_per_token(), 1.0);
  EXPECT_EQ(val.num_tokens(), s.val.tokens);
  // Each split holds whole documents, in reading order; together exactly the inputs.
  const auto tr = documents_of(all_tokens(train), 257), va = documents_of(all_tokens(val), 257);
  std::vector<std::string> merged;
  size_t i = 0, j = 0;
  for (const std::string& t : c.texts) {
    if (i < tr.size() && tr[i] == t)
      merged.push_back(tr[i++]);
    else if (j < va.size() && va[j] == t)
      merged.push_back(va[j++]);
  }
  EXPECT_EQ(merged, c.texts);
  EXPECT_EQ(i + j, c.texts.size());

  const auto meta = nlohmann::json::parse(slurp(out + "/meta.json"));
  EXPECT_EQ(meta["vocab"], "bytes");
  EXPECT_EQ(meta["splits"]["train"]["shards"], nlohmann::json({"train_000.bin"}));
  EXPECT_EQ(meta["splits"]["val"]["tokens"], s.val.tokens);
  EXPECT_EQ(meta["files"].size(), 5u);
  EXPECT_EQ(meta["seed"], 1);
  EXPECT_EQ(entries_containing(fs::path(out).parent_path(), "staging"), 0);
}

TEST(Prepare, DeterministicForASeedAndThreadCount) {
  const Corpus c = make_corpus("det");
  const std::string base = fs::path(c.dir).parent_path();
  for (int k = 0; k < 30; ++k)  // more documents, so that seeds give different splits
    write_bytes(c.dir + "/many/" + std::to_string(k) + ".txt",
                "document number " + std::to_string(k));
  auto shards = [](const std::string& out) {
    return slurp(out + "/train_000.bin") + "|" + slurp(out + "/val_000.bin");
  };
  set_num_threads(1);
  prepare_data(options({c.dir}, base + "/a", 0.3, 7), bytes_tok());
  set_num_threads(2);
  prepare_data(options({c.dir}, base + "/b", 0.3, 7), bytes_tok());
  prepare_data(options({c.dir}, base + "/c", 0.3, 8), bytes_tok());
  set_num_threads(0);
  EXPECT_EQ(shards(base + "/a"), shards(base + "/b"));
  EXPECT_NE(shards(base + "/a"), shards(base + "/c"));
  EXPECT_EQ(slurp(base + "/a/meta.json"), slurp(base + "/b/meta.json"));
}

TEST(Prepare, SplitFractionAndNonEmptyVal) {
  const std::string dir = test::temp_dir("frac");
  std::string lines;
  for (int k = 0; k < 400; ++k) lines += jsonl_line("doc " + std::to_string(k));
  write_bytes(dir + "/in/docs.jsonl", lines);
  const PrepareSummary s = prepare_data(options({dir + "/in"}, dir + "/out", 0.25), bytes_tok());
  EXPECT_EQ(s.train.documents + s.val.documents, 400);
  EXPECT_GT(s.val.documents, 60);
  EXPECT_LT(s.val.documents, 140);
  const PrepareSummary z = prepare_data(options({dir + "/in"}, dir + "/out", 0.0), bytes_tok());
  EXPECT_EQ(z.val.documents, 0);
  EXPECT_EQ(z.val.tokens, 0);
  EXPECT_EQ(Dataset(dir + "/out", "val").num_eval_windows(4), 0);

  // Three documents and a tiny fraction: val still gets one of them.
  write_bytes(dir + "/few/a.txt", "alpha");
  write_bytes(dir + "/few/b.txt", "beta");
  write_bytes(dir + "/few/c.txt", "gamma");
  for (uint64_t seed : {1, 2, 3}) {
    const PrepareSummary f =
        prepare_data(options({dir + "/few"}, dir + "/fo", 0.01, seed), bytes_tok());
    EXPECT_EQ(f.val.documents, 1) << seed;
    EXPECT_EQ(f.train.documents, 2) << seed;
    EXPECT_EQ(f.train.tokens + f.val.tokens, 5 + 4 + 5 + 3);
  }
}

TEST(Prepare, SingleDocumentIsCutAtALineStart) {
  const std::string dir = test::temp_dir("single");
  std::string text;
  for (int k = 0; k < 200; ++k) text += "line number " + std::to_string(k) + "\n";
  write_bytes(dir + "/in/one.txt", text);
  write_bytes(dir + "/in/two.txt", "");  // an empty file is no document
  const PrepareSummary s = prepare_data(options({dir + "/in"}, dir + "/out", 0.1), bytes_tok());
  EXPECT_TRUE(s.single_document_split);
  EXPECT_EQ(s.train.documents, 1);
  EXPECT_EQ(s.val.documents, 1);
  const auto tr = documents_of(all_tokens(Dataset(dir + "/out", "train")), 257);
  const auto va = documents_of(all_tokens(Dataset(dir + "/out", "val")), 257);
  ASSERT_EQ(tr.size(), 1u);
  ASSERT_EQ(va.size(), 1u);
  EXPECT_EQ(tr[0] + va[0], text);
  EXPECT_EQ(tr[0].back(), '\n');                                       // val starts at a line start
  EXPECT_NEAR(double(va[0].size()), 0.1 * double(text.size()), 17.0);  // within a line
  EXPECT_EQ(nlohmann::json::parse(slurp(dir + "/out/meta.json"))["single_document_split"], true);

  // No newline: cut at a character start; 2-byte characters only.
  std::string e;
  for (int k = 0; k < 51; ++k) e += "\xc3\xa9";
  write_bytes(dir + "/e.txt", e);
  const PrepareSummary t = prepare_data(options({dir + "/e.txt"}, dir + "/out2", 0.1), bytes_tok());
  EXPECT_EQ(t.val.text_bytes % 2, 0);
  EXPECT_GE(t.val.text_bytes, 10);
  EXPECT_LE(t.val.text_bytes, 12);
  EXPECT_EQ(t.train.text_bytes + t.val.text_bytes, 102);
}

TEST(Prepare, ManyShardsReadAsOneStream) {
  const Corpus c = make_corpus("shards");
  const std::string base = fs::path(c.dir).parent_path();
  prepare_data(options({c.dir}, base + "/one", 0.3, 5), bytes_tok());
  PrepareOptions o = options({c.dir}, base + "/many", 0.3, 5);
  o.shard_tokens = 1009;  // the 5000-byte document spans several shards
  o.batch_bytes = 10;     // one document per batch
  const PrepareSummary s = prepare_data(o, bytes_tok());
  EXPECT_EQ(s.train.shards, (s.train.tokens + 1008) / 1009);
  EXPECT_GT(s.train.shards + s.val.shards, 4);
  for (const char* split : {"train", "val"}) {
    const Dataset one(base + "/one", split), many(base + "/many", split);
    EXPECT_EQ(all_tokens(one), all_tokens(many)) << split;
    EXPECT_EQ(one.text_bytes(), many.text_bytes());
    EXPECT_EQ(one.num_documents(), many.num_documents());
    for (int64_t k = 0; k < many.num_shards(); ++k) {
      char name[32];
      std::snprintf(name, sizeof name, "/%s_%03lld.bin", split, (long long)k);
      EXPECT_LE(read_shard_header(base + "/many" + name).token_count, 1009u);
    }
  }
}

TEST(Prepare, ErrorsLeaveNothingBehind) {
  const std::string dir = test::temp_dir("perr");
  write_bytes(dir + "/bad.jsonl", jsonl_line("fine") + R"({"text": null})" + "\n");
  write_bytes(dir + "/empty.txt", "");
  write_bytes(dir + "/blank.jsonl", jsonl_line("") + "\n");
  write_bytes(dir + "/good.txt", "good text");
  const std::string out = dir + "/new/deeper/out";
  expect_error([&] { prepare_data(options({dir + "/bad.jsonl"}, out), bytes_tok()); },
               {"bad.jsonl:2: the \"text\" field is not a string"});
  expect_error([&] { prepare_data(options({dir + "/empty.txt"}, out), bytes_tok()); },
               {"corpus is empty"});
  expect_error([&] { prepare_data(options({dir + "/blank.jsonl"}, out), bytes_tok()); },
               {"corpus is empty"});
  expect_error([&] { prepare_data(options({dir + "/nope"}, out), bytes_tok()); },
               {"nope: no such file"});
  expect_error([&] { prepare_data(options({dir + "/good.txt"}, out, 1.5), bytes_tok()); },
               {"--val-fraction"});
  EXPECT_FALSE(fs::exists(dir + "/new"));
  EXPECT_EQ(entries_containing(dir, "staging"), 0);

  // A foreign non-empty directory is refused and left alone; a previous output is replaced.
  write_bytes(dir + "/mine/keep.txt", "precious");
  expect_error([&] { prepare_data(options({dir + "/good.txt"}, dir + "/mine"), bytes_tok()); },
               {dir + "/mine", "not a previous prepare output"});
  EXPECT_EQ(slurp(dir + "/mine/keep.txt"), "precious");
  prepare_data(options({dir + "/good.txt"}, dir + "/prev"), bytes_tok());
  const PrepareSummary again = prepare_data(
      options({dir + "/good.txt", dir + "/mine/keep.txt"}, dir + "/prev/"), bytes_tok());
  EXPECT_EQ(again.train.documents + again.val.documents, 2);
  EXPECT_EQ(Dataset(dir + "/prev", "train").num_documents() +
                Dataset(dir + "/prev", "val").num_documents(),
            2);
  EXPECT_FALSE(fs::exists(dir + "/prev.old"));
  EXPECT_EQ(entries_containing(dir, "staging"), 0);
}

// ---- dataset ----

TEST(Dataset, SampleBatchIsDeterministicAndShifted) {
  const Corpus c = make_corpus("sample");
  const std::string out = fs::path(c.dir).parent_path() / "out";
  PrepareOptions o = options({c.dir}, out, 0.3, 2);
  o.shard_tokens = 997;  // windows cross shard boundaries
  prepare_data(o, bytes_tok());
  const Dataset d(out, "train");
  ASSERT_GT(d.num_shards(), 2);
  const auto all = all_tokens(d);
  for (const int64_t N : {1, 31, 129}) {
    const int64_t B = 5;
    std::vector<int32_t> in(B * N), tgt(B * N), in2(B * N), tgt2(B * N);
    Rng r1(11), r2(11), ref(11);
    d.sample_batch(r1, B, N, in.data(), tgt.data());
    d.sample_batch(r2, B, N, in2.data(), tgt2.data());
    EXPECT_EQ(in, in2);
    EXPECT_EQ(tgt, tgt2);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = int64_t(ref.below(uint64_t(d.num_tokens() - N)));  // the documented draw
      for (int64_t j = 0; j < N; ++j) {
        EXPECT_EQ(in[b * N + j], all[s + j]);
        EXPECT_EQ(tgt[b * N + j], all[s + j + 1]);
        if (j + 1 < N) {
          EXPECT_EQ(tgt[b * N + j], in[b * N + j + 1]);
        }
      }
    }
    // Resuming from a saved Rng state draws the same next batch.
    const Rng::State st = r1.state();
    d.sample_batch(r1, B, N, in.data(), tgt.data());
    Rng resumed;
    resumed.set_state(st);
    d.sample_batch(resumed, B, N, in2.data(), tgt2.data());
    EXPECT_EQ(in, in2);
  }
  std::vector<int32_t> in(10), tgt(10);
  Rng r(1);
  expect_error([&] { d.sample_batch(r, 1, d.num_tokens(), in.data(), tgt.data()); },
               {"fewer than one window"});
}

TEST(Dataset, EvalWindowsCoverEveryTokenOnce) {
  const Corpus c = make_corpus("evalw");
  const std::string out = fs::path(c.dir).parent_path() / "out";
  PrepareOptions o = options({c.dir}, out, 0.3, 2);
  o.shard_tokens = 499;
  prepare_data(o, bytes_tok());
  const Dataset d(out, "train");
  ASSERT_GT(d.num_shards(), 2);
  const auto all = all_tokens(d);
  const int64_t T = d.num_tokens();
  for (const int64_t N : {int64_t(1), int64_t(3), int64_t(31), T - 1, T, T + 5}) {
    const int64_t W = d.num_eval_windows(N);
    EXPECT_EQ(W, (T - 1 + N - 1) / N);
    std::vector<int32_t> inputs, targets, in(N), tgt(N);
    for (int64_t i = 0; i < W; ++i) {
      d.eval_window(i, N, in.data(), tgt.data());
      for (int64_t j = 0; j < N; ++j) {
        if (tgt[j] >= 0) {
          inputs.push_back(in[j]);
          targets.push_back(tgt[j]);
        } else {
          EXPECT_EQ(i, W - 1);  // padding only at the end
          if (i * N + j >= T) {
            EXPECT_EQ(in[j], 257);  // inputs past the end are eos
          }
        }
      }
    }
    EXPECT_EQ(inputs, std::vector<int32_t>(all.begin(), all.end() - 1)) << N;
    EXPECT_EQ(targets, std::vector<int32_t>(all.begin() + 1, all.end())) << N;
    expect_error([&] { d.eval_window(W, N, in.data(), tgt.data()); }, {"out of range"});
  }
}

TEST(Dataset, OpenErrors) {
  const std::string dir = test::temp_dir("dsopen");
  write_bytes(dir + "/in.txt", "some text\nmore text\n");
  prepare_data(options({dir + "/in.txt"}, dir + "/out", 0.2), bytes_tok());
  expect_error([&] { Dataset d(dir + "/out", "test"); }, {"unknown split 'test'"});
  expect_error([&] { Dataset d(dir, "train"); }, {"no meta.json"});
  fs::resize_file(dir + "/out/val_000.bin", 70);
  expect_error([&] { Dataset d(dir + "/out", "val"); }, {"val_000.bin: truncated"});
  // A shard that disagrees with meta.json.
  ShardHeader h;
  h.vocab_size = 261, h.eos_id = 257, h.vocab_name = "bytes";
  write_shard(dir + "/out/train_000.bin", h, std::vector<int32_t>{257, 1});
  expect_error([&] { Dataset d(dir + "/out", "train"); }, {"meta.json", "lists"});
}

TEST(Dataset, TokenByteLengths) {
  const auto len = token_byte_lengths(bytes_tok());
  ASSERT_EQ(len.size(), 261u);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(len[i], 1);
  for (int i = 256; i < 261; ++i) EXPECT_EQ(len[i], 0) << i;
}

TEST(Dataset, Gpt2Vocabulary) {
  std::string vocab_dir;
  try {
    vocab_dir = default_vocab_dir();
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const auto tok = make_gpt2_tokenizer(vocab_dir);
  const auto len = token_byte_lengths(*tok);
  ASSERT_EQ(len.size(), 50257u);
  EXPECT_EQ(len[50256], 0);
  EXPECT_EQ(len[tok->encode("Hello")[0]], 5);

  const Corpus c = make_corpus("gpt2");
  const std::string out = fs::path(c.dir).parent_path() / "out";
  const PrepareSummary s = prepare_data(options({c.dir}, out), *tok);
  EXPECT_EQ(s.vocab, "gpt2");
  EXPECT_EQ(s.train.text_bytes + s.val.text_bytes, c.bytes);
  int64_t expect_tokens = 0;
  for (const auto& t : c.texts) expect_tokens += 1 + int64_t(tok->encode(t).size());
  EXPECT_EQ(s.train.tokens + s.val.tokens, expect_tokens);
  const Dataset d(out, "train");
  EXPECT_EQ(d.vocab_size(), 50257);
  EXPECT_EQ(d.eos_id(), 50256);
  EXPECT_EQ(read_shard_header(out + "/train_000.bin").token_width, 2u);
  EXPECT_GT(d.bytes_per_token(), 1.5);
  // The byte lengths of the tokens add up to the text of the split.
  int64_t bytes = 0;
  for (const int32_t t : all_tokens(d)) bytes += len[t];
  EXPECT_EQ(bytes, d.text_bytes());
}

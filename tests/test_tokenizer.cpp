// Tokenizers: the gpt2 vocabulary against token ids produced by OpenAI's tiktoken (golden files
// in shared/data/bpe, skipped when that folder is absent) and against a slow reference encoder
// (PCRE2's interpreter on every match + a naive re-implementation of tiktoken's merge loop),
// round trips of random byte strings (invalid UTF-8 included) for both vocabularies, the bytes
// vocabulary's ids and specials, batch encoding from several threads, and the errors.
#include <gtest/gtest.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fela/core/error.h"
#include "fela/core/rng.h"
#include "fela/tokenizer/tokenizer.h"

using namespace fela;

namespace {

const std::string kVocabDir = FELA_SOURCE_DIR "/data/bpe";
const std::string kGoldenDir = FELA_SOURCE_DIR "/../shared/data/bpe";

const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> tok = make_tokenizer("gpt2", kVocabDir);
  return *tok;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// A short printable form of a text for failure messages.
std::string show(const std::string& s) {
  return nlohmann::json(s)
      .dump(-1, ' ', true, nlohmann::json::error_handler_t::replace)
      .substr(0, 120);
}

#define SKIP_WITHOUT_GOLDEN() \
  if (!std::filesystem::is_directory(kGoldenDir)) GTEST_SKIP() << kGoldenDir << " is absent"

// Appends the UTF-8 of code point cp.
void put_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else if (cp < 0x800) {
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(char(0xE0 | (cp >> 12)));
    s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(char(0xF0 | (cp >> 18)));
    s.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
}

// Random byte strings mixing ASCII words, whitespace, punctuation, multi-byte characters of many
// scripts, emoji, and invalid UTF-8 (lone bytes, truncated and overlong sequences, surrogates).
std::string random_text(Rng& rng, size_t max_len) {
  static const uint32_t kCodePoints[] = {0xE9,    0x3B1,  0x416,  0x5D0,  0x627,   0x915,
                                         0xE01,   0x4E2D, 0x3042, 0xAC00, 0x10D0,  0x1F600,
                                         0x1F44D, 0x200D, 0xFE0F, 0x85,   0xA0,    0x2028,
                                         0x3000,  0xFEFF, 0x660,  0x2155, 0x20000, 0x1F1FA};
  static const char* kInvalid[] = {
      "\xff",     "\xfe",         "\x80",         "\xbf",
      "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
      "\xe2\x82", "\xf0\x9f\x98", "\xc3",         "\xf8\x88\x80\x80\x80"};
  static const char* kAscii[] = {" ",    "  ",  "\n", "\t",  "\r\n",          "'s", "'ll",  "the",
                                 " cat", "123", "!?", "...", "<|endoftext|>", "x",  "  \n "};
  const size_t len = rng.below(max_len + 1);
  std::string s;
  while (s.size() < len) {
    switch (rng.below(5)) {
      case 0:
        s.push_back(char(rng.below(256)));
        break;
      case 1:
        put_utf8(s, kCodePoints[rng.below(std::size(kCodePoints))]);
        break;
      case 2:
        s += kInvalid[rng.below(std::size(kInvalid))];
        break;
      case 3:
        s += kAscii[rng.below(std::size(kAscii))];
        break;
      default:
        put_utf8(s, uint32_t(0x20 + rng.below(0x3000)));
        break;
    }
  }
  return s;
}

// tiktoken's byte_pair_merge written plainly over byte strings: the oracle for fela's BPE.
class NaiveBpe {
 public:
  explicit NaiveBpe(const std::string& encoder_json) {
    std::ifstream in(encoder_json);
    const auto j = nlohmann::json::parse(in);
    std::map<uint32_t, int> u2b;  // GPT-2's bytes_to_unicode(), inverted
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      u2b[printable ? b : 256 + extra++] = b;
    }
    for (const auto& [key, value] : j.items()) {
      if (key == "<|endoftext|>") continue;
      std::string bytes;
      for (size_t i = 0; i < key.size();) {  // keys hold one- and two-byte UTF-8 only
        const auto c = static_cast<unsigned char>(key[i]);
        const uint32_t cp = c < 0x80 ? c : ((c & 0x1F) << 6) | (key[i + 1] & 0x3F);
        i += c < 0x80 ? 1 : 2;
        bytes.push_back(char(u2b.at(cp)));
      }
      rank_[bytes] = value.get<int32_t>();
    }
  }
  std::vector<int32_t> encode_piece(const std::string& piece) const {
    if (auto it = rank_.find(piece); it != rank_.end()) return {it->second};
    std::vector<std::string> parts;
    for (char c : piece) parts.emplace_back(1, c);
    for (;;) {
      size_t best = parts.size();
      int32_t best_rank = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = rank_.find(parts[i] + parts[i + 1]);
        if (it != rank_.end() && (best == parts.size() || it->second < best_rank))
          best = i, best_rank = it->second;
      }
      if (best == parts.size()) break;
      parts[best] += parts[best + 1];
      parts.erase(parts.begin() + best + 1);
    }
    std::vector<int32_t> ids;
    for (const auto& p : parts) ids.push_back(rank_.at(p));
    return ids;
  }

 private:
  std::unordered_map<std::string, int32_t> rank_;
};

// GPT-2's pattern run by PCRE2's interpreter on every match (no ASCII shortcut), then the naive
// BPE: a slow reference encoder for valid UTF-8.
class ReferenceEncoder {
 public:
  explicit ReferenceEncoder(const std::string& encoder_json) : bpe_(encoder_json) {
    const std::string ws =
        R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
    const std::string pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + ws +
                                "\\p{L}\\p{N}]+|[" + ws + "]+(?![^" + ws + "])|[" + ws + "]+";
    int err;
    PCRE2_SIZE off;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    data_ = pcre2_match_data_create(1, nullptr);
  }
  ~ReferenceEncoder() {
    pcre2_match_data_free(data_);
    pcre2_code_free(code_);
  }
  std::vector<int32_t> encode(const std::string& text) const {
    std::vector<int32_t> ids;
    for (size_t pos = 0; pos < text.size();) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                                 0, data_, nullptr);
      EXPECT_GE(rc, 0);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
      EXPECT_EQ(ov[0], pos);
      for (int32_t id : bpe_.encode_piece(text.substr(ov[0], ov[1] - ov[0]))) ids.push_back(id);
      pos = ov[1];
    }
    return ids;
  }

 private:
  NaiveBpe bpe_;
  pcre2_code* code_ = nullptr;
  pcre2_match_data* data_ = nullptr;
};

// Valid UTF-8 that stresses the ASCII shortcut: runs of each ASCII class, apostrophes, control
// characters, and non-ASCII letters, digits, spaces and symbols next to them.
std::string random_valid_text(Rng& rng, size_t max_len) {
  static const char* kBits[] = {
      " ",           "  ",     "   ",    "\n",     "\t",         "\r\n",
      "\x0b",        "\x0c",   "\x1c",   "\x1f",   "\x01",       "\x7f",
      "'",           "'s",     "'t",     "'re",    "'ve",        "'m",
      "'ll",         "'d",     "'S",     "'r",     "'l",         "a",
      "Z",           "word",   " the",   "7",      "42",         "!",
      "?!",          "(",      "~",      "\"",     "\u00e9",     "\u00c9t\u00e9",
      "\u0661",      "\u00b2", "\u00a0", "\u0085", "\u2028",     "\u3000",
      "\u180e",      "\ufeff", "\u2014", "\u00bf", "\U0001F600", "\u4e2d",
      "\u0915\u093f"};
  const size_t len = rng.below(max_len + 1);
  std::string s;
  while (s.size() < len) s += kBits[rng.below(std::size(kBits))];
  return s;
}

}  // namespace

TEST(Gpt2Tokenizer, MatchesTiktokenGolden) {
  SKIP_WITHOUT_GOLDEN();
  const auto rows = read_jsonl(kGoldenDir + "/golden.jsonl");
  ASSERT_EQ(rows.size(), 302u);
  int wrong = 0;
  for (const auto& r : rows) {
    const std::string text = r["text"];
    const auto want = ids_of(r["ids"]);
    const auto got = gpt2().encode(text);
    if (got != want && ++wrong <= 5)
      ADD_FAILURE() << "encode differs from tiktoken on " << show(text);
    EXPECT_EQ(gpt2().encode_with_special(text), want);  // no special text in these lines
    EXPECT_EQ(gpt2().decode(want), text);
  }
  EXPECT_EQ(wrong, 0) << "of " << rows.size() << " lines";
}

TEST(Gpt2Tokenizer, DecodesGoldenBytes) {
  SKIP_WITHOUT_GOLDEN();
  const auto rows = read_jsonl(kGoldenDir + "/golden_decode.jsonl");
  ASSERT_EQ(rows.size(), 53u);
  for (const auto& r : rows) {
    const auto ids = ids_of(r["ids"]);
    EXPECT_EQ(gpt2().decode(ids), from_hex(r["hex"])) << r["ids"].dump();
  }
}

TEST(Gpt2Tokenizer, SpecialTokenGolden) {
  SKIP_WITHOUT_GOLDEN();
  const auto rows = read_jsonl(kGoldenDir + "/golden_special.jsonl");
  ASSERT_EQ(rows.size(), 11u);
  for (const auto& r : rows) {
    const std::string text = r["text"];
    EXPECT_EQ(gpt2().encode_with_special(text), ids_of(r["ids"])) << show(text);
    EXPECT_EQ(gpt2().encode(text), ids_of(r["ids_ordinary"])) << show(text);
    EXPECT_EQ(gpt2().decode(ids_of(r["ids"])), text);
    EXPECT_EQ(gpt2().decode(ids_of(r["ids_ordinary"])), text);
  }
}

TEST(Gpt2Tokenizer, BpeMatchesNaiveMergeLoop) {
  // Random words are single pre-tokens; lengths up to 300 take every path: the per-thread cache
  // (up to 24 bytes), the O(n^2) scan (up to 128) and the heap. Encoding twice checks the cache.
  const NaiveBpe naive(kVocabDir + "/encoder.json");
  Rng rng(11);
  const std::string letters = "aaabcdeeefghiiijklmnooopqrstuuuvwxyzAEIOST";
  for (int trial = 0; trial < 400; ++trial) {
    const size_t len = 1 + (trial < 300 ? rng.below(40) : rng.below(300));
    std::string word(trial % 2 ? " " : "");
    for (size_t i = 0; i < len; ++i) word.push_back(letters[rng.below(letters.size())]);
    const auto want = naive.encode_piece(word);
    ASSERT_EQ(gpt2().encode(word), want) << word;
    ASSERT_EQ(gpt2().encode(word), want) << word;
  }
  // Runs that the regex keeps as one piece.
  for (const std::string& run :
       {std::string(777, 'a'), std::string(300, ' '), std::string(500, '7'), std::string(400, '!'),
        std::string(130, '-')})
    EXPECT_EQ(gpt2().encode(run), naive.encode_piece(run))
        << run.substr(0, 1) << " x " << run.size();
}

TEST(Gpt2Tokenizer, MatchesPcre2ReferenceOnRandomText) {
  const ReferenceEncoder ref(kVocabDir + "/encoder.json");
  Rng rng(17);
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string s = random_valid_text(rng, trial < 2900 ? 24 : 400);
    ASSERT_EQ(gpt2().encode(s), ref.encode(s)) << show(s);
  }
}

TEST(Gpt2Tokenizer, PreTokenisationDetails) {
  const auto& t = gpt2();
  // Whitespace before a word keeps one space with the word.
  EXPECT_EQ(t.encode("a  b"), (std::vector<int32_t>{64, 220, 275}));
  // <|endoftext|> is ordinary text for encode(), the special id for encode_with_special().
  EXPECT_EQ(t.encode_with_special("<|endoftext|>"), std::vector<int32_t>{50256});
  EXPECT_NE(t.encode("<|endoftext|>"), std::vector<int32_t>{50256});
  EXPECT_EQ(t.decode(std::vector<int32_t>{50256}), "<|endoftext|>");
  EXPECT_EQ(t.vocab_size(), 50257);
  EXPECT_EQ(t.eos_id(), 50256);
  EXPECT_EQ(t.bos_id(), 50256);
  EXPECT_EQ(t.name(), "gpt2");
}

TEST(Gpt2Tokenizer, InvalidUtf8IsOneTokenPerByte) {
  const auto& t = gpt2();
  const std::string ff = "\xff", cont = "\x80";
  const auto id_ff = t.encode(ff), id_cont = t.encode(cont);
  ASSERT_EQ(id_ff.size(), 1u);
  ASSERT_EQ(id_cont.size(), 1u);
  // A truncated euro sign between words: each of its bytes stands alone.
  const std::string text = std::string("hello\xe2\x82") + " world";
  const auto ids = t.encode(text);
  EXPECT_EQ(ids, (std::vector<int32_t>{31373, t.encode("\xe2")[0], t.encode("\x82")[0], 995}));
  EXPECT_EQ(t.decode(ids), text);
  // Surrogates and overlong forms are invalid too.
  for (const std::string bad : {"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"}) {
    EXPECT_EQ(t.encode(bad).size(), bad.size());
    EXPECT_EQ(t.decode(t.encode(bad)), bad);
  }
}

TEST(Gpt2Tokenizer, RoundTripsRandomBytes) {
  const auto& t = gpt2();
  Rng rng(5);
  for (int trial = 0; trial < 1500; ++trial) {
    const std::string s = random_text(rng, trial < 1400 ? 60 : 2000);
    const auto ids = t.encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < t.eos_id()) << id;  // never the special
    ASSERT_EQ(t.decode(ids), s) << show(s);
    ASSERT_EQ(t.decode(t.encode_with_special(s)), s) << show(s);
  }
}

TEST(Gpt2Tokenizer, LongRunsDoNotFail) {
  // Long single pieces and whitespace runs exercise PCRE2's JIT stack and the heap BPE.
  const auto& t = gpt2();
  for (const std::string& s :
       {std::string(200000, ' '), std::string(200000, 'a'),
        std::string(100000, '9') + std::string(100000, '\n'), std::string(50000, '\xff')}) {
    const auto ids = t.encode(s);
    EXPECT_LT(ids.size(), s.size() + 1);
    EXPECT_EQ(t.decode(ids), s);
  }
}

TEST(Gpt2Tokenizer, BatchFromManyThreadsMatchesSequential) {
  Rng rng(9);
  std::vector<std::string> docs;
  for (int i = 0; i < 300; ++i) docs.push_back(random_text(rng, 400));
  docs.push_back("");
  docs.push_back("first document.<|endoftext|>Second document.");
  const std::vector<std::string_view> views(docs.begin(), docs.end());
  for (bool special : {false, true}) {
    const auto batch = gpt2().encode_batch(views, special);
    ASSERT_EQ(batch.size(), docs.size());
    for (size_t i = 0; i < docs.size(); ++i)
      EXPECT_EQ(batch[i], special ? gpt2().encode_with_special(docs[i]) : gpt2().encode(docs[i]));
  }
  EXPECT_EQ(gpt2().encode_batch({}, false).size(), 0u);
}

TEST(Gpt2Tokenizer, BadIdsThrow) {
  const auto& t = gpt2();
  for (int32_t bad : {-1, 50257, 1 << 30}) {
    try {
      t.decode(std::vector<int32_t>{31373, bad});
      ADD_FAILURE() << "id " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(
          std::string(e.what()).rfind("[tokenizer] id " + std::to_string(bad) + " out of range", 0),
          0u)
          << e.what();
    }
  }
}

TEST(Gpt2Tokenizer, MissingOrBrokenVocabularyThrows) {
  EXPECT_THROW(make_tokenizer("gpt2", "/nonexistent/fela/bpe"), Error);
  // encoder.json without vocab.bpe next to it
  const auto dir = std::filesystem::temp_directory_path() / "fela_test_tokenizer_vocab";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kVocabDir + "/encoder.json", dir / "encoder.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(dir / "vocab.bpe");
  EXPECT_THROW(make_tokenizer("gpt2", dir.string()), Error);
  { std::ofstream(dir / "vocab.bpe") << "#version: 0.2\n\xc4\xa0 a\n"; }  // wrong first merge
  EXPECT_THROW(make_tokenizer("gpt2", dir.string()), Error);
  std::filesystem::remove_all(dir);
}

TEST(BytesTokenizer, IdsAreBytesAndSpecials) {
  const auto t = make_tokenizer("bytes", "");
  EXPECT_EQ(t->name(), "bytes");
  EXPECT_EQ(t->vocab_size(), 261);
  EXPECT_EQ(t->bos_id(), 256);
  EXPECT_EQ(t->eos_id(), 257);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  const auto ids = t->encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(t->decode(ids), all);
  EXPECT_EQ(t->encode("<eos>"), (std::vector<int32_t>{'<', 'e', 'o', 's', '>'}));
  EXPECT_EQ(t->encode_with_special("a<bos><eos><pad><unk><sep><eo"),
            (std::vector<int32_t>{'a', 256, 257, 258, 259, 260, '<', 'e', 'o'}));
  // <bos> and <pad> decode to nothing; <eos>, <unk>, <sep> to their text.
  EXPECT_EQ(t->decode(std::vector<int32_t>{256, 'h', 'i', 258, 257, 259, 260}),
            "hi<eos><unk><sep>");
}

TEST(BytesTokenizer, RoundTripsRandomBytes) {
  const auto t = make_tokenizer("bytes", "");
  Rng rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    const std::string s = random_text(rng, 300);
    const auto ids = t->encode(s);
    ASSERT_EQ(ids.size(), s.size());
    ASSERT_EQ(t->decode(ids), s);
  }
}

TEST(BytesTokenizer, BadIdsThrow) {
  const auto t = make_tokenizer("bytes", "");
  for (int32_t bad : {-1, 261, 1000}) {
    try {
      t->decode(std::vector<int32_t>{65, bad});
      ADD_FAILURE() << "id " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(
          std::string(e.what()).rfind("[tokenizer] id " + std::to_string(bad) + " out of range", 0),
          0u)
          << e.what();
    }
  }
}

TEST(Tokenizer, FactoryRejectsUnknownNames) {
  try {
    make_tokenizer("x", kVocabDir);
    ADD_FAILURE() << "unknown vocabulary accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[tokenizer] unknown vocabulary 'x' (expected bytes or gpt2)");
  }
}

TEST(Tokenizer, DefaultVocabDirFindsTheRepositoryCopy) {
  // A test binary in <repo>/build*/ finds the repository's copy as <exe dir>/../data/bpe.
  const char* saved = std::getenv("FELA_DATA_DIR");
  const std::string saved_value = saved ? saved : "";
  unsetenv("FELA_DATA_DIR");
  try {
    const std::string dir = default_vocab_dir();
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(dir) / "vocab.bpe")) << dir;
  } catch (const Error& e) {  // only when the build directory is outside the repository
    EXPECT_EQ(std::string(e.what()).rfind("[tokenizer] cannot find", 0), 0u) << e.what();
  }
  setenv("FELA_DATA_DIR", FELA_SOURCE_DIR "/data", 1);  // the parent of bpe/ is accepted too
  EXPECT_EQ(std::filesystem::path(default_vocab_dir()),
            std::filesystem::path(FELA_SOURCE_DIR "/data/bpe"));
  setenv("FELA_DATA_DIR", "/nonexistent/fela", 1);
  EXPECT_THROW(default_vocab_dir(), Error);
  if (saved) {
    setenv("FELA_DATA_DIR", saved_value.c_str(), 1);
  } else {
    unsetenv("FELA_DATA_DIR");
  }
}

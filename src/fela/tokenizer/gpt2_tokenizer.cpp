// The "gpt2" vocabulary (SPEC.md §5): GPT-2's byte-level BPE, token for token the same as
// OpenAI's tiktoken r50k_base ("gpt2" encoding), checked against tiktoken's own output in
// tests/test_tokenizer.cpp.
//
// encode = pre-tokenise with GPT-2's regex, then BPE each piece:
//   1. Pre-tokenisation: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      with PCRE2 (UTF, UCP, JIT). \s is spelled out as the Unicode White_Space property (as in
//      tiktoken's Rust regex); PCRE2's own \s would also match U+180E. \p{L} and \p{N} are the
//      general categories of the linked PCRE2's Unicode tables (10.42: Unicode 14; tiktoken has
//      15, which differs only on characters added in Unicode 15).
//      Invalid UTF-8 never reaches PCRE2: the text is split into maximal valid runs, each run is
//      matched on its own with PCRE2_NO_UTF_CHECK, and every invalid byte is a piece of its own.
//      Matches that ASCII bytes decide alone (most of English text) are found by ascii_match(),
//      a hand-written form of the same alternatives that the tests check against PCRE2; it hands
//      every match that a non-ASCII character could change to PCRE2.
//   2. A piece that is a whole token is that token (tiktoken's shortcut). Otherwise it starts as
//      one part per byte and, as in tiktoken, the adjacent pair whose concatenation is the token
//      of lowest rank (rank = id) is merged, leftmost first, until no pair is a token. vocab.bpe's
//      merges (merge r makes token 256 + r, checked at load) are a subset of these pairs.
// Per-thread state (PCRE2 match data and JIT stack, a cache of recent multi-token pieces) lives
// in thread_local storage, so one tokenizer can encode from many threads at once.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <tuple>

#include "fela/core/error.h"
#include "fela/tokenizer/tokenizer.h"

namespace fela {

namespace {

constexpr std::string_view kEndOfText = "<|endoftext|>";

// Unicode White_Space, the meaning of \s in tiktoken (Rust regex) and Python's regex module.
#define FELA_WS \
  R"(\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})"
constexpr const char* kPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" FELA_WS R"(\p{L}\p{N}]+|[)" FELA_WS
    R"(]+(?![^)" FELA_WS R"(])|[)" FELA_WS R"(]+)";
#undef FELA_WS

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FELA_CHECK(in, "[tokenizer] cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// GPT-2's bytes_to_unicode(): the printable bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order, so that every token is a printable string in encoder.json.
std::array<int, 324> unicode_to_byte_table() {
  std::array<int, 324> table;
  table.fill(-1);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    table[printable ? b : 256 + extra++] = b;
  }
  return table;
}

// Bytes of an encoder.json / vocab.bpe token string (UTF-8 of byte-to-unicode characters).
std::string token_to_bytes(std::string_view s, const std::array<int, 324>& u2b) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c, i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = (uint32_t(c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F), i += 2;
    } else {
      cp = 0xFFFFFFFF, i += 1;  // three- and four-byte characters are not in the table
    }
    FELA_CHECK(cp < u2b.size() && u2b[cp] >= 0, "[tokenizer] token '", s,
               "' has a character outside GPT-2's byte-to-unicode table");
    out.push_back(char(u2b[cp]));
  }
  return out;
}

// Length of the longest prefix of p[0, n) that is valid UTF-8 (RFC 3629: no overlong forms,
// no surrogates, nothing above U+10FFFF), the same rules PCRE2 checks.
size_t valid_utf8_prefix(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {  // eight ASCII bytes at a time
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
      return i + k < n && p[i + k] >= lo && p[i + k] <= hi;
    };
    size_t len = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = cont(1) ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
      const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
      len = cont(1, lo, hi) && cont(2) ? 3 : 0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      const unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
      len = cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
    }
    if (!len) return i;
    i += len;
  }
  return n;
}

// Open-addressing map (left id, right id) -> id of their concatenation: the BPE inner loop.
class PairTable {
 public:
  void build(const std::vector<std::tuple<int32_t, int32_t, int32_t>>& pairs) {
    size_t cap = 16;
    while (cap < 2 * pairs.size()) cap *= 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    for (auto [a, b, merged] : pairs) {
      const uint64_t k = key(a, b);
      size_t i = slot(k);
      while (slots_[i].key != kEmpty && slots_[i].key != k) i = (i + 1) & mask_;
      slots_[i] = Slot{k, merged};
    }
  }
  // The merged id, or -1 when a + b is not a token.
  int32_t find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return slots_[i].merged;
      if (slots_[i].key == kEmpty) return -1;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  struct Slot {
    uint64_t key = kEmpty;
    int32_t merged = -1;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
};

// A fast hash of a short byte string (pieces average about four bytes).
uint64_t hash_bytes(std::string_view s) {
  constexpr uint64_t k = 0x9E3779B97F4A7C15ull;
  uint64_t h = s.size() * k;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
  }
  if (i < s.size()) {
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    h = (h ^ w) * k;
  }
  h ^= h >> 32;
  return h * 0xD6E8FEB86659FD93ull;
}

// The first 11 bytes and the length of a byte string, packed for comparison by two integers:
// equal keys mean equal strings when the length is at most 11.
struct PieceKey {
  uint64_t head = 0;  // bytes 0..7, zero-padded
  uint32_t tail = 0;  // bytes 8..10, and min(length, 255) in the top byte (0 only for "")
  bool operator==(const PieceKey&) const = default;
};
constexpr size_t kKeyBytes = 11;

PieceKey piece_key(std::string_view s) {
  char buf[12] = {};
  std::memcpy(buf, s.data(), std::min(s.size(), kKeyBytes));
  buf[11] = char(std::min<size_t>(s.size(), 255));
  PieceKey k;
  std::memcpy(&k.head, buf, 8);
  std::memcpy(&k.tail, buf + 8, 4);
  return k;
}

// Open-addressing map token bytes -> id. A slot holds its token's PieceKey, so a lookup costs
// one cache miss and two integer comparisons; only tokens longer than 11 bytes are compared
// again in full.
class TokenTable {
 public:
  // Adds every id of bytes except skip; returns an id whose bytes repeat an earlier one, or -1.
  int32_t build(const std::vector<std::string>& bytes, int32_t skip) {
    bytes_ = &bytes;
    size_t cap = 16;
    while (cap < 2 * bytes.size()) cap *= 2;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    for (int32_t id = 0; id < int32_t(bytes.size()); ++id) {
      if (id == skip) continue;
      const std::string_view s = bytes[id];
      const PieceKey key = piece_key(s);
      size_t i = hash_bytes(s) >> shift_;
      for (; slots_[i].id >= 0; i = (i + 1) & mask_)
        if (same(slots_[i], key, s)) return id;
      slots_[i] = Slot{key, id};
    }
    return -1;
  }
  // The id of s, or -1; key = piece_key(s), hash = hash_bytes(s).
  int32_t find(std::string_view s, const PieceKey& key, uint64_t hash) const {
    for (size_t i = hash >> shift_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (same(slot, key, s)) return slot.id;
    }
  }
  int32_t find(std::string_view s) const { return find(s, piece_key(s), hash_bytes(s)); }

 private:
  struct Slot {
    PieceKey key;
    int32_t id = -1;  // -1: empty
  };
  bool same(const Slot& slot, const PieceKey& key, std::string_view s) const {
    return slot.key == key && (s.size() <= kKeyBytes || (*bytes_)[slot.id] == s);
  }
  const std::vector<std::string>* bytes_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
};

// PCRE2 match data and JIT stack of the calling thread (they must not be shared).
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    FELA_CHECK(data && context && jit_stack, "[tokenizer] out of memory for PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

// A direct-mapped cache of the calling thread: piece of at most 24 bytes that is not a token ->
// its BPE tokens (at most 8), for the tokenizer numbered owner. One entry is one cache line.
struct CacheEntry {
  uint64_t bytes[3] = {};  // the piece, zero-padded
  uint32_t size = 0;       // 0: empty
  uint32_t owner = 0;      // the tokenizer's serial number
  int32_t ids[8] = {};     // unused places hold -1
};
static_assert(sizeof(CacheEntry) == 64);
constexpr size_t kCachedPieceBytes = sizeof(CacheEntry::bytes);
constexpr int kCacheBits = 14;  // 16384 entries, 1 MiB per thread

// ASCII classes of the pattern: letters are \p{L}, digits \p{N}, \t \n \v \f \r and space \s,
// the rest (0x1C..0x1F included: not White_Space) the "other" class. Bytes >= 0x80 are NonAscii.
enum class Cls : uint8_t { Other, Letter, Digit, Space, NonAscii, End };

constexpr std::array<Cls, 256> make_class_table() {
  std::array<Cls, 256> t{};
  for (int b = 0; b < 256; ++b) {
    t[b] = b >= 0x80                                          ? Cls::NonAscii
           : (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ? Cls::Letter
           : b >= '0' && b <= '9'                             ? Cls::Digit
           : (b >= 0x09 && b <= 0x0D) || b == ' '             ? Cls::Space
                                                              : Cls::Other;
  }
  return t;
}
constexpr std::array<Cls, 256> kClass = make_class_table();

// The end of the pattern's match at pos when ASCII bytes decide it (the bytes read, up to and
// including the one after the match, are ASCII or the end of s); 0 when a non-ASCII character
// could change the match, which is then PCRE2's to find. Follows the alternatives in order:
// contractions, ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`, `\s+(?!\S)`, `\s+`.
size_t ascii_match(std::string_view s, size_t pos) {
  const size_t n = s.size();
  auto cls = [&](size_t i) { return i < n ? kClass[static_cast<unsigned char>(s[i])] : Cls::End; };
  auto at = [&](size_t i) { return i < n ? s[i] : '\0'; };
  Cls c = cls(pos);
  if (c == Cls::NonAscii) return 0;
  if (s[pos] == '\'') {
    const char a = at(pos + 1), b = at(pos + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
  }
  size_t i = pos;
  if (s[pos] == ' ') {  // the optional space of the next three alternatives
    const Cls next = cls(pos + 1);
    if (next == Cls::NonAscii) return 0;
    if (next != Cls::Space && next != Cls::End) c = next, i = pos + 1;
  }
  if (c != Cls::Space) {  // a run of letters, digits or others
    size_t j = i + 1;
    while (cls(j) == c) ++j;
    return cls(j) == Cls::NonAscii ? 0 : j;
  }
  size_t j = pos + 1;  // whitespace
  while (cls(j) == Cls::Space) ++j;
  const Cls after = cls(j);
  if (after == Cls::NonAscii) return 0;  // it may be whitespace too
  if (after == Cls::End) return j;
  return j - pos >= 2 ? j - 1 : pos + 1;  // leave the last space to the word that follows
}

std::atomic<uint32_t> g_tokenizer_serial{0};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const std::string& dir) : serial_(++g_tokenizer_serial) {
    load_encoder(dir + "/encoder.json");
    check_merges(dir + "/vocab.bpe");
    build_pairs();
    compile_pattern();
  }
  ~Gpt2Tokenizer() override { pcre2_code_free(code_); }
  Gpt2Tokenizer(const Gpt2Tokenizer&) = delete;
  Gpt2Tokenizer& operator=(const Gpt2Tokenizer&) = delete;

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    encode_ordinary(text, ids);
    return ids;
  }

  std::vector<int32_t> encode_with_special(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (size_t pos = 0;;) {
      const size_t hit = text.find(kEndOfText, pos);
      encode_ordinary(text.substr(pos, hit - pos), ids);
      if (hit == std::string_view::npos) break;
      ids.push_back(eos_);
      pos = hit + kEndOfText.size();
    }
    return ids;
  }

  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      FELA_CHECK(id >= 0 && id < vocab_size(), "[tokenizer] id ", id,
                 " out of range for gpt2 (vocab_size ", vocab_size(), ")");
      out += bytes_[id];
    }
    return out;
  }

  int32_t vocab_size() const override { return int32_t(bytes_.size()); }
  int32_t eos_id() const override { return eos_; }
  int32_t bos_id() const override { return eos_; }
  std::string name() const override { return "gpt2"; }

 private:
  void load_encoder(const std::string& path) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file(path));
    } catch (const nlohmann::json::exception& e) {
      fail("[tokenizer] ", path, " is not valid JSON: ", e.what());
    }
    FELA_CHECK(j.is_object() && j.size() > 256, "[tokenizer] ", path,
               " is not an object of token -> id");
    const auto u2b = unicode_to_byte_table();
    bytes_.assign(j.size(), std::string());
    std::vector<bool> seen(j.size(), false);
    for (const auto& [key, value] : j.items()) {
      FELA_CHECK(value.is_number_integer(), "[tokenizer] ", path, ": id of '", key,
                 "' is not an integer");
      const int64_t id = value.get<int64_t>();
      FELA_CHECK(id >= 0 && id < int64_t(j.size()) && !seen[id], "[tokenizer] ", path, ": id ", id,
                 " of '", key, "' is out of range or repeated");
      seen[id] = true;
      if (key == kEndOfText) {
        bytes_[id] = key;
        eos_ = int32_t(id);
        continue;  // a special token: never produced by merges (tiktoken keeps it apart)
      }
      bytes_[id] = token_to_bytes(key, u2b);
    }
    FELA_CHECK(eos_ >= 0, "[tokenizer] ", path, " has no ", kEndOfText, " token");
    const int32_t repeated = token_id_.build(bytes_, eos_);
    FELA_CHECK(repeated < 0, "[tokenizer] ", path, ": token ", repeated, " repeats an earlier one");
    for (int b = 0; b < 256; ++b) {
      byte_id_[b] = token_id_.find(std::string(1, char(b)));
      FELA_CHECK(byte_id_[b] >= 0, "[tokenizer] ", path, " has no token for byte ", b);
    }
  }

  // vocab.bpe must agree with encoder.json: merge r (0-based) joins two tokens into token 256 + r,
  // and every token but the 256 bytes and <|endoftext|> comes from a merge. That is what makes
  // "rank = id" (tiktoken's merge order) the order of GPT-2's merges.
  void check_merges(const std::string& path) {
    std::istringstream in(read_file(path));
    const auto u2b = unicode_to_byte_table();
    std::string line;
    int64_t rank = 0, lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty() || line.starts_with("#version")) continue;
      const size_t sp = line.find(' ');
      FELA_CHECK(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos,
                 "[tokenizer] ", path, " line ", lineno, ": expected two tokens");
      const std::string a = token_to_bytes(std::string_view(line).substr(0, sp), u2b);
      const std::string b = token_to_bytes(std::string_view(line).substr(sp + 1), u2b);
      FELA_CHECK(
          token_id_.find(a) >= 0 && token_id_.find(b) >= 0 && token_id_.find(a + b) == 256 + rank,
          "[tokenizer] ", path, " line ", lineno, ": merge '", line, "' does not make token ",
          256 + rank, " of encoder.json");
      ++rank;
    }
    FELA_CHECK(256 + rank + 1 == vocab_size(), "[tokenizer] ", path, " has ", rank,
               " merges, encoder.json has ", vocab_size(), " tokens (expected 256 + merges + 1)");
  }

  // Every split of every token into two tokens: the pairs tiktoken may merge.
  void build_pairs() {
    std::vector<std::tuple<int32_t, int32_t, int32_t>> pairs;
    for (int32_t id = 0; id < vocab_size(); ++id) {
      if (id == eos_) continue;
      const std::string_view tok = bytes_[id];
      for (size_t k = 1; k < tok.size(); ++k) {
        const int32_t a = token_id_.find(tok.substr(0, k)), b = token_id_.find(tok.substr(k));
        if (a >= 0 && b >= 0) pairs.emplace_back(a, b, id);
      }
    }
    pairs_.build(pairs);
  }

  void compile_pattern() {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("[tokenizer] PCRE2 cannot compile the GPT-2 pattern at offset ", err_offset, ": ",
           reinterpret_cast<const char*>(msg));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;  // else the interpreter runs it
  }

  // Appends the tokens of text (no special tokens) to ids.
  void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
      const size_t run = valid_utf8_prefix(p + i, text.size() - i);
      if (run) encode_valid(text.substr(i, run), ids);
      i += run;
      if (i < text.size()) ids.push_back(byte_id_[p[i++]]);  // an invalid byte: its own piece
    }
  }

  // Pre-tokenises valid UTF-8 and appends the BPE of each piece. Matches that ASCII decides
  // alone are found by ascii_match(); PCRE2 finds the others.
  void encode_valid(std::string_view text, std::vector<int32_t>& ids) const {
    thread_local MatchScratch scratch;
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
    for (size_t pos = 0; pos < text.size();) {
      if (const size_t end = ascii_match(text, pos)) {
        encode_piece(text.substr(pos, end - pos), ids);
        pos = end;
        continue;
      }
      const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                            scratch.data, scratch.context)
                          : pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                        scratch.data, scratch.context);
      size_t begin = text.size(), end = text.size();
      if (rc >= 0) {
        begin = ov[0], end = ov[1];
      } else if (rc != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        fail("[tokenizer] PCRE2 match failed: ", reinterpret_cast<const char*>(msg));
      }
      // The alternatives cover every character, so a match starts at pos and is not empty;
      // anything else would be a PCRE2 fault, and the bytes still go through BPE.
      if (begin > pos) encode_piece(text.substr(pos, begin - pos), ids);
      if (end == begin) end = std::min(text.size(), begin + 1);
      if (end > begin) encode_piece(text.substr(begin, end - begin), ids);
      pos = end;
    }
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
    if (piece.size() == 1) {
      ids.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    const uint64_t hash = hash_bytes(piece);
    if (const int32_t id = token_id_.find(piece, piece_key(piece), hash); id >= 0) {
      ids.push_back(id);  // a whole token: tiktoken's shortcut
      return;
    }
    if (piece.size() > kCachedPieceBytes) {
      merge(piece, ids);
      return;
    }
    uint64_t bytes[3] = {};
    std::memcpy(bytes, piece.data(), piece.size());
    thread_local std::vector<CacheEntry> cache(size_t(1) << kCacheBits);
    CacheEntry& e = cache[hash >> (64 - kCacheBits)];
    if (e.size == piece.size() && e.owner == serial_ && e.bytes[0] == bytes[0] &&
        e.bytes[1] == bytes[1] && e.bytes[2] == bytes[2]) {
      for (int32_t id : e.ids)
        if (id >= 0) ids.push_back(id);
      return;
    }
    const size_t first = ids.size();
    merge(piece, ids);
    const size_t count = ids.size() - first;
    if (count <= std::size(e.ids)) {
      std::memcpy(e.bytes, bytes, sizeof bytes);
      e.size = uint32_t(piece.size());
      e.owner = serial_;
      for (size_t k = 0; k < std::size(e.ids); ++k) e.ids[k] = k < count ? ids[first + k] : -1;
    }
  }

  void merge(std::string_view piece, std::vector<int32_t>& ids) const {
    if (piece.size() <= kShortPiece) {
      merge_short(piece, ids);
    } else {
      merge_long(piece, ids);
    }
  }

  // BPE by repeated scans: O(n^2), fastest for the short pieces that make up most text.
  void merge_short(std::string_view piece, std::vector<int32_t>& ids) const {
    const size_t n = piece.size();
    int32_t part[kShortPiece], merged[kShortPiece];  // merged[i]: token of part[i] + part[i+1]
    for (size_t i = 0; i < n; ++i) part[i] = byte_id_[static_cast<unsigned char>(piece[i])];
    for (size_t i = 0; i + 1 < n; ++i) merged[i] = pairs_.find(part[i], part[i + 1]);
    size_t m = n;
    while (m > 1) {
      size_t best = m;  // leftmost pair whose merged token has the lowest rank (= id)
      for (size_t i = 0; i + 1 < m; ++i)
        if (merged[i] >= 0 && (best == m || merged[i] < merged[best])) best = i;
      if (best == m) break;
      part[best] = merged[best];
      for (size_t i = best + 1; i + 1 < m; ++i) part[i] = part[i + 1], merged[i] = merged[i + 1];
      --m;
      if (best > 0) merged[best - 1] = pairs_.find(part[best - 1], part[best]);
      if (best + 1 < m) merged[best] = pairs_.find(part[best], part[best + 1]);
    }
    ids.insert(ids.end(), part, part + m);
  }

  // The same merges for long pieces (long runs of letters, digits, spaces or symbols) with a
  // linked list of parts and a heap ordered by (rank, byte offset): O(n log n).
  void merge_long(std::string_view piece, std::vector<int32_t>& ids) const {
    const int32_t n = int32_t(piece.size());
    std::vector<int32_t> part(n), next(n), prev(n);  // parts are indexed by their first byte
    for (int32_t i = 0; i < n; ++i) {
      part[i] = byte_id_[static_cast<unsigned char>(piece[i])];
      next[i] = i + 1;  // n: no next part
      prev[i] = i - 1;
    }
    struct Cand {
      int32_t rank, left, right, left_id, right_id;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t l) {
      if (l < 0 || next[l] >= n) return;
      const int32_t r = next[l], m = pairs_.find(part[l], part[r]);
      if (m >= 0) heap.push({m, l, r, part[l], part[r]});
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    std::vector<bool> alive(n, true);
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
          part[c.left] != c.left_id || part[c.right] != c.right_id)
        continue;  // stale: one side has been merged since
      part[c.left] = c.rank;
      alive[c.right] = false;
      next[c.left] = next[c.right];
      if (next[c.left] < n) prev[next[c.left]] = c.left;
      push(prev[c.left]);
      push(c.left);
    }
    for (int32_t i = 0; i < n; i = next[i]) ids.push_back(part[i]);
  }

  static constexpr size_t kShortPiece = 128;

  std::vector<std::string> bytes_;  // id -> bytes
  TokenTable token_id_;             // bytes -> id, without <|endoftext|>
  std::array<int32_t, 256> byte_id_{};
  PairTable pairs_;
  int32_t eos_ = -1;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
  uint32_t serial_;  // tells this tokenizer's cache entries from those of other tokenizers
};

}  // namespace

std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const std::string& data_dir) {
  return std::make_unique<Gpt2Tokenizer>(data_dir);
}

}  // namespace fela

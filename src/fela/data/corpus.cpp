// Input discovery, streaming zstd decompression (ZSTD_decompressStream), JSON Lines parsing
// and the document stream of `fela prepare`; the rules are stated in corpus.h.
//
// The JSON reader is a small strict-structure parser of its own rather than a JSON library:
// it only decodes the "text" string (others are validated and skipped), and it keeps bytes that
// are not valid UTF-8, which a conforming library rejects.
#include "fela/data/corpus.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "fela/core/error.h"

namespace fela {

namespace fs = std::filesystem;

namespace {

constexpr size_t kReadChunk = size_t(1) << 20;

bool ends_with_nocase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower((unsigned char)s[s.size() - suffix.size() + i]) != suffix[i]) return false;
  return true;
}

bool is_corpus_name(std::string_view name) {
  if (ends_with_nocase(name, ".zst")) name.remove_suffix(4);
  return ends_with_nocase(name, ".txt") || ends_with_nocase(name, ".md") ||
         ends_with_nocase(name, ".jsonl") || ends_with_nocase(name, ".json");
}

bool is_prepare_output(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "meta.json", ec) &&
         fs::is_regular_file(dir / "train_000.bin", ec);
}

// ---- JSON Lines ----

void append_utf8(std::string& out, uint32_t cp) {
  // Lone surrogates are written as 3-byte sequences (WTF-8), as Python's json does.
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

class JsonLine {
 public:
  explicit JsonLine(std::string_view s) : s_(s) {}

  // Parses the whole line as one object; the last "text" key decides.
  bool object_text(std::string& text, std::string& error) {
    text.clear();
    bool text_is_string = false, text_present = false;
    ws();
    if (i_ >= s_.size() || s_[i_] != '{') {
      error = "not a JSON object (each line must be {\"text\": \"...\", ...})";
      return false;
    }
    ++i_;
    ws();
    if (peek() == '}') {
      ++i_;
    } else {
      std::string key;
      for (;;) {
        ws();
        if (peek() != '"') return bad("expected a key string", error);
        key.clear();
        if (!string(&key)) return bad(nullptr, error);
        ws();
        if (peek() != ':') return bad("expected ':'", error);
        ++i_;
        ws();
        if (key == "text") {
          text_present = true;
          text_is_string = peek() == '"';
          text.clear();
          if (!(text_is_string ? string(&text) : value(1))) return bad(nullptr, error);
        } else if (!value(1)) {
          return bad(nullptr, error);
        }
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        if (peek() == '}') {
          ++i_;
          break;
        }
        return bad("expected ',' or '}'", error);
      }
    }
    ws();
    if (i_ != s_.size()) return bad("unexpected characters after the object", error);
    if (!text_is_string) {
      error = text_present ? "the \"text\" field is not a string" : "no \"text\" field";
      return false;
    }
    return true;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n'))
      ++i_;
  }
  bool fail(const char* what) {
    if (err_.empty()) err_ = "invalid JSON at column " + std::to_string(i_ + 1) + ": " + what;
    return false;
  }
  bool bad(const char* what, std::string& error) {
    if (what) fail(what);
    error = err_;
    return false;
  }

  bool hex4(uint32_t& v) {
    if (i_ + 4 > s_.size()) return fail("truncated \\u escape");
    v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_ + k];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= uint32_t(c - 'A' + 10);
      else
        return fail("invalid \\u escape");
    }
    i_ += 4;
    return true;
  }

  // At '"': decodes the string into *out (or skips it when out is null). Raw bytes, invalid
  // UTF-8 and control characters included, are kept as they are.
  bool string(std::string* out) {
    ++i_;
    for (;;) {
      size_t j = i_;
      while (j < s_.size() && s_[j] != '"' && s_[j] != '\\') ++j;
      if (out) out->append(s_.data() + i_, j - i_);
      i_ = j;
      if (i_ >= s_.size()) return fail("unterminated string");
      if (s_[i_++] == '"') return true;
      if (i_ >= s_.size()) return fail("unterminated string");
      const char c = s_[i_++];
      char lit = 0;
      switch (c) {
        case '"':
        case '\\':
        case '/':
          lit = c;
          break;
        case 'b':
          lit = '\b';
          break;
        case 'f':
          lit = '\f';
          break;
        case 'n':
          lit = '\n';
          break;
        case 'r':
          lit = '\r';
          break;
        case 't':
          lit = '\t';
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF && i_ + 1 < s_.size() && s_[i_] == '\\' &&
              s_[i_ + 1] == 'u') {
            const size_t save = i_;
            i_ += 2;
            uint32_t lo = 0;
            if (!hex4(lo)) return false;
            if (lo >= 0xDC00 && lo <= 0xDFFF)
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else
              i_ = save;  // not a pair: the high surrogate stands alone
          }
          if (out) append_utf8(*out, cp);
          continue;
        }
        default:
          --i_;
          return fail("invalid escape in a string");
      }
      if (out) *out += lit;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return fail("invalid literal");
    i_ += word.size();
    return true;
  }

  bool number() {
    const size_t start = i_;
    if (peek() == '-') ++i_;
    auto digits = [&] {
      const size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ > d;
    };
    if (!digits()) return fail("invalid number");
    if (peek() == '.') {
      ++i_;
      if (!digits()) return fail("invalid number");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      if (!digits()) return fail("invalid number");
    }
    return i_ > start;
  }

  // Validates and skips one value.
  bool value(int depth) {
    ws();
    if (depth > 256) return fail("nesting too deep");
    const char c = peek();
    if (c == '"') return string(nullptr);
    if (c == 't') return literal("true");
    if (c == 'f') return literal("false");
    if (c == 'n') return literal("null");
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    if (c != '{' && c != '[')
      return fail(i_ < s_.size() ? "unexpected character" : "unexpected end");
    const char close = c == '{' ? '}' : ']';
    ++i_;
    ws();
    if (peek() == close) {
      ++i_;
      return true;
    }
    for (;;) {
      ws();
      if (c == '{') {
        if (peek() != '"') return fail("expected a key string");
        if (!string(nullptr)) return false;
        ws();
        if (peek() != ':') return fail("expected ':'");
        ++i_;
      }
      if (!value(depth + 1)) return false;
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() == close) {
        ++i_;
        return true;
      }
      return fail(c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string err_;
};

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

}  // namespace

bool jsonl_text(std::string_view line, std::string& text, std::string& error) {
  return JsonLine(line).object_text(text, error);
}

// ---- input files ----

InputFile classify_input(const std::string& path) {
  InputFile f;
  f.path = path;
  std::string_view name = path;
  if (const size_t slash = name.find_last_of('/'); slash != std::string_view::npos)
    name.remove_prefix(slash + 1);
  if (ends_with_nocase(name, ".zst")) {
    f.zstd = true;
    name.remove_suffix(4);
  }
  f.format = ends_with_nocase(name, ".jsonl") || ends_with_nocase(name, ".json")
                 ? InputFormat::Jsonl
                 : InputFormat::Text;
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  f.size = ec ? 0 : int64_t(size);
  return f;
}

std::vector<InputFile> list_input_files(const std::vector<std::string>& paths) {
  std::vector<InputFile> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);
    FELA_CHECK(fs::exists(st), "[prepare] ", p, ": no such file or directory");
    if (fs::is_regular_file(st)) {
      out.push_back(classify_input(p));
      continue;
    }
    FELA_CHECK(fs::is_directory(st), "[prepare] ", p, ": not a regular file or directory");
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(p, fs::directory_options::none, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      const fs::path& e = it->path();
      const std::string name = e.filename().string();
      std::error_code ec2;
      if (it->is_directory(ec2)) {
        if (name.starts_with(".") || is_prepare_output(e)) it.disable_recursion_pending();
        continue;
      }
      if (name.starts_with(".") || !is_corpus_name(name) || !it->is_regular_file(ec2)) continue;
      found.push_back(e.string());
    }
    FELA_CHECK(!ec, "[prepare] cannot list ", p, ": ", ec.message());
    FELA_CHECK(!found.empty(), "[prepare] ", p,
               ": no .txt, .md, .json or .jsonl files (optionally .zst) in this directory");
    std::sort(found.begin(), found.end());
    for (const std::string& f : found) out.push_back(classify_input(f));
  }
  return out;
}

// ---- byte sources ----

// A file's bytes, decompressed on the fly when it is zstd-compressed.
struct CorpusReader::Source {
  std::string path;
  int fd = -1;
  ZSTD_DCtx* dctx = nullptr;
  std::vector<char> in;
  ZSTD_inBuffer zin{nullptr, 0, 0};
  bool raw_eof = false;
  size_t last_ret = 0;  // 0 when the last zstd frame is complete
  int64_t raw_read = 0;

  Source(const InputFile& f) : path(f.path) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    FELA_CHECK(fd >= 0, "[prepare] cannot read ", path, ": ", std::strerror(errno));
    if (f.zstd) {
      dctx = ZSTD_createDCtx();
      FELA_CHECK(dctx, "[prepare] ", path, ": cannot create a zstd decoder");
      // Accept files made with `zstd --long` (windows up to 2 GB); memory follows the frame.
      ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 31);
      in.resize(ZSTD_DStreamInSize());
    }
  }
  ~Source() {
    if (fd >= 0) ::close(fd);
    if (dctx) ZSTD_freeDCtx(dctx);
  }

  size_t read_raw(char* dst, size_t cap) {
    for (;;) {
      const ssize_t r = ::read(fd, dst, cap);
      if (r < 0 && errno == EINTR) continue;
      FELA_CHECK(r >= 0, "[prepare] cannot read ", path, ": ", std::strerror(errno));
      raw_read += r;
      return size_t(r);
    }
  }

  // Up to cap bytes of content; 0 at the end.
  size_t read(char* dst, size_t cap) {
    if (!dctx) return read_raw(dst, cap);
    ZSTD_outBuffer out{dst, cap, 0};
    while (out.pos == 0) {
      if (zin.pos == zin.size && !raw_eof) {
        const size_t n = read_raw(in.data(), in.size());
        zin = {in.data(), n, 0};
        raw_eof = n == 0;
      }
      if (zin.pos == zin.size && raw_eof) {
        // No input left: flush what the decoder still holds, then check the frame ended.
        ZSTD_inBuffer none{nullptr, 0, 0};
        const size_t ret = ZSTD_decompressStream(dctx, &out, &none);
        FELA_CHECK(!ZSTD_isError(ret), "[prepare] ", path, ": zstd: ", ZSTD_getErrorName(ret));
        if (out.pos > 0) {
          last_ret = ret;
          break;
        }
        FELA_CHECK(last_ret == 0, "[prepare] ", path,
                   ": truncated zstd stream (the last frame is incomplete)");
        return 0;
      }
      last_ret = ZSTD_decompressStream(dctx, &out, &zin);
      FELA_CHECK(!ZSTD_isError(last_ret), "[prepare] ", path,
                 ": zstd: ", ZSTD_getErrorName(last_ret));
    }
    return out.pos;
  }
};

// ---- documents ----

CorpusReader::CorpusReader(std::vector<InputFile> files) : files_(std::move(files)) {
  for (const InputFile& f : files_) total_ += f.size;
}

CorpusReader::~CorpusReader() = default;

int64_t CorpusReader::bytes_read() const {
  return done_files_bytes_ + (src_ ? std::min(src_->raw_read, files_[next_file_ - 1].size) : 0);
}

bool CorpusReader::open_next_file() {
  if (next_file_ >= files_.size()) return false;
  src_ = std::make_unique<Source>(files_[next_file_++]);
  buf_.clear();
  pos_ = scan_ = 0;
  line_ = 0;
  return true;
}

bool CorpusReader::next(Document& doc) {
  for (;;) {
    if (!src_ && !open_next_file()) return false;
    const InputFile& f = files_[next_file_ - 1];
    if (f.format == InputFormat::Text) {
      doc.text.clear();
      if (!f.zstd) doc.text.reserve(size_t(f.size));
      for (;;) {
        const size_t old = doc.text.size();
        doc.text.resize(old + kReadChunk);
        const size_t n = src_->read(doc.text.data() + old, kReadChunk);
        doc.text.resize(old + n);
        if (n == 0) break;
      }
      doc.source = f.path;
      src_.reset();
      done_files_bytes_ += f.size;
      return true;
    }
    // JSON Lines: find the next non-blank line in buf_, reading more as needed.
    for (;;) {
      const char* base = buf_.data();
      const void* nl =
          scan_ < buf_.size() ? std::memchr(base + scan_, '\n', buf_.size() - scan_) : nullptr;
      size_t line_end;
      if (nl) {
        line_end = size_t(static_cast<const char*>(nl) - base);
      } else {
        if (pos_ > 0) {  // keep only the unfinished line
          buf_.erase(0, pos_);
          pos_ = 0;
        }
        scan_ = buf_.size();
        const size_t old = buf_.size();
        buf_.resize(old + kReadChunk);
        const size_t n = src_->read(buf_.data() + old, kReadChunk);
        buf_.resize(old + n);
        if (n > 0) continue;
        if (pos_ == buf_.size()) break;  // end of file
        line_end = buf_.size();          // a last line without a newline
      }
      std::string_view line(buf_.data() + pos_, line_end - pos_);
      pos_ = scan_ = std::min(line_end + 1, buf_.size());
      ++line_;
      if (line_ == 1 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);  // a UTF-8 BOM
      if (is_blank(line)) continue;
      std::string error;
      if (!jsonl_text(line, doc.text, error)) fail("[prepare] ", f.path, ":", line_, ": ", error);
      doc.source = f.path + ":" + std::to_string(line_);
      return true;
    }
    src_.reset();
    done_files_bytes_ += f.size;
  }
}

}  // namespace fela

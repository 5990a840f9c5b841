// Reading a text corpus as a stream of documents for `fela prepare` (docs/data-format.md).
//
// Inputs are files or directories. A directory is searched recursively, in sorted path order,
// for files ending in .txt, .md, .jsonl or .json, each optionally followed by .zst; hidden
// entries (names starting with '.') and directories that hold a previous prepare output
// (meta.json beside train_000.bin) are skipped. A file named directly is read whatever its
// name. The format follows the name, with a trailing .zst removed first:
//   .jsonl, .json  JSON Lines: one JSON object per line whose string field "text" is one
//                  document; blank lines and a UTF-8 BOM at the start are skipped; other
//                  fields are ignored.
//   anything else  plain text: the whole file is one document.
// A name ending in .zst is zstd-compressed and decompressed while streaming (never to disk).
// Bytes are taken as they are: invalid UTF-8 is kept (the tokenizers are byte-level), also
// inside JSON strings, whose escapes (\n, \uXXXX with surrogate pairs, ...) are decoded.
// Errors are fela::Error "[prepare] PATH: ..." ("PATH:LINE: ..." for a bad JSON line).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fela {

enum class InputFormat { Text, Jsonl };

struct InputFile {
  std::string path;
  InputFormat format = InputFormat::Text;
  bool zstd = false;
  int64_t size = 0;  // bytes on disk
};

// The files named by paths (files and directories, see above), in order. Throws
// "[prepare] PATH: no such file or directory" for a missing path.
std::vector<InputFile> list_input_files(const std::vector<std::string>& paths);

// The format a file name implies (see above).
InputFile classify_input(const std::string& path);

// Extracts the string field "text" of the JSON object on one line. Returns false and sets
// error to a short reason when the line is not a JSON object or has no string "text" field.
bool jsonl_text(std::string_view line, std::string& text, std::string& error);

struct Document {
  std::string text;
  std::string source;  // "PATH" or "PATH:LINE"
};

// Streams the documents of a list of files, one at a time, with bounded memory (one plain
// file or one JSONL line at a time, plus read buffers).
class CorpusReader {
 public:
  explicit CorpusReader(std::vector<InputFile> files);
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  // The next document (possibly with empty text); false after the last one.
  bool next(Document& doc);
  // Bytes of the input files consumed so far (compressed bytes for .zst), for progress.
  int64_t bytes_read() const;
  int64_t bytes_total() const { return total_; }

 private:
  struct Source;
  bool open_next_file();
  std::vector<InputFile> files_;
  size_t next_file_ = 0;
  int64_t total_ = 0, done_files_bytes_ = 0, line_ = 0;
  std::unique_ptr<Source> src_;
  std::string buf_;  // read-ahead of the current JSONL file
  size_t pos_ = 0;   // start of the unread part of buf_
  size_t scan_ = 0;  // where the search for the next newline resumes
};

}  // namespace fela

// Reading and writing the Hugging Face safetensors format, the tensor container of fela
// checkpoints (SPEC.md §9: model.safetensors, optimizer.safetensors).
//
// Layout: an 8-byte little-endian header length n; n bytes of JSON, padded with spaces to a
// multiple of 8, mapping each tensor name to {"dtype": "F32"|"F64"|"BF16"|"I32", "shape": [...],
// "data_offsets": [begin, end]} plus an optional "__metadata__" object of string -> string;
// then the tensor bytes, row-major and little-endian, with offsets relative to the first byte
// after the header. The writer lays tensors out contiguously in the order given.
//
// The reader validates the whole header when the file is opened, so that a corrupted or
// truncated file fails there with a message and never makes a later read go out of bounds:
// the tensors must tile the data section exactly (no overlap, no gap, nothing after the
// last), each must hold numel * dtype size bytes, and a file shorter than its header claims is
// reported as "truncated". Tensor data is read with pread (not mmap, so a file that shrinks
// while open gives an error rather than SIGBUS). Errors are fela::Error with
// "[safetensors] FILE: what is wrong".
#pragma once
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "fela/core/tensor.h"

namespace fela::io {

// A named CPU tensor to be written.
struct TensorRef {
  std::string name;
  Tensor tensor;
};

// Writes the tensors in the given order, atomically (temp file, fsync, rename), streaming each
// tensor's bytes from its memory. Names must be non-empty, unique and not "__metadata__".
void safetensors_write(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

class SafetensorsReader {
 public:
  // Opens and validates path. label, when given, replaces "[safetensors] PATH" at the start
  // of error messages, e.g. "[checkpoint] model.safetensors".
  explicit SafetensorsReader(const std::string& path, const std::string& label = "");
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&& o) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& o) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensor names in the order of their data in the file (the order they were written).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  DType dtype(const std::string& name) const { return find(name).dtype; }
  Shape shape(const std::string& name) const { return find(name).shape; }

  // Copies the tensor into dst (CPU), whose dtype and shape must match the file exactly.
  void read_into(const std::string& name, Tensor dst) const;
  // As read_into, but converts F32 <-> F64 and BF16 -> F32/F64 when only the dtypes differ
  // (F64 -> F32 rounds to nearest).
  void read_converted(const std::string& name, Tensor dst) const;

 private:
  struct Entry {
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0, end = 0;  // byte range in the data section
  };
  const Entry& find(const std::string& name) const;
  void check_destination(const std::string& name, const Entry& e, const Tensor& dst) const;
  void read_bytes(const std::string& name, uint64_t offset, void* dst, uint64_t n) const;

  std::string path_, where_;  // where_: the "[safetensors] PATH: " prefix of messages
  int fd_ = -1;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace fela::io

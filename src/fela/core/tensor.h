// Tensor: a non-owning view (pointer, dtype, device, row-major shape of rank <= 4).
// Array: owns the memory a Tensor points to. Views are always contiguous; slicing
// along the first dimension is the only way to make a smaller view.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "fela/core/dtype.h"
#include "fela/core/error.h"

namespace fela {

struct Shape {
  int rank = 0;
  std::array<int64_t, 4> dim{};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int64_t numel() const;
  int64_t operator[](int i) const { return dim[i < 0 ? rank + i : i]; }
  bool operator==(const Shape& o) const;
  std::string str() const;  // "[2, 3]"
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(void* data, DType dtype, Shape shape, Device device = Device::Cpu)
      : data_(data), dtype_(dtype), device_(device), shape_(shape) {}

  bool defined() const { return data_ != nullptr || shape_.numel() == 0; }
  void* raw() const { return data_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank; }
  int64_t size(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype_); }

  // Typed pointer; throws when T does not match the dtype.
  template <class T>
  T* data() const {
    FELA_CHECK(dtype_of_v<T> == dtype_, "[tensor] requested ", dtype_name(dtype_of_v<T>),
               " from a ", dtype_name(dtype_), " tensor");
    return static_cast<T*>(data_);
  }

  Tensor reshape(Shape s) const;                    // same numel, same memory
  Tensor slice(int64_t begin, int64_t end) const;   // rows [begin, end) of dim 0
  Tensor operator[](int64_t i) const;               // row i of dim 0, rank - 1

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::Cpu;
  Shape shape_;
};

// Owns a buffer: 64-byte aligned host memory, or device memory from cudaMalloc (256-byte
// aligned) for Device::Cuda in a CUDA build. Movable, not copyable.
class Array {
 public:
  Array() = default;
  static Array empty(DType dtype, Shape shape, Device device = Device::Cpu);
  static Array zeros(DType dtype, Shape shape, Device device = Device::Cpu);
  Array(Array&&) noexcept = default;
  Array& operator=(Array&&) noexcept = default;

  const Tensor& view() const { return view_; }
  operator Tensor() const { return view_; }
  template <class T> T* data() const { return view_.data<T>(); }
  int64_t numel() const { return mem_ ? view_.numel() : 0; }  // 0 when empty
  const Shape& shape() const { return view_.shape(); }
  DType dtype() const { return view_.dtype(); }
  Device device() const { return view_.device(); }
  void zero();

 private:
  struct Free { Device device; void operator()(void* p) const; };
  std::unique_ptr<void, Free> mem_{nullptr, Free{Device::Cpu}};
  Tensor view_;
};

// "cpu" or "cuda" as a Device; "cuda" fails with one clear line when this build has no CUDA
// backend or the machine has no GPU.
Device parse_device(const std::string& name);

// Zero a tensor's memory (any dtype, any device).
void tensor_zero(Tensor t);
// Copies src into dst: same dtype and number of elements, any pair of devices (host to host,
// host to device, device to host, device to device). Returns when dst may be read on its device:
// at once for host results; for device results, in stream order.
void tensor_copy(Tensor dst, const Tensor& src);
// Checks that t has exactly the given shape, naming the op and argument on failure.
void check_shape(const Tensor& t, const Shape& s, const char* op, const char* arg);
// Checks that every tensor in the list has dtype dt.
void check_dtype(const Tensor& t, DType dt, const char* op, const char* arg);

}  // namespace fela

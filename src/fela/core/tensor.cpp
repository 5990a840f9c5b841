// Shape, Tensor and Array. Host memory comes from aligned_alloc; device memory (CUDA builds,
// Device::Cuda only) from fela/core/cuda.h, so CPU tensors never touch the CUDA runtime.
#include "fela/core/tensor.h"

#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "fela/core/cuda.h"

namespace fela {

Shape::Shape(std::initializer_list<int64_t> dims) {
  FELA_CHECK(dims.size() <= 4, "[tensor] rank ", dims.size(), " > 4");
  for (int64_t d : dims) {
    FELA_CHECK(d >= 0, "[tensor] negative dimension ", d);
    dim[rank++] = d;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dim[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (rank != o.rank) return false;
  for (int i = 0; i < rank; ++i)
    if (dim[i] != o.dim[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dim[i]);
  return s + "]";
}

Tensor Tensor::reshape(Shape s) const {
  FELA_CHECK(s.numel() == numel(), "[tensor] reshape ", shape_.str(), " to ", s.str());
  return Tensor(data_, dtype_, s, device_);
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  FELA_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= size(0), "[tensor] slice [",
             begin, ", ", end, ") of ", shape_.str());
  Shape s = shape_;
  s.dim[0] = end - begin;
  const int64_t row = rank() ? numel() / std::max<int64_t>(size(0), 1) : 0;
  char* p = static_cast<char*>(data_) + begin * row * int64_t(dtype_size(dtype_));
  return Tensor(p, dtype_, s, device_);
}

Tensor Tensor::operator[](int64_t i) const {
  Tensor row = slice(i, i + 1);
  Shape s;
  for (int k = 1; k < rank(); ++k) s.dim[s.rank++] = size(k);
  return row.reshape(s);
}

void Array::Free::operator()(void* p) const {
  if (!p) return;
  if (device == Device::Cpu) {
    std::free(p);
    return;
  }
#ifdef FELA_HAVE_CUDA
  cuda::device_free(p);
#endif
}

Array Array::empty(DType dtype, Shape shape, Device device) {
  Array a;
  const size_t bytes = std::max<size_t>(size_t(shape.numel()) * dtype_size(dtype), 1);
  void* p = nullptr;
  if (device == Device::Cpu) {
    p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  } else {
#ifdef FELA_HAVE_CUDA
    p = cuda::device_alloc(bytes);
#else
    fail("[tensor] CUDA arrays are not available in this build");
#endif
  }
  FELA_CHECK(p, "[tensor] out of memory allocating ", bytes, " bytes");
  a.mem_ = std::unique_ptr<void, Free>(p, Free{device});
  a.view_ = Tensor(p, dtype, shape, device);
  return a;
}

Array Array::zeros(DType dtype, Shape shape, Device device) {
  Array a = empty(dtype, shape, device);
  a.zero();
  return a;
}

void Array::zero() { tensor_zero(view_); }

void tensor_zero(Tensor t) {
  if (t.numel() == 0) return;
  if (t.device() == Device::Cpu) {
    std::memset(t.raw(), 0, t.bytes());
    return;
  }
#ifdef FELA_HAVE_CUDA
  cuda::device_zero(t.raw(), t.bytes());
#else
  fail("[tensor] zeroing a CUDA tensor in a build without CUDA");
#endif
}

void tensor_copy(Tensor dst, const Tensor& src) {
  FELA_CHECK(dst.dtype() == src.dtype() && dst.numel() == src.numel(), "[tensor] copy of ",
             dtype_name(src.dtype()), " ", src.shape().str(), " into ", dtype_name(dst.dtype()),
             " ", dst.shape().str());
  if (src.numel() == 0 || dst.raw() == src.raw()) return;
  if (dst.device() == Device::Cpu && src.device() == Device::Cpu) {
    std::memcpy(dst.raw(), src.raw(), src.bytes());
    return;
  }
#ifdef FELA_HAVE_CUDA
  cuda::copy_bytes(dst.raw(), src.raw(), src.bytes());
#else
  fail("[tensor] copying a CUDA tensor in a build without CUDA");
#endif
}

void check_shape(const Tensor& t, const Shape& s, const char* op, const char* arg) {
  FELA_CHECK(t.shape() == s, "[", op, "] ", arg, " has shape ", t.shape().str(), ", expected ",
             s.str());
}

void check_dtype(const Tensor& t, DType dt, const char* op, const char* arg) {
  FELA_CHECK(t.dtype() == dt, "[", op, "] ", arg, " is ", dtype_name(t.dtype()), ", expected ",
             dtype_name(dt));
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  FELA_CHECK(name == "cuda", "[device] unknown device '", name, "' (expected cpu or cuda)");
#ifdef FELA_HAVE_CUDA
  FELA_CHECK(cuda::device_count() > 0, "[device] cuda: no CUDA GPU is visible on this machine");
  return Device::Cuda;
#else
  fail("[device] cuda: this build has no CUDA backend (nvcc was not found when it was built)");
#endif
}

}  // namespace fela

// Element types and devices a Tensor can describe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fela/core/bf16.h"

namespace fela {

enum class DType : uint8_t { F32, F64, BF16, I32 };
enum class Device : uint8_t { Cpu, Cuda };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

constexpr std::string_view device_name(Device d) { return d == Device::Cpu ? "cpu" : "cuda"; }

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BF16; };
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace fela

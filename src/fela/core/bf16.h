// BFloat16: the 2-byte brain-float type (1 sign, 8 exponent, 7 mantissa bits) that the CUDA
// backend stores activations and compute copies of weights in. Host code uses it to fill and
// read bf16 tensors; it has the bit layout of CUDA's __nv_bfloat16, so device code reinterprets
// a BFloat16* as __nv_bfloat16*. Conversion from float rounds to nearest, ties to even; NaN
// stays NaN (quiet), overflow rounds to infinity, as __float2bfloat16_rn does.
#pragma once
#include <bit>
#include <cstdint>

namespace fela {

struct BFloat16 {
  uint16_t bits = 0;

  BFloat16() = default;
  explicit BFloat16(float f) : bits(round_bits(f)) {}
  operator float() const { return std::bit_cast<float>(uint32_t(bits) << 16); }

  static BFloat16 from_bits(uint16_t b) {
    BFloat16 h;
    h.bits = b;
    return h;
  }

 private:
  static uint16_t round_bits(float f) {
    const uint32_t u = std::bit_cast<uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // quiet NaN
    // Adding 0x7fff plus the lowest kept bit rounds the dropped 16 bits to nearest even.
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
};

static_assert(sizeof(BFloat16) == 2 && alignof(BFloat16) == 2);

}  // namespace fela

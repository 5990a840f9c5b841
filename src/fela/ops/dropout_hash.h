// The counter-based hash behind every dropout mask (the dropout op and attention's probability
// dropout), in a header that host and device code both compile: the CUDA kernels evaluate the
// very same functions, so a mask is bit for bit the same on every backend. Under nvcc the
// functions are __host__ __device__; plain C++ sees ordinary inline functions.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FELA_HOST_DEVICE __host__ __device__
#else
#define FELA_HOST_DEVICE
#endif

namespace fela::ops {

// The splitmix64 finaliser: a bijection of 64-bit words whose output bits each depend on every
// input bit.
FELA_HOST_DEVICE inline uint64_t dropout_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Element `index` of the splitmix64 stream of the mixed seed. Mixing the seed first keeps
// nearby seeds (0, 1, 2 ...) from giving shifted copies of one stream.
FELA_HOST_DEVICE inline uint64_t dropout_hash(uint64_t seed, uint64_t index) {
  return dropout_mix64(dropout_mix64(seed) + (index + 1) * 0x9e3779b97f4a7c15ull);
}

// keep(seed, i) = (top 53 bits of the hash as a fraction of 1) >= p. The conversion and the
// scaling by 2^-53 are exact in double, so host and device agree exactly.
FELA_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t index, double p) {
  return double(dropout_hash(seed, index) >> 11) * 0x1.0p-53 >= p;
}

}  // namespace fela::ops

// What the CUDA op kernels share: the stream they run on, bf16 loads and stores, warp and block
// reductions, launch sizing, and stream-ordered scratch memory. Included by ops/cuda/*.cu only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "fela/core/bf16.h"
#include "fela/core/cuda.h"

namespace fela::ops::cuda {

// Every op runs on the legacy default stream, in issue order (see fela/core/cuda.h).
inline cudaStream_t stream() { return 0; }

// fela's host-side BFloat16 and CUDA's __nv_bfloat16 share one bit layout.
static_assert(sizeof(BFloat16) == sizeof(__nv_bfloat16));
inline const __nv_bfloat16* dev(const BFloat16* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}
inline __nv_bfloat16* dev(BFloat16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }

// W bf16 values in one access: W = 8 moves 16 bytes (p 16-byte aligned), W = 1 is the scalar
// fallback for unaligned views. Memory-bound kernels move their data 16 bytes at a time: scalar
// 2-byte accesses reach about half of the GPU's bandwidth.
constexpr int kVec = 8;
template <int W>
__device__ __forceinline__ void load_vec(const __nv_bfloat16* p, float (&v)[W]) {
  static_assert(W == 1 || W == kVec, "1 or 8 values per access");
  if constexpr (W == 1) {
    v[0] = __bfloat162float(*p);
  } else {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
    for (int j = 0; j < W / 2; ++j) {
      const float2 f = __bfloat1622float2(h[j]);
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  }
}
template <int W>
__device__ __forceinline__ void store_vec(__nv_bfloat16* p, const float (&v)[W]) {
  static_assert(W == 1 || W == kVec, "1 or 8 values per access");
  if constexpr (W == 1) {
    *p = __float2bfloat16_rn(v[0]);
  } else {
    uint4 u;
    __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
    for (int j = 0; j < W / 2; ++j) h[j] = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
    *reinterpret_cast<uint4*>(p) = u;
  }
}

// Whether all the pointers allow 16-byte accesses (kernels take a scalar path otherwise).
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16) return false;
  return true;
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024) in a fixed tree (the
// same bits every call); every thread gets the result. T is float, or double where a long sum
// needs it (the gradient norm). shared must hold 32 values; the call ends with a barrier so
// shared can be reused.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : T(0);
  v = warp_sum(v);
  __syncthreads();
  return v;
}

// Blocks for a grid-stride loop over n items: enough to fill the GPU several times over.
inline int grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return int(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

// The device's default memory pool returns freed memory to the driver at every synchronisation
// unless told to keep it; a training step synchronises (loss, gradient norm), so without this
// every step would map its scratch anew. Done once per process.
inline void keep_pool_memory() {
  static const bool done = [] {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX;
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    return true;
  }();
  (void)done;
}

// Device memory for the duration of one op, from the stream-ordered pool: freed in stream
// order, so kernels launched before the free may still use it.
class Scratch {
 public:
  explicit Scratch(size_t bytes) {
    if (!bytes) return;
    keep_pool_memory();
    CUDA_CHECK(cudaMallocAsync(&p_, bytes, stream()));
  }
  ~Scratch() {
    if (p_) (void)cudaFreeAsync(p_, stream());
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// Per-column sums over rows (parameter gradients of rmsnorm-like ops) in two deterministic steps
// without atomics. First: partial[chunk, c] over row chunks of at least 64 rows, at most 1024
// chunks (which bounds the scratch to 4 KiB per column). Second: add_chunk_sums.
struct ColumnChunks {
  int64_t rows, count;  // rows per chunk, chunks
};
inline ColumnChunks column_chunks(int64_t R) {
  const int64_t rows = R > 64 * 1024 ? (R + 1023) / 1024 : 64;
  return {rows, (R + rows - 1) / rows};
}
constexpr int kSumRows = 8;  // threads down the rows of a column tile
// Grid and block of the first step for n columns: (column tile, row chunk), (32, kSumRows).
inline dim3 column_tiles(int64_t n, const ColumnChunks& ch) {
  return dim3(unsigned((n + 31) / 32), unsigned(ch.count));
}

// The first step, inside a kernel launched on column_tiles(n, ch) with dim3(32, kSumRows)
// threads: partial[blockIdx.y, c] = sum over the chunk's rows r of term(r * n + c, c), for the
// block's 32 columns, in a fixed order. One thread computes each element's term, so the term may
// also write an output at that element (in place over an input it reads).
template <class F>
__device__ __forceinline__ void column_chunk_sum(float* partial, int64_t R, int64_t n,
                                                 int64_t rows, F&& term) {
  __shared__ float tile[kSumRows][33];
  const int64_t c = blockIdx.x * int64_t(32) + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows, r1 = min(r0 + rows, R);
  float acc = 0.f;
  if (c < n)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kSumRows) acc += term(r * n + c, c);
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y > 0 || c >= n) return;
  float s = 0.f;
  for (int k = 0; k < kSumRows; ++k) s += tile[k][threadIdx.x];
  partial[blockIdx.y * n + c] = s;
}

// out[i] += sum over chunks of partial[chunk, i]: the second, deterministic step of the
// per-column reductions (parameter gradients of rmsnorm, decay_gate, channel_scale), whose first
// step writes one partial sum per row chunk without atomics. A block takes 32 columns; its 8
// rows of threads each sum every 8th chunk, then the 8 sums are added in order.
static __global__ void chunk_sums_kernel(float* out, const float* partial, int64_t chunks,
                                         int64_t n) {
  __shared__ float part[8][33];
  const int64_t i = blockIdx.x * int64_t(32) + threadIdx.x;
  float s = 0.f;
  if (i < n)
    for (int64_t c = threadIdx.y; c < chunks; c += 8) s += partial[c * n + i];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y > 0 || i >= n) return;
  float t = 0.f;
  for (int k = 0; k < 8; ++k) t += part[k][threadIdx.x];
  out[i] += t;
}
inline void add_chunk_sums(float* out, const float* partial, int64_t chunks, int64_t n) {
  if (n == 0) return;
  chunk_sums_kernel<<<unsigned((n + 31) / 32), dim3(32, 8), 0, stream()>>>(out, partial, chunks, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda

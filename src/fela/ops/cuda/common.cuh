// What the CUDA op kernels share: the stream they run on, bf16 loads and stores, warp and block
// reductions, launch sizing, and stream-ordered scratch memory. Included by ops/cuda/*.cu only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

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

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets the
// result. shared must hold 32 floats; the call ends with a barrier so shared can be reused.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : 0.f;
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

// out[i] += sum over chunks of partial[chunk, i], chunks in order: the second, deterministic
// step of the per-column reductions (parameter gradients of rmsnorm, decay_gate, channel_scale),
// whose first step writes one partial sum per row chunk without atomics.
static __global__ void add_chunk_sums_kernel(float* out, const float* partial, int64_t chunks,
                                             int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float s = 0.f;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c * n + i];
  out[i] += s;
}

}  // namespace fela::ops::cuda

// Embedding on the GPU. Forward copies rows of the bf16 table. Backward adds bf16 rows of dh into
// the fp32 dE without atomics: token ids are sorted (CUB radix sort, stable, so equal ids keep
// their row order), and one block per distinct id sums its rows in that order. The result is
// the same bits on every run, whatever the repetition of ids.
#include <cub/device/device_radix_sort.cuh>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/embedding.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kRowThreads = 128;  // threads over d in the backward's per-id blocks

__global__ void embedding_forward_kernel(__nv_bfloat16* h, const int32_t* tokens,
                                         const __nv_bfloat16* E, int64_t R, int64_t d) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < R * d;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / d, i = e - r * d;
    h[e] = E[int64_t(tokens[r]) * d + i];  // h[r, :] = E[tokens[r], :]
  }
}

__global__ void iota_kernel(uint32_t* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    v[i] = uint32_t(i);
}

// Block p handles sorted position p if it starts a run of equal ids: dE[id, :] += sum of the
// run's rows of dh, in row order.
__global__ void embedding_backward_kernel(float* dE, const __nv_bfloat16* dh, const uint32_t* ids,
                                          const uint32_t* rows, int64_t R, int64_t d) {
  const int64_t p = blockIdx.x;
  const uint32_t id = ids[p];
  if (p > 0 && ids[p - 1] == id) return;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float acc = 0.f;
    for (int64_t q = p; q < R && ids[q] == id; ++q) acc += load(dh, int64_t(rows[q]) * d + i);
    dE[int64_t(id) * d + i] += acc;
  }
}
}  // namespace

void embedding_forward(BFloat16* h, const int32_t* tokens, const BFloat16* E, int64_t R,
                       int64_t d) {
  if (R * d == 0) return;
  embedding_forward_kernel<<<grid_for(R * d, kThreads), kThreads, 0, stream()>>>(dev(h), tokens,
                                                                                 dev(E), R, d);
  CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dE, const BFloat16* dh, const int32_t* tokens, int64_t R, int64_t V,
                        int64_t d) {
  if (R == 0 || d == 0) return;
  FELA_CHECK(R < (int64_t(1) << 31), "[embedding] ", R, " tokens exceed the CUDA sort");
  int end_bit = 1;  // ids are in [0, V): sort only the bits they use
  while (end_bit < 32 && (int64_t(1) << end_bit) < V) ++end_bit;
  // The dispatcher checked 0 <= id < V, so the ids sort the same as unsigned keys.
  const auto* keys_in = reinterpret_cast<const uint32_t*>(tokens);
  Scratch keys(R * sizeof(uint32_t)), rows_in(R * sizeof(uint32_t)), rows(R * sizeof(uint32_t));
  iota_kernel<<<grid_for(R, kThreads), kThreads, 0, stream()>>>(rows_in.as<uint32_t>(), R);
  CUDA_CHECK_LAUNCH();
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys.as<uint32_t>(),
                                             rows_in.as<uint32_t>(), rows.as<uint32_t>(), int(R), 0,
                                             end_bit, stream()));
  Scratch temp(temp_bytes);
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as<void>(), temp_bytes, keys_in,
                                             keys.as<uint32_t>(), rows_in.as<uint32_t>(),
                                             rows.as<uint32_t>(), int(R), 0, end_bit, stream()));
  embedding_backward_kernel<<<unsigned(R), kRowThreads, 0, stream()>>>(
      dE, dev(dh), keys.as<uint32_t>(), rows.as<uint32_t>(), R, d);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fela::ops::cuda

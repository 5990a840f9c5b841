// GLA's log-decay gate on the GPU: x bf16, bias b and its gradient fp32, a and da bf16 or fp32,
// fp32 math.
//   forward    elementwise, grid-stride: a = logsigmoid(x + b) / normalizer.
//   backward   tiles of 32 columns x a chunk of rows: each element's g = da sigmoid(-(x + b)) /
//              normalizer is written to dx and summed, in a fixed order, into a per-chunk partial
//              of db; then one pass adds the chunks in order to db. Deterministic, no atomics.
#include <algorithm>

#include "fela/ops/cuda/common.cuh"
#include "fela/ops/decay_gate.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

// a[r, i] = logsigmoid(x[r, i] + b[i]) / normalizer; logsigmoid(z) = min(z, 0) -
// log1p(exp(-|z|)) never overflows.
template <class TA>
__global__ void decay_gate_forward_kernel(TA* a, const __nv_bfloat16* x, const float* b,
                                          int64_t total, int64_t n, float normalizer) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const float z = load(x, k) + b[k % n];
    store(a, k, (fminf(z, 0.f) - log1pf(expf(-fabsf(z)))) / normalizer);
  }
}

// dx[r, i] = g = da[r, i] / (1 + exp(x[r, i] + b[i])) / normalizer, and partial[chunk, i] = the
// sum of g over the chunk's rows (column_chunk_sum). dx may alias da: each element is read, then
// written, by one thread.
template <class TD>
__global__ void decay_gate_backward_kernel(float* partial, __nv_bfloat16* dx, const TD* da,
                                           const __nv_bfloat16* x, const float* b, int64_t R,
                                           int64_t n, int64_t rows, float normalizer) {
  column_chunk_sum(partial, R, n, rows, [&](int64_t k, int64_t i) {
    const float g = load(da, k) / (1.f + expf(load(x, k) + b[i])) / normalizer;
    store(dx, k, g);
    return g;
  });
}

template <class TA>
void forward(TA* a, const BFloat16* x, const float* b, int64_t R, int64_t n, double normalizer) {
  const int64_t total = R * n;
  if (total == 0) return;
  decay_gate_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
      a, dev(x), b, total, n, float(normalizer));
  CUDA_CHECK_LAUNCH();
}

template <class TD>
void backward(BFloat16* dx, float* db, const TD* da, const BFloat16* x, const float* b, int64_t R,
              int64_t n, double normalizer) {
  if (R == 0 || n == 0) return;
  const ColumnChunks ch = column_chunks(R);
  Scratch partial(size_t(ch.count * n) * sizeof(float));  // [chunks, n]
  decay_gate_backward_kernel<<<column_tiles(n, ch), dim3(32, kSumRows), 0, stream()>>>(
      partial.as<float>(), dev(dx), da, dev(x), b, R, n, ch.rows, float(normalizer));
  CUDA_CHECK_LAUNCH();
  add_chunk_sums(db, partial.as<float>(), ch.count, n);
}
}  // namespace

void decay_gate_forward(BFloat16* a, const BFloat16* x, const float* b, int64_t R, int64_t n,
                        double normalizer) {
  forward(dev(a), x, b, R, n, normalizer);
}
void decay_gate_forward(float* a, const BFloat16* x, const float* b, int64_t R, int64_t n,
                        double normalizer) {
  forward(a, x, b, R, n, normalizer);
}

void decay_gate_backward(BFloat16* dx, float* db, const BFloat16* da, const BFloat16* x,
                         const float* b, int64_t R, int64_t n, double normalizer) {
  backward(dx, db, dev(da), x, b, R, n, normalizer);
}
void decay_gate_backward(BFloat16* dx, float* db, const float* da, const BFloat16* x,
                         const float* b, int64_t R, int64_t n, double normalizer) {
  backward(dx, db, da, x, b, R, n, normalizer);
}

}  // namespace fela::ops::cuda

// FAN projection's periodic part on the GPU: p, l, y and their gradients bf16, fp32 math,
// grid-stride loops over the elements of the output.
//   forward    y[r, j] = cos(p[r, j]), sin(p[r, j - dp]) or l[r, j - 2 dp]; one thread per y.
//   backward   dp = -sin(p) dy_cos + cos(p) dy_sin (one thread per p), dl = dy_l (a copy).
// sincosf/cosf/sinf are the full-range versions (no --use_fast_math), so large |p| stays exact.
#include "fela/ops/cuda/common.cuh"
#include "fela/ops/fan.h"

namespace fela::ops::cuda {

namespace {
constexpr int kThreads = 256;

// y [R, 2 dp + dl] = [cos(p) || sin(p) || l];  p [R, dp], l [R, dl]
__global__ void fan_forward_kernel(__nv_bfloat16* y, const __nv_bfloat16* p, const __nv_bfloat16* l,
                                   int64_t R, int64_t dp, int64_t dl) {
  const int64_t w = 2 * dp + dl, total = R * w;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / w, j = k - r * w;
    float v;
    if (j < dp)
      v = cosf(load(p, r * dp + j));
    else if (j < 2 * dp)
      v = sinf(load(p, r * dp + j - dp));
    else
      v = load(l, r * dl + j - 2 * dp);
    store(y, k, v);
  }
}

// dp [R, dpw] = -sin(p) dy[:, :dpw] + cos(p) dy[:, dpw:2 dpw];  dy [R, 2 dpw + dlw]
__global__ void fan_dp_kernel(__nv_bfloat16* dp, const __nv_bfloat16* dy, const __nv_bfloat16* p,
                              int64_t R, int64_t dpw, int64_t dlw) {
  const int64_t w = 2 * dpw + dlw, total = R * dpw;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / dpw, i = k - r * dpw;
    float s, c;
    sincosf(load(p, k), &s, &c);
    store(dp, k, -s * load(dy, r * w + i) + c * load(dy, r * w + dpw + i));
  }
}

// dl [R, dlw] = dy[:, 2 dpw:]
__global__ void fan_dl_kernel(__nv_bfloat16* dl, const __nv_bfloat16* dy, int64_t R, int64_t dpw,
                              int64_t dlw) {
  const int64_t w = 2 * dpw + dlw, total = R * dlw;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / dlw, i = k - r * dlw;
    dl[k] = dy[r * w + 2 * dpw + i];
  }
}
}  // namespace

void fan_forward(BFloat16* y, const BFloat16* p, const BFloat16* l, int64_t R, int64_t dp,
                 int64_t dl) {
  const int64_t total = R * (2 * dp + dl);
  if (total == 0) return;
  fan_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream()>>>(dev(y), dev(p), dev(l),
                                                                           R, dp, dl);
  CUDA_CHECK_LAUNCH();
}

void fan_backward(BFloat16* dp, BFloat16* dl, const BFloat16* dy, const BFloat16* p, int64_t R,
                  int64_t dpw, int64_t dlw) {
  if (R * dpw > 0) {
    fan_dp_kernel<<<grid_for(R * dpw, kThreads), kThreads, 0, stream()>>>(dev(dp), dev(dy), dev(p),
                                                                          R, dpw, dlw);
    CUDA_CHECK_LAUNCH();
  }
  if (R * dlw > 0) {
    fan_dl_kernel<<<grid_for(R * dlw, kThreads), kThreads, 0, stream()>>>(dev(dl), dev(dy), R, dpw,
                                                                          dlw);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace fela::ops::cuda

// Per-channel scaling on the CPU: rows in parallel. dg is reduced in fixed blocks of rows (one
// partial sum per block, then the blocks summed in order), so the result depends on R and d
// only, never on the thread count or schedule.
#include "fela/ops/channel_scale.h"

#include <algorithm>
#include <vector>

namespace fela::ops::cpu {

// Below this many elements a loop runs in the calling thread: waking a team costs more.
constexpr int64_t kParallelWork = int64_t(1) << 16;
// Rows per partial sum of dg.
constexpr int64_t kBlockRows = 64;

template <class T>
void channel_scale_forward(T* y, const T* x, const T* g, int64_t R, int64_t d) {
#pragma omp parallel for schedule(static) if (R * d >= kParallelWork)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) yr[c] = xr[c] * g[c];
  }
}

template <class T>
void channel_scale_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, int64_t R,
                            int64_t d) {
  const int64_t nb = (R + kBlockRows - 1) / kBlockRows;
  std::vector<T> part(size_t(nb * d), T(0));  // [nb, d] sum of dy x over each block's rows
#pragma omp parallel for schedule(static) if (R * d >= kParallelWork)
  for (int64_t blk = 0; blk < nb; ++blk) {
    T* p = part.data() + blk * d;
    for (int64_t r = blk * kBlockRows; r < std::min(R, (blk + 1) * kBlockRows); ++r) {
      const T *dyr = dy + r * d, *xr = x + r * d;
      T* dxr = dx + r * d;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) {
        const T gy = dyr[c];  // read before dx (which may alias dy) is written
        p[c] += gy * xr[c];
        dxr[c] = gy * g[c];
      }
    }
  }
  for (int64_t blk = 1; blk < nb; ++blk)  // the blocks' sums, in order, into block 0's row
    for (int64_t c = 0; c < d; ++c) part[c] += part[blk * d + c];
  for (int64_t c = 0; c < d; ++c) dg[c] += part[c];
}

FELA_INSTANTIATE_FLOAT(channel_scale_forward)
FELA_INSTANTIATE_FLOAT(channel_scale_backward)

}  // namespace fela::ops::cpu

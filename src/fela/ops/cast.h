// Conversion between float dtypes: y = x rounded to y's dtype (bf16 rounds to nearest even, NaN
// stays NaN). The GPU model keeps fp32 master weights and a bf16 compute copy of them; this op
// refreshes the copy after an initialisation or a load. Same shape, same device.
// CPU: any pair of f32, f64, bf16. CUDA: f32 -> bf16 and bf16 -> f32.
#pragma once
#include "fela/ops/op.h"

namespace fela::ops {

void cast(Tensor y, const Tensor& x);

namespace cuda {
void cast(BFloat16* y, const float* x, int64_t n);
void cast(float* y, const BFloat16* x, int64_t n);
}  // namespace cuda

}  // namespace fela::ops

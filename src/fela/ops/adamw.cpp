// AdamW dispatcher: the decay ranges (host list, device copy), argument checks, then ref / cpu
// kernels for CPU tensors and the CUDA kernels for GPU tensors.
#include "fela/ops/adamw.h"

#include <cstring>

namespace fela::ops {

DecayRanges::DecayRanges(std::vector<DecayRange> ranges, Device device) : device_(device) {
  for (const DecayRange& r : ranges) {
    FELA_CHECK(0 <= r.begin && r.begin <= r.end, "[adamw] bad decay range [", r.begin, ", ", r.end,
               ")");
    if (r.begin == r.end) continue;
    if (!ranges_.empty()) {
      FELA_CHECK(ranges_.back().end <= r.begin,
                 "[adamw] decay ranges must be sorted and disjoint: [", r.begin, ", ", r.end,
                 ") after [", ranges_.back().begin, ", ", ranges_.back().end, ")");
      if (ranges_.back().end == r.begin) {  // fewer ranges, shorter searches
        ranges_.back().end = r.end;
        continue;
      }
    }
    ranges_.push_back(r);
  }
  if (device_ == Device::Cuda && !ranges_.empty()) {
    static_assert(sizeof(DecayRange) == 4 * sizeof(int32_t));
    const int64_t words = 4 * size();
    Array host = Array::empty(DType::I32, {words});
    std::memcpy(host.view().raw(), ranges_.data(), ranges_.size() * sizeof(DecayRange));
    device_copy_ = Array::empty(DType::I32, {words}, Device::Cuda);
    tensor_copy(device_copy_, host);
  }
}

const DecayRange* DecayRanges::data() const {
  if (device_ == Device::Cpu) return ranges_.data();
  return ranges_.empty() ? nullptr : static_cast<const DecayRange*>(device_copy_.view().raw());
}

void adamw_update(Tensor params, const Tensor& grads, Tensor m, Tensor v, Tensor shadow,
                  const DecayRanges& decay, const AdamWHyper& h, Impl impl) {
  const int64_t n = params.numel();
  FELA_CHECK(grads.numel() == n && m.numel() == n && v.numel() == n,
             "[adamw] sizes differ: params ", params.shape().str(), ", grads ", grads.shape().str(),
             ", m ", m.shape().str(), ", v ", v.shape().str());
  FELA_CHECK(h.t >= 1, "[adamw] step t counts from 1, got ", h.t);
  FELA_CHECK(decay.ranges().empty() || decay.ranges().back().end <= n,
             "[adamw] decay range ends at ", decay.ranges().empty() ? 0 : decay.ranges().back().end,
             ", past the ", n, " parameters");
  using enum DType;
  using enum Device;
  const Device dev = check_signature(
      "adamw", {{"params", &params}, {"grads", &grads}, {"m", &m}, {"v", &v}},
      {{Cpu, F32, F32, F32, F32}, {Cpu, F64, F64, F64, F64}, {Cuda, F32, F32, F32, F32}});
  FELA_CHECK(decay.device() == dev, "[adamw] the decay ranges are for ",
             device_name(decay.device()), " but the parameters are on ", device_name(dev));
  const bool has_shadow = shadow.defined();
  if (has_shadow) {
    FELA_CHECK(dev == Cuda, "[adamw] a bf16 shadow of the weights exists on cuda only");
    FELA_CHECK(shadow.device() == Cuda && shadow.dtype() == BF16 && shadow.numel() == n,
               "[adamw] shadow must be bf16 on cuda with ", n, " elements, got ",
               dtype_name(shadow.dtype()), " on ", device_name(shadow.device()), " with ",
               shadow.numel());
  }
  if (dev == Cuda) {
    check_cuda_impl("adamw", impl);
#ifdef FELA_HAVE_CUDA
    cuda::adamw_update(params.data<float>(), grads.data<float>(), m.data<float>(), v.data<float>(),
                       has_shadow ? shadow.data<BFloat16>() : nullptr, n, decay.data(),
                       decay.size(), h);
#else
    fail_no_cuda("adamw");
#endif
    return;
  }
  dispatch_float(params.dtype(), "adamw", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::adamw_update<T> : cpu::adamw_update<T>;
    f(params.data<T>(), grads.data<T>(), m.data<T>(), v.data<T>(), n, decay.data(), decay.size(),
      h);
  });
}

double grad_norm_sq(const Tensor& grads, Impl impl) {
  using enum DType;
  using enum Device;
  const Device dev =
      check_signature("grad_norm_sq", {{"grads", &grads}}, {{Cpu, F32}, {Cpu, F64}, {Cuda, F32}});
  if (dev == Cuda) {
    check_cuda_impl("grad_norm_sq", impl);
#ifdef FELA_HAVE_CUDA
    return cuda::grad_norm_sq(grads.data<float>(), grads.numel());
#else
    fail_no_cuda("grad_norm_sq");
#endif
  }
  double ss = 0;
  dispatch_float(grads.dtype(), "grad_norm_sq", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::grad_norm_sq<T> : cpu::grad_norm_sq<T>;
    ss = f(grads.data<T>(), grads.numel());
  });
  return ss;
}

}  // namespace fela::ops

// RoPE and causal GQA attention (SPEC §4, with §8's probability dropout): argument checks, then
// the ref or cpu kernel for CPU tensors and the CUDA kernels for GPU tensors.
// Every shape rule of attention.h is enforced here once, so the kernels can trust their sizes.
#include "fela/ops/attention.h"

#include <cmath>

namespace fela::ops {

// x [B, N, H, Dh] with Dh even; theta > 0 and pos0 >= 0 (positions are counted from 0).
// Returns the device of the tensors.
static Device check_rope(const Tensor& out, const Tensor& in, int64_t pos0, double theta,
                         const char* out_name, const char* in_name, Impl impl) {
  FELA_CHECK(in.rank() == 4, "[rope] ", in_name, " must be [B, N, H, Dh], got ", in.shape().str());
  FELA_CHECK(in.size(3) % 2 == 0, "[rope] head size Dh = ", in.size(3),
             " must be even (dimension i pairs with i + Dh/2)");
  check_shape(out, in.shape(), "rope", out_name);
  FELA_CHECK(theta > 0 && std::isfinite(theta), "[rope] theta must be positive, got ", theta);
  FELA_CHECK(pos0 >= 0, "[rope] pos0 must be >= 0, got ", pos0);
  using enum DType;
  using enum Device;
  const Device dev = check_signature("rope", {{in_name, &in}, {out_name, &out}},
                                     {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}});
  if (dev == Cuda) check_cuda_impl("rope", impl);
  return dev;
}

void rope_forward(Tensor y, const Tensor& x, int64_t pos0, double theta, Impl impl) {
  const Device dev = check_rope(y, x, pos0, theta, "y", "x", impl);
  const int64_t B = x.size(0), N = x.size(1), H = x.size(2), Dh = x.size(3);
  if (dev == Device::Cuda) {
#ifdef FELA_HAVE_CUDA
    cuda::rope_forward(y.data<BFloat16>(), x.data<BFloat16>(), B, N, H, Dh, pos0, theta);
#else
    fail_no_cuda("rope");
#endif
    return;
  }
  dispatch_float(x.dtype(), "rope", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rope_forward<T> : cpu::rope_forward<T>;
    f(y.data<T>(), x.data<T>(), B, N, H, Dh, pos0, theta);
  });
}

void rope_backward(Tensor dx, const Tensor& dy, int64_t pos0, double theta, Impl impl) {
  const Device dev = check_rope(dx, dy, pos0, theta, "dx", "dy", impl);
  const int64_t B = dy.size(0), N = dy.size(1), H = dy.size(2), Dh = dy.size(3);
  if (dev == Device::Cuda) {
#ifdef FELA_HAVE_CUDA
    cuda::rope_backward(dx.data<BFloat16>(), dy.data<BFloat16>(), B, N, H, Dh, pos0, theta);
#else
    fail_no_cuda("rope");
#endif
    return;
  }
  dispatch_float(dy.dtype(), "rope", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::rope_backward<T> : cpu::rope_backward<T>;
    f(dx.data<T>(), dy.data<T>(), B, N, H, Dh, pos0, theta);
  });
}

// The sizes of one attention call, read from q [B, Nq, H, Dh] and k [B, Nk, Hkv, Dh].
struct AttnDims {
  int64_t B, Nq, Nk, H, Hkv, Dh;
};

// Checks q, k, v, o, lse against each other and returns the sizes.
static AttnDims check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                const Tensor& lse, double scale) {
  FELA_CHECK(q.rank() == 4, "[attention] q must be [B, Nq, H, Dh], got ", q.shape().str());
  FELA_CHECK(k.rank() == 4, "[attention] k must be [B, Nk, Hkv, Dh], got ", k.shape().str());
  const AttnDims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  FELA_CHECK(k.size(0) == d.B, "[attention] q has batch ", d.B, ", k has batch ", k.size(0));
  FELA_CHECK(k.size(3) == d.Dh, "[attention] q has head size ", d.Dh, ", k has head size ",
             k.size(3));
  FELA_CHECK(d.Hkv > 0 && d.H % d.Hkv == 0, "[attention] H = ", d.H,
             " query heads must be a multiple of Hkv = ", d.Hkv, " kv heads");
  FELA_CHECK(d.Nk >= d.Nq, "[attention] Nk = ", d.Nk, " keys cannot serve Nq = ", d.Nq,
             " queries (need Nk >= Nq)");
  FELA_CHECK(std::isfinite(scale), "[attention] scale must be finite, got ", scale);
  check_shape(v, k.shape(), "attention", "v");
  check_shape(o, q.shape(), "attention", "o");
  check_shape(lse, {d.B, d.H, d.Nq}, "attention", "lse");
  return d;
}

static void check_dropout_p(double p) {
  FELA_CHECK(p >= 0 && p < 1, "[attention] dropout_p must be in [0, 1), got ", p);
}

// The dtypes of (q, k, v, o, lse); returns their device.
static Device check_attention_types(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& o, const Tensor& lse) {
  using enum DType;
  using enum Device;
  return check_signature("attention", {{"q", &q}, {"k", &k}, {"v", &v}, {"o", &o}, {"lse", &lse}},
                         {{Cpu, F32, F32, F32, F32, F32},
                          {Cpu, F64, F64, F64, F64, F64},
                          {Cuda, BF16, BF16, BF16, BF16, F32}});
}

// What the CUDA kernels add to the shape rules: Impl::Fast and a head size they are built for.
static void check_cuda_attention(const AttnDims& d, Impl impl) {
  check_cuda_impl("attention", impl);
#ifdef FELA_HAVE_CUDA
  FELA_CHECK(d.Dh <= cuda::kMaxHeadDim, "[attention] head size Dh = ", d.Dh,
             " is above the CUDA kernels' limit of ", cuda::kMaxHeadDim);
#else
  (void)d;
#endif
}

void attention_forward(Tensor o, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       double scale, Impl impl, double dropout_p, uint64_t dropout_seed) {
  const AttnDims d = check_attention(q, k, v, o, lse, scale);
  check_dropout_p(dropout_p);
  if (check_attention_types(q, k, v, o, lse) == Device::Cuda) {
    check_cuda_attention(d, impl);
#ifdef FELA_HAVE_CUDA
    cuda::attention_forward(o.data<BFloat16>(), lse.data<float>(), q.data<BFloat16>(),
                            k.data<BFloat16>(), v.data<BFloat16>(), d.B, d.Nq, d.Nk, d.H, d.Hkv,
                            d.Dh, scale, dropout_p, dropout_seed);
#else
    fail_no_cuda("attention");
#endif
    return;
  }
  dispatch_float(q.dtype(), "attention", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::attention_forward<T> : cpu::attention_forward<T>;
    f(o.data<T>(), lse.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), d.B, d.Nq, d.Nk, d.H,
      d.Hkv, d.Dh, scale, dropout_p, dropout_seed);
  });
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& d_o, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                        double scale, Impl impl, double dropout_p, uint64_t dropout_seed) {
  const AttnDims d = check_attention(q, k, v, o, lse, scale);
  check_dropout_p(dropout_p);
  check_shape(d_o, q.shape(), "attention", "d_o");
  check_shape(dq, q.shape(), "attention", "dq");
  check_shape(dk, k.shape(), "attention", "dk");
  check_shape(dv, k.shape(), "attention", "dv");
  // Nine tensors are more than one Signature holds: the gradients are checked with q, which
  // ties them to the inputs' device.
  using enum DType;
  using enum Device;
  const Device dev = check_attention_types(q, k, v, o, lse);
  check_signature("attention", {{"q", &q}, {"d_o", &d_o}, {"dq", &dq}, {"dk", &dk}, {"dv", &dv}},
                  {{Cpu, F32, F32, F32, F32, F32},
                   {Cpu, F64, F64, F64, F64, F64},
                   {Cuda, BF16, BF16, BF16, BF16, BF16}});
  if (dev == Cuda) {
    check_cuda_attention(d, impl);
#ifdef FELA_HAVE_CUDA
    cuda::attention_backward(dq.data<BFloat16>(), dk.data<BFloat16>(), dv.data<BFloat16>(),
                             d_o.data<BFloat16>(), q.data<BFloat16>(), k.data<BFloat16>(),
                             v.data<BFloat16>(), o.data<BFloat16>(), lse.data<float>(), d.B, d.Nq,
                             d.Nk, d.H, d.Hkv, d.Dh, scale, dropout_p, dropout_seed);
#else
    fail_no_cuda("attention");
#endif
    return;
  }
  dispatch_float(q.dtype(), "attention", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::attention_backward<T> : cpu::attention_backward<T>;
    f(dq.data<T>(), dk.data<T>(), dv.data<T>(), d_o.data<T>(), q.data<T>(), k.data<T>(),
      v.data<T>(), o.data<T>(), lse.data<T>(), d.B, d.Nq, d.Nk, d.H, d.Hkv, d.Dh, scale, dropout_p,
      dropout_seed);
  });
}

}  // namespace fela::ops

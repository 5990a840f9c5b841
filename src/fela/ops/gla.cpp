// Gated linear attention dispatcher: checks shapes, dtypes and the chunk size once, then runs
// the recurrence (Impl::Ref), the chunked CPU kernels (Impl::Fast) or the CUDA kernels (tensors
// on Device::Cuda). Undefined state tensors reach the kernels as null pointers (zero initial
// state / no final state wanted).
#include "fela/ops/gla.h"

#include <cmath>

namespace fela::ops {

namespace {

struct GlaDims {
  int64_t B, N, H, Dk, Dv;
};

// Checks q, k, a [B, N, H, Dk] and v [B, N, H, Dv] against each other and the chunk size.
GlaDims check_inputs(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& a,
                     double scale, int64_t chunk) {
  FELA_CHECK(q.rank() == 4, "[gla] q must be [B, N, H, Dk], got ", q.shape().str());
  FELA_CHECK(v.rank() == 4, "[gla] v must be [B, N, H, Dv], got ", v.shape().str());
  const GlaDims d{q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
  check_shape(k, q.shape(), "gla", "k");
  check_shape(a, q.shape(), "gla", "a");
  check_shape(v, {d.B, d.N, d.H, d.Dv}, "gla", "v");
  FELA_CHECK(d.Dk >= 1 && d.Dv >= 1, "[gla] head widths must be positive, got Dk ", d.Dk,
             " and Dv ", d.Dv);
  FELA_CHECK(chunk >= 1, "[gla] chunk must be at least 1, got ", chunk);
  FELA_CHECK(std::isfinite(scale), "[gla] scale is not finite: ", scale);
  return d;
}

// An optional state tensor: undefined, or [B, H, Dk, Dv].
void check_state(const Tensor& s, const GlaDims& d, const char* arg) {
  if (s.defined()) check_shape(s, {d.B, d.H, d.Dk, d.Dv}, "gla", arg);
}

const Tensor* optional(const Tensor& t) { return t.defined() ? &t : nullptr; }

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void gla_forward(Tensor o, Tensor state_out, const Tensor& q, const Tensor& k, const Tensor& v,
                 const Tensor& a, const Tensor& state_in, double scale, int64_t chunk, Impl impl) {
  const GlaDims d = check_inputs(q, k, v, a, scale, chunk);
  check_shape(o, v.shape(), "gla", "o");
  check_state(state_in, d, "state_in");
  check_state(state_out, d, "state_out");
  using enum DType;
  using enum Device;
  const Device dev = check_signature("gla",
                                     {{"q", &q},
                                      {"k", &k},
                                      {"v", &v},
                                      {"a", &a},
                                      {"o", &o},
                                      {"state_in", optional(state_in)},
                                      {"state_out", optional(state_out)}},
                                     {{Cpu, F32, F32, F32, F32, F32, F32, F32},
                                      {Cpu, F64, F64, F64, F64, F64, F64, F64},
                                      {Cuda, BF16, BF16, BF16, F32, BF16, F32, F32}});
  if (dev == Cuda) {
    check_cuda_impl("gla", impl);
#ifdef FELA_HAVE_CUDA
    cuda::gla_forward(o.data<BFloat16>(), ptr_or_null<float>(state_out), q.data<BFloat16>(),
                      k.data<BFloat16>(), v.data<BFloat16>(), a.data<float>(),
                      ptr_or_null<float>(state_in), d.B, d.N, d.H, d.Dk, d.Dv, scale);
#else
    fail_no_cuda("gla");
#endif
    return;
  }
  dispatch_float(q.dtype(), "gla", [&]<class T>() {
    T* so = ptr_or_null<T>(state_out);
    const T* si = ptr_or_null<T>(state_in);
    if (impl == Impl::Ref)
      ref::gla_forward<T>(o.data<T>(), so, q.data<T>(), k.data<T>(), v.data<T>(), a.data<T>(), si,
                          d.B, d.N, d.H, d.Dk, d.Dv, scale);
    else
      cpu::gla_forward<T>(o.data<T>(), so, q.data<T>(), k.data<T>(), v.data<T>(), a.data<T>(), si,
                          d.B, d.N, d.H, d.Dk, d.Dv, scale, chunk);
  });
}

void gla_backward(Tensor dq, Tensor dk, Tensor dv, Tensor da, const Tensor& d_o, const Tensor& q,
                  const Tensor& k, const Tensor& v, const Tensor& a, double scale, int64_t chunk,
                  Impl impl) {
  const GlaDims d = check_inputs(q, k, v, a, scale, chunk);
  check_shape(d_o, v.shape(), "gla", "d_o");
  check_shape(dq, q.shape(), "gla", "dq");
  check_shape(dk, q.shape(), "gla", "dk");
  check_shape(da, q.shape(), "gla", "da");
  check_shape(dv, v.shape(), "gla", "dv");
  using enum DType;
  using enum Device;
  // Nine tensors, more than one Signature holds: inputs, then q with the outputs.
  const Device dev =
      check_signature("gla", {{"q", &q}, {"k", &k}, {"v", &v}, {"a", &a}, {"d_o", &d_o}},
                      {{Cpu, F32, F32, F32, F32, F32},
                       {Cpu, F64, F64, F64, F64, F64},
                       {Cuda, BF16, BF16, BF16, F32, BF16}});
  check_signature("gla", {{"q", &q}, {"dq", &dq}, {"dk", &dk}, {"dv", &dv}, {"da", &da}},
                  {{Cpu, F32, F32, F32, F32, F32},
                   {Cpu, F64, F64, F64, F64, F64},
                   {Cuda, BF16, BF16, BF16, BF16, F32}});
  if (dev == Cuda) {
    check_cuda_impl("gla", impl);
#ifdef FELA_HAVE_CUDA
    cuda::gla_backward(dq.data<BFloat16>(), dk.data<BFloat16>(), dv.data<BFloat16>(),
                       da.data<float>(), d_o.data<BFloat16>(), q.data<BFloat16>(),
                       k.data<BFloat16>(), v.data<BFloat16>(), a.data<float>(), d.B, d.N, d.H, d.Dk,
                       d.Dv, scale);
#else
    fail_no_cuda("gla");
#endif
    return;
  }
  dispatch_float(q.dtype(), "gla", [&]<class T>() {
    if (impl == Impl::Ref)
      ref::gla_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), da.data<T>(), d_o.data<T>(),
                           q.data<T>(), k.data<T>(), v.data<T>(), a.data<T>(), d.B, d.N, d.H, d.Dk,
                           d.Dv, scale);
    else
      cpu::gla_backward<T>(dq.data<T>(), dk.data<T>(), dv.data<T>(), da.data<T>(), d_o.data<T>(),
                           q.data<T>(), k.data<T>(), v.data<T>(), a.data<T>(), d.B, d.N, d.H, d.Dk,
                           d.Dv, scale, chunk);
  });
}

}  // namespace fela::ops

// FNO mixer core (SPEC §2): argument checks, then the ref or cpu kernels for CPU tensors and the
// CUDA kernels for GPU tensors; plus the generation helpers (one step against the ring of past
// inputs, and loading or unrolling that ring after a prefill).
#include "fela/ops/fno.h"

#include <algorithm>
#include <cstring>

namespace fela::ops {

const char* fir_method_name(FirMethod m) {
  switch (m) {
    case FirMethod::Direct:
      return "direct";
    case FirMethod::Fft:
      return "fft";
    case FirMethod::Toeplitz:
      return "toeplitz";
    default:
      return "auto";
  }
}

namespace {

// The checks every filter call shares: f [d, M] with M >= 1, k [d, modes], 1 <= modes <= M/2+1.
void check_filter(const Tensor& f, const Tensor& k_re, const Tensor& k_im, const char* fname,
                  const char* re_name, const char* im_name) {
  FELA_CHECK(f.rank() == 2, "[fno_filter] ", fname, " must be [d, M], got ", f.shape().str());
  FELA_CHECK(k_re.rank() == 2, "[fno_filter] ", re_name, " must be [d, modes], got ",
             k_re.shape().str());
  const int64_t d = f.size(0), M = f.size(1), modes = k_re.size(1);
  FELA_CHECK(M >= 1, "[fno_filter] M (taps) must be >= 1, got ", M);
  FELA_CHECK(modes >= 1 && modes <= M / 2 + 1, "[fno_filter] modes must be in [1, M/2+1] = [1, ",
             M / 2 + 1, "], got ", modes);
  check_shape(k_re, {d, modes}, "fno_filter", re_name);
  check_shape(k_im, {d, modes}, "fno_filter", im_name);
}

// The checks both convolution directions share: u [B, N, d], f [d, M] with M >= 1, skip [d].
void check_conv(const Tensor& u, const Tensor& f, const Tensor& skip) {
  FELA_CHECK(u.rank() == 3, "[fno_conv] u must be [B, N, d], got ", u.shape().str());
  FELA_CHECK(f.rank() == 2, "[fno_conv] f must be [d, M], got ", f.shape().str());
  FELA_CHECK(f.size(1) >= 1, "[fno_conv] M (taps) must be >= 1, got ", f.size(1));
  check_shape(f, {u.size(2), f.size(1)}, "fno_conv", "f");
  check_shape(skip, {u.size(2)}, "fno_conv", "skip");
}

// Calls the CUDA kernel, or fails in a build without nvcc.
#ifdef FELA_HAVE_CUDA
#define FELA_FNO_CUDA(op, call) call
#else
#define FELA_FNO_CUDA(op, call) fail_no_cuda(op)
#endif

using enum DType;
using enum Device;

}  // namespace

void fno_filter_forward(Tensor f, const Tensor& k_re, const Tensor& k_im, Impl impl) {
  check_filter(f, k_re, k_im, "f", "k_re", "k_im");
  const Device dev =
      check_signature("fno_filter", {{"f", &f}, {"k_re", &k_re}, {"k_im", &k_im}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, F32, F32, F32}});
  const int64_t d = f.size(0), M = f.size(1), modes = k_re.size(1);
  if (dev == Cuda) {
    check_cuda_impl("fno_filter", impl);
    FELA_FNO_CUDA("fno_filter", cuda::fno_filter_forward(f.data<float>(), k_re.data<float>(),
                                                         k_im.data<float>(), d, modes, M));
    return;
  }
  dispatch_float(f.dtype(), "fno_filter", [&]<class T>() {
    auto fn = impl == Impl::Ref ? ref::fno_filter_forward<T> : cpu::fno_filter_forward<T>;
    fn(f.data<T>(), k_re.data<T>(), k_im.data<T>(), d, modes, M);
  });
}

void fno_filter_backward(Tensor dk_re, Tensor dk_im, const Tensor& df, Impl impl) {
  check_filter(df, dk_re, dk_im, "df", "dk_re", "dk_im");
  const Device dev =
      check_signature("fno_filter", {{"df", &df}, {"dk_re", &dk_re}, {"dk_im", &dk_im}},
                      {{Cpu, F32, F32, F32}, {Cpu, F64, F64, F64}, {Cuda, F32, F32, F32}});
  const int64_t d = df.size(0), M = df.size(1), modes = dk_re.size(1);
  if (dev == Cuda) {
    check_cuda_impl("fno_filter", impl);
    FELA_FNO_CUDA("fno_filter", cuda::fno_filter_backward(dk_re.data<float>(), dk_im.data<float>(),
                                                          df.data<float>(), d, modes, M));
    return;
  }
  dispatch_float(df.dtype(), "fno_filter", [&]<class T>() {
    auto fn = impl == Impl::Ref ? ref::fno_filter_backward<T> : cpu::fno_filter_backward<T>;
    fn(dk_re.data<T>(), dk_im.data<T>(), df.data<T>(), d, modes, M);
  });
}

void fno_conv_forward(Tensor y, const Tensor& u, const Tensor& f, const Tensor& skip, Impl impl,
                      FirMethod method) {
  check_conv(u, f, skip);
  check_shape(y, u.shape(), "fno_conv", "y");
  const Device dev = check_signature(
      "fno_conv", {{"u", &u}, {"y", &y}, {"f", &f}, {"skip", &skip}},
      {{Cpu, F32, F32, F32, F32}, {Cpu, F64, F64, F64, F64}, {Cuda, BF16, BF16, F32, F32}});
  const int64_t B = u.size(0), N = u.size(1), d = u.size(2), M = f.size(1);
  if (dev == Cuda) {
    check_cuda_impl("fno_conv", impl);
    FELA_FNO_CUDA("fno_conv",
                  cuda::fno_conv_forward(y.data<BFloat16>(), u.data<BFloat16>(), f.data<float>(),
                                         skip.data<float>(), B, N, d, M, method));
    return;
  }
  dispatch_float(u.dtype(), "fno_conv", [&]<class T>() {
    if (impl == Impl::Ref)
      ref::fno_conv_forward<T>(y.data<T>(), u.data<T>(), f.data<T>(), skip.data<T>(), B, N, d, M);
    else
      cpu::fno_conv_forward<T>(y.data<T>(), u.data<T>(), f.data<T>(), skip.data<T>(), B, N, d, M,
                               method);
  });
}

void fno_conv_backward(Tensor du, Tensor df, Tensor dskip, const Tensor& dy, const Tensor& u,
                       const Tensor& f, const Tensor& skip, Impl impl, FirMethod method) {
  check_conv(u, f, skip);
  check_shape(dy, u.shape(), "fno_conv", "dy");
  check_shape(du, u.shape(), "fno_conv", "du");
  check_shape(df, f.shape(), "fno_conv", "df");
  check_shape(dskip, skip.shape(), "fno_conv", "dskip");
  const Device dev = check_signature("fno_conv",
                                     {{"u", &u},
                                      {"du", &du},
                                      {"dy", &dy},
                                      {"f", &f},
                                      {"df", &df},
                                      {"skip", &skip},
                                      {"dskip", &dskip}},
                                     {{Cpu, F32, F32, F32, F32, F32, F32, F32},
                                      {Cpu, F64, F64, F64, F64, F64, F64, F64},
                                      {Cuda, BF16, BF16, BF16, F32, F32, F32, F32}});
  const int64_t B = u.size(0), N = u.size(1), d = u.size(2), M = f.size(1);
  if (dev == Cuda) {
    check_cuda_impl("fno_conv", impl);
    FELA_FNO_CUDA("fno_conv", cuda::fno_conv_backward(du.data<BFloat16>(), df.data<float>(),
                                                      dskip.data<float>(), dy.data<BFloat16>(),
                                                      u.data<BFloat16>(), f.data<float>(),
                                                      skip.data<float>(), B, N, d, M, method));
    return;
  }
  dispatch_float(u.dtype(), "fno_conv", [&]<class T>() {
    if (impl == Impl::Ref)
      ref::fno_conv_backward<T>(du.data<T>(), df.data<T>(), dskip.data<T>(), dy.data<T>(),
                                u.data<T>(), f.data<T>(), skip.data<T>(), B, N, d, M);
    else
      cpu::fno_conv_backward<T>(du.data<T>(), df.data<T>(), dskip.data<T>(), dy.data<T>(),
                                u.data<T>(), f.data<T>(), skip.data<T>(), B, N, d, M, method);
  });
}

void fno_conv_step(Tensor y, Tensor ring, const Tensor& u, const Tensor& f, const Tensor& skip,
                   int64_t t) {
  FELA_CHECK(u.rank() == 2, "[fno_conv_step] u must be [B, d], got ", u.shape().str());
  FELA_CHECK(f.rank() == 2, "[fno_conv_step] f must be [d, M], got ", f.shape().str());
  const int64_t B = u.size(0), d = u.size(1), M = f.size(1);
  FELA_CHECK(M >= 1, "[fno_conv_step] M (taps) must be >= 1, got ", M);
  FELA_CHECK(t >= 0, "[fno_conv_step] token position t must be >= 0, got ", t);
  check_shape(f, {d, M}, "fno_conv_step", "f");
  check_shape(skip, {d}, "fno_conv_step", "skip");
  check_shape(y, {B, d}, "fno_conv_step", "y");
  check_shape(ring, {B, M - 1, d}, "fno_conv_step", "ring");
  const Device dev = check_signature(
      "fno_conv_step", {{"u", &u}, {"y", &y}, {"ring", &ring}, {"f", &f}, {"skip", &skip}},
      {{Cpu, F32, F32, F32, F32, F32},
       {Cpu, F64, F64, F64, F64, F64},
       {Cuda, BF16, BF16, BF16, F32, F32}});
  if (dev == Cuda) {
    FELA_FNO_CUDA("fno_conv_step",
                  cuda::fno_conv_step(y.data<BFloat16>(), ring.data<BFloat16>(), u.data<BFloat16>(),
                                      f.data<float>(), skip.data<float>(), B, d, M, t));
    return;
  }
  dispatch_float(u.dtype(), "fno_conv_step", [&]<class T>() {
    cpu::fno_conv_step<T>(y.data<T>(), ring.data<T>(), u.data<T>(), f.data<T>(), skip.data<T>(), B,
                          d, M, t);
  });
}

void fno_ring_load(Tensor ring, const Tensor& u, int64_t t0) {
  FELA_CHECK(u.rank() == 3, "[fno_ring_load] u must be [B, N, d], got ", u.shape().str());
  FELA_CHECK(ring.rank() == 3, "[fno_ring_load] ring must be [B, M-1, d], got ",
             ring.shape().str());
  FELA_CHECK(t0 >= 0, "[fno_ring_load] start position must be >= 0, got ", t0);
  const int64_t B = u.size(0), N = u.size(1), d = u.size(2), R = ring.size(1);  // R = M - 1
  check_shape(ring, {B, R, d}, "fno_ring_load", "ring");
  const Device dev = check_signature("fno_ring_load", {{"u", &u}, {"ring", &ring}},
                                     {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}});
  if (R == 0) return;  // M = 1: no history
  if (dev == Cuda) {
    FELA_FNO_CUDA("fno_ring_load",
                  cuda::fno_ring_load(ring.data<BFloat16>(), u.data<BFloat16>(), B, N, d, R, t0));
    return;
  }
  // Token t0 + n goes to slot (t0 + n) % R; only the last min(N, R) tokens survive, earlier
  // ones would be overwritten, so they are skipped.
  const size_t row = size_t(d) * dtype_size(u.dtype());
  const auto* src = static_cast<const char*>(u.raw());
  auto* dst = static_cast<char*>(ring.raw());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = std::max<int64_t>(0, N - R); n < N; ++n)
      std::memcpy(dst + size_t(b * R + (t0 + n) % R) * row, src + size_t(b * N + n) * row, row);
}

void fno_ring_unroll(Tensor hist, const Tensor& ring, int64_t t) {
  FELA_CHECK(ring.rank() == 2, "[fno_ring_unroll] ring must be [M-1, d], got ", ring.shape().str());
  FELA_CHECK(t >= 0, "[fno_ring_unroll] position must be >= 0, got ", t);
  check_shape(hist, ring.shape(), "fno_ring_unroll", "hist");
  const Device dev = check_signature("fno_ring_unroll", {{"ring", &ring}, {"hist", &hist}},
                                     {{Cpu, F32, F32}, {Cpu, F64, F64}, {Cuda, BF16, BF16}});
  const int64_t R = ring.size(0);
  if (dev == Cuda) {
    if (R > 0)
      FELA_FNO_CUDA(
          "fno_ring_unroll",
          cuda::fno_ring_unroll(hist.data<BFloat16>(), ring.data<BFloat16>(), R, ring.size(1), t));
    return;
  }
  const size_t row = size_t(ring.size(1)) * dtype_size(ring.dtype());
  const auto* src = static_cast<const char*>(ring.raw());
  auto* dst = static_cast<char*>(hist.raw());
  for (int64_t j = 0; j < R;
       ++j) {  // token t - R + j lives in slot (t - R + j) mod R = (t + j) mod R
    if (t - R + j < 0)
      std::memset(dst + size_t(j) * row, 0, row);
    else
      std::memcpy(dst + size_t(j) * row, src + size_t((t + j) % R) * row, row);
  }
}

}  // namespace fela::ops

// Inverted dropout dispatcher (SPEC §8): the counter-based hash that defines the mask, argument
// checks, then the ref or cpu kernel. Forward and backward apply the same mask, so both go to
// one kernel, dropout_apply.
#include "fela/ops/dropout.h"

namespace fela::ops {

namespace {

// The splitmix64 finaliser: a bijection of 64-bit words whose output bits each depend on every
// input bit.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void check_dropout(const Tensor& out, const Tensor& in, double p, const char* out_name,
                   const char* in_name) {
  FELA_CHECK(p >= 0 && p < 1, "[dropout] p must be in [0, 1), got ", p);
  check_shape(out, in.shape(), "dropout", out_name);
  check_same_float("dropout", {&in, &out});
}

}  // namespace

// Element `index` of the splitmix64 stream of the mixed seed. Mixing the seed first keeps
// nearby seeds (0, 1, 2 ...) from giving shifted copies of one stream.
uint64_t dropout_hash(uint64_t seed, uint64_t index) {
  return mix64(mix64(seed) + (index + 1) * 0x9e3779b97f4a7c15ull);
}

void dropout_forward(Tensor y, const Tensor& x, double p, uint64_t seed, Impl impl) {
  check_dropout(y, x, p, "y", "x");
  dispatch_float(x.dtype(), "dropout", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::dropout_apply<T> : cpu::dropout_apply<T>;
    f(y.data<T>(), x.data<T>(), x.numel(), p, seed);
  });
}

void dropout_backward(Tensor dx, const Tensor& dy, double p, uint64_t seed, Impl impl) {
  check_dropout(dx, dy, p, "dx", "dy");
  dispatch_float(dy.dtype(), "dropout", [&]<class T>() {
    auto f = impl == Impl::Ref ? ref::dropout_apply<T> : cpu::dropout_apply<T>;
    f(dx.data<T>(), dy.data<T>(), dy.numel(), p, seed);
  });
}

}  // namespace fela::ops

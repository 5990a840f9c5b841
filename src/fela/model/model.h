// The FELA network of SPEC §1 on the CPU, in float or double: parameters, gradients,
// forward, loss, backward, and recurrent inference (prefill, then O(1) steps).
//
// Training step:   model.forward(tokens, B, N);      // saves activations
//                  double l = model.loss(targets, 1.0);  // mean CE; starts backward (fused head)
//                  model.backward();                 // grads += d(l)/d(params)
// Inference:       InferenceState s = model.new_state(B);
//                  model.prefill(s, prompt, B, N, logits);  model.step(s, next, logits); ...
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "fela/core/tensor.h"
#include "fela/model/config.h"
#include "fela/model/params.h"
#include "fela/model/weights.h"
#include "fela/ops/op.h"

namespace fela {

// Per-sequence recurrent state for generation (SPEC §2-4). Indexed by layer; entries of layers
// of another mixer kind are empty.
struct InferenceState {
  int64_t B = 0;
  int64_t t = 0;               // tokens consumed so far
  std::vector<Array> ring;     // S: [B, M-1, d] last M-1 inputs u
  std::vector<Array> filter;   // S: [d, M] taps, computed once from K
  std::vector<Array> gla;      // L: [B, H, Dk, Dv]
  std::vector<Array> k_cache;  // A: [B, capacity, Hkv, Dh] (rotated keys)
  std::vector<Array> v_cache;  // A: [B, capacity, Hkv, Dh]
  int64_t bytes() const;       // memory held by the state
};

// Where and in what precision a model computes. On the CPU, dtype f32 or f64 is used for
// everything. On Device::Cuda, dtype must be bf16: activations and the compute copy of the
// matrices (shadow()) are bf16, while the master parameters, their gradients, norm gains, gates,
// FNO spectra and the statistics kept for backward (rstd, lse, log decays) stay fp32.
// The dtype a model computes in on a device: f32 on the CPU, bf16 on the GPU.
inline DType compute_dtype(Device d) { return d == Device::Cpu ? DType::F32 : DType::BF16; }

class Model {
 public:
  Model(const Config& config, DType dtype = DType::F32, ops::Impl impl = ops::Impl::Fast,
        Device device = Device::Cpu);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Config& config() const { return config_; }
  const ParamTable& table() const { return table_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  Tensor params() const { return params_; }  // flat [P] master parameters (f32 on the GPU)
  Tensor grads() const { return grads_; }    // flat [P], accumulated by backward()
  // The bf16 compute copy [P] of the parameters on the GPU (undefined on the CPU): only its
  // matrices (the table's decay tensors) are read. An optimizer may rewrite it while it updates
  // params(); anything else that writes params() calls params_changed().
  Tensor shadow() const { return shadow_; }
  void params_changed();
  // Copies of the parameters between the model's device and a host f32 buffer [P].
  void params_to_host(Tensor host_f32) const;
  void params_from_host(const Tensor& host_f32);
  const Weights& weights() const { return w_; }
  void init(uint64_t seed);
  // Dropout (config.dropout) applies only while training is on, with masks drawn from
  // dropout_seed (the trainer passes one per step and micro-batch, so resumes stay exact).
  void set_training(bool on, uint64_t dropout_seed = 0);
  void zero_grad();
  // Activation recomputation: forward keeps only each layer's input and backward reruns the
  // layer's forward before its backward (about one more forward of compute, for memory that
  // holds a single layer's activations). Gradients are the same as without.
  void set_recompute(bool on) { recompute_ = on; }

  // Runs the network over tokens [B, N] (int32, row-major), keeping what backward needs.
  void forward(const int32_t* tokens, int64_t B, int64_t N);
  // Mean cross-entropy of the last forward against targets [B, N] (negative = ignored).
  // grad_scale != 0 also starts the backward pass: the head's gradient and d/d(final hidden)
  // of grad_scale * mean loss. Returns the mean loss; sum and count via the out-params.
  double loss(const int32_t* targets, double grad_scale = 0.0, double* loss_sum = nullptr,
              int64_t* count = nullptr);
  // Completes the backward pass started by loss(targets, scale): grads += d(scale*loss)/dθ.
  void backward();
  // Logits of the last forward for rows [row0, row0 + n) of the B*N positions: out [n, V].
  void logits(Tensor out, int64_t row0, int64_t n);

  InferenceState new_state(int64_t B) const;
  // Parallel forward over tokens [B, N] continuing the state (fresh or not), in chunks of at
  // most `chunk` positions so that memory stays bounded for long prompts; updates the state
  // and writes the logits of the last position [B, V].
  void prefill(InferenceState& s, const int32_t* tokens, int64_t N, Tensor logits_last,
               int64_t chunk = 2048);
  // One token per sequence [B]; writes logits [B, V]. O(1) in the context length for S and L.
  void step(InferenceState& s, const int32_t* tokens, Tensor logits);

 private:
  struct Acts;
  void forward_impl(const int32_t* tokens, int64_t B, int64_t N, InferenceState* fill);
  void layer_forward(int64_t layer, InferenceState* fill);
  void head_forward(Tensor logits, const Tensor& x) const;
  std::pair<double, uint64_t> dropout_site(int64_t layer, int site) const;
  void residual_branch_forward(int64_t layer, int site, Tensor f, const Tensor& gate);
  Tensor residual_branch_backward(int64_t layer, int site, const Tensor& df_out, const Tensor& gate,
                                  Tensor dgate);

  Config config_;
  DType dtype_;
  ops::Impl impl_;
  Device device_;
  DType act_, acc_;  // activations; statistics and fp32-only tensors (both dtype_ on the CPU)
  ParamTable table_;
  Array params_, grads_, shadow_;
  // GPU, tied head: E (bf16) followed by zero rows up to a multiple of 64. Logits rows of an odd
  // V = 50257 would start 2-byte aligned, which keeps cuBLASLt off its tensor-core kernels; rows
  // of Vp columns are 128-byte aligned. Refreshed from the compute copy in every loss().
  Array head_pad_;
  Weights w_, dw_;
  std::unique_ptr<Acts> acts_;
  bool training_ = false;
  bool recompute_ = false;
  uint64_t dropout_seed_ = 0;
};

}  // namespace fela

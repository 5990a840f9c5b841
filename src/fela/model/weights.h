// Named views of the flat parameter (or gradient) buffer, one struct per block part, so that
// model code reads like SPEC.md: w.fno.w_u, w.gla.b_a, ... The same binding serves the
// parameters and their gradients.
#pragma once
#include <vector>

#include "fela/model/params.h"

namespace fela {

// A projection x W, or with CoLA silu(x A) B (SPEC §8): w defined, or a and b.
struct Proj {
  Tensor w;     // [in, out]
  Tensor a, b;  // [in, r], [r, out]
  bool cola() const { return a.raw() != nullptr; }
};

struct FanWeights {
  Tensor w_p;  // [d, d_p]
  Tensor w_l;  // [d, d - 2 d_p]
};

struct FnoWeights {
  Tensor w_u, w_z, w_o;  // [d, d]
  Tensor k_re, k_im;     // [d, modes]
  Tensor skip;           // [d]  D
};

struct GlaWeights {
  Tensor w_q, w_k;  // [d, d_k]
  Tensor w_v, w_g;  // [d, d_v]
  Tensor w_a1;      // [d, gate_rank]
  Tensor w_a2;      // [gate_rank, d_k]
  Tensor b_a;       // [d_k]
  Tensor g_o;       // [Dv], shared by heads
  Tensor w_o;       // [d_v, d]
};

struct AttnWeights {
  Proj w_q;               // [d, H Dh]
  Proj w_k, w_v;          // [d, Hkv Dh]
  Proj w_o;               // [H Dh, d]
  Tensor q_norm;          // [H Dh]   HybridNorm's QKV-norm gains (layers > 0), else undefined
  Tensor k_norm, v_norm;  // [Hkv Dh]
};

struct MlpWeights {
  Proj w_gate, w_up;  // [d, F]
  Proj w_down;        // [F, d]
};

struct LayerWeights {
  char mixer = 'S';
  Tensor mix_norm;            // [d]; undefined where HybridNorm uses QKV-norm instead
  Tensor mlp_norm;            // [d]; pre-norm gain, or post-norm gain with HybridNorm
  Tensor mix_gate, mlp_gate;  // [d] gated residual gains; undefined when off
  FanWeights fan;             // undefined when fan_p = 0
  FnoWeights fno;
  GlaWeights gla;
  AttnWeights attn;
  MlpWeights mlp;
};

struct Weights {
  Tensor embed;       // [V, d]
  Tensor final_norm;  // [d]
  Tensor lm_head;     // [d, V]; undefined when tied (W_out = E^T)
  std::vector<LayerWeights> layers;
};

// Views of a flat buffer; with `matrices` (a second flat buffer, e.g. the bf16 compute copy on
// the GPU), the table's decay tensors (every matrix a linear or the embedding reads) are bound
// there instead.
Weights bind_weights(const ParamTable& table, const Config& c, const Tensor& flat,
                     const Tensor& matrices = Tensor());

}  // namespace fela

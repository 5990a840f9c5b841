// The parameter table: one list, built from the config, that fixes every tensor's name (SPEC §9),
// shape, initialisation, weight-decay flag and offset in the single flat parameter buffer.
// Sizes, checkpoint names, optimizer layout and `fela info` all read this one table.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "fela/core/tensor.h"
#include "fela/model/config.h"

namespace fela {

enum class Init {
  Normal,          // N(0, init_std)
  NormalResidual,  // N(0, init_std / sqrt(2 L)): every W_o and W_down
  Ones,            // norm gains, FNO skip D
  Zeros,           // b_a
  FnoSpectrumRe,   // K = rfft of decaying random taps (SPEC §2); k_re and k_im drawn together
  FnoSpectrumIm,
};

// The part of the network a tensor belongs to, for per-part parameter counts.
enum class Part { Embedding, LmHead, Norms, Fno, Gla, Attention, Mlp, Fan, Gates };
std::string part_name(Part p);
inline constexpr Part kAllParts[] = {Part::Embedding, Part::LmHead, Part::Norms,
                                     Part::Fno,       Part::Gla,    Part::Attention,
                                     Part::Mlp,       Part::Fan,    Part::Gates};

struct ParamSpec {
  std::string name;  // e.g. "layers.3.gla.w_q"
  Shape shape;
  Init init;
  Part part;
  bool decay;          // AdamW weight decay: matrices only
  int64_t offset = 0;  // into the flat buffer, in elements
};

class ParamTable {
 public:
  explicit ParamTable(const Config& c);
  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t total() const { return total_; }
  int64_t count(Part p) const;
  const ParamSpec* find(const std::string& name) const;  // nullptr when absent
  // The view of one parameter inside a flat buffer of total() elements.
  Tensor view(const Tensor& flat, const ParamSpec& s) const;

 private:
  void add(std::string name, Shape shape, Init init, Part part, bool decay);
  // A projection x W [in, out]: `name` itself, or with CoLA `name.a` [in, r] and `name.b`
  // [r, out] (the output scaling of W_o / W_down goes to the b factor).
  void add_proj(const std::string& name, int64_t in, int64_t out, Init init, Part part,
                int64_t cola_rank);
  std::vector<ParamSpec> specs_;
  std::unordered_map<std::string, size_t> index_;
  int64_t total_ = 0;
};

// Fills a flat buffer (f32 or f64, CPU) with the SPEC §6 initialisation. Each tensor draws from
// its own stream seeded by (seed, tensor index), so adding a tensor never changes the others.
void init_params(const ParamTable& table, const Config& c, Tensor flat, uint64_t seed);

}  // namespace fela

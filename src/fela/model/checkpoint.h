// Checkpoint directories (SPEC §9): config.json + model.safetensors, and for training
// optimizer.safetensors + trainer.json beside them. A save stages the whole directory and
// swaps it in atomically (io::replace_directory_atomic): a crash leaves the previous complete
// checkpoint, never a half-written one. Loads check every tensor's presence, dtype and shape.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fela/io/safetensors.h"
#include "fela/model/model.h"

namespace fela {

// What training adds to a checkpoint. Empty optimizer and null trainer: a model-only save.
struct TrainingState {
  std::vector<io::TensorRef> optimizer;  // written to optimizer.safetensors
  nlohmann::json trainer;                // written to trainer.json
};

// Writes dir atomically. Parameters are stored as fp32 whatever the model's dtype.
void save_checkpoint(const std::string& dir, const Model& model,
                     const TrainingState* training = nullptr);

// A training run directory keeps its checkpoint in <run>/checkpoint; commands that take a
// checkpoint accept either. Returns the directory that holds (or held) config.json.
std::string resolve_checkpoint_dir(const std::string& dir);

// Reads and validates dir/config.json (after repairing an interrupted save).
Config load_checkpoint_config(const std::string& dir);

// Loads the parameters of dir into a model of the given dtype and device (bf16 on Device::Cuda);
// every tensor of the parameter table must be present with its exact shape, and no other
// tensor may be.
std::unique_ptr<Model> load_checkpoint(const std::string& dir, DType dtype = DType::F32,
                                       Device device = Device::Cpu);

// True when dir holds optimizer.safetensors and trainer.json.
bool checkpoint_has_training_state(const std::string& dir);

}  // namespace fela

#include "fela/model/checkpoint.h"

#include <filesystem>

#include "fela/io/atomic_file.h"

namespace fs = std::filesystem;

namespace fela {

namespace {
constexpr const char* kConfig = "config.json";
constexpr const char* kModel = "model.safetensors";
constexpr const char* kOptimizer = "optimizer.safetensors";
constexpr const char* kTrainer = "trainer.json";
}  // namespace

void save_checkpoint(const std::string& dir, const Model& model, const TrainingState* training) {
  const fs::path final_dir = fs::absolute(dir).lexically_normal();
  if (final_dir.has_parent_path()) fs::create_directories(final_dir.parent_path());
  io::recover_directory(final_dir.string());
  const std::string staged = io::staging_dir_for(final_dir.string());
  fs::create_directories(staged);
  try {
    io::write_file_atomic(staged + "/" + kConfig, model.config().to_json().dump(2) + "\n");
    // fp32 on disk (SPEC §9): the master parameters, copied from the GPU, or a double model
    // rounded once here.
    Tensor flat = model.params();
    Array host;
    if (flat.dtype() != DType::F32 || flat.device() != Device::Cpu) {
      host = Array::empty(DType::F32, {flat.numel()});
      model.params_to_host(host);
      flat = host;
    }
    std::vector<io::TensorRef> tensors;
    for (const ParamSpec& s : model.table().specs())
      tensors.push_back({s.name, model.table().view(flat, s)});
    io::safetensors_write(staged + "/" + kModel, tensors, {{"format", "fela"}});
    if (training) {
      // Optimizer state on the GPU goes through host copies (one tensor at a time).
      std::vector<io::TensorRef> opt_refs = training->optimizer;
      std::vector<Array> copies;
      for (io::TensorRef& r : opt_refs) {
        if (r.tensor.device() == Device::Cpu) continue;
        copies.push_back(Array::empty(r.tensor.dtype(), r.tensor.shape()));
        tensor_copy(copies.back(), r.tensor);
        r.tensor = copies.back();
      }
      io::safetensors_write(staged + "/" + kOptimizer, opt_refs, {{"format", "fela"}});
      io::write_file_atomic(staged + "/" + kTrainer, training->trainer.dump(2) + "\n");
    }
    io::replace_directory_atomic(staged, final_dir.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staged, ec);
    throw;
  }
}

std::string resolve_checkpoint_dir(const std::string& dir) {
  auto is_ckpt = [](const std::string& d) {
    return fs::exists(d + "/" + kConfig) || fs::exists(d + ".old/" + kConfig);
  };
  if (!is_ckpt(dir) && is_ckpt(dir + "/checkpoint")) return dir + "/checkpoint";
  return dir;
}

Config load_checkpoint_config(const std::string& dir_in) {
  const std::string dir = resolve_checkpoint_dir(dir_in);
  FELA_CHECK(fs::is_directory(dir) || fs::is_directory(dir + ".old"), "[checkpoint] '", dir,
             "' is not a checkpoint directory");
  io::recover_directory(dir);
  const std::string path = dir + "/" + kConfig;
  FELA_CHECK(fs::exists(path), "[checkpoint] ", path, " is missing");
  return config_from_json_text(io::read_file(path), path);
}

std::unique_ptr<Model> load_checkpoint(const std::string& dir_in, DType dtype, Device device) {
  const std::string dir = resolve_checkpoint_dir(dir_in);
  const Config c = load_checkpoint_config(dir);
  auto model = std::make_unique<Model>(c, dtype, ops::Impl::Fast, device);
  // Tensors are read into the parameters directly on the CPU, through a host buffer for the GPU.
  Array host;
  Tensor target = model->params();
  if (device != Device::Cpu) {
    host = Array::empty(DType::F32, {model->table().total()});
    target = host;
  }
  const std::string path = dir + "/" + kModel;
  FELA_CHECK(fs::exists(path), "[checkpoint] ", path, " is missing");
  io::SafetensorsReader r(path, std::string("[checkpoint] ") + kModel);
  const ParamTable& t = model->table();
  for (const ParamSpec& s : t.specs()) {
    FELA_CHECK(r.contains(s.name), "[checkpoint] ", kModel, ": tensor ", s.name,
               " is missing (config '", c.name, "' needs it)");
    r.read_converted(s.name, t.view(target, s));
  }
  for (const std::string& name : r.names())
    FELA_CHECK(t.find(name), "[checkpoint] ", kModel, ": unexpected tensor ", name,
               " (not part of config '", c.name, "')");
  if (device != Device::Cpu) model->params_from_host(host);
  return model;
}

bool checkpoint_has_training_state(const std::string& dir) {
  return fs::exists(dir + "/" + kOptimizer) && fs::exists(dir + "/" + kTrainer);
}

}  // namespace fela

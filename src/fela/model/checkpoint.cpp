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
    // fp32 on disk (SPEC §9); a double model is rounded once here.
    Array as_f32;
    Tensor flat = model.params();
    if (flat.dtype() != DType::F32) {
      as_f32 = Array::empty(DType::F32, {flat.numel()});
      const double* src = flat.data<double>();
      for (int64_t i = 0; i < flat.numel(); ++i) as_f32.data<float>()[i] = float(src[i]);
      flat = as_f32;
    }
    std::vector<io::TensorRef> tensors;
    for (const ParamSpec& s : model.table().specs())
      tensors.push_back({s.name, model.table().view(flat, s)});
    io::safetensors_write(staged + "/" + kModel, tensors, {{"format", "fela"}});
    if (training) {
      io::safetensors_write(staged + "/" + kOptimizer, training->optimizer, {{"format", "fela"}});
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

std::unique_ptr<Model> load_checkpoint(const std::string& dir_in, DType dtype) {
  const std::string dir = resolve_checkpoint_dir(dir_in);
  const Config c = load_checkpoint_config(dir);
  auto model = std::make_unique<Model>(c, dtype);
  const std::string path = dir + "/" + kModel;
  FELA_CHECK(fs::exists(path), "[checkpoint] ", path, " is missing");
  io::SafetensorsReader r(path, std::string("[checkpoint] ") + kModel);
  const ParamTable& t = model->table();
  for (const ParamSpec& s : t.specs()) {
    FELA_CHECK(r.contains(s.name), "[checkpoint] ", kModel, ": tensor ", s.name,
               " is missing (config '", c.name, "' needs it)");
    r.read_converted(s.name, t.view(model->params(), s));
  }
  for (const std::string& name : r.names())
    FELA_CHECK(t.find(name), "[checkpoint] ", kModel, ": unexpected tensor ", name,
               " (not part of config '", c.name, "')");
  return model;
}

bool checkpoint_has_training_state(const std::string& dir) {
  return fs::exists(dir + "/" + kOptimizer) && fs::exists(dir + "/" + kTrainer);
}

}  // namespace fela

// xnnquant_runner: test tooling that runs one .pte on a batch of float32 inputs
// and writes every output, so tests/arm/test_arm.py can compare the bytes that
// the same program gives on x86 and on emulated aarch64 CPUs.
//
// Usage: xnnquant_runner MODEL.pte INPUTS.bin OUTPUTS.bin
//
// INPUTS.bin holds whole samples back to back; one sample is every input of
// `forward` in order, as raw little-endian float32 in the shape the program
// was exported with (the runner reads the shapes from the program, so the file
// carries no header). One invocation runs them all because starting the
// emulator and loading the program costs more than a tiny model's forward.
//
// OUTPUTS.bin (little-endian):
//   char[8]  "XQRUN1\0\0"
//   u64      AT_HWCAP, u64 AT_HWCAP2 (0 off aarch64): what the kernels were
//            selected for, so the test can tell that the emulated CPU really
//            offered dot product, SVE or i8mm
//   u32      samples, u32 outputs per sample
//   then per sample, per output:
//   i32 ScalarType, i32 ndim, i64 sizes[ndim], u64 nbytes, bytes[nbytes]
//
// Exit status: 0 on success, 1 when the program fails to load or run, 2 on a
// usage or input-file error. Messages go to stderr.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::extension::from_blob;
using executorch::runtime::EValue;
using executorch::runtime::Error;

namespace {

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "xnnquant_runner: %s\n", message.c_str());
  return code;
}

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

// A reader never sees a half-written file: the test may be interrupted, or a
// later run may reuse the path.
bool write_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      return false;
    }
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    return fail(2, "usage: xnnquant_runner MODEL.pte INPUTS.bin OUTPUTS.bin");
  }
  executorch::runtime::runtime_init();

  Module module(argv[1]);
  if (Error err = module.load_method("forward"); err != Error::Ok) {
    return fail(1, "cannot load method forward of " + std::string(argv[1]) +
                       " (error " + std::to_string(static_cast<int>(err)) + ")");
  }
  auto meta = module.method_meta("forward");
  if (!meta.ok()) {
    return fail(1, "no method meta for forward");
  }

  std::vector<std::vector<executorch::aten::SizesType>> shapes;
  size_t sample_floats = 0;
  for (size_t i = 0; i < meta->num_inputs(); ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok() || info->scalar_type() != ScalarType::Float) {
      return fail(2, "input " + std::to_string(i) + " is not a float32 tensor");
    }
    std::vector<executorch::aten::SizesType> shape(info->sizes().begin(), info->sizes().end());
    size_t numel = 1;
    for (auto s : shape) numel *= static_cast<size_t>(s);
    sample_floats += numel;
    shapes.push_back(std::move(shape));
  }

  std::ifstream in(argv[2], std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t sample_bytes = sample_floats * sizeof(float);
  if (!in.eof() && in.fail()) {
    return fail(2, "cannot read " + std::string(argv[2]));
  }
  if (sample_bytes == 0 || raw.empty() || raw.size() % sample_bytes != 0) {
    return fail(2, std::string(argv[2]) + " has " + std::to_string(raw.size()) +
                       " bytes, not a whole number of " + std::to_string(sample_bytes) +
                       "-byte samples");
  }
  const size_t samples = raw.size() / sample_bytes;
  // Copy into float storage: a char buffer carries no float alignment guarantee.
  std::vector<float> data(raw.size() / sizeof(float));
  std::copy(raw.begin(), raw.end(), reinterpret_cast<char*>(data.data()));

  uint64_t hwcap = 0, hwcap2 = 0;
#if defined(__aarch64__) && defined(__linux__)
  hwcap = getauxval(AT_HWCAP);
  hwcap2 = getauxval(AT_HWCAP2);
#endif

  std::string out("XQRUN1\0\0", 8);
  put<uint64_t>(out, hwcap);
  put<uint64_t>(out, hwcap2);
  put<uint32_t>(out, static_cast<uint32_t>(samples));
  put<uint32_t>(out, static_cast<uint32_t>(meta->num_outputs()));

  float* cursor = data.data();
  for (size_t s = 0; s < samples; ++s) {
    std::vector<TensorPtr> tensors;
    std::vector<EValue> inputs;
    for (const auto& shape : shapes) {
      tensors.push_back(from_blob(cursor, shape, ScalarType::Float));
      inputs.emplace_back(tensors.back());
      size_t numel = 1;
      for (auto d : shape) numel *= static_cast<size_t>(d);
      cursor += numel;
    }
    auto result = module.forward(inputs);
    if (!result.ok()) {
      return fail(1, "forward failed on sample " + std::to_string(s) + " (error " +
                         std::to_string(static_cast<int>(result.error())) + ")");
    }
    if (result->size() != meta->num_outputs()) {
      return fail(1, "forward returned " + std::to_string(result->size()) + " outputs");
    }
    for (size_t o = 0; o < result->size(); ++o) {
      const EValue& value = (*result)[o];
      if (!value.isTensor()) {
        return fail(1, "output " + std::to_string(o) + " is not a tensor");
      }
      const auto& t = value.toTensor();
      put<int32_t>(out, static_cast<int32_t>(t.scalar_type()));
      put<int32_t>(out, static_cast<int32_t>(t.dim()));
      for (auto d : t.sizes()) put<int64_t>(out, static_cast<int64_t>(d));
      put<uint64_t>(out, static_cast<uint64_t>(t.nbytes()));
      out.append(static_cast<const char*>(t.const_data_ptr()), t.nbytes());
    }
  }

  if (!write_atomically(argv[3], out)) {
    return fail(2, "cannot write " + std::string(argv[3]));
  }
  return 0;
}

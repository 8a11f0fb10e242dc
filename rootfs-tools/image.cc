#include "rootfs-tools/image.h"

#include <sys/utsname.h>

#include <algorithm>

#include "common/json.h"

namespace berth::rootfs {
namespace {

using json = nlohmann::json;

// Typed access with the field's path in every error. `doc` names the
// document ("manifest", "index", "image config").
class Reader {
 public:
  explicit Reader(std::string_view doc) : doc_(doc) {}

  std::unexpected<Error> fail(std::string_view path, std::string_view why) const {
    return error(doc_, "{}: {}", path.empty() ? "(top)" : path, why);
  }

  Result<json> parse(std::string_view text) const {
    BERTH_ASSIGN(json j, parse_json(text, doc_));
    if (!j.is_object()) return error(doc_, "not a JSON object");
    return j;
  }

  // Absent or null: nullopt; wrong type: error.
  Result<std::optional<std::string>> opt_string(const json& o, const char* key,
                                                std::string_view path) const {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return std::optional<std::string>{};
    if (!it->is_string()) return fail(path, "must be a string");
    return std::optional<std::string>(it->get<std::string>());
  }

  Result<std::string> string(const json& o, const char* key, std::string_view path) const {
    BERTH_ASSIGN(auto v, opt_string(o, key, path));
    if (!v) return fail(path, "required");
    return *v;
  }

  Result<std::vector<std::string>> strings(const json& o, const char* key,
                                           std::string_view path) const {
    std::vector<std::string> out;
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return out;
    if (!it->is_array()) return fail(path, "must be an array of strings");
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string()) return fail(fmt::format("{}[{}]", path, i), "must be a string");
      out.push_back((*it)[i].get<std::string>());
    }
    return out;
  }

  // An object used as a set ({"80/tcp": {}}): its keys, sorted.
  Result<std::vector<std::string>> keys(const json& o, const char* key,
                                        std::string_view path) const {
    std::vector<std::string> out;
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return out;
    if (!it->is_object()) return fail(path, "must be an object");
    for (auto& [k, v] : it->items()) out.push_back(k);
    std::ranges::sort(out);
    return out;
  }

  Result<std::map<std::string, std::string>> string_map(const json& o, const char* key,
                                                        std::string_view path) const {
    std::map<std::string, std::string> out;
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) return out;
    if (!it->is_object()) return fail(path, "must be an object of strings");
    for (auto& [k, v] : it->items()) {
      if (!v.is_string()) return fail(fmt::format("{}.{}", path, k), "must be a string");
      out[k] = v.get<std::string>();
    }
    return out;
  }

  Result<Descriptor> descriptor(const json& o, std::string_view path) const {
    if (!o.is_object()) return fail(path, "must be an object");
    Descriptor d;
    BERTH_ASSIGN(d.media_type, string(o, "mediaType", fmt::format("{}.mediaType", path)));
    BERTH_ASSIGN(std::string digest, string(o, "digest", fmt::format("{}.digest", path)));
    Result<Digest> parsed = Digest::parse(digest);
    if (!parsed) return fail(fmt::format("{}.digest", path), parsed.error().message);
    d.digest = *parsed;
    auto size = o.find("size");
    if (size == o.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
      return fail(fmt::format("{}.size", path), "must be a non-negative integer");
    }
    d.size = size->get<int64_t>();
    BERTH_ASSIGN(d.annotations, string_map(o, "annotations", fmt::format("{}.annotations", path)));
    if (auto p = o.find("platform"); p != o.end() && !p->is_null()) {
      std::string pp = fmt::format("{}.platform", path);
      if (!p->is_object()) return fail(pp, "must be an object");
      Platform plat;
      BERTH_ASSIGN(plat.os, string(*p, "os", pp + ".os"));
      BERTH_ASSIGN(plat.architecture, string(*p, "architecture", pp + ".architecture"));
      BERTH_ASSIGN(auto variant, opt_string(*p, "variant", pp + ".variant"));
      plat.variant = variant.value_or("");
      d.platform = plat;
    }
    return d;
  }

 private:
  std::string doc_;
};

bool is_index_type(std::string_view t) {
  return t == media::oci_index || t == media::docker_list;
}
bool is_manifest_type(std::string_view t) {
  return t == media::oci_manifest || t == media::docker_manifest;
}

json descriptor_json(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  return j;
}

}  // namespace

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

Result<Platform> Platform::parse(std::string_view s) {
  Platform p;
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    parts.emplace_back(s.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 2 || parts.size() > 3 ||
      std::ranges::any_of(parts, [](const std::string& x) { return x.empty(); })) {
    return error("platform", "invalid platform {:?}: want os/arch[/variant], e.g. linux/amd64", s);
  }
  p.os = parts[0];
  p.architecture = parts[1];
  p.variant = parts.size() == 3 ? parts[2] : "";
  return p;
}

Platform host_platform() {
  Platform p;
  utsname u{};
  if (uname(&u) != 0) return p;
  std::string_view m = u.machine;
  if (m == "x86_64") {
    p.architecture = "amd64";
  } else if (m == "aarch64" || m == "arm64") {
    p.architecture = "arm64";
  } else if (m == "i386" || m == "i686") {
    p.architecture = "386";
  } else if (m.starts_with("armv7")) {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (m.starts_with("armv6")) {
    p.architecture = "arm";
    p.variant = "v6";
  } else {
    p.architecture = std::string(m);  // ppc64le, s390x, riscv64 are the same in GOARCH
  }
  return p;
}

Result<DocumentKind> document_kind(std::string_view text, std::string_view content_type) {
  Reader r("manifest");
  BERTH_ASSIGN(json j, r.parse(text));
  BERTH_ASSIGN(auto mt, r.opt_string(j, "mediaType", "mediaType"));
  std::string type = mt.value_or(std::string(content_type));
  if (size_t semi = type.find(';'); semi != std::string::npos) type.erase(semi);
  if (is_index_type(type)) return DocumentKind::index;
  if (is_manifest_type(type)) return DocumentKind::manifest;
  if (!type.empty() && type != "application/json") {
    if (type.find("schema1") != std::string::npos || type.find("prettyjws") != std::string::npos) {
      return error("manifest",
                   "docker schema 1 manifests ({}) are not supported: push the image again with a "
                   "current client",
                   type);
    }
    return error("manifest", "unsupported mediaType {:?}", type);
  }
  if (j.contains("manifests")) return DocumentKind::index;
  if (j.contains("layers")) return DocumentKind::manifest;
  return error("manifest", "neither a manifest (no \"layers\") nor an index (no \"manifests\")");
}

Result<Manifest> parse_manifest(std::string_view text) {
  Reader r("manifest");
  BERTH_ASSIGN(json j, r.parse(text));
  Manifest m;
  auto version = j.find("schemaVersion");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 2) {
    return r.fail("schemaVersion", "must be 2");
  }
  BERTH_ASSIGN(auto mt, r.opt_string(j, "mediaType", "mediaType"));
  m.media_type = mt.value_or(std::string(media::oci_manifest));
  if (!is_manifest_type(m.media_type)) {
    return r.fail("mediaType", fmt::format("{:?} is not an image manifest", m.media_type));
  }
  auto config = j.find("config");
  if (config == j.end()) return r.fail("config", "required");
  BERTH_ASSIGN(m.config, r.descriptor(*config, "config"));
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return r.fail("layers", "must be an array");
  for (size_t i = 0; i < layers->size(); ++i) {
    BERTH_ASSIGN(Descriptor d, r.descriptor((*layers)[i], fmt::format("layers[{}]", i)));
    if (!media::is_layer_type(d.media_type)) {
      return r.fail(fmt::format("layers[{}].mediaType", i),
                    fmt::format("{:?} is not a layer type berth can unpack", d.media_type));
    }
    m.layers.push_back(std::move(d));
  }
  BERTH_ASSIGN(m.annotations, r.string_map(j, "annotations", "annotations"));
  return m;
}

Result<Index> parse_index(std::string_view text) {
  Reader r("index");
  BERTH_ASSIGN(json j, r.parse(text));
  Index idx;
  auto version = j.find("schemaVersion");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 2) {
    return r.fail("schemaVersion", "must be 2");
  }
  BERTH_ASSIGN(auto mt, r.opt_string(j, "mediaType", "mediaType"));
  idx.media_type = mt.value_or(std::string(media::oci_index));
  if (!is_index_type(idx.media_type)) {
    return r.fail("mediaType", fmt::format("{:?} is not an image index", idx.media_type));
  }
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return r.fail("manifests", "must be an array");
  for (size_t i = 0; i < ms->size(); ++i) {
    BERTH_ASSIGN(Descriptor d, r.descriptor((*ms)[i], fmt::format("manifests[{}]", i)));
    idx.manifests.push_back(std::move(d));
  }
  return idx;
}

Result<Descriptor> select_platform(const Index& index, const Platform& want) {
  const Descriptor* any_variant = nullptr;
  std::vector<std::string> offered;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) continue;
    // Attestation manifests (buildkit) carry platform unknown/unknown.
    offered.push_back(d.platform->str());
    if (d.platform->os != want.os || d.platform->architecture != want.architecture) continue;
    if (!want.variant.empty()) {
      if (d.platform->variant == want.variant) return d;
      continue;
    }
    if (d.platform->variant.empty()) return d;
    if (!any_variant) any_variant = &d;
  }
  if (any_variant) return *any_variant;
  // An index of one manifest without platform (OCI layouts written by tools
  // for a single image) is taken as is.
  if (index.manifests.size() == 1 && !index.manifests[0].platform &&
      is_manifest_type(index.manifests[0].media_type)) {
    return index.manifests[0];
  }
  std::string list;
  for (const std::string& o : offered) list += (list.empty() ? "" : ", ") + o;
  return error("platform", "no manifest for {} in the index (it has: {})", want.str(),
               list.empty() ? "no platforms" : list);
}

std::string to_json(const Manifest& m) {
  json j = {{"schemaVersion", 2},
            {"mediaType", m.media_type.empty() ? std::string(media::oci_manifest) : m.media_type},
            {"config", descriptor_json(m.config)},
            {"layers", json::array()}};
  for (const Descriptor& l : m.layers) j["layers"].push_back(descriptor_json(l));
  if (!m.annotations.empty()) j["annotations"] = m.annotations;
  return j.dump();
}

Result<ImageConfig> parse_image_config(std::string_view text) {
  Reader r("image config");
  BERTH_ASSIGN(json j, r.parse(text));
  ImageConfig c;
  BERTH_ASSIGN(auto os, r.opt_string(j, "os", "os"));
  BERTH_ASSIGN(auto arch, r.opt_string(j, "architecture", "architecture"));
  BERTH_ASSIGN(auto variant, r.opt_string(j, "variant", "variant"));
  BERTH_ASSIGN(auto created, r.opt_string(j, "created", "created"));
  c.os = os.value_or("");
  c.architecture = arch.value_or("");
  c.variant = variant.value_or("");
  c.created = created.value_or("");
  if (auto cfg = j.find("config"); cfg != j.end() && !cfg->is_null()) {
    if (!cfg->is_object()) return r.fail("config", "must be an object");
    BERTH_ASSIGN(c.entrypoint, r.strings(*cfg, "Entrypoint", "config.Entrypoint"));
    BERTH_ASSIGN(c.cmd, r.strings(*cfg, "Cmd", "config.Cmd"));
    BERTH_ASSIGN(c.env, r.strings(*cfg, "Env", "config.Env"));
    BERTH_ASSIGN(auto wd, r.opt_string(*cfg, "WorkingDir", "config.WorkingDir"));
    BERTH_ASSIGN(auto user, r.opt_string(*cfg, "User", "config.User"));
    BERTH_ASSIGN(auto stop, r.opt_string(*cfg, "StopSignal", "config.StopSignal"));
    c.working_dir = wd.value_or("");
    c.user = user.value_or("");
    c.stop_signal = stop.value_or("");
    BERTH_ASSIGN(c.exposed_ports, r.keys(*cfg, "ExposedPorts", "config.ExposedPorts"));
    BERTH_ASSIGN(c.volumes, r.keys(*cfg, "Volumes", "config.Volumes"));
    BERTH_ASSIGN(c.labels, r.string_map(*cfg, "Labels", "config.Labels"));
  }
  if (auto rootfs = j.find("rootfs"); rootfs != j.end() && !rootfs->is_null()) {
    if (!rootfs->is_object()) return r.fail("rootfs", "must be an object");
    BERTH_ASSIGN(auto ids, r.strings(*rootfs, "diff_ids", "rootfs.diff_ids"));
    for (size_t i = 0; i < ids.size(); ++i) {
      Result<Digest> d = Digest::parse(ids[i]);
      if (!d) return r.fail(fmt::format("rootfs.diff_ids[{}]", i), d.error().message);
      c.diff_ids.push_back(*d);
    }
  }
  return c;
}

std::string minimal_image_config_json(const std::vector<Digest>& diff_ids, const Platform& p) {
  json ids = json::array();
  for (const Digest& d : diff_ids) ids.push_back(d.str());
  json j = {{"architecture", p.architecture},
            {"os", p.os},
            {"config", json::object()},
            {"rootfs", {{"type", "layers"}, {"diff_ids", ids}}}};
  if (!p.variant.empty()) j["variant"] = p.variant;
  return j.dump();
}

const char* phase_name(ProgressEvent::Phase p) {
  switch (p) {
    case ProgressEvent::Phase::waiting:
      return "Waiting";
    case ProgressEvent::Phase::downloading:
      return "Downloading";
    case ProgressEvent::Phase::verifying:
      return "Verifying";
    case ProgressEvent::Phase::unpacking:
      return "Unpacking";
    case ProgressEvent::Phase::done:
      return "Done";
    case ProgressEvent::Phase::exists:
      return "Already exists";
    case ProgressEvent::Phase::failed:
      return "Failed";
  }
  return "?";
}

std::string short_id(const Digest& d) {
  return d.hex.substr(0, 12);
}

bool media::is_layer_type(std::string_view t) {
  static constexpr std::string_view kTypes[] = {
      oci_layer,
      oci_layer_gzip,
      oci_layer_zstd,
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      docker_layer_gzip,
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
      "application/vnd.docker.image.rootfs.foreign.diff.tar",
      docker_foreign_layer_gzip,
  };
  return std::ranges::find(kTypes, t) != std::end(kTypes);
}

}  // namespace berth::rootfs

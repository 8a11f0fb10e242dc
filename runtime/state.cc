#include "runtime/state.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace berth::runtime {

using nlohmann::json;

const char* status_name(Status s) {
  switch (s) {
    case Status::creating:
      return "creating";
    case Status::created:
      return "created";
    case Status::running:
      return "running";
    case Status::stopped:
      return "stopped";
  }
  return "unknown";
}

static std::optional<Status> status_from_name(const std::string& s) {
  for (Status st : {Status::creating, Status::created, Status::running, Status::stopped}) {
    if (s == status_name(st)) return st;
  }
  return std::nullopt;
}

std::string ContainerState::oci_json() const {
  json j = {{"ociVersion", "1.0.2"}, {"id", id},         {"status", status_name(status)},
            {"bundle", bundle},      {"rootfs", rootfs}, {"created", created}};
  if (status != Status::stopped) j["pid"] = pid;
  j["annotations"] = annotations;
  return j.dump();
}

Result<void> validate_id(const std::string& id) {
  if (id.empty() || id.size() > 1024 || id == "." || id == "..") {
    return kind_error(ErrorKind::invalid, "container", "invalid container id \"{}\"", id);
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '.' || c == '-';
    if (!ok) {
      return kind_error(ErrorKind::invalid, "container",
                        "invalid container id \"{}\": only letters, digits and _+.- are allowed",
                        id);
    }
  }
  return {};
}

std::string container_dir(const std::string& root, const std::string& id) {
  return fs::join(root, id);
}

Result<void> save_state(const std::string& root, const ContainerState& st) {
  json j = {{"id", st.id},
            {"bundle", st.bundle},
            {"rootfs", st.rootfs},
            {"status", status_name(st.status)},
            {"pid", st.pid},
            {"pid_start_time", st.pid_start_time},
            {"created", st.created},
            {"annotations", st.annotations},
            {"cgroup_paths", st.cgroup_paths},
            {"cgroup_ns", st.cgroup_ns},
            {"device_nodes", st.device_nodes}};
  // Not fsynced: the state lives in a tmpfs (/run) and dies with the boot,
  // as the containers do; rename alone keeps readers from a torn file.
  return fs::write_file_atomic(fs::join(container_dir(root, st.id), "state.json"), j.dump(2), 0600,
                               fs::Durable::no);
}

Result<ContainerState> load_state(const std::string& root, const std::string& id) {
  BERTH_TRY(validate_id(id));
  std::string path = fs::join(container_dir(root, id), "state.json");
  auto text = fs::read_file(path);
  if (!text) {
    if (text.error().err == ENOENT) {
      return with_kind(ErrorKind::not_found,
                       errno_error("container", ENOENT, "container \"{}\" does not exist", id));
    }
    return std::unexpected(text.error());
  }
  json j = json::parse(*text, nullptr, false);
  auto bad = [&] { return error("state", "{} is corrupt", path); };
  if (j.is_discarded() || !j.is_object()) return bad();
  ContainerState st;
  auto str = [&](const char* k, std::string& out) {
    if (auto it = j.find(k); it != j.end() && it->is_string()) out = it->get<std::string>();
  };
  str("id", st.id);
  str("bundle", st.bundle);
  str("rootfs", st.rootfs);
  str("created", st.created);
  std::string status;
  str("status", status);
  auto s = status_from_name(status);
  if (!s) return bad();
  st.status = *s;
  if (auto it = j.find("pid"); it != j.end() && it->is_number_integer()) {
    st.pid = it->get<pid_t>();
  }
  if (auto it = j.find("pid_start_time"); it != j.end() && it->is_number_unsigned()) {
    st.pid_start_time = it->get<uint64_t>();
  }
  if (auto it = j.find("annotations"); it != j.end() && it->is_object()) {
    for (auto& [k, v] : it->items()) {
      if (v.is_string()) st.annotations[k] = v.get<std::string>();
    }
  }
  auto strings = [&](const char* k, std::vector<std::string>& out) {
    if (auto it = j.find(k); it != j.end() && it->is_array()) {
      for (auto& v : *it) {
        if (v.is_string()) out.push_back(v.get<std::string>());
      }
    }
  };
  strings("cgroup_paths", st.cgroup_paths);
  strings("device_nodes", st.device_nodes);
  if (auto it = j.find("cgroup_ns"); it != j.end() && it->is_boolean()) {
    st.cgroup_ns = it->get<bool>();
  }
  return st;
}

uint64_t process_start_time(pid_t pid) {
  auto stat = fs::read_file(fmt::format("/proc/{}/stat", pid));
  if (!stat) return 0;
  // comm (field 2) may contain spaces and parentheses: parse after the last ')'.
  auto close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  std::string rest = stat->substr(close + 2);
  // rest starts at field 3 (state); start time is field 22.
  size_t pos = 0;
  for (int field = 3; field < 22; ++field) {
    pos = rest.find(' ', pos);
    if (pos == std::string::npos) return 0;
    ++pos;
  }
  if (rest[0] == 'Z' || rest[0] == 'X') return 0;  // dead: exited but not reaped
  return std::strtoull(rest.c_str() + pos, nullptr, 10);
}

Status refresh_status(const ContainerState& st) {
  if (st.pid <= 0) return st.status == Status::creating ? Status::creating : Status::stopped;
  uint64_t start = process_start_time(st.pid);
  if (start == 0 || start != st.pid_start_time) return Status::stopped;
  return st.status == Status::creating ? Status::creating : st.status;
}

std::vector<std::string> list_containers(const std::string& root) {
  std::vector<std::string> out;
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) return out;
  while (auto* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != ".." && fs::exists(fs::join(fs::join(root, name), "state.json"))) {
      out.push_back(name);
    }
  }
  ::closedir(d);
  return out;
}

}  // namespace berth::runtime

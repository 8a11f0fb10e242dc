#include "runtime/features.h"

#include <sys/capability.h>

#include <cctype>

#include "runtime/spec.h"

namespace berth::runtime {

namespace {

nlohmann::json known_capabilities() {
  nlohmann::json caps = nlohmann::json::array();
  for (int c = 0; c < static_cast<int>(cap_max_bits()); ++c) {
    char* name = cap_to_name(static_cast<cap_value_t>(c));
    if (name == nullptr) continue;
    std::string upper = name;
    cap_free(name);
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    caps.push_back(upper);
  }
  return caps;
}

}  // namespace

nlohmann::json features_json() {
  using nlohmann::json;
  json seccomp_actions = json::array();
  for (auto a : {SeccompAction::allow, SeccompAction::errno_ret, SeccompAction::kill,
                 SeccompAction::kill_process, SeccompAction::kill_thread, SeccompAction::log,
                 SeccompAction::notify, SeccompAction::trace, SeccompAction::trap}) {
    seccomp_actions.push_back(seccomp_action_name(a));
  }
  json seccomp_ops = json::array();
  for (auto op : {SeccompOp::eq, SeccompOp::ge, SeccompOp::gt, SeccompOp::le, SeccompOp::lt,
                  SeccompOp::masked_eq, SeccompOp::ne}) {
    seccomp_ops.push_back(seccomp_op_name(op));
  }
  json namespaces = json::array();
  for (auto t :
       {NamespaceType::cgroup, NamespaceType::ipc, NamespaceType::mount, NamespaceType::network,
        NamespaceType::pid, NamespaceType::user, NamespaceType::uts, NamespaceType::time}) {
    namespaces.push_back(namespace_name(t));
  }
  return {
      {"ociVersionMin", "1.0.0"},
      {"ociVersionMax", "1.1.0"},
      {"hooks",
       {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}},
      {"mountOptions", {"async",         "atime",       "bind",        "defaults",  "dev",
                        "diratime",      "dirsync",     "exec",        "iversion",  "lazytime",
                        "loud",          "mand",        "noatime",     "nodev",     "nodiratime",
                        "noexec",        "noiversion",  "nolazytime",  "nomand",    "norelatime",
                        "nostrictatime", "nosuid",      "nosymfollow", "private",   "rbind",
                        "relatime",      "remount",     "ro",          "rprivate",  "rshared",
                        "rslave",        "runbindable", "rw",          "shared",    "silent",
                        "slave",         "strictatime", "suid",        "symfollow", "sync",
                        "unbindable"}},
      {"linux",
       {{"namespaces", namespaces},
        {"capabilities", known_capabilities()},
        {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}}},
        {"seccomp",
         {{"enabled", true},
          {"actions", seccomp_actions},
          {"operators", seccomp_ops},
          {"archs",
           {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86",
            "SCMP_ARCH_X86_64"}}}},
        {"apparmor", {{"enabled", true}}},  // applied where the host has it on (lsm.h)
        {"selinux", {{"enabled", false}}},
        // Refused by the parser when set (spec.cc), so reported as off.
        {"intelRdt", {{"enabled", false}}},
        {"mountExtensions", {{"idmap", {{"enabled", false}}}}},
        {"netDevices", {{"enabled", false}}}}},
      {"annotations", {{"org.berth.runtime.version", "0.1.0"}}},
  };
}

}  // namespace berth::runtime

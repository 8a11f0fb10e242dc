// Chooses the cgroup driver for the host's layout.
#include "runtime/cgroup.h"

#include <unistd.h>

#include "common/log.h"
#include "runtime/cgroup_util.h"

namespace berth::runtime {

using cgroup_util::CgroupDir;
using cgroup_util::Placement;

Result<std::unique_ptr<CgroupDriver>> make_cgroup_driver(const CgroupLayout& layout,
                                                         const std::string& cgroups_path,
                                                         const std::string& default_name) {
  BERTH_ASSIGN(Placement p, cgroup_util::parse_cgroups_path(cgroups_path, default_name));
  if (layout.mode == CgroupLayout::Mode::unified) {
    if (layout.unified_mount.empty()) return error("cgroup", "unified layout without a v2 mount");
    auto dir = CgroupDir::place(layout.unified_mount, layout.unified_own, p);
    log::debug("cgroup: v2 driver, cgroup {}", dir.dir);
    return cgroup_util::new_cgroup_v2(std::move(dir), layout.fixture_tree);
  }
  log::debug("cgroup: v1 driver ({} layout{})", layout.mode_name(),
             layout.unified_mount.empty() ? "" : ", with the v2 tree for membership");
  return cgroup_util::new_cgroup_v1(layout, p);
}

Result<std::unique_ptr<CgroupDriver>> open_cgroup_driver(const CgroupLayout& layout,
                                                         const std::vector<std::string>& paths) {
  if (layout.mode != CgroupLayout::Mode::unified) return cgroup_util::open_cgroup_v1(layout, paths);
  const std::string& mount = layout.unified_mount;
  if (paths.size() != 1 || !paths[0].starts_with(mount + "/")) {
    return error("cgroup", "recorded cgroups [{}] are not one cgroup under {}",
                 fmt::join(paths, ", "), mount);
  }
  return cgroup_util::new_cgroup_v2(CgroupDir::recorded(paths[0]), layout.fixture_tree);
}

std::vector<DeviceRule> device_cgroup_rules(const Linux& linux) {
  std::vector<DeviceRule> rules;
  if (linux.resources) rules = linux.resources->devices;
  for (const Device& d : linux.devices) {
    // FIFOs are not devices to the devices cgroup; "u" is an unbuffered
    // character device.
    if (d.type == "p") continue;
    rules.push_back(DeviceRule{.allow = true,
                               .type = d.type == "b" ? "b" : "c",
                               .major = d.major,
                               .minor = d.minor,
                               .access = "rwm"});
  }
  return rules;
}

uint64_t cpu_shares_to_weight(uint64_t shares) {
  // The formula maps shares 2..262144 onto weights 1..10000.
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  return 1 + ((shares - 2) * 9999) / 262142;
}

Result<void> join_cgroups_self(const std::vector<UniqueFd>& files) {
  for (const auto& f : files) {
    if (::write(f.get(), "0", 1) != 1) {
      return sys_error("cgroup", "join own cgroup (write \"0\" to tasks)");
    }
  }
  return {};
}

}  // namespace berth::runtime

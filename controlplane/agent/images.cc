#include "controlplane/agent/images.h"

#include "rootfs-tools/reference.h"

namespace berth::cp {

namespace {

std::unexpected<Error> pull_error(const std::string& image, const std::string& why) {
  return std::unexpected(
      Error{"CannotPullContainerError", 0, "pull image " + image + ": " + why, ErrorKind::invalid});
}

}  // namespace

Result<rootfs::Image> resolve_image(rootfs::ImageStore& store, const ImageSource& src,
                                    const std::string& image, const std::string& credentials) {
  if (auto local = store.resolve(image)) return std::move(*local);
  auto ref = rootfs::Reference::parse(image);
  if (!ref) return pull_error(image, ref.error().str());
  rootfs::PullOptions opts;
  opts.insecure_registries = src.insecure_registries;
  opts.hosts = src.hosts;
  if (!credentials.empty()) {
    auto it = src.credentials.find(credentials);
    if (it == src.credentials.end()) {
      return pull_error(image, "repositoryCredentials " + credentials +
                                   " names no registry credentials in the configuration");
    }
    opts.credentials = it->second;
  }
  auto pulled = rootfs::pull(store, *ref, opts);
  if (!pulled) return pull_error(image, pulled.error().str());
  return std::move(pulled->image);
}

}  // namespace berth::cp

#include "controlplane/model/errors.h"

namespace berth::cp {

bool is_ecs_error(const Error& e) {
  return e.step.ends_with("Exception");
}

}  // namespace berth::cp

#include "cmd/berth/answer.h"

namespace berth::cli {

Result<std::string> read_string(const nlohmann::json& answer,
                                std::initializer_list<std::string_view> path) {
  jr::Node n = jr::Node::root(answer, kAnswer);
  for (auto key : path) n = n.member(key);
  std::string s;
  BERTH_TRY(jr::read_required(n, s));
  return s;
}

Result<std::vector<FailureView>> read_failures(const nlohmann::json& answer) {
  jr::Node root = jr::Node::root(answer, kAnswer);
  BERTH_TRY(jr::expect_object(root));
  std::vector<FailureView> failures;
  BERTH_TRY(jr::read_array(root.member("failures"), failures,
                           [](const jr::Node& f) -> Result<FailureView> {
                             BERTH_TRY(jr::expect_object(f));
                             FailureView v;
                             BERTH_TRY(jr::read(f.member("arn"), v.arn));
                             BERTH_TRY(jr::read(f.member("reason"), v.reason));
                             BERTH_TRY(jr::read(f.member("detail"), v.detail));
                             return v;
                           }));
  return failures;
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

}  // namespace berth::cli

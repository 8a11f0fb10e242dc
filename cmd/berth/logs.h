// Container logs as berthd serves them: CRI log lines
// ("<RFC3339Nano> <stdout|stderr> <F|P> <text>\n"), streamed in chunks that
// may cut a line anywhere. The CLI writes each line's text back to the stream
// it came from, as `docker logs` does.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace berth::cli {

struct CriLine {
  std::string_view time;
  bool is_stderr = false;
  bool partial = false;  // "P": the text continues in the next line
  std::string_view text;
};

// nullopt for a line that is not in the CRI format.
std::optional<CriLine> parse_cri_line(std::string_view line);

// Joins chunks into whole lines (without their '\n').
class LineSplitter {
 public:
  using Emit = std::function<void(std::string_view)>;
  void feed(std::string_view chunk, const Emit& emit);
  // The unterminated rest, if any.
  void finish(const Emit& emit);

 private:
  std::string pending_;
};

// What `berth logs` writes for one line: the text plus '\n' unless partial,
// prefixed with the timestamp and a space when `timestamps`. A line that is
// not CRI is passed through as it is (to stdout).
struct LogOutput {
  bool is_stderr = false;
  std::string text;
};
LogOutput render_log_line(std::string_view line, bool timestamps);

}  // namespace berth::cli

#include "cmd/berth/logs.h"

namespace berth::cli {
namespace {

// Splits off the next space-separated field.
std::optional<std::string_view> next_field(std::string_view& rest) {
  size_t sp = rest.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  std::string_view f = rest.substr(0, sp);
  rest.remove_prefix(sp + 1);
  return f;
}

}  // namespace

std::optional<CriLine> parse_cri_line(std::string_view line) {
  std::string_view rest = line;
  auto time = next_field(rest);
  auto stream = next_field(rest);
  if (!time || !stream || time->empty()) return std::nullopt;
  if (*stream != "stdout" && *stream != "stderr") return std::nullopt;
  // The tag: "F" or "P", possibly with more ':'-separated tags later.
  std::string_view tag = rest.substr(0, rest.find(' '));
  if (tag.empty() || (tag[0] != 'F' && tag[0] != 'P')) return std::nullopt;
  rest.remove_prefix(std::min(rest.size(), tag.size() + 1));
  return CriLine{*time, *stream == "stderr", tag[0] == 'P', rest};
}

void LineSplitter::feed(std::string_view chunk, const Emit& emit) {
  while (!chunk.empty()) {
    size_t nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      pending_.append(chunk);
      return;
    }
    if (pending_.empty()) {
      emit(chunk.substr(0, nl));
    } else {
      pending_.append(chunk.substr(0, nl));
      emit(pending_);
      pending_.clear();
    }
    chunk.remove_prefix(nl + 1);
  }
}

void LineSplitter::finish(const Emit& emit) {
  if (!pending_.empty()) emit(pending_);
  pending_.clear();
}

LogOutput render_log_line(std::string_view line, bool timestamps) {
  auto cri = parse_cri_line(line);
  if (!cri) return {false, std::string(line) + "\n"};
  std::string text = timestamps ? std::string(cri->time) + " " : std::string();
  text.append(cri->text);
  if (!cri->partial) text += '\n';
  return {cri->is_stderr, std::move(text)};
}

}  // namespace berth::cli

#!/usr/bin/env bash
# bench/shim_rss.sh BUILD_DIR [TASKS]: starts TASKS (default 200) berth-shim
# tasks at once, each running one container (`sleep`), and reports the
# shims' memory: RSS (what ps shows; the binary's text pages are shared by
# all shims through the page cache), private anonymous memory (RssAnon) and
# PSS (RSS with shared pages divided among their users) — the per-task cost.
# Everything lives in one temp dir and is stopped and removed at exit.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 BUILD_DIR [TASKS]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
tasks=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
shim=$build/bin/berth-shim
runtime=$build/bin/berth-runtime
[[ -x $shim && -x $runtime ]] || { echo "shim-rss: build berth-shim and berth-runtime first" >&2; exit 1; }

work=$(mktemp -d /tmp/berth-shim-rss.XXXXXX)
pids=()
cleanup() {
  local p t
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  for t in "$work"/root/*/; do
    [[ -d $t ]] && { "$runtime" --root "$work/root" delete --force "$(basename "$t")" >/dev/null 2>&1 || true; }
  done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/root" "$work/rootfs"
bash "$here/../tests/scripts/make-rootfs.sh" "$work/rootfs" "$build/bin/berth-probe" >/dev/null
"$runtime" spec --bundle "$work" >/dev/null
mv "$work/config.json" "$work/config.template.json"

for i in $(seq 1 "$tasks"); do
  t=$work/task$i
  mkdir -p "$t/bundle"
  sed -e 's|"terminal": true|"terminal": false|' \
      -e "s|\"path\": \"rootfs\"|\"path\": \"$work/rootfs\"|" \
      -e 's|"sh"|"sleep", "1000"|' \
      "$work/config.template.json" > "$t/bundle/config.json"
  # A cgroup of its own per container.
  sed -i "s|\"linux\": {|\"linux\": {\"cgroupsPath\": \"berth-shim-rss-$$-$i\",|" "$t/bundle/config.json"
  printf '{"version":1,"task_id":"rss%s","runtime_root":"%s","containers":[{"name":"c","bundle":"%s","stop_timeout":1}]}\n' \
    "$i" "$work/root" "$t/bundle" > "$t/task.json"
  pids+=("$("$shim" --task-dir "$t")")
done

# Each shim's numbers, once all tasks run.
awk_sum() { awk '{s+=$1; if ($1>m) m=$1} END {printf "%.0f %.0f\n", s/NR, m}'; }
rss=(); anon=(); pss=()
for p in "${pids[@]}"; do
  rss+=("$(awk '/^VmRSS/ {print $2}' /proc/"$p"/status)")
  anon+=("$(awk '/^RssAnon/ {print $2}' /proc/"$p"/status)")
  pss+=("$(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup)")
done
running=$(grep -l '"status":"RUNNING"' "$work"/task*/state.json | wc -l)
read -r rss_mean rss_max < <(printf '%s\n' "${rss[@]}" | awk_sum)
read -r anon_mean anon_max < <(printf '%s\n' "${anon[@]}" | awk_sum)
read -r pss_mean pss_max < <(printf '%s\n' "${pss[@]}" | awk_sum)
echo
echo "berth-shim memory with $tasks tasks running at once ($running report RUNNING), KiB per shim"
printf '  %-28s %8s %8s\n' "" mean max
printf '  %-28s %8s %8s\n' "RSS (text shared by all)" "$rss_mean" "$rss_max"
printf '  %-28s %8s %8s\n' "PSS (per-task share)" "$pss_mean" "$pss_max"
printf '  %-28s %8s %8s\n' "private anonymous (RssAnon)" "$anon_mean" "$anon_max"
echo "  target: <= 1536 KiB per task (PSS); containerd's Go shim ~10 MiB, conmon 0.3-1.3 MiB"

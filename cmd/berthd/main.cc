// berthd: the control plane daemon (wired up in controlplane/daemon).
#include <cstdio>

int main() {
  std::fprintf(stderr, "berthd: not built yet\n");
  return 1;
}

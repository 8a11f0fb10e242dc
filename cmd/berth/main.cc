// berth: the command-line client of berthd.
#include <cstdio>

int main() {
  std::fprintf(stderr, "berth: not built yet\n");
  return 1;
}

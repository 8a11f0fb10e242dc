#include <sched.h>

#include <catch2/catch.hpp>

#include "runtime/namespaces.h"

using namespace berth::runtime;

TEST_CASE("new namespaces become clone flags, the cgroup one excepted", "[namespaces]") {
  Linux l;
  l.namespaces = {{NamespaceType::pid, ""},
                  {NamespaceType::mount, ""},
                  {NamespaceType::network, "/proc/1/ns/net"},
                  {NamespaceType::cgroup, ""},
                  {NamespaceType::user, ""}};
  unsigned long f = namespace_create_flags(l);
  CHECK(f == (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUSER));
}

TEST_CASE("a namespace path must be a namespace of the named type", "[namespaces]") {
  Linux l;
  l.namespaces = {{NamespaceType::pid, "/proc/self/ns/net"}};
  auto r = open_joined_namespaces(l);
  REQUIRE_FALSE(r);
  CHECK(r.error().str() ==
        "namespaces: pid namespace path /proc/self/ns/net: is a namespace of another type");

  l.namespaces = {{NamespaceType::network, "/etc/hostname"}};
  auto notns = open_joined_namespaces(l);
  REQUIRE_FALSE(notns);
  CHECK(notns.error().message == "network namespace path /etc/hostname: not a namespace file");

  l.namespaces = {{NamespaceType::network, "/nonexistent/ns"}};
  auto missing = open_joined_namespaces(l);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().str() == "fs: open /nonexistent/ns: No such file or directory");
}

TEST_CASE("joined namespaces are opened with the user namespace first", "[namespaces]") {
  Linux l;
  l.namespaces = {{NamespaceType::network, "/proc/self/ns/net"},
                  {NamespaceType::user, "/proc/self/ns/user"},
                  {NamespaceType::uts, "/proc/self/ns/uts"}};
  auto r = open_joined_namespaces(l);
  REQUIRE(r);
  REQUIRE(r->size() == 3);
  CHECK((*r)[0].type == NamespaceType::user);
  CHECK((*r)[1].type == NamespaceType::network);
  CHECK((*r)[2].type == NamespaceType::uts);
}

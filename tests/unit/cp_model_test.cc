// The ECS model: ARNs, ids, timestamps, task definition parsing (every
// refusal's exact message), the Fargate size table, and the round trips of
// the stored documents.
#include <catch2/catch.hpp>

#include <regex>

#include "controlplane/model/arn.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/errors.h"

using namespace berth::cp;
using nlohmann::json;

namespace {

Account alice() {
  Account a;
  a.id = "123456789012";
  a.name = "alice";
  return a;
}

json minimal(json container = json::object()) {
  json c = {{"name", "web"}, {"image", "busybox"}, {"memory", 128}};
  c.update(container);
  return json{{"family", "web"}, {"containerDefinitions", json::array({c})}};
}

// "<exception>: <message>" of a refused registration.
std::string refusal(const json& body, const Account& account = alice()) {
  auto d = parse_task_definition(body, account);
  REQUIRE_FALSE(d);
  return d.error().step + ": " + d.error().message;
}

std::string fargate(const std::string& cpu, const std::string& memory) {
  auto r = check_fargate_size(cpu, memory);
  if (r) return "ok";
  return r.error().step + ": " + r.error().message;
}

}  // namespace

TEST_CASE("cp model: ARNs as ECS writes them and parse_arn", "[cp-model]") {
  CHECK(cluster_arn("us-east-1", "123456789012", "default") ==
        "arn:aws:ecs:us-east-1:123456789012:cluster/default");
  CHECK(task_definition_arn("us-east-1", "123456789012", "web", 3) ==
        "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3");
  CHECK(task_arn("eu-west-1", "1", "c", "0123456789abcdef0123456789abcdef") ==
        "arn:aws:ecs:eu-west-1:1:task/c/0123456789abcdef0123456789abcdef");
  CHECK(container_arn("r", "1", "c", "t", "u") == "arn:aws:ecs:r:1:container/c/t/u");
  CHECK(service_arn("r", "1", "c", "s") == "arn:aws:ecs:r:1:service/c/s");

  auto a = parse_arn("arn:aws:ecs:us-east-1:123456789012:task/default/abc");
  REQUIRE(a);
  CHECK(a->region == "us-east-1");
  CHECK(a->account == "123456789012");
  CHECK(a->type == "task");
  CHECK(a->rest == "default/abc");
  auto d = parse_arn("arn:aws:ecs:us-east-1:1:task-definition/web:3");
  REQUIRE(d);
  CHECK(d->type == "task-definition");
  CHECK(d->rest == "web:3");
  for (const char* bad :
       {"", "web:3", "arn:aws:s3:::bucket/x", "arn:aws:ecs:r:1:bucket/x", "arn:aws:ecs::1:task/x",
        "arn:aws:ecs:r::task/x", "arn:aws:ecs:r:1:task", "arn:aws:ecs:r:1:task/"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_arn(bad));
  }
}

TEST_CASE("cp model: task ids, UUIDs and timestamps", "[cp-model]") {
  std::string id = new_task_id();
  CHECK(std::regex_match(id, std::regex("[0-9a-f]{32}")));
  CHECK(new_task_id() != id);
  std::string u = new_uuid();
  CHECK(std::regex_match(u, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                       "[0-9a-f]{12}")));
  CHECK(new_uuid() != u);

  TimePoint t = from_epoch_seconds(1557134011.644);
  CHECK(epoch_seconds(t) == Approx(1557134011.644).epsilon(1e-15));
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() ==
        1557134011644);
  // Sub-millisecond parts are dropped, as ECS writes milliseconds.
  CHECK(epoch_seconds(t + std::chrono::microseconds(400)) == epoch_seconds(t));
  CHECK_FALSE(is_set(TimePoint{}));
  CHECK(is_set(t));
  CHECK(json(epoch_seconds(t)).dump() == "1557134011.644");
}

TEST_CASE("cp model: task status names", "[cp-model]") {
  for (auto s : {TaskStatus::provisioning, TaskStatus::pending, TaskStatus::activating,
                 TaskStatus::running, TaskStatus::deactivating, TaskStatus::stopping,
                 TaskStatus::deprovisioning, TaskStatus::stopped}) {
    CHECK(parse_task_status(task_status_name(s)) == s);
  }
  CHECK(std::string(task_status_name(TaskStatus::deprovisioning)) == "DEPROVISIONING");
  CHECK_FALSE(parse_task_status("running"));
  CHECK_FALSE(parse_task_status(""));
}

TEST_CASE("cp model: the Fargate size table, edges included", "[cp-model]") {
  // 256: only 512, 1024, 2048.
  CHECK(fargate("256", "512") == "ok");
  CHECK(fargate("256", "1024") == "ok");
  CHECK(fargate("256", "2048") == "ok");
  CHECK(fargate("256", "1536") ==
        "ClientException: Invalid 'memory' setting for task. 1536 MiB is not valid for cpu 256 "
        "(memory must be 512, 1024 or 2048 MiB).");
  CHECK(fargate("256", "3072").starts_with("ClientException: Invalid 'memory' setting for task."));
  struct Row {
    int cpu, lo, hi, step;
  };
  for (Row r : {Row{512, 1024, 4096, 1024}, Row{1024, 2048, 8192, 1024},
                Row{2048, 4096, 16384, 1024}, Row{4096, 8192, 30720, 1024},
                Row{8192, 16384, 61440, 4096}, Row{16384, 32768, 122880, 8192}}) {
    CAPTURE(r.cpu);
    std::string cpu = std::to_string(r.cpu);
    for (int m = r.lo; m <= r.hi; m += r.step) CHECK(fargate(cpu, std::to_string(m)) == "ok");
    CHECK(fargate(cpu, std::to_string(r.lo - r.step)) != "ok");
    CHECK(fargate(cpu, std::to_string(r.hi + r.step)) != "ok");
    CHECK(fargate(cpu, std::to_string(r.lo + r.step / 2)) != "ok");
  }
  CHECK(fargate("512", "5120") ==
        "ClientException: Invalid 'memory' setting for task. 5120 MiB is not valid for cpu 512 "
        "(memory must be 1024 to 4096 in steps of 1024 MiB).");
  // Units as ECS accepts them.
  CHECK(fargate("0.25 vCPU", "0.5GB") == "ok");
  CHECK(fargate("1 vCPU", "2 GB") == "ok");
  CHECK(fargate("1vcpu", "8gb") == "ok");
  CHECK(fargate("16 vCPU", "120 GB") == "ok");
  for (const char* cpu : {"128", "300", "", "abc", "1.5 vCPU", "-256", "32768", "0"}) {
    CAPTURE(cpu);
    CHECK(fargate(cpu, "2048") == "ClientException: Invalid 'cpu' setting for task.");
  }
  CHECK(fargate("256", "lots") == "ClientException: Invalid 'memory' setting for task.");
  CHECK(fargate("256", "") == "ClientException: Invalid 'memory' setting for task.");
}

TEST_CASE("cp model: a real AWS CLI register input", "[cp-model]") {
  // As `aws ecs register-task-definition --cli-input-json` sends it,
  // including the empty lists the CLI's own describe output carries.
  json body = json::parse(R"({
    "family": "sample-fargate",
    "networkMode": "awsvpc",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "taskRoleArn": "arn:aws:iam::123456789012:role/app",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "0.25 vCPU",
    "memory": "0.5 GB",
    "runtimePlatform": {"operatingSystemFamily": "LINUX"},
    "ephemeralStorage": {"sizeInGiB": 30},
    "volumes": [],
    "placementConstraints": [],
    "tags": [{"key": "team", "value": "web"}],
    "containerDefinitions": [{
      "name": "fargate-app",
      "image": "public.ecr.aws/docker/library/httpd:latest",
      "essential": true,
      "entryPoint": ["sh", "-c"],
      "command": ["echo hello && httpd-foreground"],
      "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp", "name": "http"}],
      "environment": [{"name": "A", "value": "1"}],
      "mountPoints": [],
      "volumesFrom": [],
      "systemControls": [{"namespace": "net.ipv4.tcp_keepalive_time", "value": "60"}],
      "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
      "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"], "drop": ["MKNOD"]},
                          "initProcessEnabled": true, "sharedMemorySize": 128,
                          "tmpfs": [{"containerPath": "/scratch", "size": 64,
                                     "mountOptions": ["noexec"]}]},
      "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10},
      "stopTimeout": 20,
      "user": "www-data",
      "workingDirectory": "/usr/local/apache2",
      "readonlyRootFilesystem": false,
      "logConfiguration": {"logDriver": "awslogs",
                           "options": {"awslogs-group": "/ecs/fargate-task-definition",
                                       "awslogs-region": "us-east-1",
                                       "awslogs-stream-prefix": "ecs"}}
    }]
  })");
  auto d = parse_task_definition(body, alice());
  REQUIRE(d);
  CHECK(d->account == "123456789012");
  CHECK(d->family == "sample-fargate");
  CHECK(d->cpu == "256");
  CHECK(d->memory == "512");
  CHECK(d->cpu_units() == 256);
  CHECK(d->memory_mib() == 512);
  CHECK(d->ephemeral_storage_gib == 30);
  CHECK(d->execution_role_arn == "arn:aws:iam::123456789012:role/ecsTaskExecutionRole");
  CHECK(d->tags == std::vector<Tag>{{"team", "web"}});
  REQUIRE(d->containers.size() == 1);
  const auto& c = d->containers[0];
  CHECK(c.entry_point == std::vector<std::string>{"sh", "-c"});
  CHECK(c.port_mappings[0].host_port == 80);
  CHECK(c.linux_parameters.cap_add == std::vector<std::string>{"SYS_PTRACE"});
  CHECK(c.linux_parameters.tmpfs[0].size_mib == 64);
  CHECK(c.health_check->interval_s == 10);
  CHECK(c.health_check->timeout_s == 5);
  CHECK(c.health_check->retries == 3);
  REQUIRE(c.log_configuration);
  CHECK((*c.log_configuration)["logDriver"] == "awslogs");

  d->revision = 4;
  d->registered_at = from_epoch_seconds(1700000000.5);
  json out = task_definition_json(*d, "us-east-1");
  CHECK(out["taskDefinitionArn"] ==
        "arn:aws:ecs:us-east-1:123456789012:task-definition/sample-fargate:4");
  CHECK(out["compatibilities"] == json::array({"EC2", "FARGATE"}));
  CHECK(out["registeredAt"] == 1700000000.5);
  CHECK(out["cpu"] == "256");
  CHECK(out["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"] ==
        "/ecs/fargate-task-definition");
  CHECK(out["runtimePlatform"]["operatingSystemFamily"] == "LINUX");

  // The stored form reads back to the same JSON.
  auto back = task_definition_from_json(out, "123456789012");
  REQUIRE(back);
  CHECK(back->revision == 4);
  CHECK(task_definition_json(*back, "us-east-1") == out);
}

TEST_CASE("cp model: defaults are echoed", "[cp-model]") {
  auto d = parse_task_definition(minimal(), alice());
  REQUIRE(d);
  CHECK(d->network_mode == "awsvpc");
  json c = task_definition_json(*d, "r")["containerDefinitions"][0];
  CHECK(c["cpu"] == 0);
  CHECK(c["essential"] == true);
  CHECK(c["portMappings"] == json::array());
  CHECK(c["environment"] == json::array());
  CHECK(c["mountPoints"] == json::array());
  CHECK(c["volumesFrom"] == json::array());
  CHECK(c["systemControls"] == json::array());
  CHECK(task_definition_json(*d, "r")["compatibilities"] == json::array({"EC2"}));
  // Inline definitions (POST /v1/tasks) take a default family.
  json body = minimal();
  body.erase("family");
  CHECK(refusal(body) == "InvalidParameterException: family: required field is missing");
  auto inline_def = parse_task_definition(body, alice(), "inline");
  REQUIRE(inline_def);
  CHECK(inline_def->family == "inline");
}

TEST_CASE("cp model: every refusal names its field", "[cp-model]") {
  const std::string p = "InvalidParameterException: containerDefinitions[0].";
  CHECK(refusal(minimal({{"foo", 1}})) == p + "foo: unknown field");
  CHECK(refusal(minimal({{"privileged", true}})) ==
        p + "privileged: privileged containers are not supported");
  CHECK(refusal(minimal({{"mountPoints", json::array({{{"sourceVolume", "v"}}})}})) ==
        p + "mountPoints: berth has no volumes yet");
  CHECK(refusal(minimal({{"volumesFrom", json::array({{{"sourceContainer", "x"}}})}})) ==
        p + "volumesFrom: berth has no volumes yet");
  CHECK(refusal(minimal({{"disableNetworking", true}})) ==
        p + "disableNetworking: not supported (use the task's networkMode \"none\")");
  CHECK(refusal(minimal({{"dnsServers", {"1.1.1.1"}}})) ==
        p + "dnsServers: not supported with network mode awsvpc (as in ECS)");
  CHECK(refusal(minimal(
            {{"extraHosts", json::array({{{"hostname", "a"}, {"ipAddress", "1.2.3.4"}}})}})) ==
        p + "extraHosts: not supported with network mode awsvpc (as in ECS)");
  CHECK(refusal(minimal(
            {{"linuxParameters", {{"devices", json::array({{{"hostPath", "/dev/kvm"}}})}}}})) ==
        p + "linuxParameters.devices: host devices are not supported by berth");
  CHECK(refusal(minimal({{"linuxParameters", {{"maxSwap", 100}}}})) ==
        p + "linuxParameters.maxSwap: not supported (as on Fargate)");
  CHECK(refusal(minimal({{"linuxParameters", {{"swappiness", 10}}}})) ==
        p + "linuxParameters.swappiness: not supported (as on Fargate)");
  CHECK(refusal(minimal({{"linuxParameters", {{"sysctl", 1}}}})) ==
        p + "linuxParameters.sysctl: unknown field");
  CHECK(refusal(minimal({{"secrets", json::array({{{"name", "a"}}})}})) ==
        p + "secrets: not supported by berth");
  CHECK(refusal(minimal({{"linuxParameters", {{"capabilities", {{"add", {"NET_ADMIN"}}}}}}})) ==
        p + "linuxParameters.capabilities.add[0]: NET_ADMIN may not be added: only SYS_PTRACE "
            "may be (as on Fargate) unless the account's policy allows it");
  CHECK(
      refusal(minimal({{"linuxParameters", {{"capabilities", {{"add", {"CAP_SYS_PTRACE"}}}}}}})) ==
      p + "linuxParameters.capabilities.add[0]: \"CAP_SYS_PTRACE\": not a Linux capability "
          "(ECS names them without CAP_: SYS_PTRACE)");
  CHECK(refusal(minimal({{"linuxParameters", {{"capabilities", {{"drop", {"BOGUS"}}}}}}})) ==
        p + "linuxParameters.capabilities.drop[0]: \"BOGUS\": not a Linux capability (ECS names "
            "them without CAP_: SYS_PTRACE)");
  CHECK(refusal(minimal({{"systemControls",
                          json::array({{{"namespace", "kernel.panic"}, {"value", "1"}}})}})) ==
        p + "systemControls[0].namespace: \"kernel.panic\": only namespaced sysctls may be set "
            "(net.* outside network mode host, kernel.msg*, kernel.sem, kernel.shm*)");
  CHECK(refusal(minimal(
            {{"ulimits",
              json::array({{{"name", "nofile"}, {"softLimit", 10}, {"hardLimit", 5}}})}})) ==
        p + "ulimits[0].softLimit: 10 exceeds hardLimit 5");
  CHECK(
      refusal(minimal(
          {{"ulimits", json::array({{{"name", "files"}, {"softLimit", 1}, {"hardLimit", 5}}})}})) ==
      p + "ulimits[0].name: \"files\": not an ulimit ECS knows (nofile, nproc, core, ...)");
  CHECK(refusal(minimal({{"portMappings", json::array({{{"containerPort", 0}}})}})) ==
        p + "portMappings[0].containerPort: 0 is out of range 1..65535");
  CHECK(refusal(minimal(
            {{"portMappings", json::array({{{"containerPort", 80}, {"protocol", "sctp"}}})}})) ==
        p + "portMappings[0].protocol: \"sctp\": must be tcp or udp");
  CHECK(refusal(minimal({{"name", "a.b"}})) == p + "name: \"a.b\": must be 1-64 of [A-Za-z0-9_-]");
  CHECK(refusal(minimal({{"image", ""}})) == p + "image: must not be empty");
  CHECK(refusal(minimal({{"memoryReservation", 256}})) ==
        p + "memoryReservation: 256 MiB exceeds memory (128 MiB)");
  CHECK(refusal(minimal({{"stopTimeout", 121}})) == p + "stopTimeout: 121 is out of range 0..120");
  CHECK(refusal(minimal({{"healthCheck", {{"command", {"true"}}}}})) ==
        p + "healthCheck.command: must be [\"CMD\", executable, args...] or [\"CMD-SHELL\", "
            "command]");
  CHECK(refusal(minimal({{"workingDirectory", "rel"}})) ==
        p + "workingDirectory: \"rel\": must be an absolute path");
  CHECK(refusal(minimal({{"user", "a:b:c"}})) ==
        p + "user: \"a:b:c\": must be user, user:group, uid or uid:gid");
  CHECK(refusal(minimal(
            {{"dependsOn", json::array({{{"containerName", "db"}, {"condition", "START"}}})}})) ==
        "InvalidParameterException: containerDefinitions[0].dependsOn[0].containerName: \"db\" "
        "is not another container of the task");
  CHECK(refusal(minimal({{"essential", false}})) ==
        "ClientException: A task definition must have at least one essential container.");
  CHECK(refusal(minimal({{"memory", nullptr}})) ==
        "ClientException: Invalid setting for container 'web'. At least one of 'memory' or "
        "'memoryReservation' must be specified.");
  CHECK(refusal(minimal({{"cpu", "1"}})) == p + "cpu: expected a 32-bit integer, got string");
  CHECK(refusal(minimal({{"healthCheck", {{"command", {"CMD", "true"}}, {"interval", 1}}}})) ==
        p + "healthCheck.interval: 1 is out of range 5..300");
  CHECK(refusal(minimal({{"restartPolicy", {{"enabled", true}, {"restartAttemptPeriod", 10}}}})) ==
        p + "restartPolicy.restartAttemptPeriod: 10 is out of range 60..1800");
  CHECK(refusal(minimal({{"restartPolicy", {{"ignoredExitCodes", {1}}}}})) ==
        p + "restartPolicy.enabled: required field is missing");
  CHECK(refusal(minimal({{"linuxParameters",
                          {{"tmpfs", json::array({{{"containerPath", "/"}, {"size", 1}}})}}}})) ==
        p + "linuxParameters.tmpfs[0].containerPath: \"/\": must be an absolute path below /");
  CHECK(refusal(minimal(
            {{"linuxParameters", {{"tmpfs", json::array({{{"containerPath", "/t"}}})}}}})) ==
        p + "linuxParameters.tmpfs[0].size: required field is missing");
  CHECK(refusal(minimal({{"environment", json::array({{{"name", "A=B"}, {"value", "1"}}})}})) ==
        p + "environment[0].name: \"A=B\": must be non-empty and without '='");
  json host = minimal(
      {{"systemControls", json::array({{{"namespace", "net.core.somaxconn"}, {"value", "1"}}})}});
  CHECK(parse_task_definition(host, alice()));
  host["networkMode"] = "host";
  CHECK(refusal(host) ==
        p + "systemControls[0].namespace: \"net.core.somaxconn\": only namespaced sysctls may be "
            "set (net.* outside network mode host, kernel.msg*, kernel.sem, kernel.shm*)");
  host.erase("systemControls");
  host["containerDefinitions"][0].erase("systemControls");
  host["containerDefinitions"][0]["portMappings"] =
      json::array({{{"containerPort", 80}, {"hostPort", 81}}});
  CHECK(refusal(host) == p + "portMappings[0].hostPort: must equal containerPort (80) in network "
                             "mode host, as in ECS");
  host["networkMode"] = "bridge";
  host["containerDefinitions"][0]["dnsServers"] = {"1.1.1.1"};
  CHECK(refusal(host) == p + "dnsServers: not supported by berth (the task's files come from its "
                             "microhost)");
}

TEST_CASE("cp model: task-level refusals", "[cp-model]") {
  auto with = [](json extra) {
    json b = minimal();
    b.update(extra);
    return b;
  };
  CHECK(refusal(with({{"bogus", 1}})) == "InvalidParameterException: bogus: unknown field");
  CHECK(refusal(with({{"volumes", json::array({{{"name", "v"}}})}})) ==
        "InvalidParameterException: volumes: berth has no volumes yet");
  CHECK(refusal(with({{"pidMode", "host"}})) ==
        "InvalidParameterException: pidMode: \"host\": not supported by berth (it would share "
        "the host's processes)");
  CHECK(refusal(with({{"ipcMode", "host"}})) ==
        "InvalidParameterException: ipcMode: \"host\": not supported by berth (only \"none\")");
  CHECK(refusal(with({{"networkMode", "nat"}})) ==
        "InvalidParameterException: networkMode: \"nat\": must be awsvpc, bridge, host or none");
  CHECK(refusal(with({{"requiresCompatibilities", {"WINDOWS"}}})) ==
        "InvalidParameterException: requiresCompatibilities[0]: \"WINDOWS\": must be FARGATE, "
        "EC2 or EXTERNAL");
  CHECK(refusal(with({{"ephemeralStorage", {{"sizeInGiB", 20}}}})) ==
        "InvalidParameterException: ephemeralStorage.sizeInGiB: 20 is out of range 21..200");
  CHECK(refusal(
            with({{"runtimePlatform", {{"operatingSystemFamily", "WINDOWS_SERVER_2019_FULL"}}}})) ==
        "InvalidParameterException: runtimePlatform.operatingSystemFamily: "
        "\"WINDOWS_SERVER_2019_FULL\": berth runs only LINUX");
#if defined(__x86_64__)
  CHECK(refusal(with({{"runtimePlatform", {{"cpuArchitecture", "ARM64"}}}})) ==
        "InvalidParameterException: runtimePlatform.cpuArchitecture: \"ARM64\": this host is "
        "X86_64");
  CHECK(
      parse_task_definition(with({{"runtimePlatform", {{"cpuArchitecture", "X86_64"}}}}), alice()));
#endif
  CHECK(refusal(with({{"family", "a b"}})) ==
        "InvalidParameterException: family: \"a b\": must be 1-255 of [A-Za-z0-9_-]");
  CHECK(refusal(with({{"containerDefinitions", json::array()}})) ==
        "InvalidParameterException: containerDefinitions: must hold 1 to 10 container "
        "definitions");
  CHECK(refusal(json{{"family", "x"}}) ==
        "InvalidParameterException: containerDefinitions: required field is missing");
  CHECK(refusal(with({{"cpu", "lots"}})) == "ClientException: Invalid 'cpu' setting for task.");
  CHECK(refusal(with({{"memory", "1.5 TB"}})) ==
        "ClientException: Invalid 'memory' setting for task.");
  CHECK(refusal(with({{"requiresCompatibilities", {"FARGATE"}}})) ==
        "ClientException: Fargate requires that 'cpu' be defined at the task level.");
  CHECK(refusal(with({{"requiresCompatibilities", {"FARGATE"}}, {"cpu", "256"}})) ==
        "ClientException: Fargate requires that 'memory' be defined at the task level.");
  CHECK(refusal(
            with({{"requiresCompatibilities", {"FARGATE"}}, {"cpu", "256"}, {"memory", "4096"}})) ==
        "ClientException: Invalid 'memory' setting for task. 4096 MiB is not valid for cpu 256 "
        "(memory must be 512, 1024 or 2048 MiB).");
  CHECK(refusal(with({{"requiresCompatibilities", {"FARGATE"}},
                      {"cpu", "256"},
                      {"memory", "512"},
                      {"networkMode", "host"}})) ==
        "ClientException: Fargate only supports network mode 'awsvpc'.");
  CHECK(refusal(with({{"cpu", "256"}, {"memory", "64"}})) ==
        "ClientException: Invalid setting for container 'web'. 'memory' (128 MiB) exceeds the "
        "task memory (64 MiB).");
  CHECK(refusal(with({{"tags", json::array({{{"key", "aws:x"}, {"value", "1"}}})}})) ==
        "InvalidParameterException: tags[0].key: \"aws:x\": the aws: prefix is reserved");
  // Without FARGATE, an integer cpu/memory is taken as ECS takes it.
  auto d = parse_task_definition(with({{"cpu", 512}, {"memory", "1 GB"}}), alice());
  REQUIRE(d);
  CHECK(d->cpu == "512");
  CHECK(d->memory == "1024");
}

TEST_CASE("cp model: container graph checks", "[cp-model]") {
  json b = minimal();
  b["containerDefinitions"].push_back(
      {{"name", "side"},
       {"image", "busybox"},
       {"memory", 64},
       {"dependsOn", json::array({{{"containerName", "web"}, {"condition", "HEALTHY"}}})}});
  CHECK(refusal(b) ==
        "InvalidParameterException: containerDefinitions[1].dependsOn[0].condition: HEALTHY "
        "needs a healthCheck on \"web\"");
  b["containerDefinitions"][1]["dependsOn"][0]["condition"] = "START";
  b["containerDefinitions"][0]["dependsOn"] =
      json::array({{{"containerName", "side"}, {"condition", "COMPLETE"}}});
  CHECK(refusal(b) ==
        "InvalidParameterException: containerDefinitions: dependsOn has a cycle through \"web\"");
  b["containerDefinitions"][0].erase("dependsOn");
  b["containerDefinitions"][1]["name"] = "web";
  CHECK(refusal(b) ==
        "InvalidParameterException: containerDefinitions[1].name: \"web\" is used twice");
  b["containerDefinitions"][1]["name"] = "side";
  b["containerDefinitions"][1]["startTimeout"] = 30;
  CHECK(refusal(b) ==
        "InvalidParameterException: containerDefinitions[1].startTimeout: not "
        "supported with dependsOn (berth has no dependency timeout yet)");
}

TEST_CASE("cp model: an account's policy allows more capabilities", "[cp-model]") {
  Account a = alice();
  a.allowed_capabilities = {"NET_ADMIN"};
  json b =
      minimal({{"linuxParameters", {{"capabilities", {{"add", {"NET_ADMIN", "SYS_PTRACE"}}}}}}});
  auto d = parse_task_definition(b, a);
  REQUIRE(d);
  CHECK(d->containers[0].linux_parameters.cap_add ==
        std::vector<std::string>{"NET_ADMIN", "SYS_PTRACE"});
  // The stored form is not checked against a policy again.
  d->revision = 1;
  CHECK(task_definition_from_json(task_definition_json(*d, "r"), a.id));
}

TEST_CASE("cp model: RunTask overrides and tags", "[cp-model]") {
  static constexpr berth::jr::Document doc{"InvalidParameterException", "request"};
  json j = json::parse(R"({"containerOverrides": [{"name": "web", "command": ["echo", "hi"],
      "environment": [{"name": "X", "value": "1"}], "cpu": 128, "memory": 256}],
      "cpu": "0.5 vCPU", "memory": "1GB"})");
  auto o = parse_overrides(berth::jr::Node::root(j, doc));
  REQUIRE(o);
  CHECK(o->cpu == "512");
  CHECK(o->memory == "1024");
  REQUIRE(o->container_overrides.size() == 1);
  CHECK(*o->container_overrides[0].command == std::vector<std::string>{"echo", "hi"});
  CHECK(o->container_overrides[0].memory_mib == 256);

  json bad = json::parse(R"({"containerOverrides": [{"name": "web", "image": "x"}]})");
  auto e = parse_overrides(berth::jr::Node::root(bad, doc));
  REQUIRE_FALSE(e);
  CHECK(e.error().message == "containerOverrides[0].image: unknown field");

  json tags = json::parse(R"([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}])");
  auto t = parse_tags(berth::jr::Node::root(tags, doc));
  REQUIRE_FALSE(t);
  CHECK(t.error().message == "[1].key: \"a\" is given twice");
  CHECK(tags_json({{"k", "v"}}) == json::parse(R"([{"key":"k","value":"v"}])"));
}

TEST_CASE("cp model: the task object and its round trip", "[cp-model]") {
  Task t;
  t.account = "123456789012";
  t.cluster = "default";
  t.id = "0123456789abcdef0123456789abcdef";
  t.family = "web";
  t.revision = 3;
  t.task_definition_arn = task_definition_arn("us-east-1", t.account, "web", 3);
  t.group = "family:web";
  t.started_by = "me";
  t.cpu = "256";
  t.memory = "512";
  t.last_status = TaskStatus::stopped;
  t.desired_status = TaskStatus::stopped;
  t.private_ipv4 = "10.88.0.5";
  t.mac_address = "02:00:0a:58:00:05";
  t.network_interface_id = "eni-0123456789abcdef0";
  t.created_at = from_epoch_seconds(1700000000.123);
  t.started_at = from_epoch_seconds(1700000001.5);
  t.stopped_at = from_epoch_seconds(1700000009);
  t.stop_code = "EssentialContainerExited";
  t.stopped_reason = "Essential container in task exited";
  t.version = 7;
  t.node_ref = "/run/berth/tasks/x";
  t.tags = {{"a", "b"}};
  t.overrides.container_overrides.push_back(
      {"web", std::vector<std::string>{"true"}, {}, {}, {}, {}});
  TaskContainer c;
  c.id = "11111111-2222-4333-8444-555555555555";
  c.name = "web";
  c.image = "busybox";
  c.image_digest = "sha256:abc";
  c.runtime_id = t.id + ".web";
  c.last_status = "STOPPED";
  c.exit_code = 137;
  c.reason = "OutOfMemoryError: Container killed due to memory usage";
  c.network_bindings.push_back({"0.0.0.0", 80, 8080, "tcp"});
  c.cpu = 128;
  c.memory_mib = 256;
  t.containers.push_back(c);

  json j = task_json(t, "us-east-1");
  CHECK(j["taskArn"] ==
        "arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef");
  CHECK(j["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/default");
  CHECK(j["lastStatus"] == "STOPPED");
  CHECK(j["createdAt"] == 1700000000.123);
  CHECK_FALSE(j.contains("pullStartedAt"));
  CHECK(j["attachments"][0]["type"] == "ElasticNetworkInterface");
  CHECK(j["attachments"][0]["details"] ==
        json::parse(R"([{"name":"networkInterfaceId","value":"eni-0123456789abcdef0"},
                        {"name":"macAddress","value":"02:00:0a:58:00:05"},
                        {"name":"privateIPv4Address","value":"10.88.0.5"}])"));
  const json& jc = j["containers"][0];
  CHECK(jc["containerArn"] == "arn:aws:ecs:us-east-1:123456789012:container/default/" + t.id +
                                  "/11111111-2222-4333-8444-555555555555");
  CHECK(jc["cpu"] == "128");
  CHECK(jc["memory"] == "256");
  CHECK(jc["exitCode"] == 137);
  CHECK(jc["networkInterfaces"][0]["privateIpv4Address"] == "10.88.0.5");
  CHECK(jc["networkInterfaces"][0]["attachmentId"] == j["attachments"][0]["id"]);
  CHECK(jc["networkBindings"][0]["hostPort"] == 8080);
  CHECK(j["overrides"]["containerOverrides"][0]["command"] == json::array({"true"}));

  auto back = task_from_json(j, t.account);
  REQUIRE(back);
  CHECK(back->family == "web");
  CHECK(back->revision == 3);
  CHECK(back->node_ref == t.node_ref);
  CHECK(task_json(*back, "us-east-1") == j);

  auto bad = task_from_json(json{{"taskArn", "nope"}}, t.account);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().str() == "stored task: taskArn: \"nope\": not a task ARN");
}

TEST_CASE("cp model: the cluster object and its round trip", "[cp-model]") {
  Cluster c{"123456789012", "prod", "ACTIVE", {{"env", "prod"}}, from_epoch_seconds(1700000000)};
  json j = cluster_json(c, "us-east-1", {3, 1, 0});
  CHECK(j["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/prod");
  CHECK(j["clusterName"] == "prod");
  CHECK(j["runningTasksCount"] == 3);
  CHECK(j["pendingTasksCount"] == 1);
  CHECK(j["activeServicesCount"] == 0);
  CHECK(j["registeredContainerInstancesCount"] == 0);
  auto back = cluster_from_json(j, c.account);
  REQUIRE(back);
  CHECK(cluster_json(*back, "us-east-1", {3, 1, 0}) == j);
}

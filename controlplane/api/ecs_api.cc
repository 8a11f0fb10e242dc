#include "controlplane/api/ecs_api.h"

#include "controlplane/api/service_api.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <set>

#include "common/json.h"
#include "common/json_reader.h"
#include "common/log.h"
#include "controlplane/billing/meter.h"
#include "controlplane/model/arn.h"
#include "controlplane/model/ecs_json.h"
#include "controlplane/model/errors.h"
#include "controlplane/scheduler/json_text.h"

namespace berth::cp {

namespace {

using json = nlohmann::json;

// Request bodies: an error names the field and is an ECS
// InvalidParameterException.
const jr::Document kRequest{"InvalidParameterException", "request"};
const jr::Document kStored{"store", "document"};

constexpr std::array kOperations = {
    "CreateCluster",
    "DescribeClusters",
    "ListClusters",
    "DeleteCluster",
    "RegisterTaskDefinition",
    "DeregisterTaskDefinition",
    "DescribeTaskDefinition",
    "ListTaskDefinitions",
    "ListTaskDefinitionFamilies",
    "RunTask",
    "StopTask",
    "DescribeTasks",
    "ListTasks",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    // controlplane/api/service_api.h
    "CreateService",
    "UpdateService",
    "DeleteService",
    "DescribeServices",
    "ListServices",
};

bool valid_cluster_name(const std::string& n) {
  if (n.empty() || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

bool is_task_id(const std::string& s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

Result<int> read_max_results(const jr::Node& n, int def, int hi) {
  std::optional<int> v;
  BERTH_TRY(jr::read(n, v));
  if (!v) return def;
  if (*v < 1 || *v > hi) {
    return ecs_error(kInvalidParameter, "maxResults must be between 1 and {}, got {}", hi, *v);
  }
  return *v;
}

Result<std::string> read_token(const jr::Node& n) {
  std::string t;
  BERTH_TRY(jr::read(n, t));
  if (t.empty()) return std::string();
  auto plain = decode_token(t);
  if (!plain || plain->empty()) return ecs_error(kInvalidParameter, "Invalid nextToken.");
  return *plain;
}

bool include_tags(const jr::Node& b) {
  std::vector<std::string> include;
  if (!jr::read(b.member("include"), include)) return false;
  return std::find(include.begin(), include.end(), "TAGS") != include.end();
}

json failure_json(const Failure& f) {
  json j = {{"reason", f.reason}};
  if (!f.arn.empty()) j["arn"] = f.arn;
  if (!f.detail.empty()) j["detail"] = f.detail;
  return j;
}

std::vector<std::pair<std::string, std::string>> tag_pairs(const std::vector<Tag>& tags) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& t : tags) out.emplace_back(t.key, t.value);
  return out;
}

bool requires_fargate(const TaskDefinition& d) {
  const auto& rc = d.requires_compatibilities;
  return std::find(rc.begin(), rc.end(), "FARGATE") != rc.end();
}

Result<Cluster> decode_cluster(const ClusterRecord& r) {
  BERTH_ASSIGN(auto j, parse_json(r.doc, "stored cluster"));
  return cluster_from_json(j, r.account);
}

Result<TaskDefinition> decode_definition(const TaskDefinitionRecord& r) {
  BERTH_ASSIGN(auto j, parse_json(r.doc, "stored task definition"));
  return task_definition_from_json(j, r.account);
}

}  // namespace

// ---------------------------------------------------------------------------
// Shapes and tokens.

HttpResponse json_response(int status, const json& body, std::string_view content_type) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = std::string(content_type);
  r.body = dump_json(body);
  return r;
}

HttpResponse error_response(const Error& e, bool native) {
  std::string type = e.step;
  std::string message = e.message;
  int status = 400;
  if (!is_ecs_error(e)) {
    // An internal failure: logged with its detail, never shown raw.
    log::error("request failed: {}", e.str());
    type = std::string(kServerException);
    message = "Internal server error.";
    status = 500;
  } else if (type == kServerException) {
    status = 500;
  } else if (native && (type == kResourceNotFound || type == kClusterNotFound)) {
    status = 404;
  } else if (type == kAccessDenied || type == "UnrecognizedClientException" ||
             type == "InvalidSignatureException") {
    status = 403;
  }
  return json_response(status, {{"__type", type}, {"message", message}},
                       native ? std::string_view("application/json") : kAmzJson);
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
}

std::string encode_token(const std::string& plain) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : plain) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kB64[(buf >> bits) & 63];
    }
  }
  if (bits > 0) out += kB64[(buf << (6 - bits)) & 63];
  return out;
}

std::optional<std::string> decode_token(const std::string& token) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : token) {
    const char* p = std::strchr(kB64, c);
    if (c == '\0' || !p) return std::nullopt;
    buf = (buf << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xff);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------

EcsApi::EcsApi(Store& store, TaskManager& tasks, EcsApiOptions opts, Meter* meter)
    : store_(store), tasks_(tasks), opts_(std::move(opts)), meter_(meter) {}

void EcsApi::add_billing(json& out, const Task& t) {
  if (meter_ == nullptr || !out.is_object()) return;
  auto bill = meter_->bill(t);
  if (!bill) {
    log::warn("berthBilling of task {}: {}", t.id, bill.error().str());
    return;
  }
  out["berthBilling"] = task_bill_json(*bill);
}

bool EcsApi::known_operation(std::string_view op) {
  return std::find(kOperations.begin(), kOperations.end(), op) != kOperations.end();
}

Account EcsApi::account_of(const std::string& id) const {
  if (opts_.account) {
    if (auto a = opts_.account(id)) return *a;
  }
  Account a;
  a.id = id;
  return a;
}

Result<json> EcsApi::call(const std::string& account, std::string_view op,
                          const std::string& body) {
  json j = json::object();
  if (body.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto parsed = parse_json(body, "request body");
    if (!parsed) return ecs_error("SerializationException", "{}", parsed.error().message);
    j = std::move(*parsed);
  }
  if (!j.is_object())
    return ecs_error("SerializationException", "request body: expected a JSON object");
  if (services_ && ServiceApi::known_operation(op)) return services_->call(account, op, body);
  jr::Node b = jr::Node::root(j, kRequest);
  if (op == "CreateCluster") return create_cluster(account, b);
  if (op == "DescribeClusters") return describe_clusters(account, b);
  if (op == "ListClusters") return list_clusters(account, b);
  if (op == "DeleteCluster") return delete_cluster(account, b);
  if (op == "RegisterTaskDefinition") return register_task_definition(account, j);
  if (op == "DeregisterTaskDefinition") return deregister_task_definition(account, b);
  if (op == "DescribeTaskDefinition") return describe_task_definition(account, b);
  if (op == "ListTaskDefinitions") return list_task_definitions(account, b);
  if (op == "ListTaskDefinitionFamilies") return list_task_definition_families(account, b);
  if (op == "RunTask") return run_task(account, b);
  if (op == "StopTask") return stop_task(account, b);
  if (op == "DescribeTasks") return describe_tasks(account, b);
  if (op == "ListTasks") return list_tasks(account, b);
  if (op == "TagResource") return tag_resource(account, b);
  if (op == "UntagResource") return untag_resource(account, b);
  if (op == "ListTagsForResource") return list_tags_for_resource(account, b);
  return ecs_error("UnknownOperationException", "Unknown operation {}", op);
}

// ---------------------------------------------------------------------------
// Clusters.

Result<Cluster> EcsApi::cluster(const std::string& account, const std::string& ref,
                                bool create_default) {
  std::string name = ref.empty() ? "default" : ref;
  if (name.starts_with("arn:")) {
    auto arn = parse_arn(name);
    if (!arn || arn->type != "cluster" || arn->account != account) {
      return ecs_error(kClusterNotFound, "Cluster not found.");
    }
    name = arn->rest;
  }
  BERTH_ASSIGN(auto rec, store_.get_cluster(account, name));
  if (rec && rec->status == "ACTIVE") return decode_cluster(*rec);
  if (name == "default" && create_default) {
    Cluster c;
    c.account = account;
    c.name = name;
    c.created_at = tasks_.now();
    BERTH_TRY(
        store_.put_cluster({account, name, "ACTIVE", dump_json(cluster_json(c, region(), {}))}));
    return c;
  }
  if (rec) return ecs_error(kClusterNotFound, "The referenced cluster was inactive.");
  return ecs_error(kClusterNotFound, "Cluster not found.");
}

Result<std::vector<Tag>> EcsApi::tags_of(const std::string& account, const std::string& arn) {
  BERTH_ASSIGN(auto pairs, store_.tags(account, arn));
  std::vector<Tag> out;
  for (auto& [k, v] : pairs) out.push_back({k, v});
  return out;
}

Result<json> EcsApi::cluster_out(const Cluster& c, bool tags) {
  Cluster copy = c;
  if (tags) {
    BERTH_ASSIGN(copy.tags, tags_of(c.account, cluster_arn(region(), c.account, c.name)));
  } else {
    copy.tags.clear();
  }
  TaskCounts n = tasks_.counts(c.account, c.name);
  BERTH_ASSIGN(int active, active_services(c));
  return cluster_json(copy, region(), ClusterCounts{n.running, n.pending, active});
}

Result<int> EcsApi::active_services(const Cluster& c) {
  ServiceQuery q;
  q.account = c.account;
  q.cluster = c.name;
  q.limit = 1000;
  int n = 0;
  for (;;) {
    bool more = false;
    BERTH_ASSIGN(auto recs, store_.list_services(q, &more));
    for (const auto& r : recs) n += r.status == "ACTIVE";
    if (!more || recs.empty()) return n;
    q.after_cluster = recs.back().cluster;
    q.after_name = recs.back().name;
  }
}

Result<json> EcsApi::create_cluster(const std::string& a, const jr::Node& b) {
  std::string name = "default";
  BERTH_TRY(jr::read(b.member("clusterName"), name));
  if (!valid_cluster_name(name)) {
    return ecs_error(kInvalidParameter,
                     "Cluster name must be 1-255 letters, numbers, hyphens and underscores: {:?}",
                     name);
  }
  std::vector<Tag> tags;
  if (auto t = b.member("tags"); t.present()) {
    BERTH_ASSIGN(tags, parse_tags(t));
  }
  BERTH_ASSIGN(auto rec, store_.get_cluster(a, name));
  Cluster c;
  if (rec && rec->status == "ACTIVE") {
    // Idempotent, as ECS: the existing cluster.
    BERTH_ASSIGN(c, decode_cluster(*rec));
  } else {
    c.account = a;
    c.name = name;
    c.created_at = tasks_.now();
    BERTH_TRY(store_.put_cluster({a, name, "ACTIVE", dump_json(cluster_json(c, region(), {}))}));
  }
  std::string arn = cluster_arn(region(), a, name);
  if (!tags.empty()) BERTH_TRY(store_.tag(a, arn, tag_pairs(tags)));
  BERTH_ASSIGN(auto out, cluster_out(c, true));
  return json{{"cluster", out}};
}

Result<json> EcsApi::describe_clusters(const std::string& a, const jr::Node& b) {
  std::vector<std::string> refs;
  BERTH_TRY(jr::read(b.member("clusters"), refs));
  if (refs.empty()) refs.push_back("default");
  bool tags = include_tags(b);
  json clusters = json::array(), failures = json::array();
  for (const auto& ref : refs) {
    std::string name = ref;
    bool mine = true;
    if (ref.starts_with("arn:")) {
      auto arn = parse_arn(ref);
      mine = arn && arn->type == "cluster" && arn->account == a;
      if (arn) name = arn->rest;
    }
    std::optional<ClusterRecord> rec;
    if (mine) {
      BERTH_ASSIGN(rec, store_.get_cluster(a, name));
    }
    if (!rec) {
      failures.push_back(failure_json(
          {ref.starts_with("arn:") ? ref : cluster_arn(region(), a, name), "MISSING", ""}));
      continue;
    }
    BERTH_ASSIGN(Cluster c, decode_cluster(*rec));
    c.status = rec->status;
    BERTH_ASSIGN(auto out, cluster_out(c, tags));
    clusters.push_back(std::move(out));
  }
  return json{{"clusters", clusters}, {"failures", failures}};
}

Result<json> EcsApi::list_clusters(const std::string& a, const jr::Node& b) {
  BERTH_ASSIGN(int max, read_max_results(b.member("maxResults"), 100, 100));
  BERTH_ASSIGN(std::string after, read_token(b.member("nextToken")));
  BERTH_ASSIGN(auto recs, store_.list_clusters(a));
  std::sort(recs.begin(), recs.end(), [](const auto& x, const auto& y) { return x.name < y.name; });
  json arns = json::array();
  std::string last;
  bool more = false;
  for (const auto& r : recs) {
    if (r.status != "ACTIVE" || (!after.empty() && r.name <= after)) continue;
    if (static_cast<int>(arns.size()) == max) {
      more = true;
      break;
    }
    arns.push_back(cluster_arn(region(), a, r.name));
    last = r.name;
  }
  json out = {{"clusterArns", arns}};
  if (more) out["nextToken"] = encode_token(last);
  return out;
}

Result<json> EcsApi::delete_cluster(const std::string& a, const jr::Node& b) {
  std::string ref;
  BERTH_TRY(jr::read_required(b.member("cluster"), ref));
  BERTH_ASSIGN(Cluster c, cluster(a, ref, false));
  TaskCounts n = tasks_.counts(a, c.name);
  if (n.running + n.pending + n.other > 0) {
    return ecs_error("ClusterContainsTasksException",
                     "The Cluster cannot be deleted while Tasks are active.");
  }
  c.status = "INACTIVE";
  BERTH_TRY(store_.put_cluster({a, c.name, "INACTIVE", dump_json(cluster_json(c, region(), {}))}));
  BERTH_ASSIGN(auto out, cluster_out(c, false));
  return json{{"cluster", out}};
}

// ---------------------------------------------------------------------------
// Task definitions.

// A definition that requires FARGATE must have a size from the table, as
// ECS checks at registration.
Result<void> EcsApi::check_definition(const TaskDefinition& d) const {
  if (!requires_fargate(d)) return {};
  return check_fargate_size(d.cpu, d.memory);
}

Result<TaskDefinition> EcsApi::register_definition(const std::string& account, TaskDefinition d) {
  d.account = account;
  d.status = "ACTIVE";
  d.registered_at = tasks_.now();
  std::string family = d.family;
  BERTH_ASSIGN(auto rec, store_.add_task_definition(
                             account, family, [&](int revision) -> Result<std::string> {
                               d.revision = revision;
                               return dump_json(task_definition_json(d, region()));
                             }));
  d.revision = rec.revision;
  if (!d.tags.empty()) {
    BERTH_TRY(store_.tag(account, task_definition_arn(region(), account, d.family, d.revision),
                         tag_pairs(d.tags)));
  }
  return d;
}

Result<json> EcsApi::register_task_definition(const std::string& a, const json& j) {
  BERTH_ASSIGN(TaskDefinition d, parse_task_definition(j, account_of(a)));
  BERTH_TRY(check_definition(d));
  BERTH_ASSIGN(d, register_definition(a, std::move(d)));
  return json{{"taskDefinition", task_definition_json(d, region())}, {"tags", tags_json(d.tags)}};
}

Result<TaskDefinition> EcsApi::definition(const std::string& account, const std::string& ref,
                                          std::string_view not_found) {
  std::string spec = ref;
  if (ref.starts_with("arn:")) {
    auto arn = parse_arn(ref);
    if (!arn || arn->type != "task-definition" || arn->account != account) {
      return ecs_error(kClientException, "{}", not_found);
    }
    spec = arn->rest;
  }
  std::string family = spec;
  int revision = 0;
  if (auto colon = spec.find(':'); colon != std::string::npos) {
    family = spec.substr(0, colon);
    std::string rev = spec.substr(colon + 1);
    revision = -1;
    if (!rev.empty() && rev.size() < 10 && std::all_of(rev.begin(), rev.end(), ::isdigit)) {
      revision = std::stoi(rev);
    }
    if (revision < 1)
      return ecs_error(kClientException, "Invalid revision number. Number: {}", rev);
  }
  if (family.empty()) return ecs_error(kClientException, "{}", not_found);
  BERTH_ASSIGN(auto rec, store_.get_task_definition(account, family, revision));
  if (!rec) return ecs_error(kClientException, "{}", not_found);
  BERTH_ASSIGN(TaskDefinition d, decode_definition(*rec));
  d.status = rec->status;
  d.revision = rec->revision;
  return d;
}

Result<json> EcsApi::deregister_task_definition(const std::string& a, const jr::Node& b) {
  std::string ref;
  BERTH_TRY(jr::read_required(b.member("taskDefinition"), ref));
  std::string spec = ref.starts_with("arn:") ? ref.substr(ref.rfind('/') + 1) : ref;
  if (spec.find(':') == std::string::npos) {
    return ecs_error(kInvalidParameter,
                     "Invalid revision number. A revision must be given: family:revision.");
  }
  BERTH_ASSIGN(TaskDefinition d,
               definition(a, ref, "The specified task definition does not exist."));
  if (d.status != "INACTIVE") {
    d.status = "INACTIVE";
    d.deregistered_at = tasks_.now();
    BERTH_TRY(store_.update_task_definition(
        {a, d.family, d.revision, "INACTIVE", dump_json(task_definition_json(d, region()))}));
  }
  return json{{"taskDefinition", task_definition_json(d, region())}};
}

Result<json> EcsApi::describe_task_definition(const std::string& a, const jr::Node& b) {
  std::string ref;
  BERTH_TRY(jr::read_required(b.member("taskDefinition"), ref));
  BERTH_ASSIGN(TaskDefinition d, definition(a, ref, "Unable to describe task definition."));
  json out = {{"taskDefinition", task_definition_json(d, region())}};
  if (include_tags(b)) {
    BERTH_ASSIGN(auto tags, tags_of(a, task_definition_arn(region(), a, d.family, d.revision)));
    out["tags"] = tags_json(tags);
  }
  return out;
}

Result<json> EcsApi::list_task_definitions(const std::string& a, const jr::Node& b) {
  DefinitionQuery q;
  q.account = a;
  std::string family, status = "ACTIVE", sort = "ASC";
  BERTH_TRY(jr::read(b.member("familyPrefix"), family));
  BERTH_TRY(jr::read(b.member("status"), status));
  BERTH_TRY(jr::read(b.member("sort"), sort));
  if (status != "ACTIVE" && status != "INACTIVE") {
    return ecs_error(kInvalidParameter, "status must be ACTIVE or INACTIVE, got {:?}", status);
  }
  if (sort != "ASC" && sort != "DESC") {
    return ecs_error(kInvalidParameter, "sort must be ASC or DESC, got {:?}", sort);
  }
  BERTH_ASSIGN(int max, read_max_results(b.member("maxResults"), 100, 100));
  BERTH_ASSIGN(std::string token, read_token(b.member("nextToken")));
  q.family_prefix = family;
  q.status = status;
  q.descending = sort == "DESC";
  if (!token.empty()) {
    auto colon = token.rfind(':');
    if (colon == std::string::npos) return ecs_error(kInvalidParameter, "Invalid nextToken.");
    q.after_family = token.substr(0, colon);
    q.after_revision = std::atoi(token.c_str() + colon + 1);
  }
  json arns = json::array();
  bool more = false;
  std::string last;
  // The store matches a prefix; ECS's familyPrefix is the whole family.
  for (;;) {
    q.limit = max - static_cast<int>(arns.size());
    bool page_more = false;
    BERTH_ASSIGN(auto recs, store_.list_task_definitions(q, &page_more));
    for (const auto& r : recs) {
      q.after_family = r.family;
      q.after_revision = r.revision;
      if (!family.empty() && r.family != family) continue;
      arns.push_back(task_definition_arn(region(), a, r.family, r.revision));
      last = fmt::format("{}:{}", r.family, r.revision);
    }
    if (!page_more || recs.empty()) break;
    if (static_cast<int>(arns.size()) >= max) {
      more = true;
      break;
    }
  }
  json out = {{"taskDefinitionArns", arns}};
  if (more) out["nextToken"] = encode_token(last);
  return out;
}

Result<json> EcsApi::list_task_definition_families(const std::string& a, const jr::Node& b) {
  DefinitionQuery q;
  q.account = a;
  std::string status = "ACTIVE";
  BERTH_TRY(jr::read(b.member("familyPrefix"), q.family_prefix));
  BERTH_TRY(jr::read(b.member("status"), status));
  if (status != "ACTIVE" && status != "INACTIVE" && status != "ALL") {
    return ecs_error(kInvalidParameter, "status must be ACTIVE, INACTIVE or ALL, got {:?}", status);
  }
  if (status != "ALL") q.status = status;
  BERTH_ASSIGN(q.limit, read_max_results(b.member("maxResults"), 100, 100));
  BERTH_ASSIGN(q.after_family, read_token(b.member("nextToken")));
  bool more = false;
  BERTH_ASSIGN(auto families, store_.list_families(q, &more));
  json out = {{"families", families}};
  if (more && !families.empty()) out["nextToken"] = encode_token(families.back());
  return out;
}

// ---------------------------------------------------------------------------
// Tasks.

Result<std::optional<Task>> EcsApi::find_task(const std::string& account, const std::string& ref,
                                              const std::optional<std::string>& cluster) {
  std::string id = ref;
  std::optional<std::string> arn_cluster;
  if (ref.starts_with("arn:")) {
    auto arn = parse_arn(ref);
    if (!arn || arn->type != "task" || arn->account != account) return std::optional<Task>{};
    auto slash = arn->rest.rfind('/');
    id = slash == std::string::npos ? arn->rest : arn->rest.substr(slash + 1);
    if (slash != std::string::npos) arn_cluster = arn->rest.substr(0, slash);
  }
  if (!is_task_id(id)) return std::optional<Task>{};
  BERTH_ASSIGN(auto t, tasks_.get_task(account, id));
  if (!t) return t;
  if ((cluster && t->cluster != *cluster) || (arn_cluster && t->cluster != *arn_cluster)) {
    return std::optional<Task>{};
  }
  return t;
}

Result<json> EcsApi::task_out(const Task& t, bool tags) {
  Task copy = t;
  if (tags) {
    BERTH_ASSIGN(copy.tags, tags_of(t.account, task_arn(region(), t.account, t.cluster, t.id)));
  } else {
    copy.tags.clear();
  }
  return task_json(copy, region());
}

Result<RunTaskResult> EcsApi::run(const std::string& account, const Cluster& c,
                                  const TaskDefinition& d, RunTaskRequest req, bool fargate_check) {
  if (d.status != "ACTIVE") {
    return ecs_error(kClientException, "TaskDefinition is inactive");
  }
  if (fargate_check || requires_fargate(d)) {
    BERTH_TRY(check_fargate_size(req.overrides.cpu.empty() ? d.cpu : req.overrides.cpu,
                                 req.overrides.memory.empty() ? d.memory : req.overrides.memory));
  }
  BERTH_ASSIGN(RunTaskResult r, tasks_.run_task(account, c.name, d, req));
  for (const auto& t : r.tasks) {
    if (t.tags.empty()) continue;
    BERTH_TRY(store_.tag(account, task_arn(region(), account, t.cluster, t.id), tag_pairs(t.tags)));
  }
  return r;
}

Result<json> EcsApi::run_task(const std::string& a, const jr::Node& b) {
  std::string cluster_ref, def_ref, launch_type;
  RunTaskRequest req;
  BERTH_TRY(jr::read(b.member("cluster"), cluster_ref));
  BERTH_TRY(jr::read_required(b.member("taskDefinition"), def_ref));
  BERTH_TRY(jr::read(b.member("count"), req.count));
  BERTH_TRY(jr::read(b.member("launchType"), launch_type));
  BERTH_TRY(jr::read(b.member("startedBy"), req.started_by));
  BERTH_TRY(jr::read(b.member("group"), req.group));
  if (req.count < 1 || req.count > 10) {
    return ecs_error(kInvalidParameter, "count must be between 1 and 10, got {}", req.count);
  }
  if (req.started_by.size() > 128) {
    return ecs_error(kInvalidParameter, "startedBy must be at most 128 characters");
  }
  bool explicit_fargate = !launch_type.empty();
  if (auto cps = b.member("capacityProviderStrategy"); cps.present()) {
    if (!launch_type.empty()) {
      return ecs_error(
          kInvalidParameter,
          "Specifying both a launch type and capacity provider strategy is not supported.");
    }
    std::vector<std::string> providers;
    BERTH_TRY(jr::read_array(cps, providers, [](const jr::Node& e) -> Result<std::string> {
      BERTH_TRY(jr::expect_object(e));
      std::string p;
      BERTH_TRY(jr::read_required(e.member("capacityProvider"), p));
      return p;
    }));
    if (!providers.empty()) {
      launch_type = providers.front();
      explicit_fargate = true;
    }
  }
  if (launch_type.empty()) launch_type = "FARGATE";
  if (launch_type != "FARGATE" && launch_type != "FARGATE_SPOT") {
    return ecs_error(kInvalidParameter,
                     "launchType {} is not supported: berth runs FARGATE and FARGATE_SPOT tasks",
                     launch_type);
  }
  req.launch_type = launch_type;
  if (auto o = b.member("overrides"); o.present()) {
    BERTH_ASSIGN(req.overrides, parse_overrides(o));
  }
  if (auto t = b.member("tags"); t.present()) {
    BERTH_ASSIGN(req.tags, parse_tags(t));
  }
  BERTH_ASSIGN(Cluster c, cluster(a, cluster_ref, true));
  BERTH_ASSIGN(TaskDefinition d, definition(a, def_ref, "TaskDefinition not found."));
  BERTH_ASSIGN(RunTaskResult r, run(a, c, d, std::move(req), explicit_fargate));
  json tasks = json::array(), failures = json::array();
  for (const auto& t : r.tasks) tasks.push_back(task_json(t, region()));
  for (const auto& f : r.failures) failures.push_back(failure_json(f));
  return json{{"tasks", tasks}, {"failures", failures}};
}

Result<json> EcsApi::stop_task(const std::string& a, const jr::Node& b) {
  std::string cluster_ref, ref, reason;
  BERTH_TRY(jr::read(b.member("cluster"), cluster_ref));
  BERTH_TRY(jr::read_required(b.member("task"), ref));
  BERTH_TRY(jr::read(b.member("reason"), reason));
  if (reason.size() > 255)
    return ecs_error(kInvalidParameter, "reason must be at most 255 characters");
  BERTH_ASSIGN(Cluster c, cluster(a, cluster_ref, false));
  BERTH_ASSIGN(auto t, find_task(a, ref, c.name));
  if (!t) return ecs_error(kInvalidParameter, "The referenced task was not found.");
  BERTH_ASSIGN(Task stopped, tasks_.stop_task(a, c.name, t->id, reason));
  BERTH_ASSIGN(auto out, task_out(stopped, false));
  return json{{"task", out}};
}

Result<json> EcsApi::describe_tasks(const std::string& a, const jr::Node& b) {
  std::string cluster_ref;
  std::vector<std::string> refs;
  BERTH_TRY(jr::read(b.member("cluster"), cluster_ref));
  if (!b.member("tasks").present()) return jr::fail(b.member("tasks"), "required field is missing");
  BERTH_TRY(jr::read(b.member("tasks"), refs));
  if (refs.empty() || refs.size() > 100) {
    return ecs_error(kInvalidParameter, "tasks must name 1 to 100 tasks, got {}", refs.size());
  }
  BERTH_ASSIGN(Cluster c, cluster(a, cluster_ref, false));
  bool tags = include_tags(b);
  json tasks = json::array(), failures = json::array();
  for (const auto& ref : refs) {
    BERTH_ASSIGN(auto t, find_task(a, ref, c.name));
    if (!t) {
      std::string arn = ref.starts_with("arn:") ? ref : task_arn(region(), a, c.name, ref);
      failures.push_back(failure_json({arn, "MISSING", ""}));
      continue;
    }
    BERTH_ASSIGN(auto out, task_out(*t, tags));
    add_billing(out, *t);
    tasks.push_back(std::move(out));
  }
  return json{{"tasks", tasks}, {"failures", failures}};
}

Result<json> EcsApi::list_tasks(const std::string& a, const jr::Node& b) {
  std::string cluster_ref, desired = "RUNNING", service, launch_type;
  TaskQuery q;
  q.account = a;
  BERTH_TRY(jr::read(b.member("cluster"), cluster_ref));
  BERTH_TRY(jr::read(b.member("family"), q.family));
  BERTH_TRY(jr::read(b.member("startedBy"), q.started_by));
  BERTH_TRY(jr::read(b.member("serviceName"), service));
  BERTH_TRY(jr::read(b.member("desiredStatus"), desired));
  BERTH_TRY(jr::read(b.member("launchType"), launch_type));
  if (desired != "RUNNING" && desired != "PENDING" && desired != "STOPPED") {
    return ecs_error(kInvalidParameter,
                     "desiredStatus must be RUNNING, PENDING or STOPPED, got {:?}", desired);
  }
  BERTH_ASSIGN(int max, read_max_results(b.member("maxResults"), 100, 100));
  BERTH_ASSIGN(q.after_id, read_token(b.member("nextToken")));
  BERTH_ASSIGN(Cluster c, cluster(a, cluster_ref, false));
  q.cluster = c.name;
  json out = {{"taskArns", json::array()}};
  if (!service.empty()) {
    // A service's tasks are its group (the supervisor launches them so).
    if (!services_) return ecs_error(kServiceNotFound, "Service not found.");
    BERTH_ASSIGN(Service svc, services_->find(a, c, service));
    q.group = "service:" + svc.name;
  }
  // PENDING: desired RUNNING, not yet running (filtered below).
  q.desired_status = desired == "STOPPED" ? "STOPPED" : "RUNNING";
  std::string last;
  bool more = false;
  for (;;) {
    q.limit = max - static_cast<int>(out["taskArns"].size());
    bool page_more = false;
    BERTH_ASSIGN(auto recs, store_.list_tasks(q, &page_more));
    for (const auto& r : recs) {
      q.after_id = r.id;
      if (desired == "PENDING") {
        auto s = parse_task_status(r.last_status);
        if (!s || !status_before(*s, TaskStatus::running)) continue;
      }
      if (!launch_type.empty()) {
        auto t = tasks_.from_record(r);
        if (!t || t->launch_type != launch_type) continue;
      }
      out["taskArns"].push_back(task_arn(region(), a, r.cluster, r.id));
      last = r.id;
    }
    if (!page_more || recs.empty()) break;
    if (static_cast<int>(out["taskArns"].size()) >= max) {
      more = true;
      break;
    }
  }
  if (more) out["nextToken"] = encode_token(last);
  return out;
}

// ---------------------------------------------------------------------------
// Tags.

Result<void> EcsApi::check_resource(const std::string& account, const std::string& ref) {
  auto arn = parse_arn(ref);
  if (!arn) return ecs_error(kInvalidParameter, "resourceArn: not an ECS ARN: {:?}", ref);
  if (arn->account != account) {
    return ecs_error(kInvalidParameter, "The specified resource was not found: {}", ref);
  }
  if (arn->type == "cluster") {
    BERTH_TRY(cluster(account, ref, false));
    return {};
  }
  if (arn->type == "task-definition") {
    BERTH_TRY(definition(account, ref, "The specified task definition does not exist."));
    return {};
  }
  if (arn->type == "task") {
    BERTH_ASSIGN(auto t, find_task(account, ref, std::nullopt));
    if (!t) return ecs_error(kInvalidParameter, "The specified task was not found: {}", ref);
    return {};
  }
  return ecs_error(kInvalidParameter, "resourceArn: tags on {} resources are not supported",
                   arn->type);
}

Result<json> EcsApi::tag_resource(const std::string& a, const jr::Node& b) {
  std::string arn;
  BERTH_TRY(jr::read_required(b.member("resourceArn"), arn));
  if (!b.member("tags").present()) return jr::fail(b.member("tags"), "required field is missing");
  BERTH_ASSIGN(auto tags, parse_tags(b.member("tags")));
  BERTH_TRY(check_resource(a, arn));
  BERTH_TRY(store_.tag(a, arn, tag_pairs(tags)));
  return json::object();
}

Result<json> EcsApi::untag_resource(const std::string& a, const jr::Node& b) {
  std::string arn;
  std::vector<std::string> keys;
  BERTH_TRY(jr::read_required(b.member("resourceArn"), arn));
  BERTH_TRY(jr::read_required(b.member("tagKeys"), keys));
  BERTH_TRY(check_resource(a, arn));
  BERTH_TRY(store_.untag(a, arn, keys));
  return json::object();
}

Result<json> EcsApi::list_tags_for_resource(const std::string& a, const jr::Node& b) {
  std::string arn;
  BERTH_TRY(jr::read_required(b.member("resourceArn"), arn));
  BERTH_TRY(check_resource(a, arn));
  BERTH_ASSIGN(auto tags, tags_of(a, arn));
  return json{{"tags", tags_json(tags)}};
}

}  // namespace berth::cp

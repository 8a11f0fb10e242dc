#!/usr/bin/env python3
"""boto3 against a running berthd's TCP listener: a list_tasks paginator
(maxResults=1 over 3 tasks), the tasks_running / tasks_stopped waiters,
describe_tasks of an unknown id (failures[0].reason == "MISSING"), and
client errors raised as botocore ClientError with the ECS error code.

Environment:
  BERTH_ENDPOINT      http://127.0.0.1:PORT (required)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   an account's key (required)
  AWS_DEFAULT_REGION  default us-east-1
  BERTH_TEST_IMAGE    default busybox:latest
Exit status 0 when every check passed; otherwise 1 with "boto3_flow: FAIL: ...".
"""
import os
import sys
import uuid

from botocore.exceptions import WaiterError

# The shared helpers next to this file (no __pycache__ left in the tree).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from boto3_lib import (WAIT, clean_up, client, definition, expect_client_error, expect_eq, fail,  # noqa: E402
                       step)


def check_paginator(ecs, cluster, arns):
    step("list_tasks paginator, maxResults=1")
    pages = list(ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, PaginationConfig={"PageSize": 1}))
    listed = [a for p in pages for a in p["taskArns"]]
    for i, p in enumerate(pages):
        if len(p["taskArns"]) > 1:
            fail(f"page {i} has {len(p['taskArns'])} tasks with maxResults=1")
    if len(pages) < len(arns):
        fail(f"{len(pages)} pages for {len(arns)} tasks with maxResults=1")
    expect_eq("paginated task ARNs", sorted(listed), sorted(arns))
    expect_eq("no duplicates across pages", len(listed), len(set(listed)))


def check_errors(ecs, suffix):
    step("client errors")
    expect_client_error("describe_task_definition of an unknown family", "ClientException",
                        ecs.describe_task_definition, taskDefinition=f"no-such-{suffix}")
    expect_client_error("list_tasks on an unknown cluster", "ClusterNotFoundException",
                        ecs.list_tasks, cluster=f"no-such-{suffix}")
    bad = definition(f"bad-{suffix}", "busybox:latest", "true")
    bad["cpu"] = "300"
    e = expect_client_error("register with an invalid cpu", "ClientException",
                            ecs.register_task_definition, **bad)
    expect_eq("invalid cpu message", e.response["Error"]["Message"],
              "Invalid 'cpu' setting for task.")
    clusters = ecs.describe_clusters(clusters=[f"no-such-{suffix}"])
    expect_eq("describe_clusters unknown: reason", clusters["failures"][0]["reason"], "MISSING")


def main():
    ecs = client()
    image = os.environ.get("BERTH_TEST_IMAGE", "busybox:latest")
    suffix = uuid.uuid4().hex[:10]
    cluster = f"boto3-{suffix}"
    family = f"boto3-flow-{suffix}"

    step(f"create_cluster {cluster}, register_task_definition {family}")
    ecs.create_cluster(clusterName=cluster)
    reg = ecs.register_task_definition(**definition(family, image, "exec sleep 600"))
    expect_eq("revision", reg["taskDefinition"]["revision"], 1)

    step("run_task count=3")
    run = ecs.run_task(cluster=cluster, taskDefinition=family, count=3, startedBy="boto3-flow")
    expect_eq("run_task failures", run["failures"], [])
    arns = [t["taskArn"] for t in run["tasks"]]
    expect_eq("tasks started", len(arns), 3)

    step("waiter tasks_running")
    try:
        ecs.get_waiter("tasks_running").wait(cluster=cluster, tasks=arns, WaiterConfig=WAIT)
    except WaiterError as e:
        fail(f"tasks_running: {e}")

    check_paginator(ecs, cluster, arns)

    step("describe_tasks with an unknown id")
    unknown = uuid.uuid4().hex
    d = ecs.describe_tasks(cluster=cluster, tasks=[arns[0], unknown])
    expect_eq("described tasks", [t["taskArn"] for t in d["tasks"]], [arns[0]])
    expect_eq("failures", len(d["failures"]), 1)
    expect_eq("failures[0].reason", d["failures"][0]["reason"], "MISSING")
    if unknown not in d["failures"][0].get("arn", ""):
        fail(f"failures[0].arn {d['failures'][0].get('arn')!r} does not name {unknown}")

    step("stop_task x3, waiter tasks_stopped")
    for arn in arns:
        t = ecs.stop_task(cluster=cluster, task=arn, reason="boto3 flow")["task"]
        expect_eq("desiredStatus after stop", t["desiredStatus"], "STOPPED")
    try:
        ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=arns, WaiterConfig=WAIT)
    except WaiterError as e:
        fail(f"tasks_stopped: {e}")
    d = ecs.describe_tasks(cluster=cluster, tasks=arns)
    for t in d["tasks"]:
        expect_eq("lastStatus", t["lastStatus"], "STOPPED")
        expect_eq("stopCode", t.get("stopCode"), "UserInitiated")
        expect_eq("stoppedReason", t.get("stoppedReason"), "boto3 flow")
    expect_eq("running after stop", ecs.list_tasks(cluster=cluster)["taskArns"], [])

    check_errors(ecs, suffix)

    clean_up(ecs, cluster, family)


if __name__ == "__main__":
    main()

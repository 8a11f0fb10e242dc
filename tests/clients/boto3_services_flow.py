#!/usr/bin/env python3
"""ECS services with boto3 against a running berthd's TCP listener:
create_service, the services_stable waiter, describe_services and a
list_services paginator, update_service (scale to 3, services_stable
again, then to 0), delete_service and the services_inactive waiter,
describe_services of an unknown service (failures[0].reason == "MISSING")
and ServiceNotFoundException for update_service of one.

Environment:
  BERTH_ENDPOINT      http://127.0.0.1:PORT (required)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   an account's key (required)
  AWS_DEFAULT_REGION  default us-east-1
  BERTH_TEST_IMAGE    default busybox:latest
Exit status 0 when every check passed; otherwise 1 with
"boto3_services_flow: FAIL: ...".
"""
import os
import sys
import time
import uuid

from botocore.exceptions import ClientError, WaiterError

# The shared helpers next to this file (no __pycache__ left in the tree).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from boto3_lib import (WAIT, clean_up, client, definition, expect_eq, fail,  # noqa: E402
                       set_flow, step)

SLEEPER = "trap 'exit 143' TERM; sleep 3600 & wait"


def wait(ecs, name, cluster, service):
    try:
        ecs.get_waiter(name).wait(cluster=cluster, services=[service], WaiterConfig=WAIT)
    except WaiterError as e:
        d = ecs.describe_services(cluster=cluster, services=[service])
        fail(f"{name}: {e}; service: {d.get('services')}")


def main():
    set_flow("boto3_services_flow")
    ecs = client()
    image = os.environ.get("BERTH_TEST_IMAGE", "busybox:latest")
    suffix = uuid.uuid4().hex[:10]
    cluster = f"boto3svc-{suffix}"
    family = f"boto3svc-{suffix}"
    service = f"svc-{suffix}"

    step(f"create_cluster {cluster}, register_task_definition {family}")
    ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(**definition(family, image, SLEEPER))

    created = False
    try:
        step(f"create_service {service} desiredCount=2")
        s = ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=family,
                               desiredCount=2, launchType="FARGATE")["service"]
        created = True
        expect_eq("status", s["status"], "ACTIVE")
        expect_eq("desiredCount", s["desiredCount"], 2)
        expect_eq("deployments", len(s["deployments"]), 1)

        step("waiter services_stable")
        wait(ecs, "services_stable", cluster, service)
        # The waiter wants runningCount == desiredCount and one deployment;
        # the rollout completes once the tasks have stayed healthy for
        # [services] stable_seconds.
        for _ in range(120):
            d = ecs.describe_services(cluster=cluster, services=[service])
            if d["services"] and d["services"][0]["deployments"][0]["rolloutState"] == "COMPLETED":
                break
            time.sleep(0.5)
        expect_eq("failures", d["failures"], [])
        s = d["services"][0]
        expect_eq("runningCount", s["runningCount"], 2)
        expect_eq("rolloutState", s["deployments"][0]["rolloutState"], "COMPLETED")
        messages = [e["message"] for e in s["events"]]
        if f"(service {service}) has reached a steady state." not in messages:
            fail(f"no steady-state event in {messages}")
        tasks = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
        expect_eq("tasks of the service", len(tasks), 2)

        step("list_services paginator")
        pages = list(ecs.get_paginator("list_services").paginate(
            cluster=cluster, PaginationConfig={"PageSize": 1}))
        expect_eq("listed", [a for p in pages for a in p["serviceArns"]], [s["serviceArn"]])

        step("update_service desiredCount=3, services_stable")
        s = ecs.update_service(cluster=cluster, service=service, desiredCount=3)["service"]
        expect_eq("desiredCount", s["desiredCount"], 3)
        wait(ecs, "services_stable", cluster, service)
        s = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
        expect_eq("runningCount after scale-out", s["runningCount"], 3)

        step("errors: an unknown service")
        unknown = f"no-such-{suffix}"
        d = ecs.describe_services(cluster=cluster, services=[unknown])
        expect_eq("describe unknown: services", d["services"], [])
        expect_eq("describe unknown: reason", d["failures"][0]["reason"], "MISSING")
        try:
            ecs.update_service(cluster=cluster, service=unknown, desiredCount=1)
            fail("update_service of an unknown service succeeded")
        except ClientError as e:
            expect_eq("update unknown: code", e.response["Error"]["Code"],
                      "ServiceNotFoundException")

        step("update_service desiredCount=0, services_stable, delete_service, services_inactive")
        ecs.update_service(cluster=cluster, service=service, desiredCount=0)
        wait(ecs, "services_stable", cluster, service)
        expect_eq("running tasks at 0",
                  ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"], [])
        s = ecs.delete_service(cluster=cluster, service=service)["service"]
        if s["status"] not in ("DRAINING", "INACTIVE"):
            fail(f"status after delete_service: {s['status']}")
        wait(ecs, "services_inactive", cluster, service)
        created = False
        expect_eq("list_services after delete", ecs.list_services(cluster=cluster)["serviceArns"],
                  [])
    finally:
        if created:
            try:
                ecs.delete_service(cluster=cluster, service=service, force=True)
                ecs.get_waiter("services_inactive").wait(cluster=cluster, services=[service],
                                                         WaiterConfig=WAIT)
            except (ClientError, WaiterError) as e:
                step(f"warning: clean-up of {service}: {e}")

    clean_up(ecs, cluster, family)


if __name__ == "__main__":
    main()

"""Helpers shared by the boto3 flows (tests/clients/boto3_*.py): assertions
that print "<flow>: FAIL: ..." and exit 1, and an ECS client for berthd from
the environment (BERTH_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION). set_flow(name) names the flow in the messages.
"""
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

FLOW = "boto3_flow"


def set_flow(name):
    global FLOW
    FLOW = name


def fail(msg):
    print(f"{FLOW}: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def step(msg):
    print(f"{FLOW}: {msg}", file=sys.stderr)


def expect_eq(name, actual, expected):
    if actual != expected:
        fail(f"{name}: expected {expected!r}, got {actual!r}")


def expect_client_error(name, code, call, *args, **kwargs):
    """Runs call(...) and checks it raises ClientError with `code`."""
    try:
        call(*args, **kwargs)
    except ClientError as e:
        expect_eq(f"{name}: error code", e.response["Error"]["Code"], code)
        if not e.response["Error"].get("Message"):
            fail(f"{name}: {code} without a message")
        expect_eq(f"{name}: HTTP status", e.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        return e
    fail(f"{name}: expected ClientError {code}, the call succeeded")


def definition(family, image, command):
    """A minimal Fargate task definition: one essential container running
    `command` with sh -c."""
    return dict(
        family=family,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            dict(name="main", image=image, essential=True,
                 command=["sh", "-c", command], stopTimeout=2)
        ],
    )


def client():
    endpoint = os.environ.get("BERTH_ENDPOINT") or fail("set BERTH_ENDPOINT=http://127.0.0.1:PORT")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if not os.environ.get(name):
            fail(f"set {name}")
    return boto3.client(
        "ecs",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )



def clean_up(ecs, cluster, family):
    """The end of a flow: the definition deregistered, the cluster deleted."""
    step("clean up")
    ecs.deregister_task_definition(taskDefinition=f"{family}:1")
    try:
        ecs.delete_cluster(cluster=cluster)
    except ClientError as e:
        step(f"warning: delete_cluster: {e}")
    step("PASS")


# Waiters poll every second, for three minutes at the most.
WAIT = {"Delay": 1, "MaxAttempts": 180}

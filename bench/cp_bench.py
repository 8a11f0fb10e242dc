#!/usr/bin/env python3
"""The control plane's benchmark (bench/run.sh runs it; `make bench`).

Starts a berthd of its own (scratch dirs, its own bridge, subnet, cgroup
subtree and nftables table) on a busybox image imported with berth-rootfs,
and measures over its unix socket:

  - RunTask -> RUNNING (the user process exec'd: the task's startedAt minus
    its createdAt, both stamped by berthd), median and p99 over N tasks, with
    the warm pool and without it;
  - churn: run + stop of short tasks from 2 clients, tasks per second;
  - DescribeTasks requests per second (4 clients, keep-alive);
  - memory per idle task: MemAvailable before and after holding M idle
    tasks (shim + kernel objects: netns, veth, cgroups, overlay), per task.

Each figure is printed beside its baseline (the targets of issue 11, and
Fargate's published 30-60 s).  Environment: CP_BENCH_TASKS (200),
CP_BENCH_IDLE (1000), CP_BENCH_CHURN_S (20), CP_BENCH_DESCRIBE_S (10).
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/bin"
SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = "AmazonEC2ContainerServiceV20141113."


class Conn:
    """HTTP/1.1 keep-alive over berthd's unix socket."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""

    def request(self, method, target, body=b"", headers=None):
        h = {"Host": "berth", "Content-Length": str(len(body))}
        h.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        self.s.sendall(head.encode() + b"\r\n" + body)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return status, out

    def ecs(self, op, body):
        status, out = self.request("POST", "/", json.dumps(body).encode(),
                                   {"X-Amz-Target": TARGET + op,
                                    "Content-Type": "application/x-amz-json-1.1"})
        if status != 200:
            raise RuntimeError(f"{op}: {status} {out[:300]!r}")
        return json.loads(out)

    def _more(self):
        d = self.s.recv(65536)
        if not d:
            raise RuntimeError("berthd closed the connection")
        self.buf += d


# Exits on SIGTERM at once (a bare `sleep` as pid 1 ignores it and waits for
# the stop timeout's SIGKILL).
SLEEPER = ["sh", "-c", "trap 'exit 143' TERM; sleep 86400 & wait"]


def definition(family, command):
    return {"family": family, "requiresCompatibilities": ["FARGATE"], "cpu": "256",
            "memory": "512", "networkMode": "awsvpc",
            "containerDefinitions": [{"name": "c", "image": "busybox:latest",
                                      "command": command}]}


class Berthd:
    def __init__(self, work, name, warm_pool, subnet):
        self.work = os.path.join(work, name)
        os.makedirs(self.work)
        self.sock = os.path.join(self.work, "run", "berthd.sock")
        self.config = os.path.join(self.work, "berthd.toml")
        tag = f"{os.getpid() % 100000}{name[0]}"
        with open(self.config, "w") as f:
            f.write(f'state_dir = "{self.work}/state"\nrun_dir = "{self.work}/run"\n'
                    f'images_dir = "{work}/images"\nbridge = "bb{tag}"\nsubnet = "{subnet}"\n'
                    f'cgroup_name = "berth-bench-{tag}"\nnft_table = "berth_bench_{tag}"\n'
                    f'warm_pool = {warm_pool}\nlog_level = "warn"\n'
                    f'cpu_units = 100000000\nmemory_mib = 100000000\n')
        self.log = open(os.path.join(self.work, "berthd.log"), "w")
        self.p = subprocess.Popen([f"{BIN}/berthd", "--config", self.config],
                                  stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if Conn(self.sock).request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if self.p.poll() is not None:
                raise RuntimeError("berthd exited: " + open(self.log.name).read())
            time.sleep(0.05)
        else:
            raise RuntimeError("berthd did not come up")

    def wait_pool(self, n, timeout=120):
        c = Conn(self.sock)
        deadline = time.time() + timeout
        while time.time() < deadline:
            _, m = c.request("GET", "/metrics")
            for line in m.decode().splitlines():
                if line.startswith("berth_microhost_pool_size") and float(line.split()[-1]) >= n:
                    return
            time.sleep(0.05)

    def stop(self):
        c = Conn(self.sock)
        tasks = c.ecs("ListTasks", {"maxResults": 100})
        while True:
            arns = c.ecs("ListTasks", {"maxResults": 100})["taskArns"]
            if not arns:
                break
            for a in arns:
                c.ecs("StopTask", {"task": a})
            wait_stopped(c, arns)
        del tasks
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        subprocess.run([f"{BIN}/berthd", "--config", self.config, "--teardown"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def describe(c, arns):
    out = []
    for i in range(0, len(arns), 100):
        out += c.ecs("DescribeTasks", {"tasks": arns[i:i + 100]})["tasks"]
    return out


def wait_status(c, arns, status, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ts = describe(c, arns)
        if all(t["lastStatus"] == status for t in ts):
            return ts
        if status == "RUNNING" and any(t["lastStatus"] == "STOPPED" for t in ts):
            bad = [t for t in ts if t["lastStatus"] == "STOPPED"][0]
            raise RuntimeError(f"task stopped: {bad.get('stoppedReason')}")
        time.sleep(0.05)
    raise RuntimeError(f"tasks not {status} in {timeout} s")


def wait_stopped(c, arns):
    return wait_status(c, arns, "STOPPED")


def run_to_running(d, n, pooled):
    c = Conn(d.sock)
    td = c.ecs("RegisterTaskDefinition", definition("bench", SLEEPER))
    arn = td["taskDefinition"]["taskDefinitionArn"]
    lat = []
    for _ in range(n):
        if pooled:
            d.wait_pool(1)
        t = c.ecs("RunTask", {"taskDefinition": arn})["tasks"][0]
        ts = wait_status(c, [t["taskArn"]], "RUNNING")[0]
        lat.append((ts["startedAt"] - ts["createdAt"]) * 1000)
        c.ecs("StopTask", {"task": t["taskArn"]})
    return lat


def churn(d, seconds, clients=2):
    count = [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def worker():
        c = Conn(d.sock)
        td = c.ecs("RegisterTaskDefinition", definition("churn", SLEEPER))
        arn = td["taskDefinition"]["taskDefinitionArn"]
        while time.time() < stop_at:
            t = c.ecs("RunTask", {"taskDefinition": arn})["tasks"][0]
            wait_status(c, [t["taskArn"]], "RUNNING")
            c.ecs("StopTask", {"task": t["taskArn"]})
            wait_stopped(c, [t["taskArn"]])
            with lock:
                count[0] += 1

    start = time.time()
    ths = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return count[0] / (time.time() - start)


def describe_rate(d, seconds, clients=4):
    c = Conn(d.sock)
    td = c.ecs("RegisterTaskDefinition", definition("desc", SLEEPER))
    t = c.ecs("RunTask", {"taskDefinition": td["taskDefinition"]["taskDefinitionArn"]})["tasks"][0]
    wait_status(c, [t["taskArn"]], "RUNNING")
    count = [0]
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def worker():
        cc = Conn(d.sock)
        n = 0
        while time.time() < stop_at:
            cc.ecs("DescribeTasks", {"tasks": [t["taskArn"]]})
            n += 1
        with lock:
            count[0] += n

    ths = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.time()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    rate = count[0] / (time.time() - start)
    c.ecs("StopTask", {"task": t["taskArn"]})
    wait_stopped(c, [t["taskArn"]])
    return rate


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def idle_memory(d, n):
    c = Conn(d.sock)
    td = c.ecs("RegisterTaskDefinition", definition("idle", SLEEPER))
    arn = td["taskDefinition"]["taskDefinitionArn"]
    subprocess.run(["sync"])
    before = mem_available_kib()
    arns = []
    for i in range(0, n, 10):
        r = c.ecs("RunTask", {"taskDefinition": arn, "count": min(10, n - i)})
        if r["failures"]:
            raise RuntimeError(f"RunTask failures: {r['failures']}")
        arns += [t["taskArn"] for t in r["tasks"]]
    wait_status(c, arns, "RUNNING", timeout=1800)
    time.sleep(2)  # let the page cache settle: a measurement, not a wait on state
    after = mem_available_kib()
    for a in arns:
        c.ecs("StopTask", {"task": a})
    wait_stopped(c, arns)
    return (before - after) / n / 1024.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    n = int(os.environ.get("CP_BENCH_TASKS", "200"))
    idle_n = int(os.environ.get("CP_BENCH_IDLE", "1000"))
    churn_s = float(os.environ.get("CP_BENCH_CHURN_S", "20"))
    desc_s = float(os.environ.get("CP_BENCH_DESCRIBE_S", "10"))
    work = tempfile.mkdtemp(prefix="berth-cpbench.")
    try:
        rootfs = os.path.join(work, "rootfs")
        subprocess.run(["bash", f"{SRC}/tests/scripts/make-rootfs.sh", rootfs,
                        f"{BIN}/berth-probe"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "-C", rootfs, "-cf", rootfs + ".tar", "."], check=True)
        subprocess.run([f"{BIN}/berth-rootfs", "--store", f"{work}/images", "import", "--name",
                        "busybox:latest", rootfs + ".tar"], check=True, stdout=subprocess.DEVNULL)
        print(f"control plane (berthd), {n} tasks per latency run; baselines: issue 11's "
              "targets, Fargate 30-60 s, Firecracker boot ~125 ms")
        d = Berthd(work, "pool", 4, "10.251.0.0/20")
        try:
            d.wait_pool(4)
            lat = run_to_running(d, n, pooled=True)
            print(f"  RunTask->RUNNING, warm pool:  median {statistics.median(lat):7.2f} ms  "
                  f"p99 {pct(lat, 99):7.2f} ms   (target median <= 10 ms, p99 <= 30 ms)")
            rate = churn(d, churn_s)
            print(f"  churn (run+stop), 2 clients:  {rate:7.1f} tasks/s            (target >= 100)")
            rate = describe_rate(d, desc_s)
            print(f"  DescribeTasks, 4 clients:     {rate:7.0f} requests/s")
            if idle_n > 0:
                mib = idle_memory(d, idle_n)
                print(f"  memory per idle task ({idle_n} held): {mib:6.3f} MiB   (target <= 1 MiB)")
        finally:
            d.stop()
        d = Berthd(work, "cold", 0, "10.251.16.0/20")
        try:
            lat = run_to_running(d, n, pooled=False)
            print(f"  RunTask->RUNNING, no pool:    median {statistics.median(lat):7.2f} ms  "
                  f"p99 {pct(lat, 99):7.2f} ms")
        finally:
            d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of `cvm-attest get` against the standalone reference KBS on loopback.

Prints, for 1 and 8 resources over plain http and over HTTPS (pinned test CA):
the agent's wall time per run (median, p90); the reference KBS's own time per
run, as the CPU time of its one thread (and, for reference, the part spent in
its request handlers, from /refkbs/stats); the agent's cost, wall median minus
the KBS's own time; the agent's own CPU time (user + system, median); the
instructions of one run (callgrind, when valgrind is installed: the figure
that does not drift with the machine); the agent's peak RSS (under GNU time);
then the stripped release binary sizes.
The agent is started with posix_spawn (vfork), as systemd starts it, not by
forking this Python process, whose copy would be part of every figure.
Run through `make bench` (or `sh benches/get.sh`), which builds the release
binaries first. Not a test: it asserts nothing, it prints figures.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.path.join(ROOT, "target/release/cvm-attest")
REFKBS = os.path.join(ROOT, "target/release/refkbs")
TLS = os.path.join(ROOT, "tests/data/tls")
RUNS = int(os.environ.get("BENCH_RUNS", "50"))


def start_kbs(resources, work, tls):
    url_file = os.path.join(work, "url-" + ("tls" if tls else "http"))
    args = [REFKBS, "--resources", resources, "--listen", "127.0.0.1:0", "--url-file", url_file, "--quiet"]
    # Trustee's default policy refuses the sample TEE; allow_all, as its tests.
    args += ["--allow-all"]
    # One thread: its CPU time is then the KBS's own time, scheduling and all.
    args += ["--workers", "0"]
    if tls:
        args += ["--tls-cert", os.path.join(TLS, "server.pem"), "--tls-key", os.path.join(TLS, "server.key")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(url_file):
            return proc, open(url_file).read().strip()
        time.sleep(0.02)
    proc.kill()
    sys.exit("reference KBS did not start")


def control(url, path, method="GET"):
    # The control endpoints are served over the same listener; for HTTPS use
    # the pinned test CA.
    import ssl
    ctx = ssl.create_default_context(cafile=os.path.join(TLS, "ca.pem")) if url.startswith("https") else None
    req = urllib.request.Request(url + path, method=method)
    with urllib.request.urlopen(req, context=ctx) as r:
        body = r.read()
    return json.loads(body) if body else None


def run_agent(url, paths, out_dir, rss_file=None):
    args = [AGENT, "-q", "get", "--kbs", url, "--tee", "sample", "--output", out_dir]
    if url.startswith("https"):
        args += ["--kbs-ca", os.path.join(TLS, "ca.pem")]
    else:
        args += ["--insecure-http"]
    args += paths
    if rss_file:
        # The peak RSS a child reports includes its parent's pages from before
        # exec, so measure it under GNU time (a small C parent), not Python.
        args = ["/usr/bin/time", "-f", "%M", "-o", rss_file, *args]
    wall, cpu = spawn(args)
    return wall, cpu


def spawn(args):
    """Runs `args` (stdin and stdout /dev/null); returns wall and CPU seconds."""
    null = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", flags, 0) for fd, flags in ((0, os.O_RDONLY), (1, os.O_WRONLY))]
    t0 = time.perf_counter()
    pid = os.posix_spawn(args[0], args, os.environ, file_actions=null)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{args[0]} failed: wait status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def instructions(url, paths, out_dir):
    """Instructions of one agent run under callgrind, or None without valgrind."""
    if not shutil.which("valgrind"):
        return None
    args = [AGENT, "-q", "get", "--kbs", url, "--tee", "sample", "--output", out_dir]
    args += ["--kbs-ca", os.path.join(TLS, "ca.pem")] if url.startswith("https") else ["--insecure-http"]
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args, *paths],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", run.stderr)
    return int(match.group(1)) if match else None


def cpu_ns(pid):
    """CPU time of every thread of `pid`, in nanoseconds (schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def scenario(kbs_pid, url, paths, work):
    control(url, "/refkbs/stats/reset", "POST")
    cpu0 = cpu_ns(kbs_pid)
    walls, cpus = [], []
    for i in range(RUNS):
        out = os.path.join(work, f"out-{i}" + (".bin" if len(paths) == 1 else ""))
        wall, agent_cpu = run_agent(url, paths, out)
        walls.append(wall)
        cpus.append(agent_cpu)
    cpu = (cpu_ns(kbs_pid) - cpu0) / 1e6 / RUNS
    stats = control(url, "/refkbs/stats")
    rss = []
    for i in range(5):
        out = os.path.join(work, f"rss-{i}" + (".bin" if len(paths) == 1 else ""))
        rss_file = os.path.join(work, "rss.txt")
        run_agent(url, paths, out, rss_file)
        rss.append(int(open(rss_file).read().split()[-1]))
    handlers = stats["busy_us"] / 1000.0 / RUNS
    walls.sort()
    med = statistics.median(walls) * 1000
    p90 = walls[int(len(walls) * 0.9) - 1] * 1000
    instr = instructions(url, paths, os.path.join(work, "callgrind" + (".bin" if len(paths) == 1 else "")))
    return med, p90, handlers, cpu, statistics.median(cpus) * 1000, instr, max(rss)


def spawn_median(cmd, runs=RUNS):
    """Median wall time to spawn `cmd` and wait for it: this machine's floor."""
    return statistics.median(spawn(cmd)[0] for _ in range(runs)) * 1000


def main():
    for binary in (AGENT, REFKBS):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: run `make bench` (it builds the release binaries)")
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="cvm-attest-bench-", dir=base) as work:
        res = os.path.join(work, "resources")
        for i in range(8):
            os.makedirs(os.path.join(res, "default/key"), exist_ok=True)
            with open(os.path.join(res, f"default/key/k{i}"), "wb") as f:
                f.write(os.urandom(64))
        paths8 = [f"default/key/k{i}" for i in range(8)]
        print(f"cvm-attest get against the standalone reference KBS on loopback, {RUNS} runs each")
        floor, version = spawn_median(["/bin/true"]), spawn_median([AGENT, "--version"])
        print(f"process floor on this machine: /bin/true {floor:.2f} ms, cvm-attest --version {version:.2f} ms")
        print(f"{'scenario':<22}{'wall median':>12}{'wall p90':>10}{'KBS CPU':>10}{'(handlers)':>11}"
              f"{'agent cost':>12}{'agent CPU':>11}{'instructions':>14}{'peak RSS':>11}")
        results = {}
        for tls in (False, True):
            proc, url = start_kbs(res, work, tls)
            try:
                for paths in (paths8[:1], paths8):
                    name = f"{'https' if tls else 'http'}, {len(paths)} resource{'s' if len(paths) > 1 else ''}"
                    med, p90, handlers, cpu, agent_cpu, instr, rss = scenario(proc.pid, url, paths, work)
                    results[(tls, len(paths))] = med
                    instr = f"{instr / 1e6:>12.2f} M" if instr else f"{'-':>14}"
                    print(f"{name:<22}{med:>9.2f} ms{p90:>7.2f} ms{cpu:>7.2f} ms{handlers:>8.2f} ms{med - cpu:>9.2f} ms"
                          f"{agent_cpu:>8.2f} ms{instr}{rss / 1024:>7.2f} MiB")
            finally:
                proc.terminate()
                proc.wait()
        for tls in (False, True):
            ratio = results[(tls, 8)] / results[(tls, 1)]
            print(f"8 / 1 resources ({'https' if tls else 'http'}): {ratio:.2f}x")
    for binary, role in ((AGENT, "the agent"), (AGENT + "-tpm", "TPM helper, run on TPM platforms"),
                         (AGENT + "-units", "units helper, run by `run` to reload units")):
        size = os.path.getsize(binary)
        print(f"release binary (stripped) {os.path.basename(binary)}: {size} bytes ({size / 1e6:.2f} MB), {role}")


if __name__ == "__main__":
    main()

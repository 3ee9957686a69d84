#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of `cvm-attest get` against the standalone reference KBS on loopback.

Prints, for 1 and 8 resources over plain http and over HTTPS (pinned test CA):
the agent's wall time per run (median); the reference KBS's own time per
run, as the CPU time of its one thread (and, for reference, the part spent in
its request handlers, from /refkbs/stats); the agent's cost, wall median minus
the KBS's own time; the same above the machine's process floor (`/bin/true`);
the agent's own CPU time (user + system, median); the instructions of one
run (callgrind, when valgrind is installed: the figure that does not drift
with the machine); the agent's peak RSS (under GNU time); then the stripped
release binary sizes.

The speed of this VM drifts by a third from one minute to the next, so the
runs are made in rounds (BENCH_ROUNDS, 10): each round measures the floor, then
one resource, then eight, BENCH_RUNS (30) runs each, back to back. A figure is
the median over the rounds of each round's figure; the wall time, the agent's
cost and the floor also show their range over the rounds; the 8/1 ratio is taken within each round, where both ran in the same
second. Each run writes a new file (the output is removed after it, outside
the timing), as at boot.
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
RUNS = int(os.environ.get("BENCH_RUNS", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))


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


def agent_args(url, paths, out_dir):
    """The agent's command line for one `get` of `paths` into `out_dir`."""
    args = [AGENT, "-q", "get", "--kbs", url, "--tee", "sample", "--output", out_dir]
    args += ["--kbs-ca", os.path.join(TLS, "ca.pem")] if url.startswith("https") else ["--insecure-http"]
    return args + paths


def run_agent(url, paths, out_dir, rss_file=None):
    args = agent_args(url, paths, out_dir)
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
    args = agent_args(url, paths, out_dir)
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
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


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


def output(work, paths):
    """A new output path: a file for one resource, a directory for several."""
    return os.path.join(work, "out" + (".bin" if len(paths) == 1 else ""))


def timed_runs(kbs_pid, url, paths, work):
    """One round of one scenario: wall and agent CPU medians, the KBS's CPU time
    and its handlers' time per run (ms)."""
    control(url, "/refkbs/stats/reset", "POST")
    cpu0 = cpu_ns(kbs_pid)
    walls, cpus = [], []
    for _ in range(RUNS):
        out = output(work, paths)
        wall, agent_cpu = run_agent(url, paths, out)
        remove(out)
        walls.append(wall * 1000)
        cpus.append(agent_cpu * 1000)
    kbs = (cpu_ns(kbs_pid) - cpu0) / 1e6 / RUNS
    handlers = control(url, "/refkbs/stats")["busy_us"] / 1000.0 / RUNS
    return {"wall": statistics.median(walls), "kbs": kbs, "handlers": handlers,
            "cpu": statistics.median(cpus)}


def peak_rss(url, paths, work):
    rss = []
    for _ in range(5):
        out, rss_file = output(work, paths), os.path.join(work, "rss.txt")
        run_agent(url, paths, out, rss_file)
        remove(out)
        rss.append(int(open(rss_file).read().split()[-1]))
    return max(rss)


def spawn_median(cmd, runs=RUNS):
    """Median wall time (ms) to spawn `cmd` and wait for it: this machine's floor."""
    return statistics.median(spawn(cmd)[0] for _ in range(runs)) * 1000


def over_rounds(values, fmt="{:.2f}"):
    """The median over the rounds, and the range: `2.10 (1.95-2.40)`."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def transport(res, work, tls, paths8):
    """ROUNDS rounds of floor, one resource and eight over one transport."""
    proc, url = start_kbs(res, work, tls)
    try:
        rounds = []
        for _ in range(ROUNDS):
            floor = spawn_median(["/bin/true"])
            one = timed_runs(proc.pid, url, paths8[:1], work)
            eight = timed_runs(proc.pid, url, paths8, work)
            rounds.append((floor, one, eight))
        extra = {}
        for n, paths in ((1, paths8[:1]), (8, paths8)):
            extra[n] = (peak_rss(url, paths, work), instructions(url, paths, output(work, paths)))
            remove(output(work, paths))
    finally:
        proc.terminate()
        proc.wait()
    return rounds, extra


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
        print(f"cvm-attest get against the standalone reference KBS on loopback, "
              f"{ROUNDS} rounds of {RUNS} runs per scenario")
        print("each figure: the median over the rounds of each round's median (its range over the rounds)")
        version = spawn_median([AGENT, "--version"])
        print(f"cvm-attest --version: {version:.2f} ms")
        print(f"{'scenario':<19}{'wall':>20}{'KBS CPU':>9}{'(handlers)':>11}{'agent cost':>20}"
              f"{'above floor':>20}{'agent CPU':>11}{'instructions':>14}{'peak RSS':>11}")
        ratios = {}
        for tls in (False, True):
            rounds, extra = transport(res, work, tls, paths8)
            scheme = "https" if tls else "http"
            print(f"{scheme} floor (/bin/true): {over_rounds([r[0] for r in rounds])} ms")
            for n, which in ((1, 1), (8, 2)):
                runs = [r[which] for r in rounds]
                cost = [x["wall"] - x["kbs"] for x in runs]
                above = [x["wall"] - x["kbs"] - r[0] for x, r in zip(runs, rounds)]
                rss, instr = extra[n]
                instr = f"{instr / 1e6:>12.2f} M" if instr else f"{'-':>14}"
                name = f"{scheme}, {n} resource{'s' if n > 1 else ''}"
                print(f"{name:<19}{over_rounds([x['wall'] for x in runs]):>20}"
                      f"{statistics.median(x['kbs'] for x in runs):>9.2f}"
                      f"{statistics.median(x['handlers'] for x in runs):>11.2f}"
                      f"{over_rounds(cost):>20}{over_rounds(above):>20}"
                      f"{statistics.median(x['cpu'] for x in runs):>11.2f}{instr}{rss / 1024:>7.2f} MiB")
            ratios[scheme] = [r[2]["wall"] / r[1]["wall"] for r in rounds]
        print("(times in ms; handlers: the part of the KBS's time in its request handlers)")
        for scheme, values in ratios.items():
            print(f"8 / 1 resources ({scheme}), within each round: {over_rounds(values, '{:.2f}x')}")
    for binary, role in ((AGENT, "the agent"), (AGENT + "-tpm", "TPM helper, run on TPM platforms"),
                         (AGENT + "-units", "units helper, run by `run` to reload units")):
        size = os.path.getsize(binary)
        print(f"release binary (stripped) {os.path.basename(binary)}: {size} bytes ({size / 1e6:.2f} MB), {role}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of `cvm-attest get` against the standalone reference KBS on loopback.

Prints, for 1 and 8 resources over plain http and over HTTPS (pinned test CA):
the agent's wall time per run (median, p90), the reference KBS's own handling
time per run (from its /refkbs/stats), the difference (what the agent costs),
and the agent's peak RSS (under GNU time); then the stripped release binary size.
Run through `make bench` (or `sh benches/get.sh`), which builds the release
binaries first. Not a test: it asserts nothing, it prints figures.
"""
import json
import os
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
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    status = proc.wait()
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"agent failed with status {status}")
    return wall


def scenario(url, paths, work):
    control(url, "/refkbs/stats/reset", "POST")
    walls = []
    for i in range(RUNS):
        out = os.path.join(work, f"out-{i}" + (".bin" if len(paths) == 1 else ""))
        walls.append(run_agent(url, paths, out))
    stats = control(url, "/refkbs/stats")
    rss = []
    for i in range(5):
        out = os.path.join(work, f"rss-{i}" + (".bin" if len(paths) == 1 else ""))
        rss_file = os.path.join(work, "rss.txt")
        run_agent(url, paths, out, rss_file)
        rss.append(int(open(rss_file).read().split()[-1]))
    server = stats["busy_us"] / 1000.0 / RUNS
    walls.sort()
    med = statistics.median(walls) * 1000
    p90 = walls[int(len(walls) * 0.9) - 1] * 1000
    return med, p90, server, max(rss)


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
        print(f"{'scenario':<22}{'wall median':>12}{'wall p90':>10}{'KBS own':>10}{'agent cost':>12}{'peak RSS':>11}")
        results = {}
        for tls in (False, True):
            proc, url = start_kbs(res, work, tls)
            try:
                for paths in (paths8[:1], paths8):
                    name = f"{'https' if tls else 'http'}, {len(paths)} resource{'s' if len(paths) > 1 else ''}"
                    med, p90, server, rss = scenario(url, paths, work)
                    results[(tls, len(paths))] = med
                    print(f"{name:<22}{med:>9.2f} ms{p90:>7.2f} ms{server:>7.2f} ms{med - server:>9.2f} ms{rss / 1024:>7.2f} MiB")
            finally:
                proc.terminate()
                proc.wait()
        for tls in (False, True):
            ratio = results[(tls, 8)] / results[(tls, 1)]
            print(f"8 / 1 resources ({'https' if tls else 'http'}): {ratio:.2f}x")
    size = os.path.getsize(AGENT)
    print(f"release binary (stripped): {size} bytes ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

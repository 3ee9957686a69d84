#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compares builds of the agent: what is one change worth?

    python3 benches/ab.py OLD/cvm-attest NEW/cvm-attest [...]

Runs `get` of one resource over http against one standalone reference KBS
(target/release/refkbs, from `make bench` or `cargo build --release -p
refkbs`), alternating the binaries run by run, so that the drift of this
VM's speed (a third within minutes) falls on all of them alike. Prints
each binary's median wall and CPU time and its difference to the first one.
Build each variant into its own CARGO_TARGET_DIR. Not a test: it prints
figures, it asserts nothing.
"""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import get  # noqa: E402  (benches/get.py: the KBS and the spawning)

RUNS = int(os.environ.get("BENCH_RUNS", "400"))


def main():
    binaries = sys.argv[1:]
    if len(binaries) < 2 or not all(os.access(b, os.X_OK) for b in binaries):
        sys.exit("usage: benches/ab.py BINARY BINARY [...] (two or more agent binaries)")
    if not os.path.exists(get.REFKBS):
        sys.exit(f"{get.REFKBS} is missing: run `cargo build --release -p refkbs`")
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="cvm-attest-ab-", dir=base) as work:
        res = os.path.join(work, "resources", "default", "key")
        os.makedirs(res)
        with open(os.path.join(res, "k0"), "wb") as f:
            f.write(os.urandom(64))
        proc, url = get.start_kbs(os.path.join(work, "resources"), work, tls=False)
        out = os.path.join(work, "out.bin")
        times = {b: ([], []) for b in binaries}
        try:
            for _ in range(RUNS):
                for b in binaries:
                    wall, cpu = get.spawn([b, "-q", "get", "--kbs", url, "--tee", "sample",
                                           "--insecure-http", "--output", out, "default/key/k0"])
                    # A new file each run, as at boot and in benches/get.py.
                    os.unlink(out)
                    times[b][0].append(wall * 1000)
                    times[b][1].append(cpu * 1000)
        finally:
            proc.terminate()
            proc.wait()
    print(f"get, 1 resource over http, {RUNS} alternating runs each")
    first = None
    for b in binaries:
        wall, cpu = (statistics.median(v) for v in times[b])
        delta = "" if first is None else f"   {wall - first[0]:+.3f} ms wall, {cpu - first[1]:+.3f} ms CPU"
        first = first or (wall, cpu)
        print(f"{b:<50} wall {wall:.3f} ms  CPU {cpu:.3f} ms{delta}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""System calls per message, server by server and cell by cell, beside the echo benchmark.

Where every library makes the same system calls per message, the kernel sets the pace and no
library can be much faster than another; this script shows whether that is so. For each cell
(connections x size x in flight) and each server it starts the server on CPU 0, runs the shared
benchmark's load generator on CPU 1, and counts the server's system calls with `perf stat`
tracepoints over the measured seconds only. It prints one table: messages per second, the
server's and the generator's CPU, and per message the system calls in all, the reads, the
writes and the readiness waits.

    python3 bench/syscalls.py 'ferrule=target/release-lto/examples/echo 127.0.0.1:{port}' \\
        'fastwebsockets=/tmp/peers-target/release/echo-fastwebsockets {port}'

Needs `perf` (Debian's `linux-perf`) with access to tracepoints (root, or
`kernel.perf_event_paranoid` at most 1), and the load generator that `../shared/bench/peers/bench.sh`
builds (`--loadgen` to point elsewhere).
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

READS = ("read", "readv", "recvfrom", "recvmsg")
WRITES = ("write", "writev", "sendto", "sendmsg")
WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll")


def wait_listening(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def parse_kv(text):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-0-9.]+)", text)}


def run_cell(name, command, port, cell, args):
    conns, size, depth = cell
    cmd = command.replace("{port}", str(port)).split()
    server = subprocess.Popen(["taskset", "-c", str(args.server_cpu)] + cmd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_listening(port):
            raise RuntimeError(f"{name} did not listen on port {port}")
        loadgen = subprocess.Popen(
            ["taskset", "-c", str(args.client_cpu), args.loadgen, "--port", str(port), "-c", str(conns),
             "-s", str(size), "-d", str(depth), "-t", str(args.secs), "-w", str(args.warmup),
             "--server-pid", str(server.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The generator connects, then warms up for `warmup` seconds before measuring: count
        # over the measured seconds only (the connection phase is short next to the warmup).
        time.sleep(args.warmup)
        events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in READS + WRITES + WAITS]
        perf = subprocess.run(
            ["perf", "stat", "-x", ",", "-e", ",".join(events), "-p", str(server.pid), "--", "sleep",
             str(args.secs)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        out, _ = loadgen.communicate(timeout=args.secs + args.warmup + 120)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    counts = {}
    for line in perf.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].strip().isdigit():
            counts[fields[2].split(":")[-1].replace("sys_enter_", "")] = int(fields[0])
    result = parse_kv(out)
    if "msgs_per_s" not in result or "sys_enter" not in counts:
        raise RuntimeError(f"{name} {cell}: no result\n{out}\n{perf.stderr}")
    msgs = result["msgs_per_s"] * args.secs
    per = lambda keys: sum(counts.get(k, 0) for k in keys) / msgs
    return {
        "msgs_per_s": result["msgs_per_s"],
        "srv_cpu": result.get("srv_cpu_pct", float("nan")),
        "lg_cpu": result.get("cpu_pct", float("nan")),
        "all": counts["sys_enter"] / msgs,
        "reads": per(READS),
        "writes": per(WRITES),
        "waits": per(WAITS),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("servers", nargs="+", help="name=command-with-{port}")
    ap.add_argument("--conns", default="1,100")
    ap.add_argument("--sizes", default="16,1024,65536")
    ap.add_argument("--depths", default="1,32")
    ap.add_argument("--secs", type=float, default=1.5)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--loadgen", default="/tmp/peers-target/release/loadgen")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--base-port", type=int, default=19601)
    args = ap.parse_args()
    if not os.access(args.loadgen, os.X_OK):
        sys.exit(f"no load generator at {args.loadgen}: run ../shared/bench/peers/bench.sh once, or pass --loadgen")
    servers = [s.split("=", 1) for s in args.servers]
    cells = [(int(c), int(s), int(d)) for c in args.conns.split(",") for s in args.sizes.split(",")
             for d in args.depths.split(",")]
    print("| cell (conns x size x in flight) | server | msgs/s | server CPU | generator CPU "
          "| syscalls/msg | reads/msg | writes/msg | waits/msg |")
    print("|---|---|---|---|---|---|---|---|---|")
    port = args.base_port
    for cell in cells:
        for name, command in servers:
            port += 1
            r = run_cell(name, command, port, cell, args)
            print(f"| {cell[0]} x {cell[1]} B x {cell[2]} | {name} | {r['msgs_per_s']:,.0f} | {r['srv_cpu']:.0f}% "
                  f"| {r['lg_cpu']:.0f}% | {r['all']:.2f} | {r['reads']:.2f} | {r['writes']:.2f} | {r['waits']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()

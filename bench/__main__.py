"""`python -m bench SCENARIO --mode embedded|cluster [options]`: one command per scenario.

Scenarios (see docs/benchmarks.md for the figures and the machine they were measured on):

  send     acknowledged sends/s at saturation, ack latency p50/p99/p99.9 at fixed offered rates
  deliver  end-to-end latency send -> other members, at fixed rates, N devices in groups
  fanout   one message into a channel of N connected members: time until the last delivery
  idle     N connected devices with heartbeats: server resident memory per connection
  history  newest-page read latency on a conversation with N messages
  media    a ~5 MiB JPEG, upload start to READY (thumbnails) p50/p99, completions/s with 8
           concurrent uploaders, and ping round trips on the gateway meanwhile
  search   index messages/s and query p50/p99 over N messages (in-process), on the embedded
           engine or (--engine solr) a SolrCloud
  push     pushes/s and push lag p50/p99 (send to webhook receiver) for a channel's offline
           members and for steady group traffic with half the members offline; send-ack
           latency with push off, a hanging provider and a provider down
  groups   users in groups of 10, all connected with JSON text frames (as browsers send
           them; --binary for protobuf): e2e latency to the 9 other members at an offered-rate
           ladder, acks/s, server CPU per process and per thread, loadgen CPU and lag
  write    closed-loop senders (20) in one conversation: acks/s and ack p50/p99 (JSON frames
           unless --binary)
  soak     a steady rate from many devices for --minutes windows: e2e latency per window and
           the memory of every server process at the start and after each window
  all      every scenario in turn

Each run starts `chatmesh dev` on free ports with a temporary data dir (`--mode cluster`: the
local cluster of `chatmesh cluster up`, behind Envoy; see CLUSTER_SCENARIOS), drives it
through the WebSocket edge from `--workers` load-generator processes, and writes SCENARIO.json,
SCENARIO.md and SCENARIO.png to --out. `--smoke` shrinks every size (CI keeps the tool working
with it; it measures nothing). `--profile` samples the server with py-spy during the main step.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.scenarios import SCENARIOS

# The scenarios that run on `chatmesh cluster up` too (bench/cluster.py).
CLUSTER_SCENARIOS = ("send", "deliver", "fanout", "idle", "groups", "write", "soak")

SMOKE: dict[str, dict[str, object]] = {
    "send": {"users": 20, "rates": [40], "seconds": 1.0, "workers": 1},
    "deliver": {"devices": 20, "rates": [20], "seconds": 1.0, "workers": 1},
    "fanout": {"members": 30, "messages": 2, "gap_s": 0.2, "workers": 1},
    "idle": {"devices": 30, "steps": 2, "hold_s": 0.2, "workers": 1, "settle_s": 0.2},
    "history": {"messages": 300, "requests": 30, "concurrency": [1]},
    "media": {
        "uploads": 2,
        "uploaders": 2,
        "image_px": "320x240",
        "image_mib": 0.02,
        "idle_ping_s": 0.3,
    },
    "search": {"messages": 2000, "conversations": 20, "group_size": 5, "requests": 40},
    "groups": {"users": 20, "rates": [20], "seconds": 1.0, "workers": 1},
    "write": {"senders": 4, "seconds": 1.0},
    "soak": {"devices": 20, "rates": [20], "seconds": 1.0, "minutes": 2, "workers": 1},
    "push": {
        "members": 20,
        "messages": 2,
        "gap_s": 0.1,
        "groups": 3,
        "rates": [20],
        "seconds": 1.0,
        "ack_rate": 20,
        "ack_seconds": 1.0,
        "workers": 1,
    },
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--mode", choices=["embedded", "cluster"], default="embedded")
    parser.add_argument(
        "--out",
        default=".bench-results",
        help="where results go (default .bench-results/, untracked; the figures in docs come"
        " from runs kept under bench/results/ with --out)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--profile", action="store_true", help="py-spy the server")
    parser.add_argument("--workers", type=int, default=1, help="load-generator processes")
    parser.add_argument("--nofile", type=int, default=20000, help="RLIMIT_NOFILE to raise to")
    parser.add_argument("--body-bytes", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured step")
    parser.add_argument("--minutes", type=int, default=10, help="soak: measured windows")
    parser.add_argument("--rates", type=_ints, default=None, help="offered sends/s, e.g. 500,1000")
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument(
        "--binary",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="binary protobuf frames instead of proto3 JSON text (default: JSON for groups"
        " and write, binary for the older scenarios)",
    )
    # write
    parser.add_argument("--senders", type=int, default=20, help="write: in one conversation")
    # send
    parser.add_argument("--users", type=int, default=400, help="send: 400, groups: 100")
    parser.add_argument(
        "--per-user-rate",
        type=float,
        default=15.0,
        help="cap per user/s (send: 15; write: 1000, the server's limit lifted)",
    )
    # deliver / idle
    parser.add_argument("--devices", type=int, default=None, help="deliver: 1000, idle: 10000")
    # fanout
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument(
        "--messages", type=int, default=None, help="fanout: 5, history/search: 100000"
    )
    parser.add_argument("--gap-s", type=float, default=3.0, help="fanout: between messages")
    # idle
    parser.add_argument("--steps", type=int, default=4, help="idle: connect in this many steps")
    parser.add_argument("--hold-s", type=float, default=25.0, help="idle: hold after connecting")
    parser.add_argument("--settle-s", type=float, default=2.0, help="idle: wait before RSS")
    parser.add_argument(
        "--subscribe",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="idle: devices resume (open their event stream), as apps do",
    )
    # history
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=_ints, default=[1, 8])
    parser.add_argument("--page", type=int, default=50)
    # search
    parser.add_argument("--conversations", type=int, default=1000, help="search: to spread over")
    parser.add_argument(
        "--engine", choices=("fts5", "solr"), default="fts5", help="search: the engine measured"
    )
    parser.add_argument(
        "--index-lanes",
        type=int,
        default=1,
        help="search: conversations the indexer writes at once (the service's default is 8)",
    )
    parser.add_argument(
        "--solr-url",
        default="",
        help="search --engine solr: a SolrCloud node's base URL (default: start a throwaway one)",
    )
    # media
    parser.add_argument("--uploads", type=int, default=None, help="media: 40 in all")
    parser.add_argument("--uploaders", type=int, default=None, help="media: 8 concurrent")
    parser.add_argument("--image-px", default="4000x3000", help="media: WIDTHxHEIGHT")
    parser.add_argument("--image-mib", type=float, default=5.0, help="media: JPEG size")
    parser.add_argument("--ping-ms", type=float, default=50.0, help="media: ping interval")
    parser.add_argument("--idle-ping-s", type=float, default=2.0, help="media: pings before")
    # push (also --members, --messages, --gap-s, --rates, --seconds, --group-size)
    parser.add_argument("--groups", type=int, default=100, help="push: steady-load groups")
    parser.add_argument("--ack-rate", type=float, default=200.0, help="push: ack step sends/s")
    parser.add_argument("--ack-seconds", type=float, default=5.0, help="push: per ack step")
    parser.add_argument(
        "--device-interval-s",
        type=float,
        default=0.0,
        help="push: CHATMESH_NOTIFY_DEVICE_INTERVAL_S of the server (product default 1)",
    )
    return parser


_DEFAULTS: dict[str, dict[str, object]] = {
    "send": {"rates": [500, 1000, 1500, 2000]},
    "deliver": {"rates": [250, 500, 1000], "devices": 1000},
    "soak": {"rates": [250], "devices": 5000, "seconds": 60.0, "minutes": 10, "workers": 2},
    "fanout": {"messages": 5},
    "idle": {"devices": 10000, "workers": 2},
    "history": {"messages": 100_000},
    "media": {"uploads": 40, "uploaders": 8},
    "search": {"messages": 100_000, "group_size": 50, "requests": 2000, "page": 20},
    "push": {"members": 1000, "messages": 3, "gap_s": 1.0, "rates": [200]},
    "groups": {"users": 100, "rates": [100, 250, 500, 1000], "binary": False},
    "write": {"per_user_rate": 1000.0, "binary": False},
}


def _resolve(args: argparse.Namespace, scenario: str, given: set[str]) -> argparse.Namespace:
    resolved = argparse.Namespace(**vars(args))
    for key, value in _DEFAULTS[scenario].items():
        if key not in given:
            setattr(resolved, key, value)
    if resolved.binary is None:
        resolved.binary = True
    if args.smoke:
        for key, value in SMOKE[scenario].items():
            setattr(resolved, key, value)
    return resolved


def _given(argv: Sequence[str]) -> set[str]:
    """Options named on the command line (their defaults must not be replaced)."""
    names = set()
    for token in argv:
        if token.startswith("--"):
            names.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return names


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    given = _given(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.mode == "cluster":
        if args.scenario == "all":
            names = [n for n in names if n in CLUSTER_SCENARIOS]
        elif args.scenario not in CLUSTER_SCENARIOS:
            print(
                f"python -m bench: {args.scenario} has no --mode cluster yet (it seeds or reads"
                " the embedded data dir); cluster mode runs: " + ", ".join(CLUSTER_SCENARIOS),
                file=sys.stderr,
            )
            return 2
    for name in names:
        resolved = _resolve(args, name, given)
        result = SCENARIOS[name](resolved)
        written = result.write(Path(args.out))
        print(result.markdown())
        print("written: " + ", ".join(str(p) for p in written), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

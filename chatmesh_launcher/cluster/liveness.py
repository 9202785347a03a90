"""Is a component still the process `up` started, and does it answer its probe?"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .state import Component


def start_ticks(pid: int) -> int:
    """The start time of process `pid` in clock ticks since boot; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else 0


def pid_alive(component: Component) -> bool:
    """The pid runs and is the same process that was recorded (not a zombie, not recycled)."""
    ticks = start_ticks(component.pid)
    return ticks != 0 and (component.start_ticks in (0, ticks))


def _grpc_serving(target: str, timeout_s: float) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tcp_open(address: str, timeout_s: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def healthy(component: Component, timeout_s: float = 2.0) -> bool:
    """The component's own probe passes (see Component.probe)."""
    if component.probe == "grpc":
        return _grpc_serving(component.address, timeout_s)
    if component.probe == "http":
        return _http_ok(component.url, timeout_s)
    return _tcp_open(component.address, timeout_s)


def liveness(component: Component) -> str:
    """ "up" (alive and healthy), "unhealthy" (alive, probe fails) or "down" (no process)."""
    if not pid_alive(component):
        return "down"
    return "up" if healthy(component) else "unhealthy"


def own_process_group(pid: int) -> bool:
    """`up` starts each component with setsid, so its pid leads its own process group."""
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False

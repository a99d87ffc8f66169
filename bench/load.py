"""How busy the machine was around a measurement: load averages and the other processes
that used the CPU, so speed and effort numbers say what they were measured beside.

Read from the OS alone (os.getloadavg, /proc on Linux): no extra package. Where /proc is
missing the process list is empty and says so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """{pid: (command name, user + system ticks)} of every process /proc shows."""
    out: dict[int, tuple[str, int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1: stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        try:
            out[int(d.name)] = (name, int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            continue
    return out


def _own_pids() -> set[int]:
    """This process and its children (the bench's workers are not 'other' load)."""
    own = {os.getpid()}
    try:
        for d in Path("/proc").glob("[0-9]*"):
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) in own:
                own.add(int(d.name))
    except OSError:
        pass
    return own


def machine_load(sample_s: float = 0.5, top: int = 5) -> dict[str, Any]:
    """Load averages (1, 5, 15 min) and the busiest other processes over `sample_s` seconds,
    each as the share of one core it used: {"loadavg", "cores", "others", "sampled_s"}."""
    try:
        loadavg = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        loadavg = None
    if not Path("/proc/self/stat").is_file():
        return {"loadavg": loadavg, "cores": os.cpu_count(), "others": None,
                "note": "no /proc: other processes unknown"}
    before, t0 = _cpu_ticks(), time.monotonic()
    time.sleep(sample_s)
    after, dt = _cpu_ticks(), time.monotonic() - t0
    own = _own_pids()
    busy = []
    for pid, (name, ticks) in after.items():
        if pid in own or pid not in before:
            continue
        used = (ticks - before[pid][1]) / TICKS / dt
        if used >= 0.05:
            busy.append({"pid": pid, "name": name, "cpu": round(used, 2)})
    busy.sort(key=lambda p: -p["cpu"])
    return {"loadavg": loadavg, "cores": os.cpu_count(), "others": busy[:top],
            "sampled_s": round(dt, 2)}


def describe(load: dict[str, Any] | None) -> str:
    """One line for report.md."""
    if not load:
        return "not recorded"
    avg = load.get("loadavg")
    text = ("load average " + " / ".join(f"{x:g}" for x in avg) + " (1, 5, 15 min)"
            if avg else "load average unknown")
    others = load.get("others")
    if others is None:
        return f"{text}; {load.get('note', 'other processes unknown')}"
    if not others:
        return f"{text}; no other process busy"
    busy = ", ".join(f"{p['name']} ({p['cpu']:.0%} of a core)" for p in others)
    return f"{text}; other processes busy: {busy}"

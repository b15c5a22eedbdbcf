"""Child processes die with their parent, and a parent can find and kill what is left of its children.

Linux: `die_with_parent()` sets PR_SET_PDEATHSIG (prctl via ctypes) so the kernel sends SIGKILL to the
process when its parent ends, however it ends (SIGKILL included); `popen_preexec()` does the same for
a subprocess (the embedded Redis). Elsewhere these do nothing and the parent's own stop path is all.
Children and their state come from psutil.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil

PR_SET_PDEATHSIG = 1
_libc = None


def _prctl_pdeathsig(sig: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """This process gets `sig` when its parent ends. `parent_pid`: the expected parent; when it is
    already gone (it died before we got here) this process exits at once."""
    _prctl_pdeathsig(sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


PR_SET_NAME = 15


def set_name(name: str) -> None:
    """The process's name as `ps -o comm`, `top` and /proc/<pid>/comm show it (15 bytes at most;
    e.g. `streamer:engine`, `ingest:lobby`), so an operator can tell the children apart. Linux only."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def popen_preexec() -> None:
    """preexec_fn for subprocess.Popen: the child gets SIGKILL when the parent ends."""
    _prctl_pdeathsig(signal.SIGKILL)


def children(pid: int | None = None) -> list[int]:
    """Direct children of `pid` (default: this process), zombies left out."""
    try:
        kids = psutil.Process(pid).children()
    except psutil.Error:
        return []
    return [k.pid for k in kids if _running(k)]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return pid > 0 and _running(psutil.Process(pid))
    except psutil.Error:
        return False


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _resource_tracker_pid() -> int | None:
    try:
        from multiprocessing import resource_tracker

        return resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return None


def end(procs: list[Any], grace: float = 0.3, reap: float = 1.0) -> None:
    """The one kill sequence, for processes of any kind (multiprocessing.Process, subprocess.Popen,
    psutil.Process): terminate those still running, wait up to `grace` s for them all, kill what is
    left and wait (reaping it) up to `reap` s. grace 0: killed at once, no terminate."""
    live = [p for p in procs if _is_running(p)]
    if grace > 0:
        _send(live, "terminate")
        _wait_all(live, grace)
        live = [p for p in live if _is_running(p)]
    _send(live, "kill")
    _wait_all(live, reap)


def _is_running(p: Any) -> bool:
    if isinstance(p, psutil.Process):
        return _running(p)
    if hasattr(p, "is_alive"):  # multiprocessing.Process
        return p.is_alive()
    return p.poll() is None  # subprocess.Popen


def _send(procs: list[Any], how: str) -> None:
    for p in procs:
        try:
            getattr(p, how)()
        except (OSError, psutil.Error):
            pass  # ended meanwhile


def _wait_all(procs: list[Any], timeout: float) -> None:
    """Wait for (and reap) each of `procs` until one shared deadline."""
    deadline = time.monotonic() + timeout
    for p in procs:
        left = max(deadline - time.monotonic(), 0)
        if hasattr(p, "join"):  # multiprocessing.Process: join reaps it and sets its exitcode
            p.join(left)
            continue
        try:
            p.wait(left)
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            pass


def kill_children(wait: float = 0.5) -> list[int]:
    """SIGKILL every direct child of this process but multiprocessing's resource tracker (it ends by
    itself after us and unlinks what shared memory is left), reaping them for up to `wait` s. Returns
    the pids killed."""
    tracker = _resource_tracker_pid()
    try:
        kids = [k for k in psutil.Process().children() if k.pid != tracker]
    except psutil.Error:
        kids = []
    end(kids, grace=0, reap=wait)  # zombies among them are only reaped
    return [k.pid for k in kids]

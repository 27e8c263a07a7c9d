"""The deadline watchdog: one thread per process fires every call's deadline, in forked children too."""

from __future__ import annotations

import os
import signal
import socket
import threading

from emedgene_provider.client.deadline import Deadline


class _Connection:
    """Stands for the urllib3 connection that owns the socket (the deadline marks its owner)."""


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "emedgene-deadlines"]


def test_many_calls_share_one_watchdog_thread() -> None:
    for _ in range(200):
        with Deadline(30.0) as deadline:
            pass
        assert not deadline.fired
    assert len(_watchdog_threads()) == 1


def test_a_deadline_cuts_a_blocked_read() -> None:
    left, right = socket.socketpair()
    with left, right, Deadline(0.2) as deadline:
        deadline.watch(_Connection(), left)
        # Nothing is ever sent: only the deadline can end this read.
        assert left.recv(1) == b""
    assert deadline.fired


def test_an_earlier_deadline_registered_later_still_fires_first() -> None:
    left, right = socket.socketpair()
    with left, right, Deadline(3600.0) as far:
        with Deadline(0.2) as near:
            near.watch(_Connection(), left)
            assert left.recv(1) == b""
        assert near.fired
        assert not far.fired


def test_a_forked_child_gets_its_own_watchdog() -> None:
    with Deadline(30.0):
        pass  # the parent's thread exists now; the child will not have it
    pid = os.fork()
    if pid == 0:  # the child: a deadline must still cut a blocked read
        code = 1
        signal.alarm(5)  # without a watchdog nothing ends the read: die of SIGALRM, not hang
        try:
            left, _right = socket.socketpair()
            with Deadline(0.2) as deadline:
                deadline.watch(_Connection(), left)
                left.recv(1)
            code = 0 if deadline.fired and len(_watchdog_threads()) == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

"""Signals reach the main loop as a set read from a socket, never as work done
inside a handler (see mimecast_exporter.signals; the storm test in
test_reload.py shows what a handler taking a lock did)."""

from __future__ import annotations

import os
import signal

from mimecast_exporter.signals import Signals


def test_each_signal_that_came_is_told_once_and_the_socket_is_let_go_after():
    before = signal.getsignal(signal.SIGUSR2)
    try:
        with Signals((signal.SIGUSR2,)) as signals:
            assert signals.wait(0) == set()
            for _ in range(500):  # a storm: one entry, and nothing blocks
                os.kill(os.getpid(), signal.SIGUSR2)
            assert signals.wait(5) == {signal.SIGUSR2}
            assert signals.wait(0) == set()  # read once
            os.kill(os.getpid(), signal.SIGUSR2)
            assert signals.wait() == {signal.SIGUSR2}  # an untimed wait wakes
        # No longer the wakeup descriptor: a later signal's byte cannot land in
        # a file that reuses its number.
        assert signal.set_wakeup_fd(-1) == -1
        os.kill(os.getpid(), signal.SIGUSR2)  # still caught, and ignored
    finally:
        signal.signal(signal.SIGUSR2, before)

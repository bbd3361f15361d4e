"""One Rasa process per core on one port: ``python -m bot.supervise <bot.serve arguments>``.

Starts ``RASA_PROCESSES`` (default: the number of cores) ``python -m bot.serve`` processes
with the same arguments and ``RASA_REUSE_PORT=true``: each binds the same host:port with
``SO_REUSEPORT`` and the kernel spreads new connections over the processes that listen
(no balancer process, no stickiness; docs/deployment.md "One Rasa process per core").

* A process that exits is started again (1 s later, doubling up to 30 s while it keeps
  dying within a minute of its start). While it loads the model its socket is bound but not
  listening, so the kernel gives it no connection: the others take them all.
* A process that *refuses* to start (exit status 2: a configuration problem, printed by
  ``bot.serve``) stops them all: the supervisor exits with status 2 rather than restart a
  process that can never start.
* SIGTERM / SIGINT / SIGHUP: every process gets SIGTERM (each finishes its widget turns in
  flight for up to ``WIDGET_DRAIN_SECONDS``); what is still running ``WIDGET_DRAIN_SECONDS``
  + 10 s later, or at a second signal, gets SIGKILL. Give the process manager at least that
  long before it kills the supervisor.
* The processes die with the supervisor (``PR_SET_PDEATHSIG``), so a killed supervisor
  leaves nobody holding the port.

With ``RASA_PROCESSES=1`` the single process runs without ``SO_REUSEPORT`` unless
``RASA_REUSE_PORT`` says otherwise. Several processes need the Redis lock store and
``REDIS_URL``; ``bot.serve`` refuses to start without them.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

__all__ = ["Supervisor", "main"]

#: ``bot.serve``'s exit status when it refuses to start (a configuration problem).
REFUSED = 2
RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
#: A process that ran this long before it died is restarted after RESTART_DELAY again.
STABLE_AFTER = 60.0
POLL = 0.2


def _log(message: str) -> None:
    print(f"Rasa supervisor: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the child gets SIGTERM when we die (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


@dataclass
class Slot:
    """One of the N processes: the current one and its restart state."""

    index: int
    process: Optional[subprocess.Popen] = None
    started: float = 0.0
    restart_at: float = 0.0
    delay: float = RESTART_DELAY
    restarts: int = 0


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until stopped.

    Args:
        command: The program and its arguments (``python -m bot.serve ...``).
        processes: How many copies.
        env: Their environment.
        stop_timeout: Seconds between SIGTERM and SIGKILL when stopping.
        clock: ``time.monotonic`` (tests may pass another).
    """

    def __init__(self, command: Sequence[str], processes: int, env: Mapping[str, str],
                 stop_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.slots = [Slot(index) for index in range(1, processes + 1)]
        self.stopping = False
        self.forced = False
        self.status = 0

    # -- processes

    def _start(self, slot: Slot) -> None:
        slot.process = subprocess.Popen(
            self.command, env=self.env, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        slot.started = self.clock()
        _log(f"process {slot.index}/{len(self.slots)} started (pid {slot.process.pid})")

    def pids(self) -> List[int]:
        """The process ids of the processes running now."""
        return [s.process.pid for s in self.slots if s.process and s.process.poll() is None]

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                try:
                    slot.process.send_signal(sig)
                except ProcessLookupError:
                    pass

    def request_stop(self, signum: int = signal.SIGTERM, _frame: object = None) -> None:
        """Signal handler: stop everything (a second call kills at once)."""
        if self.stopping:
            self.forced = True
            return
        self.stopping = True
        _log(f"{signal.Signals(signum).name}: stopping {len(self.pids())} process(es)")
        self._signal_all(signal.SIGTERM)

    # -- the loop

    def step(self) -> bool:
        """Reap and restart once; return False when the supervisor should stop."""
        now = self.clock()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                slot.process = None
                if self.stopping:
                    continue
                if code == REFUSED:
                    _log(f"process {slot.index} (pid {process.pid}) refused to start (exit "
                         f"status {REFUSED}, see its message above); stopping all.")
                    self.status = REFUSED
                    self.request_stop()
                    return True
                ran = now - slot.started
                if ran >= STABLE_AFTER or not slot.restarts:
                    slot.delay = RESTART_DELAY
                else:  # it keeps dying soon after its start: back off
                    slot.delay = min(slot.delay * 2, RESTART_DELAY_MAX)
                slot.restart_at = now + slot.delay
                slot.restarts += 1
                how = f"signal {-code}" if code < 0 else f"status {code}"
                _log(f"process {slot.index} (pid {process.pid}) exited with {how} after "
                     f"{ran:.0f} s; starting it again in {slot.delay:.0f} s")
            if slot.process is None and not self.stopping and now >= slot.restart_at:
                self._start(slot)
        return not (self.stopping and not self.pids())

    def run(self) -> int:
        """Start every process, keep them running, stop on a signal; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        _log(f"starting {len(self.slots)} Rasa process(es) on one port (SO_REUSEPORT)"
             if len(self.slots) > 1 else "starting 1 Rasa process")
        for slot in self.slots:
            self._start(slot)
        stop_deadline: Optional[float] = None
        while self.step():
            if self.stopping:
                stop_deadline = stop_deadline or self.clock() + self.stop_timeout
                if self.forced or self.clock() >= stop_deadline:
                    _log(f"killing {len(self.pids())} process(es) still running")
                    self._signal_all(signal.SIGKILL)
                    self.forced = False
                    stop_deadline = self.clock() + 3600
            time.sleep(POLL)
        _log("all processes stopped")
        return self.status


def child_env(environ: Mapping[str, str], processes: int) -> Dict[str, str]:
    """The processes' environment: ``RASA_REUSE_PORT=true`` when there are several."""
    env = dict(environ)
    if processes > 1:
        env["RASA_REUSE_PORT"] = "true"
    return env


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``RASA_PROCESSES`` ``python -m bot.serve <argv>`` processes until stopped."""
    from bot.settings import get_settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        print("usage: python -m bot.supervise --model ... --credentials ... --endpoints ... "
              "--port ...  (the arguments of python -m bot.serve)")
        return 0 if args else REFUSED
    try:
        settings = get_settings()
    except ValueError as error:
        _log(f"configuration error: {error}")
        return REFUSED
    processes = settings.rasa_processes
    env = child_env(os.environ, processes)
    supervisor = Supervisor([sys.executable, "-m", "bot.serve", *args], processes, env,
                            stop_timeout=settings.widget_drain_seconds + 10.0)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())

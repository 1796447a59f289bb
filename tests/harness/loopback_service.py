"""What the test harness's own servers (PostgreSQL, Redis) share: one foreground process in a
process group of its own, its files and log under one directory, stopped by a signal (the whole
group killed if it lingers), and stopped at interpreter exit if a test left it running."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
from pathlib import Path


class LoopbackService:
    """Base of a server started on 127.0.0.1 by a test.

    Subclasses set :attr:`root` and :attr:`log_path` and call :meth:`_started` with the server
    process (started with ``start_new_session=True``).
    """

    host = "127.0.0.1"
    stop_signal = signal.SIGTERM
    stop_timeout = 20.0
    root: Path
    log_path: Path
    _process: subprocess.Popen[bytes] | None = None

    def _started(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        _running.add(self)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, remove: bool = True) -> None:
        """Signal the server and wait; kill its process group if it lingers; delete ``root``."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


_running: set[LoopbackService] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    for server in list(_running):
        server.stop()

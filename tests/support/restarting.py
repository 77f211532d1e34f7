"""A local process started again whenever it ends on its own, as a Deployment's pod is.

The harness plays kubelet for the operator's replicas this way (``troupe_driver``'s
``OperatorProcess``, the chart's Deployment in ``test_chart_install``): ``exits`` records
each end it did not ask for (a crash, a SIGKILL), as a kubelet counts restarts, and the
process starts again with the same command and environment. ``signal`` and ``stop`` end
it for good, as a Deployment scaled down would. Its output goes to ``log``, appended across
restarts. Not emulated: back-off between restarts.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import threading
from dataclasses import dataclass, field


@dataclass
class RestartingProcess:
    command: list[str]
    environment: dict[str, str]
    log: pathlib.Path
    exits: list[int] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                self.command, env=self.environment, stdout=output, stderr=subprocess.STDOUT
            )
        threading.Thread(target=self._restart_on_exit, args=(self._process,), daemon=True).start()

    def _restart_on_exit(self, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if not self._stopping.is_set():
            self.exits.append(code)
            self.start()

    def kill(self) -> None:
        """SIGKILL, as on a node failure; it starts again."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        """Send ``sig`` and do not start it again."""
        self._stopping.set()
        if self._process is not None:
            self._process.send_signal(sig)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; not started again."""
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            terminate(self._process)


def terminate(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``grace`` seconds, as a kubelet does."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)

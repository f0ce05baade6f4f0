"""A model-service stop finishes within its grace even while a hot reload is loading a new
version in its thread: the loading thread cannot be interrupted, so the process must not
wait for it. The real entry point as a process, with Predictor.load held (never returns)
for the new version; SIGTERM must end the process, exit 0, with the load still held."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recsys.launcher import wait_serving
from recsys.redis_server import free_port
from services.model.reload import in_daemon_thread

NEWER = "99991231T235959999999Z"  # sorts after any trained version

# The service's main(), with Predictor.load held for every version but the first: it marks
# the file named by argv[1] and blocks for good, as a load stuck on a slow disk would.
HELD_MAIN = """
import sys, threading
from pathlib import Path
from services.model import predictor, server

real_load = predictor.Predictor.load
def load(model_dir, version=None):
    if version != sys.argv[2]:
        return real_load(model_dir, version)
    Path(sys.argv[1]).write_text(version)
    threading.Event().wait()  # never set: the load never returns
predictor.Predictor.load = staticmethod(load)
sys.exit(server.main())
"""


def test_in_daemon_thread_answers_raises_and_can_be_abandoned():
    release = threading.Event()

    async def main():
        assert await in_daemon_thread(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ValueError):
            await in_daemon_thread(int, "not a number")
        task = asyncio.ensure_future(in_daemon_thread(release.wait))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())  # returned with the thread still waiting: asyncio.run did not join it
    (left,) = [t for t in threading.enumerate() if t.name == "load-wait"]
    assert left.daemon and left.is_alive()
    release.set()
    left.join(10)
    assert not left.is_alive()


@pytest.mark.slow
def test_a_stop_during_a_reload_leaves_the_loading_thread_behind(trained_run, tmp_path):
    _, run = trained_run
    model_dir = tmp_path / "models"
    shutil.copytree(run.artifact_path, model_dir / run.artifact_path.name)
    held = tmp_path / "held"
    port = free_port()
    env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "MODEL_PORT": str(port),
        "METRICS_PORT": "0",
        "MODEL_POLL_S": "0.2",
        "GRACE_S": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_MAIN, str(held), NEWER],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(f"127.0.0.1:{port}", 90, process)
        shutil.copytree(run.artifact_path, model_dir / NEWER)  # the watcher finds it
        deadline = time.monotonic() + 60
        while not held.exists():
            assert process.poll() is None and time.monotonic() < deadline, "no reload began"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        # the bound only keeps a broken stop from hanging the suite (it waits for the load)
        code = process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read()
    assert code == 0, output
    assert '"message": "stopped"' in output, output
    assert held.read_text() == NEWER  # the load was under way when the stop came...
    assert "model version swapped in" not in output  # ...and never finished

"""Starts the real `capstan server` binary on a free port for the real `mlflow` client."""
import os
import re
import subprocess
import tempfile

import pytest


def _binary():
    exe = os.environ.get("CAPSTAN_BIN")
    if not exe:
        raise RuntimeError("set CAPSTAN_BIN to the capstan executable (scripts/test.sh does)")
    return exe


@pytest.fixture(scope="session")
def capstan_url():
    home = tempfile.mkdtemp(prefix="capstan-pytest-")
    # Share the machine's model cache (the Rust tests fetch MiniLM there once).
    cache = os.environ.get("CAPSTAN_CACHE", os.path.expanduser("~/.cache/capstan"))
    if os.path.isdir(os.path.join(cache, "models")):
        os.symlink(os.path.join(cache, "models"), os.path.join(home, "models"))
    proc = subprocess.Popen(
        [_binary(), "--home", home, "server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"http://[0-9.]+:\d+", line)
    assert m, f"unexpected first line from capstan server: {line!r}"
    yield m.group(0)
    proc.kill()
    proc.wait()


@pytest.fixture()
def mlflow(capstan_url, monkeypatch):
    import mlflow as m

    m.set_tracking_uri(capstan_url)
    yield m
    while m.active_run():
        m.end_run()

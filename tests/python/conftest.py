"""Fixtures of the Python SDK tests: a real mlops-server (port 0, data in a temp dir) that a test
can kill -9 and start again on the same port, and child Python processes that use the SDK.

MLOPS_BUILD_DIR (default build/default) holds the binaries; the SDK is imported from
PYTHONPATH (the build tree's python/ dir, or an installed package)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build" / "default"))
SERVER_BINARY = BUILD / "tools" / "server" / "mlops-server"
CLI = BUILD / "tools" / "cli" / "mlops"


class Server:
    def __init__(self, directory: pathlib.Path, extra_args=()) -> None:
        self.extra_args = list(extra_args)
        self.data_dir = directory / "data"
        self.log = directory / "server.log"
        self.port_file = directory / "ports"
        self.port = 0
        self.process = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.port_file.exists():
            self.port_file.unlink()
        args = [str(SERVER_BINARY), "--host=127.0.0.1", f"--port={self.port}", "--metrics_port=0",
                f"--data_dir={self.data_dir}", f"--port_file={self.port_file}",
                "--shutdown_grace_s=1", *self.extra_args]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.port_file.exists():
                text = self.port_file.read_text().split()
                if len(text) >= 2:
                    self.port = int(text[0])
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"mlops-server exited early: see {self.log}")
            time.sleep(0.02)
        raise RuntimeError(f"mlops-server wrote no port file: see {self.log}")

    def kill9(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.process = None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def sdk_env(server, tmp_path, monkeypatch):
    """This process's SDK pointed at the module's server, with a spool dir of the test's own."""
    import mlops
    monkeypatch.setenv("MLOPS_SERVER", server.address)
    monkeypatch.setenv("MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    for name in ("MLOPS_RUN_ID", "MLOPS_PROJECT", "MLOPS_TOKEN", "MLOPS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    mlops.set_server(server.address)
    yield {"MLOPS_SERVER": server.address, "MLOPS_SPOOL_DIR": str(tmp_path / "spool")}


def child_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("MLOPS_RUN_ID", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(code: str, env: dict, timeout: float = 120, check: bool = True):
    """Runs `code` in a new interpreter (this one's), returning the CompletedProcess."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done

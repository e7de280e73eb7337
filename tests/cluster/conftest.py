"""The cluster's servers for tests: a nats-server with JetStream and a
PostgreSQL 15, each on a free loopback port in a temp dir, started per test
module and stopped by pid. Tests that need them skip when the binaries (or
the cluster extra) are absent."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("CODEX_PG_BIN", "/usr/local/bin"))
#: How long a server may take to accept connections.
START_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {START_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _need_extra() -> None:
    pytest.importorskip("nats", reason="the cluster extra is not installed")
    pytest.importorskip("psycopg", reason="the cluster extra is not installed")
    pytest.importorskip("psycopg_pool", reason="the cluster extra is not installed")


class NatsServer:
    """A nats-server with JetStream on a loopback port, its store in ``store``;
    restartable on the same port and store (a connection bounce)."""

    def __init__(self, store: str) -> None:
        _need_extra()
        binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
        if binary is None:
            pytest.skip("nats-server is not installed (apt-get install nats-server)")
        self.argv = [binary, "-a", "127.0.0.1", "-p", str(_free_port()), "-js", "-sd", store]
        self.url = f"nats://127.0.0.1:{self.argv[4]}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(int(self.argv[4]), self.proc, "nats-server")

    def kill(self) -> None:
        """Stop it at once: what it held for delivery is lost."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _stop(self.proc)


@contextmanager
def _nats_server() -> Iterator[NatsServer]:
    with tempfile.TemporaryDirectory(prefix="codex-nats-") as store:
        server = NatsServer(store)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    with _nats_server() as server:
        yield server.url


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server of the test's own, which it may restart."""
    with _nats_server() as server:
        yield server


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    """A throwaway cluster. PostgreSQL refuses to run as root, so as root
    it runs as the ``postgres`` user, in a directory that user owns."""
    _need_extra()
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL binaries are not in {PG_BIN} (set CODEX_PG_BIN)")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="codex-pg-") as root:
        data = Path(root) / "data"
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "codex",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen([*as_user, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                                 "-h", "127.0.0.1", "-k", root, "-c", "fsync=off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_port(port, proc, "postgres")
            yield f"postgresql://codex@127.0.0.1:{port}/postgres"
        finally:
            _stop(proc)

"""The drain timeout of a cluster node (README "Cluster", "Drain"):
config.toml's ``[cluster] drain_timeout_secs``, which
``$TRIO_CODEX_DRAIN_TIMEOUT`` overrides, each refused with what to fix when
it is not a number of seconds. (The drain itself: test_cluster_nats.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from harness import OURS, TIMEOUT, server_env
from trio_codex.runtime.cluster.drain import DRAIN_DEADLINE, drain_deadline
from trio_codex.runtime.config import ConfigError, load_settings


def test_the_drain_timeout_comes_from_the_variable_then_the_config_then_the_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_CODEX_DRAIN_TIMEOUT", raising=False)
    assert drain_deadline() == DRAIN_DEADLINE
    assert drain_deadline(7.5) == 7.5
    monkeypatch.setenv("TRIO_CODEX_DRAIN_TIMEOUT", "3")
    assert drain_deadline(7.5) == 3.0


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_a_drain_timeout_variable_that_is_not_seconds_is_refused_with_what_to_set(
        monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TRIO_CODEX_DRAIN_TIMEOUT", raw)
    with pytest.raises(ValueError, match=r"TRIO_CODEX_DRAIN_TIMEOUT=.* is not a number of seconds; set it to 0 or more"):
        drain_deadline(7.5)


def test_config_toml_sets_the_drain_timeout_and_refuses_a_negative_one(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[cluster]\ndrain_timeout_secs = 12\n")
    assert load_settings(codex_home=tmp_path).cluster.drain_timeout_secs == 12.0
    (tmp_path / "config.toml").write_text("[cluster]\ndrain_timeout_secs = -1\n")
    with pytest.raises(ConfigError, match=r"invalid value for `cluster.drain_timeout_secs` in .*config.toml: "
                                          r"expected `float` >= 0"):
        load_settings(codex_home=tmp_path)


async def test_a_node_with_a_bad_drain_timeout_variable_does_not_start_and_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = server_env(home, TRIO_CODEX_DRAIN_TIMEOUT="soon")
    with trio.fail_after(TIMEOUT):
        # Refused before it connects: the NATS URL is never dialled.
        proc = await trio.run_process([*OURS, "app-server", "--cluster", "nats://127.0.0.1:1"], env=env,
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode == 2
    assert b"TRIO_CODEX_DRAIN_TIMEOUT='soon' is not a number of seconds" in proc.stderr

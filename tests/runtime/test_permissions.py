"""Permissions profiles without a server: what each id stands for, the
original's errors, and the user profiles we refuse rather than run wider."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_codex.runtime.commands import permissions
from trio_codex.runtime.config import Settings, load_settings
from trio_codex.runtime.commands.permissions import Permissions, PermissionsError
from trio_codex.runtime.protocol.v2.thread import (
    ActivePermissionProfile,
    DangerFullAccess,
    PermissionProfileListParams,
    ReadOnly,
    WorkspaceWrite,
)


def settings(tmp_path: Path, toml: str = "", *overrides: str) -> Settings:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(toml)
    return load_settings(codex_home=home, overrides=overrides, env={"HOME": str(tmp_path)})


def test_the_built_ins_are_the_three_sandbox_policies(tmp_path: Path) -> None:
    s = settings(tmp_path, "[sandbox_workspace_write]\nnetwork_access = true\nwritable_roots = ['/srv']\n")
    assert permissions.resolve(s, ":read-only") == Permissions(ReadOnly(), ActivePermissionProfile(":read-only"))
    # [sandbox_workspace_write] lends :workspace its switches, not its roots, as in the original.
    assert permissions.resolve(s, ":workspace") == Permissions(
        WorkspaceWrite([], network_access=True), ActivePermissionProfile(":workspace"))
    assert permissions.resolve(s, ":danger-full-access").sandbox == DangerFullAccess()


@pytest.mark.parametrize(("toml", "profile", "error"), [
    ("", ":nope", "default_permissions refers to unknown built-in profile `:nope`"),
    ("", "mine", "default_permissions requires a `[permissions]` table"),
    ("[permissions.other]\nextends = ':read-only'\n", "mine", "permissions profile `mine` is not defined"),
    ("[permissions.mine]\nextends = 'gone'\n", "mine", "permissions profile `mine` extends undefined profile `gone`"),
    ("[permissions.a]\nextends = 'b'\n[permissions.b]\nextends = 'a'\n", "a",
     "permissions profile inheritance cycle detected: a -> b -> a"),
    ("[permissions.mine]\nextends = ':danger-full-access'\n", "mine",
     "permissions profile `mine` cannot extend unsupported built-in profile `:danger-full-access`"),
    ("[permissions.':mine']\nextends = ':read-only'\n", ":read-only",
     "permissions profile `:mine` uses a reserved built-in profile prefix"),
])
def test_bad_ids_and_tables_get_the_originals_errors(tmp_path: Path, toml: str, profile: str, error: str) -> None:
    with pytest.raises(PermissionsError) as refused:
        permissions.resolve(settings(tmp_path, toml), profile)
    assert str(refused.value) == error


@pytest.mark.parametrize(("toml", "sandbox"), [
    ("extends = ':read-only'\n", ReadOnly()),
    ("extends = ':read-only'\n[permissions.p.network]\nenabled = true\n", ReadOnly(network_access=True)),
    ("[permissions.p.filesystem]\n':root' = 'read'\n", ReadOnly()),
    ("[permissions.p.filesystem]\n':root' = 'read'\n':workspace_roots' = { '.' = 'write' }\n", WorkspaceWrite()),
    ("extends = ':workspace'\n[permissions.p.filesystem]\n'/srv/cache' = 'write'\n'/etc' = 'read'\n",
     WorkspaceWrite(["/srv/cache"])),
    ("extends = 'base'\n[permissions.base]\nextends = ':workspace'\n[permissions.base.network]\nenabled = true\n",
     WorkspaceWrite(network_access=True)),
])
def test_a_user_profile_that_maps_onto_a_policy_runs_as_it(tmp_path: Path, toml: str, sandbox: object) -> None:
    s = settings(tmp_path, "[permissions.p]\n" + toml)
    assert permissions.resolve(s, "p").sandbox == sandbox


@pytest.mark.parametrize("toml", [
    "extends = ':read-only'\n[permissions.p.filesystem]\n'/etc' = 'none'\n",  # narrower reads
    "[permissions.p.filesystem]\n'/src' = 'read'\n",  # reads only /src
    "extends = ':read-only'\n[permissions.p.filesystem]\n'/srv' = 'write'\n",  # would make the cwd writable too
    "extends = ':workspace'\n[permissions.p.filesystem]\n'relative' = 'write'\n",
    "extends = ':workspace'\n[permissions.p.filesystem]\n':workspace_roots' = { 'docs' = 'write' }\n",
])
def test_a_user_profile_we_cannot_enforce_exactly_is_refused_not_widened(tmp_path: Path, toml: str) -> None:
    with pytest.raises(PermissionsError, match="trio-codex cannot enforce"):
        permissions.resolve(settings(tmp_path, "[permissions.p]\n" + toml), "p")


def test_the_configured_default_is_default_permissions_else_sandbox_mode_else_read_only(tmp_path: Path) -> None:
    assert permissions.configured(settings(tmp_path)).profile == ActivePermissionProfile(":read-only")
    legacy = permissions.configured(settings(tmp_path, "sandbox_mode = 'workspace-write'\n"))
    assert legacy.profile is None and isinstance(legacy.sandbox, WorkspaceWrite)
    named = permissions.configured(settings(tmp_path, "sandbox_mode = 'read-only'\n",
                                            "default_permissions=':danger-full-access'"))
    assert named == Permissions(DangerFullAccess(), ActivePermissionProfile(":danger-full-access"))


def test_the_list_pages_as_the_original(tmp_path: Path) -> None:
    s = settings(tmp_path, "[permissions.b]\nextends = ':read-only'\n[permissions.a]\ndescription = 'A'\n")
    whole = permissions.list_profiles(s, PermissionProfileListParams())
    assert [(p.id, p.description) for p in whole.data] == [
        (":read-only", None), (":workspace", None), (":danger-full-access", None), ("a", "A"), ("b", None)]
    first = permissions.list_profiles(s, PermissionProfileListParams(limit=0))
    assert [p.id for p in first.data] == [":read-only"] and first.next_cursor == "1"
    for cursor, error in (("x", "invalid cursor: x"), ("6", "cursor 6 exceeds total permission profiles 5")):
        with pytest.raises(ValueError, match=error):
            permissions.list_profiles(s, PermissionProfileListParams(cursor=cursor))

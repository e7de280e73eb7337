"""Command safety: shell words, script splitting, the safe and dangerous
lists, commandActions, approval requirements and decisions, patch safety and
the sandbox-denial heuristic.

The expected values are the original's: most cases are its own unit tests
(codex-rs ``shell-command/src/bash.rs``, ``is_safe_command.rs``,
``is_dangerous_command.rs``, ``parse_command.rs``, ``core/src/exec_policy.rs``,
``safety.rs``), the script-splitting cases were checked against
tree-sitter-bash 0.25, the parser the original uses.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from trio_codex.runtime.commands.safety import (
    RETRY_WITHOUT_SANDBOX_REASON,
    AskUser,
    AutoApprove,
    Forbidden,
    ListFilesAction,
    NeedsApproval,
    ReadAction,
    Reject,
    SearchAction,
    Skip,
    UnknownAction,
    approval_cache_key,
    assess_command,
    assess_patch,
    available_decisions,
    canonicalize_command_for_approval,
    command_might_be_dangerous,
    default_exec_approval_requirement,
    escalation_refusal,
    is_known_safe_command,
    is_likely_sandbox_denied,
    literal_commands,
    parse_command_actions,
    patch_approval_cache_keys,
    patch_wants_no_sandbox_approval,
    plain_commands,
    shell_argv,
    shell_script,
    shlex_join,
    shlex_split,
    unwritable_paths,
    wants_no_sandbox_approval,
    writable_roots,
)


def bash(script: str) -> list[str]:
    return ["bash", "-lc", script]


# ---------------------------------------------------------------------------
# Shell words
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ls -la", ["ls", "-la"]),
        ("echo 'a b' \"c d\" e\\ f", ["echo", "a b", "c d", "e f"]),
        ('echo "a\\"b" "\\$x" "\\q"', ["echo", 'a"b', "$x", "\\q"]),
        ("echo a # comment\nls", ["echo", "a", "ls"]),
        ("echo a#b", ["echo", "a#b"]),
        ("", []),
        ("echo 'open", None),
        ("echo trailing\\", None),
    ],
)
def test_shlex_split_follows_the_rust_shlex_crate(text: str, words: list[str] | None) -> None:
    assert shlex_split(text) == words


@pytest.mark.parametrize(
    ("words", "joined"),
    [
        (["ls", "-la", "./src"], "ls -la ./src"),
        (["eza", "--color=always", "src"], "eza '--color=always' src"),
        (["grep", "-R", "COD`EX_SANDBOX", "-n"], "grep -R 'COD`EX_SANDBOX' -n"),
        (["cat", "pkg\\src\\main.rs"], 'cat "pkg\\\\src\\\\main.rs"'),
        (["echo", "it's"], 'echo "it\'s"'),
        (["echo", "$HOME's"], "echo '$HOME'\"'s\""),
        (["echo", ""], "echo ''"),
        (["echo", "héllo"], "echo 'héllo'"),
        (["echo", "a\0b"], "<command included NUL byte>"),
    ],
)
def test_shlex_join_quotes_like_the_rust_shlex_crate(words: list[str], joined: str) -> None:
    assert shlex_join(words) == joined


def test_shell_argv_is_the_login_shell_running_the_script() -> None:
    assert shell_argv("ls -la") == ["/bin/bash", "-lc", "ls -la"]
    assert shell_argv("ls", shell="/usr/bin/zsh", login=False) == ["/usr/bin/zsh", "-c", "ls"]


@pytest.mark.parametrize(
    ("argv", "script"),
    [
        (["bash", "-lc", "ls"], "ls"),
        (["/bin/zsh", "-c", "ls"], "ls"),
        (["/usr/bin/sh", "-lc", "ls"], "ls"),
        (["bash", "-x", "ls"], None),
        (["bash", "-lc", "git", "status"], None),
        (["fish", "-c", "ls"], None),
    ],
)
def test_shell_script_takes_the_script_of_a_posix_shell_dash_c(argv: list[str], script: str | None) -> None:
    assert shell_script(argv) == script


# ---------------------------------------------------------------------------
# Script splitting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "commands"),
    [
        ("ls -1", [["ls", "-1"]]),
        ("ls && pwd; echo 'hi there' | wc -l", [["ls"], ["pwd"], ["echo", "hi there"], ["wc", "-l"]]),
        ("ls || pwd\npwd", [["ls"], ["pwd"], ["pwd"]]),
        ('echo "hello world"', [["echo", "hello world"]]),
        ('git commit -m "line1\nline2"', [["git", "commit", "-m", "line1\nline2"]]),
        ("echo \"/usr\"'/'\"local\"/bin", [["echo", "/usr/local/bin"]]),
        ("echo 123 456", [["echo", "123", "456"]]),
        ('rg -n "foo" -g"*.py"', [["rg", "-n", "foo", "-g*.py"]]),
        ("echo a\\ b \"c\\\"d\"", [["echo", "a\\ b", 'c\\"d']]),
        ("ls;", [["ls"]]),
        ("ls \\\n  -la", [["ls", "-la"]]),
        ("", []),
    ],
)
def test_plain_scripts_split_into_their_commands(script: str, commands: list[list[str]]) -> None:
    assert plain_commands(bash(script)) == commands


@pytest.mark.parametrize(
    "script",
    [
        "(ls)",
        "ls || (pwd && echo hi)",
        "ls > out.txt",
        "echo hi & echo bye",
        "echo $(pwd)",
        "echo `pwd`",
        "echo $HOME",
        'echo "hi $USER"',
        'rg -g"$(pwd)" pattern',
        "FOO=bar ls",
        "cat <<'EOF'\nhi\nEOF",
        "ls # comment",
        "! ls",
        "if true; then ls; fi",
        "{ ls; }",
        "export A=1 && ls",
        "ls |& wc",
        "ls &&",
        "&& ls",
        "ls ;; pwd",
        "ls | | wc",
        "echo 'unclosed",
    ],
)
def test_complex_or_broken_scripts_are_not_plain(script: str) -> None:
    assert plain_commands(bash(script)) is None


def test_only_a_posix_shell_with_dash_c_has_plain_commands() -> None:
    assert plain_commands(["zsh", "-lc", "ls"]) == [["ls"]]
    assert plain_commands(["ls", "-la"]) is None


@pytest.mark.parametrize(
    ("script", "commands"),
    [
        ("printf x | rm -rf /tmp/example", [["printf", "x"], ["rm", "-rf", "/tmp/example"]]),
        ("if test -d /tmp/e; then rm --force /tmp/e; fi", [["test", "-d", "/tmp/e"], ["rm", "--force", "/tmp/e"]]),
        ('rm -rf "$TARGET" >/dev/null', [["rm", "-rf"]]),
        ('for t in /tmp/a /tmp/b; do rm -r -f "$t"; done', [["rm", "-r", "-f"]]),
        ('echo "$(rm -rf /tmp/example)"', [["echo"], ["rm", "-rf", "/tmp/example"]]),
        ("cmd=rm; $cmd -rf /tmp/example", []),
        ("case x in a) ls;; esac", [["ls"]]),
        ("cat <<EOF\n$(rm -rf /tmp/x)\nEOF", [["cat"], ["rm", "-rf", "/tmp/x"]]),
        ("cat <<'EOF'\n$(rm -rf /tmp/x)\nEOF", [["cat"]]),
        ("cat > out foo", [["cat"]]),
    ],
)
def test_literal_commands_are_found_anywhere_in_a_valid_script(script: str, commands: list[list[str]]) -> None:
    assert sorted(literal_commands(bash(script))) == sorted(commands)


@pytest.mark.parametrize("script", ["if then rm -rf /tmp/example", "echo a ; ; ls", "cat <<EOF\nno end", "( )"])
def test_literal_commands_of_a_script_that_does_not_parse_are_none(script: str) -> None:
    assert literal_commands(bash(script)) is None


# ---------------------------------------------------------------------------
# Known-safe commands
# ---------------------------------------------------------------------------

SAFE = [
    *[[name] for name in "cat cd cut echo expr false grep head id ls nl paste pwd rev seq".split()],
    *[[name] for name in "stat tail tr true uname uniq wc which whoami".split()],
    ["numfmt", "1000"],
    ["tac", "Cargo.toml"],
    ["/bin/ls", "-la"],
    ["nl", "-nrz", "Cargo.toml"],
    ["base64"],
    ["base64", "-d", "file"],
    ["find", ".", "-name", "file.txt"],
    ["rg", "Cargo.toml", "-n"],
    ["git", "status"],
    ["git", "log", "-p", "-1"],
    ["git", "diff", "-p"],
    ["git", "show", "-p", "HEAD"],
    ["git", "branch"],
    ["git", "branch", "--show-current"],
    ["git", "branch", "-a", "-v", "--format=%(refname)"],
    ["sed", "-n", "10p"],
    ["sed", "-n", "1,5p", "file.txt"],
    bash("ls"),
    bash("grep -R \"Cargo.toml\" -n"),
    bash("sed -n '1,5p' file.txt"),
    bash("find . -name file.txt"),
    bash("grep -R \"Cargo.toml\" -n || true"),
    bash("ls && pwd"),
    bash("echo 'hi' ; ls"),
    bash("ls | wc -l"),
    bash("git log -p -1"),
    bash("git status && git diff"),
    ["zsh", "-lc", "ls"],
    ["/bin/bash", "-lc", "cat README.md | head -n 5"],
]

UNSAFE = [
    ["foo"],
    ["cargo", "check"],
    ["git", "fetch"],
    ["git", "checkout", "status"],
    ["git", "branch", "-d", "feature"],
    ["git", "branch", "new-branch"],
    ["git", "-C", ".", "status"],
    ["git", "-C.", "status"],
    ["git", "-c", "core.pager=cat", "log", "-n", "1"],
    ["git", "-ccore.pager=cat", "status"],
    ["git", "--config-env=core.pager=PAGER", "show", "HEAD"],
    ["git", "--git-dir", ".evil-git", "diff", "HEAD~1..HEAD"],
    ["git", "--work-tree=.", "status"],
    ["git", "--exec-path", ".git/helpers", "show", "HEAD"],
    ["git", "--namespace=attacker", "show", "HEAD"],
    ["git", "--super-prefix", "attacker/", "show", "HEAD"],
    ["git", "--paginate", "log", "-1"],
    ["git", "-p", "log", "-1"],
    ["git", "log", "--output=/tmp/git-log-out", "-n", "1"],
    ["git", "diff", "--output", "/tmp/git-diff-out"],
    ["git", "diff", "--ext-diff"],
    ["git", "show", "--textconv", "HEAD"],
    ["sed", "-n", "xp", "file.txt"],
    ["sed", "-n", "1,5p", "a", "b"],
    ["sed", "-i", "1,5p", "file"],
    ["base64", "-o", "out.bin"],
    ["base64", "--output", "out.bin"],
    ["base64", "--output=out.bin"],
    ["base64", "-ob64.txt"],
    ["find", ".", "-name", "file.txt", "-exec", "rm", "{}", ";"],
    ["find", ".", "-name", "*.py", "-execdir", "python3", "{}", ";"],
    ["find", ".", "-name", "file.txt", "-ok", "rm", "{}", ";"],
    ["find", ".", "-name", "*.py", "-okdir", "python3", "{}", ";"],
    ["find", ".", "-delete", "-name", "file.txt"],
    ["find", ".", "-fls", "/etc/passwd"],
    ["find", ".", "-fprint", "/etc/passwd"],
    ["find", ".", "-fprint0", "/etc/passwd"],
    ["find", ".", "-fprintf", "/root/suid.txt", "%#m %u %p\n"],
    ["rg", "--search-zip", "files"],
    ["rg", "-z", "files"],
    ["rg", "--pre", "pwned", "files"],
    ["rg", "--pre=pwned", "files"],
    ["rg", "--hostname-bin", "pwned", "files"],
    ["rg", "--hostname-bin=pwned", "files"],
    bash("git -C . branch -d feature"),
    bash("git --paginate log -1"),
    ["bash", "-lc", "git", "status"],
    bash("'git status'"),
    bash("find . -name file.txt -delete"),
    bash("ls && rm -rf /"),
    bash("(ls)"),
    bash("ls || (pwd && echo hi)"),
    bash("ls > out.txt"),
    bash(""),
    ["fish", "-c", "ls"],
]


@pytest.mark.parametrize("argv", SAFE, ids=lambda a: " ".join(a)[:40])
def test_read_only_commands_are_known_safe(argv: list[str]) -> None:
    assert is_known_safe_command(argv)


@pytest.mark.parametrize("argv", UNSAFE, ids=lambda a: " ".join(a)[:40])
def test_commands_that_may_write_or_run_code_are_not_known_safe(argv: list[str]) -> None:
    assert not is_known_safe_command(argv)


# ---------------------------------------------------------------------------
# Dangerous commands
# ---------------------------------------------------------------------------

DANGEROUS = [
    ["rm", "-rf", "/"],
    ["rm", "-f", "/"],
    ["/bin/rm", "-fr", "/tmp/example"],
    ["rm", "-r", "-f", "/tmp/example"],
    ["rm", "--force", "/tmp/example"],
    ["rm", "/tmp/example", "-f"],
    ["sudo", "rm", "-rf", "/tmp/example"],
    ["env", "TARGET=/tmp/example", "rm", "-rf", "/tmp/example"],
    ["env", "-i", "--", "rm", "-f", "x"],
    bash("printf x | rm -rf /tmp/example"),
    bash("if test -d /tmp/example; then rm --force /tmp/example; fi"),
    bash('rm -rf "$TARGET" >/dev/null'),
    bash('for target in /tmp/a /tmp/b; do rm -r -f "$target"; done'),
    bash('echo "$(rm -rf /tmp/example)"'),
    bash("bash -c 'rm -rf /tmp/example'"),
    bash("trap 'rm -rf /tmp/example' EXIT"),
    bash("sudo env A=1 rm -rf /tmp/example"),
]

NOT_DANGEROUS = [
    ["rm", "-r", "/tmp/example"],
    ["rm", "--", "-f"],
    ["rm", "--recursive", "x"],
    bash("echo 'rm -rf /tmp/example'"),
    bash("cmd=rm; $cmd -rf /tmp/example"),
    bash("if then rm -rf /tmp/example"),
    ["env", "TARGET=/tmp/example", "rm", "-r", "/tmp/example"],
    bash("trap 'echo rm -rf /tmp/example' EXIT"),
    ["sudo", "ls"],
]


@pytest.mark.parametrize("argv", DANGEROUS, ids=lambda a: " ".join(a)[:40])
def test_forced_rm_in_any_form_might_be_dangerous(argv: list[str]) -> None:
    assert command_might_be_dangerous(argv)


@pytest.mark.parametrize("argv", NOT_DANGEROUS, ids=lambda a: " ".join(a)[:40])
def test_rm_without_force_and_rm_inside_strings_are_not_dangerous(argv: list[str]) -> None:
    assert not command_might_be_dangerous(argv)


# ---------------------------------------------------------------------------
# commandActions
# ---------------------------------------------------------------------------


def split(text: str) -> list[str]:
    words = shlex_split(text)
    assert words is not None
    return words


@pytest.mark.parametrize(
    ("command", "actions"),
    [
        (["git", "status"], [UnknownAction("git status")]),
        (split("git grep TODO src"), [SearchAction("git grep TODO src", "TODO", "src")]),
        (split("git ls-files --exclude target src"), [ListFilesAction("git ls-files --exclude target src", "src")]),
        (bash("git status | wc -l"), [UnknownAction("git status | wc -l")]),
        (bash("echo foo > bar"), [UnknownAction("echo foo > bar")]),
        (bash('rg -n "navigate-to-route" -S'), [SearchAction("rg -n navigate-to-route -S", "navigate-to-route")]),
        (
            bash('rg -n "BUG|FIXME|TODO|XXX|HACK" -S | head -n 200'),
            [SearchAction("rg -n 'BUG|FIXME|TODO|XXX|HACK' -S", "BUG|FIXME|TODO|XXX|HACK")],
        ),
        (bash("rg --files webview/src | sed -n"), [ListFilesAction("rg --files webview/src", "webview")]),
        (bash("rg --files | head -n 50"), [ListFilesAction("rg --files")]),
        (
            split("rg --files | nl -ba | foo"),
            [UnknownAction("rg --files '|' nl -ba '|' foo")],
        ),
        (bash("cat webview/README.md"), [ReadAction("cat webview/README.md", "README.md", "webview/README.md")]),
        (["zsh", "-lc", "cat README.md"], [ReadAction("cat README.md", "README.md", "README.md")]),
        (bash("bat --theme Dark README.md"), [ReadAction("bat --theme Dark README.md", "README.md", "README.md")]),
        (bash("less -p TODO README.md"), [ReadAction("less -p TODO README.md", "README.md", "README.md")]),
        (split("cd foo && cat foo.txt"), [ReadAction("cat foo.txt", "foo.txt", "foo/foo.txt")]),
        (split("cd -- -weird && cat foo.txt"), [ReadAction("cat foo.txt", "foo.txt", "-weird/foo.txt")]),
        (split("cd dir1 dir2 && cat foo.txt"), [ReadAction("cat foo.txt", "foo.txt", "dir2/foo.txt")]),
        (bash("cd foo && bar"), [UnknownAction("cd foo && bar")]),
        (bash("cd foo && cat foo.txt"), [ReadAction("cat foo.txt", "foo.txt", "foo/foo.txt")]),
        (bash("ls -la | sed -n '1,120p'"), [ListFilesAction("ls -la")]),
        (split("eza --color=always src"), [ListFilesAction("eza '--color=always' src", "src")]),
        (split("tree -L 2 src"), [ListFilesAction("tree -L 2 src", "src")]),
        (split("du -d 2 ."), [ListFilesAction("du -d 2 .", ".")]),
        (split("ls --time-style=long-iso ./dist"), [ListFilesAction("ls '--time-style=long-iso' ./dist", ".")]),
        (bash("head -n 50 Cargo.toml"), [ReadAction("head -n 50 Cargo.toml", "Cargo.toml", "Cargo.toml")]),
        (bash("head -n50 Cargo.toml"), [ReadAction("head -n50 Cargo.toml", "Cargo.toml", "Cargo.toml")]),
        (bash("tail -n +522 README.md"), [ReadAction("tail -n +522 README.md", "README.md", "README.md")]),
        (bash("tail README.md"), [ReadAction("tail README.md", "README.md", "README.md")]),
        (
            bash("cat tui/Cargo.toml | sed -n '1,200p'"),
            [ReadAction("cat tui/Cargo.toml | sed -n '1,200p'", "Cargo.toml", "tui/Cargo.toml")],
        ),
        (
            bash("sed -n '2000,2200p' tui/src/history_cell.rs"),
            [ReadAction("sed -n '2000,2200p' tui/src/history_cell.rs", "history_cell.rs", "tui/src/history_cell.rs")],
        ),
        (
            bash("nl -ba core/src/parse_command.rs | sed -n '1200,1720p'"),
            [
                ReadAction(
                    "nl -ba core/src/parse_command.rs | sed -n '1200,1720p'",
                    "parse_command.rs",
                    "core/src/parse_command.rs",
                )
            ],
        ),
        (bash("awk '{print $1}' Cargo.toml"), [ReadAction("awk '{print $1}' Cargo.toml", "Cargo.toml", "Cargo.toml")]),
        (["npm", "run", "build"], [UnknownAction("npm run build")]),
        (
            ["grep", "-R", "CODEX_SANDBOX_ENV_VAR", "-n", "core/src/spawn.rs"],
            [SearchAction("grep -R CODEX_SANDBOX_ENV_VAR -n core/src/spawn.rs", "CODEX_SANDBOX_ENV_VAR", "spawn.rs")],
        ),
        (split("grep -R src/main.rs -n ."), [SearchAction("grep -R src/main.rs -n .", "src/main.rs", ".")]),
        (split("grep -e TODO -e FIXME src"), [SearchAction("grep -e TODO -e FIXME src", "TODO", "src")]),
        (split("ag TODO src"), [SearchAction("ag TODO src", "TODO", "src")]),
        (
            bash('cd /Users/pakrym/code/codex && rg -n "codex_api" codex-rs -S | head -n 50'),
            [SearchAction("rg -n codex_api codex-rs -S", "codex_api", "codex-rs")],
        ),
        (
            bash('python -c "import os; print(os.listdir(\'.\'))"'),
            [ListFilesAction('python -c "import os; print(os.listdir(\'.\'))"')],
        ),
        (bash("python -c \"print('hello')\""), [UnknownAction("python -c \"print('hello')\"")]),
        (
            bash('printf "\\n===== ansi-escape/Cargo.toml =====\\n"; cat -- ansi-escape/Cargo.toml'),
            [ReadAction("cat -- ansi-escape/Cargo.toml", "Cargo.toml", "ansi-escape/Cargo.toml")],
        ),
        (bash("yes | rg --files"), [ListFilesAction("rg --files")]),
        (
            split("sed -n '260,640p' exec/src/event_processor_with_human_output.rs | nl -ba"),
            [
                ReadAction(
                    "sed -n '260,640p' exec/src/event_processor_with_human_output.rs",
                    "event_processor_with_human_output.rs",
                    "exec/src/event_processor_with_human_output.rs",
                )
            ],
        ),
        (split("true && rg --files"), [ListFilesAction("rg --files")]),
        (bash("rg --files || true"), [ListFilesAction("rg --files")]),
        (split('cat "pkg\\src\\main.rs"'), [ReadAction('cat "pkg\\\\src\\\\main.rs"', "main.rs", "pkg\\src\\main.rs")]),
        (split("fd -t f src/"), [ListFilesAction("fd -t f src/", "src")]),
        (split("fd main src"), [SearchAction("fd main src", "main", "src")]),
        (split("find . -name '*.rs'"), [SearchAction("find . -name '*.rs'", "*.rs", ".")]),
        (split("find src -type f"), [ListFilesAction("find src -type f", "src")]),
        (
            split("/bin/bash -lc 'sed -n '1,10p' Cargo.toml'"),
            [ReadAction("sed -n '1,10p' Cargo.toml", "Cargo.toml", "Cargo.toml")],
        ),
        (
            bash("rg -l Qk src/main | xargs perl -pi -e 's/Qk/Qx/g'"),
            [UnknownAction("rg -l Qk src/main | xargs perl -pi -e 's/Qk/Qx/g'")],
        ),
        (bash("echo hi"), [UnknownAction("echo hi")]),
        (bash("ls && ls"), [ListFilesAction("ls")]),
        (bash("cat <<'EOF'\nhi\nEOF"), [UnknownAction("cat <<'EOF'\nhi\nEOF")]),
    ],
)
def test_command_actions_summarise_commands_as_the_original(command: list[str], actions: list) -> None:
    assert parse_command_actions(command) == actions


def test_a_script_string_is_read_as_a_bash_dash_lc_script() -> None:
    assert parse_command_actions("ls -la src") == [ListFilesAction("ls -la src", "src")]


def test_read_paths_become_absolute_against_the_cwd() -> None:
    actions = parse_command_actions("cd ../other && cat ./a/../b.txt", cwd="/repo/app")
    assert actions == [ReadAction("cat ./a/../b.txt", "b.txt", "/repo/other/b.txt")]
    assert parse_command_actions("cat /etc/hosts", cwd="/repo") == [ReadAction("cat /etc/hosts", "hosts", "/etc/hosts")]


def test_command_actions_encode_with_the_wire_tags_and_names() -> None:
    actions = parse_command_actions("cat README.md && rg -n x src && ls", cwd="/repo")
    assert json.loads(msgspec.json.encode(actions)) == [
        {"type": "read", "command": "cat README.md", "name": "README.md", "path": "/repo/README.md"},
        {"type": "search", "command": "rg -n x src", "query": "x", "path": "src"},
        {"type": "listFiles", "command": "ls", "path": None},
    ]


# ---------------------------------------------------------------------------
# assess_command
# ---------------------------------------------------------------------------

READ_ONLY = {"type": "readOnly"}
WORKSPACE = {"type": "workspaceWrite", "writableRoots": [], "networkAccess": False}
FULL = {"type": "dangerFullAccess"}
EXTERNAL = {"type": "externalSandbox", "networkAccess": "restricted"}
GRANULAR_ASK = {"granular": {"sandbox_approval": True, "rules": True, "mcp_elicitations": True}}
GRANULAR_NO = {"granular": {"sandbox_approval": False, "rules": True, "mcp_elicitations": True}}
RM = "rm -rf build"
RM_FORBIDDEN = "`/bin/bash -lc 'rm -rf build'` rejected: rm -f style commands are not permitted. Use a safer approach"
FORCED_RM = "rm -f style commands are not permitted. Use a safer approach"
NO_SANDBOX_APPROVAL = "approval required by policy, but AskForApproval::Granular.sandbox_approval is false"


@pytest.mark.parametrize(
    ("script", "policy", "sandbox", "permissions", "expected"),
    [
        # untrusted: the safe list runs, everything else asks
        ("ls -la", "untrusted", WORKSPACE, "use_default", Skip(False, ["ls", "-la"])),
        ("ls && cat README.md", "untrusted", FULL, "use_default", Skip(False, ["ls"])),
        ("cargo test", "untrusted", FULL, "use_default", NeedsApproval(None, ["cargo", "test"])),
        ("ls && cargo test", "untrusted", WORKSPACE, "use_default", NeedsApproval(None, ["cargo", "test"])),
        (RM, "untrusted", READ_ONLY, "use_default", NeedsApproval(None, ["rm", "-rf", "build"])),
        ("cat <<'EOF'\nhi\nEOF", "untrusted", WORKSPACE, "use_default", NeedsApproval(None, None)),
        # on-request: the sandbox decides, unless the model asks to leave it
        ("cargo test", "on-request", WORKSPACE, "use_default", Skip(False, ["cargo", "test"])),
        ("cargo test", "on-request", WORKSPACE, "require_escalated", NeedsApproval(None, ["cargo", "test"])),
        ("cargo test", "on-request", READ_ONLY, "with_additional_permissions", NeedsApproval(None, ["cargo", "test"])),
        ("ls", "on-request", READ_ONLY, "require_escalated", NeedsApproval(None, ["ls"])),
        ("cargo test", "on-request", FULL, "require_escalated", Skip(False, ["cargo", "test"])),
        ("cargo test", "on-request", EXTERNAL, "require_escalated", Skip(False, ["cargo", "test"])),
        (RM, "on-request", FULL, "use_default", NeedsApproval(None, ["rm", "-rf", "build"])),
        ("ls && sudo rm -f x", "on-request", WORKSPACE, "use_default", NeedsApproval(None, ["sudo", "rm", "-f", "x"])),
        # never: nothing asks; rm -rf is refused, in a sandbox or not
        ("cargo test", "never", READ_ONLY, "require_escalated", Skip(False, ["cargo", "test"])),
        (RM, "never", WORKSPACE, "use_default", Forbidden(RM_FORBIDDEN)),
        (RM, "never", FULL, "use_default", Forbidden(RM_FORBIDDEN)),
        (
            "sudo rm -rf /tmp/x",
            "never",
            FULL,
            "use_default",
            Forbidden("`/bin/bash -lc 'sudo rm -rf /tmp/x'` rejected: " + FORCED_RM),
        ),
        # granular: like on-request, but a prompt it disallows is refused
        ("cargo test", GRANULAR_ASK, WORKSPACE, "require_escalated", NeedsApproval(None, ["cargo", "test"])),
        ("cargo test", GRANULAR_NO, WORKSPACE, "require_escalated", Forbidden(NO_SANDBOX_APPROVAL)),
        ("cargo test", GRANULAR_NO, WORKSPACE, "use_default", Skip(False, ["cargo", "test"])),
        (RM, GRANULAR_NO, FULL, "use_default", Forbidden(FORCED_RM)),
        (RM, GRANULAR_ASK, FULL, "use_default", NeedsApproval(None, ["rm", "-rf", "build"])),
    ],
)
def test_assess_command_follows_the_originals_decision_table(
    script: str, policy, sandbox, permissions: str, expected
) -> None:
    argv = shell_argv(script)
    got = assess_command(argv, approval_policy=policy, sandbox_policy=sandbox, sandbox_permissions=permissions)
    assert got == expected


def test_every_segment_of_a_script_is_checked_and_the_strictest_wins() -> None:
    argv = shell_argv("ls && rm -rf build && cargo test")
    assert assess_command(argv, approval_policy="on-request", sandbox_policy=WORKSPACE) == NeedsApproval(
        None, ["rm", "-rf", "build"]
    )
    assert isinstance(assess_command(argv, approval_policy="never", sandbox_policy=WORKSPACE), Forbidden)


def test_a_dangerous_command_hidden_in_a_complex_script_is_still_caught() -> None:
    argv = shell_argv('for d in a b; do rm -rf "$d"; done')
    got = assess_command(argv, approval_policy="never", sandbox_policy=FULL)
    assert got == Forbidden(f"`/bin/bash -lc 'for d in a b; do rm -rf \"$d\"; done'` rejected: {FORCED_RM}")


def test_an_argv_that_is_not_a_script_is_judged_whole() -> None:
    assert assess_command(["rm", "-f", "x"], approval_policy="untrusted", sandbox_policy=FULL) == NeedsApproval(
        None, ["rm", "-f", "x"]
    )


def test_policies_and_sandboxes_may_be_structs_or_mode_strings() -> None:
    class Granular(msgspec.Struct):
        granular: dict

    class ReadOnly(msgspec.Struct, tag_field="type", tag="readOnly", rename="camel"):
        network_access: bool = False

    got = assess_command(
        shell_argv("cargo test"),
        approval_policy=Granular({"sandbox_approval": False, "rules": True}),
        sandbox_policy=ReadOnly(),
        sandbox_permissions="require_escalated",
    )
    assert got == Forbidden(NO_SANDBOX_APPROVAL)
    assert assess_command(["ls"], approval_policy="never", sandbox_policy="read-only") == Skip(False, ["ls"])
    with pytest.raises(ValueError, match="unknown approval policy"):
        assess_command(["ls"], approval_policy="on-failure", sandbox_policy=FULL)


@pytest.mark.parametrize(
    ("prefix_rule", "amendment"),
    [
        (["cargo"], ["cargo"]),
        (["cargo", "test"], ["cargo", "test"]),
        (["npm"], ["cargo", "test"]),  # does not cover the command: the segment is proposed
        (["python3"], ["cargo", "test"]),
        (["bash", "-lc"], ["cargo", "test"]),  # too broad to propose
    ],
)
def test_the_models_prefix_rule_is_proposed_when_it_covers_every_segment(prefix_rule, amendment) -> None:
    got = assess_command(
        shell_argv("ls && cargo test"),
        approval_policy="untrusted",
        sandbox_policy=WORKSPACE,
        prefix_rule=prefix_rule,
    )
    assert got == NeedsApproval(None, amendment)


@pytest.mark.parametrize(
    ("policy", "sandbox", "expected"),
    [
        ("never", READ_ONLY, Skip()),
        ("untrusted", FULL, NeedsApproval()),
        ("on-request", WORKSPACE, NeedsApproval()),
        ("on-request", FULL, Skip()),
        ("on-request", EXTERNAL, Skip()),
        (GRANULAR_ASK, READ_ONLY, NeedsApproval()),
        (GRANULAR_NO, READ_ONLY, Forbidden("approval policy disallowed sandbox approval prompt")),
        (GRANULAR_NO, FULL, Skip()),
    ],
)
def test_default_requirement_depends_only_on_policy_and_sandbox(policy, sandbox, expected) -> None:
    assert default_exec_approval_requirement(approval_policy=policy, sandbox_policy=sandbox) == expected


@pytest.mark.parametrize(
    ("policy", "wants"),
    [("untrusted", True), ("on-request", False), ("never", False), (GRANULAR_ASK, True), (GRANULAR_NO, False)],
)
def test_retry_without_sandbox_is_offered_only_where_the_original_offers_it(policy, wants: bool) -> None:
    assert wants_no_sandbox_approval(policy) is wants
    assert RETRY_WITHOUT_SANDBOX_REASON == "command failed; retry without sandbox?"


# ---------------------------------------------------------------------------
# Approval requests
# ---------------------------------------------------------------------------


def test_available_decisions_offer_the_amendment_between_accept_and_cancel() -> None:
    assert available_decisions(proposed_execpolicy_amendment=["echo", "hi"]) == [
        "accept",
        {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["echo", "hi"]}},
        "cancel",
    ]
    assert available_decisions() == ["accept", "cancel"]


def test_available_decisions_for_extra_permissions_and_network_hosts() -> None:
    assert available_decisions(additional_permissions=True, proposed_execpolicy_amendment=["x"]) == ["accept", "cancel"]
    assert available_decisions(network_host="example.com") == [
        "accept",
        "acceptForSession",
        {"applyNetworkPolicyAmendment": {"network_policy_amendment": {"host": "example.com", "action": "allow"}}},
        "cancel",
    ]


def test_available_decisions_follow_the_requirement_of_a_prompted_command() -> None:
    got = assess_command(shell_argv("echo hi && cargo build"), approval_policy="untrusted", sandbox_policy=WORKSPACE)
    assert isinstance(got, NeedsApproval)
    assert available_decisions(proposed_execpolicy_amendment=got.proposed_execpolicy_amendment) == [
        "accept",
        {"acceptWithExecpolicyAmendment": {"execpolicy_amendment": ["cargo", "build"]}},
        "cancel",
    ]


@pytest.mark.parametrize(
    ("argv", "canonical"),
    [
        (["/bin/bash", "-lc", "ls -la"], ["ls", "-la"]),
        (["bash", "-lc", "ls -la"], ["ls", "-la"]),
        (["bash", "-lc", "ls && pwd"], ["__codex_shell_script__", "-lc", "ls && pwd"]),
        (["zsh", "-c", "echo $HOME"], ["__codex_shell_script__", "-c", "echo $HOME"]),
        (["ls", "-la"], ["ls", "-la"]),
    ],
)
def test_approvals_remember_commands_in_canonical_form(argv: list[str], canonical: list[str]) -> None:
    assert canonicalize_command_for_approval(argv) == canonical


def test_the_approval_cache_key_is_the_serialized_shell_approval_key() -> None:
    key = approval_cache_key(["/bin/bash", "-lc", "cargo test"], cwd="/repo")
    assert key == (
        '{"environment_id":"local","command":["cargo","test"],"cwd":"/repo",'
        '"sandbox_permissions":"use_default","additional_permissions":null}'
    )
    assert key == approval_cache_key(["bash", "-lc", "cargo test"], cwd="/repo")
    escalated = approval_cache_key(["bash", "-lc", "cargo test"], cwd="/repo", sandbox_permissions="require_escalated")
    assert key != escalated
    assert key != approval_cache_key(["bash", "-lc", "cargo test"], cwd="/other")


# ---------------------------------------------------------------------------
# assess_patch
# ---------------------------------------------------------------------------

OUTSIDE = "writing outside of the project; rejected by user approval settings"
BLOCKED = "writing is blocked by read-only sandbox; rejected by user approval settings"


@pytest.mark.parametrize(
    ("paths", "policy", "sandbox", "expected"),
    [
        ([], "never", WORKSPACE, Reject("empty patch")),
        (["src/a.py"], "untrusted", FULL, AskUser()),
        (["src/a.py"], "on-request", WORKSPACE, AutoApprove(sandboxed=True)),
        (["/repo/src/a.py", "/tmp/scratch.txt"], "never", WORKSPACE, AutoApprove(sandboxed=True)),
        (["/etc/passwd"], "never", FULL, AutoApprove(sandboxed=False)),
        (["/etc/passwd"], "on-request", EXTERNAL, AutoApprove(sandboxed=False)),
        (["../elsewhere/a.py"], "on-request", WORKSPACE, AskUser()),
        (["../elsewhere/a.py"], "never", WORKSPACE, Reject(OUTSIDE)),
        (["../elsewhere/a.py"], GRANULAR_NO, WORKSPACE, Reject(OUTSIDE)),
        (["../elsewhere/a.py"], GRANULAR_ASK, WORKSPACE, AskUser()),
        (["a.py"], "never", READ_ONLY, Reject(BLOCKED)),
        (["a.py"], "on-request", READ_ONLY, AskUser()),
        ([".git/config"], "never", WORKSPACE, Reject(OUTSIDE)),
        ([".codex/config.toml"], "on-request", WORKSPACE, AskUser()),
        ([".agents/notes.md"], "never", WORKSPACE, Reject(OUTSIDE)),
        (["/tmp/.git/x"], "never", WORKSPACE, Reject(OUTSIDE)),
        (["src/.git/x"], "never", WORKSPACE, AutoApprove(sandboxed=True)),
    ],
)
def test_assess_patch_follows_assess_patch_safety(paths, policy, sandbox, expected) -> None:
    assert assess_patch(paths, approval_policy=policy, sandbox_policy=sandbox, cwd="/repo") == expected


def test_a_patch_the_platform_cannot_sandbox_asks_or_is_rejected() -> None:
    kwargs = {"sandbox_policy": WORKSPACE, "cwd": "/repo", "platform_sandbox": False}
    assert assess_patch(["a.py"], approval_policy="on-request", **kwargs) == AskUser()
    assert assess_patch(["a.py"], approval_policy="never", **kwargs) == Reject(OUTSIDE)


def test_writable_roots_and_their_exclusions() -> None:
    sandbox = {"type": "workspaceWrite", "writableRoots": ["/data", "/repo/../repo"]}
    assert writable_roots(sandbox, "/repo", tmpdir="/var/tmp/u") == ["/repo", "/tmp", "/var/tmp/u", "/data"]
    excluded = {**sandbox, "excludeTmpdirEnvVar": True, "excludeSlashTmp": True}
    assert writable_roots(excluded, "/repo", tmpdir="/var/tmp/u") == ["/repo", "/data"]
    assert writable_roots(READ_ONLY, "/repo") == []
    kwargs = {"approval_policy": "never", "cwd": "/repo"}
    assert assess_patch(["/var/tmp/u/x"], sandbox_policy=sandbox, tmpdir="/var/tmp/u", **kwargs) == AutoApprove(True)
    assert assess_patch(["/data/.codex/x"], sandbox_policy=sandbox, **kwargs) == Reject(OUTSIDE)


def test_an_explicit_writable_root_inside_git_metadata_is_writable() -> None:
    sandbox = {"type": "workspaceWrite", "writableRoots": ["/repo/.git/hooks"]}
    kwargs = {"approval_policy": "never", "sandbox_policy": sandbox, "cwd": "/repo"}
    assert assess_patch([".git/hooks/pre-commit"], **kwargs) == AutoApprove(True)
    assert assess_patch([".git/config"], **kwargs) == Reject(OUTSIDE)


def test_a_patch_is_judged_on_its_paths_as_written_not_where_symlinks_lead() -> None:
    # As the original (`normalize` in safety.rs): `..` and `.` are folded
    # without touching the disk, symlinks are not resolved; the sandbox the
    # patch is then written in decides where a symlink may lead.
    kwargs = {"sandbox_policy": WORKSPACE, "cwd": "/repo"}
    assert unwritable_paths(["a/../b.py", "/repo/./c.py", "link-out/x"], **kwargs) == []
    assert unwritable_paths(["../x", "/proc/self/root/repo/y", ".git/z", "src/.git/ok"], **kwargs) == [
        "/x", "/proc/self/root/repo/y", "/repo/.git/z"]
    assert unwritable_paths(["a.py"], sandbox_policy=READ_ONLY, cwd="/repo") == ["/repo/a.py"]


@pytest.mark.parametrize(
    ("policy", "wants"),
    [("untrusted", True), ("on-request", True), ("never", False), (GRANULAR_ASK, True), (GRANULAR_NO, False)],
)
def test_a_denied_patch_may_be_retried_outside_the_sandbox_under_more_policies_than_a_command(policy, wants) -> None:
    assert patch_wants_no_sandbox_approval(policy) is wants


def test_a_patch_is_remembered_file_by_file() -> None:
    assert patch_approval_cache_keys(["src/a b.py", "/repo/README.md"], cwd="/repo") == [
        '{"environment_id":"local","path":"file:///repo/src/a%20b.py"}',
        '{"environment_id":"local","path":"file:///repo/README.md"}',
    ]


# ---------------------------------------------------------------------------
# Sandbox denials
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "output", "denied"),
    [
        (1, "touch: cannot touch 'x': Permission denied", True),
        (1, "mkdir: Read-only file system", True),
        (1, "Operation not permitted", True),
        (101, "landlock restrict_self failed", True),
        (1, "failed to write file /x", True),
        (1, "error: sandbox violation", True),
        (0, "Permission denied", False),
        (1, "compilation failed", False),
        (2, "no such file", False),
        (126, "", False),
        (127, "command not found", False),
        (159, "", True),  # SIGSYS from seccomp
        (137, "", False),
    ],
)
def test_likely_sandbox_denials_are_recognised(exit_code: int, output: str, denied: bool) -> None:
    assert is_likely_sandbox_denied(exit_code, output) is denied


def test_denials_are_never_guessed_without_a_sandbox_and_sigsys_counts_only_under_seccomp() -> None:
    assert not is_likely_sandbox_denied(1, "Permission denied", sandbox="none")
    assert not is_likely_sandbox_denied(159, "", sandbox="macos_seatbelt")
    assert is_likely_sandbox_denied(1, "", "", "EPERM: Operation not permitted")


@pytest.mark.parametrize(("policy", "permissions", "unified", "refusal"), [
    ("on-request", "require_escalated", False, None),
    ("never", "use_default", True, None),
    ("never", "require_escalated", True, "approval policy is Never; reject command — you cannot ask for escalated "
                                         "permissions if the approval policy is Never"),
    ("untrusted", "with_additional_permissions", False,
     "approval policy is UnlessTrusted; reject command — you should not ask for escalated permissions if the "
     "approval policy is UnlessTrusted"),
    ({"granular": {"sandbox_approval": True, "rules": True, "mcp_elicitations": False}}, "require_escalated", True,
     "approval policy is Granular(GranularApprovalConfig { sandbox_approval: true, rules: true, skill_approval: "
     "false, request_permissions: false, mcp_elicitations: false }); reject command — you cannot ask for escalated "
     "permissions if the approval policy is Granular(GranularApprovalConfig { sandbox_approval: true, rules: true, "
     "skill_approval: false, request_permissions: false, mcp_elicitations: false })"),
])
def test_asking_to_leave_the_sandbox_is_refused_unless_the_policy_is_on_request(
        policy: object, permissions: str, unified: bool, refusal: str | None) -> None:
    assert escalation_refusal(policy, permissions, unified_exec=unified) == refusal  # type: ignore[arg-type]

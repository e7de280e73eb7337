"""The shell-script corpus that pins the command-safety verdicts.

Three sources of scripts, each run as ``bash -lc <script>``:

* ``existing``: every script the unit tests in ``test_command_safety.py`` and
  ``test_rollout.py`` parse, and every string constant of
  ``test_command_safety.py``;
* ``original``: the scripts of the original's own unit tests (codex-rs
  ``shell-command/src/bash.rs``, ``command_safety/is_safe_command.rs``,
  ``command_safety/is_dangerous_command.rs``, ``parse_command.rs``), transcribed
  below;
* ``generated``: :func:`generated`, seeded combinations of safe and unsafe
  commands, operators, quoting, redirections, substitutions and compound
  commands.

:func:`verdicts` is everything the rules decide from a script. The recorded
verdicts (``tests/fixtures/shell_corpus.json``) are those of the hand-written
splitter that preceded tree-sitter-bash; where the two differ because the
splitter was wrong, ``shell_corpus_exceptions.json`` lists the script, the
reason and the new verdicts. (``python tests/harness/shell_corpus.py``
rebuilds the corpus from the current implementation.)
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Any

import msgspec

from trio_codex.runtime.commands import safety as cs
from trio_codex.runtime.commands.safety.bash import heredoc_command_prefix

DATA = Path(__file__).parents[1] / "fixtures" / "shell_corpus.json"
EXCEPTIONS = Path(__file__).parents[1] / "fixtures" / "shell_corpus_exceptions.json"
HERE = Path(__file__).parents[1] / "runtime"

#: Scripts from the original's unit tests (bash.rs, is_safe_command.rs,
#: is_dangerous_command.rs, parse_command.rs), as the Rust source spells them.
ORIGINAL = [
    # bash.rs
    "ls -1", "ls && pwd; echo 'hi there' | wc -l", 'echo "hello world"', "echo 'hi there'",
    'git commit -m "line1\nline2"', 'echo "/usr"\'/\'"local"/bin', "echo '/usr'\"/\"'local'/bin",
    'echo "hi ${USER}"', 'echo "$HOME"', "echo 123 456", "(ls)", "ls || (pwd && echo hi)",
    "ls > out.txt", "echo hi & echo bye", "echo $(pwd)", "echo `pwd`", "echo $HOME", 'echo "hi $USER"',
    "FOO=bar ls", "ls &&", "&& ls", "ls ;; pwd", "ls | | wc", "ls", 'rg -n "foo" -g"*.py"',
    "grep -n 'pattern' -g'*.txt'", 'rg -g"$VAR" pattern', 'rg -g"${VAR}" pattern', 'rg -g"$(pwd)" pattern',
    "rg -g\"$(echo '*.py')\" pattern", "python3 <<'PY'\nprint('hello')\nPY", "python3 << PY\nprint('hello')\nPY",
    "python3 <<'PY'\nprint('hello')\nPY\necho done", "echo hello > /tmp/out.txt",
    "python3 <<'PY' > /tmp/out.txt\nprint('hello')\nPY", "PATH=/tmp/evil:$PATH cat <<'EOF'\nhello\nEOF",
    "echo hello > /tmp/out.txt && cat /tmp/out.txt", 'python3 <<< "$(rm -rf /)"', "echo $((1<<2))",
    "python3 $((1<<2)) <<'PY'\nprint('hello')\nPY",
    "find . -{delete,print}", "rg --pre{=,=sh} pattern payload.sh", "find . -del*", "find . -delet?",
    "find . -delet[e]", r"find . -de\lete", "echo ~", "echo ~HOME", "echo HEAD~1", "echo HEAD^", "echo file~",
    "echo =sh", "echo foo^bar", "echo foo#bar", "l* -l", r'echo "\n"',
    r'''echo "~HOME" 'HEAD~1' "HEAD^" 'foo#bar' "=sh" 'file~\'''', r'''echo -"{a,b}" '*?[]~^#=\\\'''',
    r'echo "\$HOME\`\"\\\n"', "find . \"-de\\\nlete\"", r'echo "\\"',
    # is_safe_command.rs
    "git status", "git log -p -1", "ls", 'grep -R "Cargo.toml" -n', "sed -n 1,5p file.txt",
    "sed -n '1,5p' file.txt", "find . -name file.txt", 'grep -R "Cargo.toml" -n || true', "echo 'hi' ; ls",
    "ls | wc -l", "'git status'", "find . -name file.txt -delete", "ls && rm -rf /",
    # is_dangerous_command.rs
    "printf x | rm -rf /tmp/example", "if test -d /tmp/example; then rm --force /tmp/example; fi",
    'rm -rf "$TARGET" >/dev/null', 'for target in /tmp/a /tmp/b; do rm -r -f "$target"; done',
    'echo "$(rm -rf /tmp/example)"',
    "for a in '-C5a25KeRr' '--' '--json' '--bogus'; do HOME=$(mktemp -d) MDE_URL=http://127.0.0.1:1 "
    "MDE_TOKEN=x node cli/mde.cjs ls \"$a\" >/tmp/mde-review-out 2>/tmp/mde-review-err; code=$?; "
    "printf '%s\\t%s\\t%s\\n' \"$a\" \"$code\" \"$(tr '\\n' ' ' </tmp/mde-review-err)\"; rm -rf \"$HOME\"; done",
    "echo 'rm -rf /tmp/example'", "cmd=rm; $cmd -rf /tmp/example", "if then rm -rf /tmp/example",
    # parse_command.rs (its bash -lc scripts, and its argv tests' command lines as scripts)
    "git status | wc -l", "echo foo > bar",
    "rg --version && node -v && pnpm -v && rg --files | wc -l && rg --files | head -n 40",
    'rg -n "navigate-to-route" -S', 'rg -n "BUG|FIXME|TODO|XXX|HACK" -S | head -n 200',
    "rg --files webview/src | sed -n", "rg --files | head -n 50",
    "rg -l QkBindingController presentation/src/main/java | xargs perl -pi -e 's/QkBindingController/QkController/g'",
    "cat webview/README.md", "cat README.md", "bat --theme TwoDark README.md", "batcat README.md",
    "less -p TODO README.md", "more README.md", "cd foo && bar", "cd foo && cat foo.txt",
    "ls -la | sed -n '1,120p'", "head -n 50 Cargo.toml", "head Cargo.toml", "cat tui/Cargo.toml | sed -n '1,200p'",
    "tail -n +522 README.md", "tail -n 30 README.md", "tail README.md",
    'cd /Users/pakrym/code/codex && rg -n "codex_api" codex-rs -S | head -n 50',
    """python -c "import os; print(os.listdir('.'))\"""", """python3 -c "import glob; print(glob.glob('*.rs'))\"""",
    """python -c "print('hello')\"""", "nl -ba core/src/parse_command.rs | sed -n '1200,1720p'",
    "sed -n '2000,2200p' tui/src/history_cell.rs", "awk '{print $1}' Cargo.toml",
    'printf "\\n===== ansi-escape/Cargo.toml =====\\n"; cat -- ansi-escape/Cargo.toml', "yes | rg --files",
    "true && rg --files", "rg --files || true", "head -n50 Cargo.toml", "rg --files | head -n 1",
    "tail -n+10 README.md", "sed -n 1,10p Cargo.toml", "git grep TODO src", "git grep -l TODO src", "git ls-files",
    "git ls-files src", "git ls-files --exclude target src", "rg --files | nl -ba | foo", "rg -l TODO src",
    "rg --files-with-matches TODO src", "rg -L TODO src", "rg --files-without-match TODO src", "rga -l TODO src",
    "cd -- -weird && cat foo.txt", "cd dir1 dir2 && cat foo.txt", "eza --color=always src", "exa -I target .",
    "tree -L 2 src", "du -d 2 .", "egrep -R TODO src", "fgrep -l TODO src", "grep -l TODO src",
    "grep --files-with-matches TODO src", "grep -L TODO src", "grep --files-without-match TODO src",
    "grep -R src/main.rs -n .", "grep -R COD`EX_SANDBOX -n", "cd codex-rs && rg --files", "awk '{print $1}'",
    "awk -f script.awk Cargo.toml", "head -n 40", "head -n 40 file.txt", "tail -n +10", "tail -n +10 file.txt",
    "tail -n 30", "tail -c 30", "sed -n 10p file.txt", "sed -n -e 10p file.txt", "sed -n 10p -- file.txt",
    "sed -n 1,200p file.txt", "sed -n p file.txt", "sed -n +10p file.txt",
    "sed -n '260,640p' exec/src/event_processor_with_human_output.rs | nl -ba", "yes | rg -n 'foo bar' -S",
    "ls -I '*.test.js'", "rg --files && true", r'cat "pkg\src\main.rs"', "grep -R TODO src", "ag TODO src",
    "ack TODO src", "pt TODO src", "rga TODO src", "ag -l TODO src", "ack -l TODO src", "pt -l TODO src",
    "rg --colors=never -n foo src", "cat -- ./-strange-file-name", "sed -n '12,20p' Cargo.toml", "rg --files | nl -ba",
    "ls --time-style=long-iso ./dist", "fd -t f src/", "fd main src", "find . -name '*.rs'", "find src -type f",
    "grep -R CODEX_SANDBOX_ENV_VAR -n .", "grep -R CODEX_SANDBOX_ENV_VAR -n core/src/spawn.rs", "npm run build",
    "wc -x", "sort", "tee -x", "column -x",
]

_SAFE = ["ls", "ls -la", "cat README.md", "grep -n foo src", "rg TODO", "head -n 5 f.txt", "wc -l", "pwd",
         "echo hi", "sed -n 1,5p f", "find . -name x.py", "git status", "git log -1", "true", "nl -ba f",
         "tail -n 20 log", "stat f", "which python3", "base64 f", "cd src"]
_UNSAFE = ["rm -rf /tmp/x", "rm -f a", "sudo rm -rf /", "python3 x.py", "find . -delete", "rg --pre sh x",
           "git push", "cargo build", "npm install", "curl http://x", "touch a", "mv a b", "env rm -rf x",
           "sh -c 'rm -rf x'", "rm -r build", "git -C . diff", "base64 -o out f", "sed -i s/a/b/ f"]
_OPS = [" && ", " || ", "; ", " | ", " & ", "\n", " ;; ", " |& ", "&&", ";"]
_WORDS = ["'x y'", '"x y"', 'x"y"', "$x", '"$x"', "$(pwd)", "`pwd`", "${x}", "~", "*.py", "{a,b}", "\\x",
          "$'a\\tb'", '"a\\"b"', "''", '""', "-g'*.rs'", "a=b", "--k=v", "1", "-1", "'--'", '"$(ls)"',
          "x[1]", "{}", "\\;", "$((1+2))", "<(ls)", "#c", "'it''s'"]
_REDIRECTS = ["> out", ">> out", "2>&1", "< in", "<<< word", "2>/dev/null", "&> x", ">|f", "1>&2", "<&0"]
_COMPOUND = ["({})", "{{ {}; }}", "if {}; then {}; fi", "for i in 1 2; do {}; done", "while {}; do {}; done",
             "case x in a) {};; esac", "X=1 {}", "f() {{ {}; }}", "echo $({})", "echo `{}`", "diff <({}) <({})",
             "! {}", "[[ -f x ]] && {}", "export X=1; {}", "{} <<EOF\nbody $x\nEOF", "{} <<'EOF'\nbody\nEOF",
             "time {}", "coproc {}", "until {}; do {}; done", "{} # trailing comment", "if {}; then {}; else {}; fi",
             "select i in a; do {}; done", "(( i++ )); {}", "local x=1; {}", "{} \\\n  && {}"]


def generated(count: int = 2400, seed: int = 18) -> list[str]:
    """``count`` distinct scripts, the same for the same seed."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        commands = [rng.choice(_SAFE if rng.random() < 0.6 else _UNSAFE) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            i = rng.randrange(len(commands))
            commands[i] += " " + rng.choice(_WORDS)
        if rng.random() < 0.25:
            i = rng.randrange(len(commands))
            commands[i] += " " + rng.choice(_REDIRECTS)
        if rng.random() < 0.3:
            template = rng.choice(_COMPOUND)
            holes = template.count("{}")
            fill = [rng.choice(_SAFE + _UNSAFE) for _ in range(holes)]
            fill[0] = commands[0]
            commands[0] = template.format(*fill)
        script = commands[0]
        for command in commands[1:]:
            script += rng.choice(_OPS) + command
        if rng.random() < 0.05:
            script = rng.choice(["", " ", "&& ", "| "]) + script + rng.choice(["", " &&", " |", " '", ' "', " \\"])
        out[script] = None
    return list(out)


def existing() -> list[str]:
    """The string constants of the command-safety tests (the scripts they
    parse are among them, or recorded in the data file)."""
    tree = ast.parse((HERE / "test_command_safety.py").read_text())
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def verdicts(script: str) -> dict[str, Any]:
    """Everything the rules decide from ``bash -lc <script>``."""
    argv = ["bash", "-lc", script]
    return {
        "plain": cs.plain_commands(argv),
        "literal": cs.literal_commands(argv),
        "heredoc": heredoc_command_prefix(argv),
        "safe": cs.is_known_safe_command(argv),
        "dangerous": cs.command_might_be_dangerous(argv),
        "actions": _plain(cs.parse_command_actions(argv)),
        "canonical": cs.canonicalize_command_for_approval(argv),
        "on_request": _plain(cs.assess_command(argv, approval_policy="on-request", sandbox_policy="workspace-write")),
        "untrusted": _plain(cs.assess_command(argv, approval_policy="untrusted", sandbox_policy="read-only",
                                              prefix_rule=["git"])),
    }


def build(recorded: list[str]) -> list[dict[str, Any]]:
    sources: dict[str, str] = {}
    for source, scripts in (("original", ORIGINAL), ("existing", recorded + existing()), ("generated", generated())):
        for script in scripts:
            sources.setdefault(script, source)
    return [{"script": s, "source": src, **verdicts(s)} for s, src in sources.items()]


if __name__ == "__main__":
    import sys

    recorded = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else [
        e["script"] for e in json.loads(DATA.read_text()) if e["source"] == "existing"]
    entries = build(recorded)
    lines = (json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in entries)
    DATA.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    print(len(entries), {s: sum(e["source"] == s for e in entries) for s in ("original", "existing", "generated")})

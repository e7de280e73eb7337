"""actors/model/sdk.py: the openai client without its typed models, in a fresh
interpreter (this one may have imported openai already)."""

from __future__ import annotations

import sys

import trio

CHECK = """
import sys
from trio_codex.actors.model import sdk
names = sdk.load()
assert names.AsyncOpenAI.__name__ == "AsyncOpenAI" and issubclass(names.APITimeoutError, names.APIError)
lean = [m for m in sys.modules if m.startswith("openai.types.")]
print(len(lean), "openai.types.batch" in sys.modules)
import openai
from openai import types
from openai.types.responses import Response
assert openai.AsyncOpenAI is names.AsyncOpenAI and openai.omit is names.omit
assert types.Batch.__name__ == "Batch" and Response.__name__ == "Response"
assert openai.__version__ and "responses" in openai.types.__dict__
print("whole")
"""


async def test_the_client_loads_without_the_typed_models_and_the_package_is_whole_on_first_use() -> None:
    with trio.fail_after(60):
        done = await trio.run_process([sys.executable, "-c", CHECK], capture_stdout=True,
                                      capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    lean, batch_loaded, whole = done.stdout.decode().replace("\n", " ").split()
    assert batch_loaded == "False" and int(lean) < 100
    assert whole == "whole"

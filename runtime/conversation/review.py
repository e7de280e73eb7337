"""``review/start``, sans-I/O: what the reviewer is asked for each target,
the hint clients show, and how its answer is read and rendered, as the
original does it (``review_prompts``, ``review_format``): the reviewer
answers a JSON object (findings with a location and a priority, an overall
verdict); an answer that is no such JSON is kept as the explanation; the
rendered text is what the thread and its history get back."""

from __future__ import annotations

from typing import Any

import msgspec

#: The reviewer's instructions (its base instructions instead of the
#: thread's): what to flag and the JSON to answer with.
REVIEW_INSTRUCTIONS = """# Review guidelines

You review a code change another engineer proposed. Flag only issues that
the author would want to fix: real bugs that the change introduces, that
affect correctness, security, performance or maintainability, and that you
can point to precisely. Do not flag style nits, pre-existing problems or
speculation about intent. Inspect the change with the tools you have (you
cannot modify files); cite exact files and line ranges that overlap the diff.

Give each finding a short imperative title prefixed with its priority
([P0] blocking, [P1] urgent, [P2] normal, [P3] low), a one-paragraph body
saying why it is a problem and when it occurs, a confidence between 0 and 1,
and its location. Then give an overall verdict on the change.

Answer with this JSON object only, without markdown fences or other prose:

{
  "findings": [
    {
      "title": "<= 80 chars, imperative>",
      "body": "<markdown explanation>",
      "confidence_score": <float 0.0-1.0>,
      "priority": <int 0-3, optional>,
      "code_location": {
        "absolute_file_path": "<file path>",
        "line_range": {"start": <int>, "end": <int>}
      }
    }
  ],
  "overall_correctness": "patch is correct" | "patch is incorrect",
  "overall_explanation": "<1-3 sentences justifying the verdict>",
  "overall_confidence_score": <float 0.0-1.0>
}
"""

#: What the thread shows when the reviewer said nothing usable.
REVIEW_FALLBACK_MESSAGE = "Reviewer failed to output a response."

_UNCOMMITTED = ("Review the current code changes (staged, unstaged, and untracked files) and provide "
                "prioritized findings.")


class ReviewTargetError(ValueError):
    """The target cannot be reviewed (an empty custom prompt, a bad branch)."""


def hint(target: dict[str, Any]) -> str:
    """The short description clients show (``user_facing_hint``)."""
    match target.get("type"):
        case "uncommittedChanges":
            return "current changes"
        case "baseBranch":
            return f"changes against '{target['branch']}'"
        case "commit":
            short = target["sha"][:7]
            title = target.get("title")
            return f"commit {short}: {title}" if title else f"commit {short}"
        case _:
            return str(target.get("instructions", "")).strip()


def prompt(target: dict[str, Any], merge_base: str | None = None) -> str:
    """The reviewer's request; ``merge_base`` of HEAD and a base branch
    when it could be found (else the reviewer is told how to find it)."""
    match target.get("type"):
        case "uncommittedChanges":
            return _UNCOMMITTED
        case "baseBranch":
            branch = target["branch"]
            if merge_base:
                return (f"Review the code changes against the base branch '{branch}'. The merge base commit "
                        f"for this comparison is {merge_base}. Run `git diff {merge_base}` to inspect the "
                        f"changes relative to {branch}. Provide prioritized, actionable findings.")
            return (f"Review the code changes against the base branch '{branch}'. Start by finding the merge "
                    f"diff between the current branch and {branch}'s upstream e.g. (`git merge-base HEAD "
                    f"\"$(git rev-parse --abbrev-ref \"{branch}@{{upstream}}\")\"`), then run `git diff` against "
                    f"that SHA to see what changes we would merge into the {branch} branch. Provide "
                    "prioritized, actionable findings.")
        case "commit":
            sha, title = target["sha"], target.get("title")
            if title:
                return (f"Review the code changes introduced by commit {sha} (\"{title}\"). Provide "
                        "prioritized, actionable findings.")
            return f"Review the code changes introduced by commit {sha}. Provide prioritized, actionable findings."
        case _:
            text = str(target.get("instructions", "")).strip()
            if not text:
                raise ReviewTargetError("instructions must not be empty")
            return text


def parse_output(text: str) -> dict[str, Any]:
    """The reviewer's answer as a review: its JSON object (or the first
    ``{`` … last ``}`` of it), else the whole text as the explanation."""
    for candidate in (text, text[text.find("{"):text.rfind("}") + 1] if "{" in text else ""):
        try:
            value = msgspec.json.decode(candidate)
        except msgspec.DecodeError:
            continue
        if isinstance(value, dict):
            return {"findings": [f for f in value.get("findings") or [] if isinstance(f, dict)],
                    "overall_correctness": str(value.get("overall_correctness") or ""),
                    "overall_explanation": str(value.get("overall_explanation") or ""),
                    "overall_confidence_score": value.get("overall_confidence_score") or 0.0}
    return {"findings": [], "overall_correctness": "", "overall_explanation": text,
            "overall_confidence_score": 0.0}


def _location(finding: dict[str, Any]) -> str:
    where = finding.get("code_location") or {}
    lines = where.get("line_range") or {}
    return f"{where.get('absolute_file_path', '')}:{lines.get('start', 0)}-{lines.get('end', 0)}"


def render(review: dict[str, Any]) -> str:
    """The review as text: the explanation, then each finding (title,
    location, indented body)."""
    sections = []
    if explanation := review["overall_explanation"].strip():
        sections.append(explanation)
    findings = review["findings"]
    if findings:
        lines = ["Full review comments:" if len(findings) > 1 else "Review comment:"]
        for finding in findings:
            lines += ["", f"- {finding.get('title', '')} \u2014 {_location(finding)}"]
            lines += [f"  {line}" for line in str(finding.get("body", "")).splitlines()]
        sections.append("\n".join(lines).strip())
    return "\n\n".join(sections) if sections else REVIEW_FALLBACK_MESSAGE


def user_action(rendered: str) -> str:
    """The user message the thread's history keeps of a finished review."""
    return ("<user_action>\n  <context>User initiated a review task. Here's the full review output from reviewer "
            "model. User may select one or more comments to resolve.</context>\n  <action>review</action>\n"
            f"  <results>\n  {rendered}\n  </results>\n  </user_action>\n")

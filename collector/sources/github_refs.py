"""Pure parsing of the references GitHub text carries: closing keywords and Azure Boards mentions.

Kept apart from the poller so the rules (which are GitHub's and Azure Boards' documented syntax,
not ours) can be unit-tested exhaustively without HTTP:

- closing keywords (docs.github.com "Linking a pull request to an issue"): ``close``, ``closes``,
  ``closed``, ``fix``, ``fixes``, ``fixed``, ``resolve``, ``resolves``, ``resolved``, any case,
  optionally followed by a colon, then ``#N`` (same repository) or ``OWNER/REPO#N``; every issue
  needs its own keyword (``Fixes #1, fixes #2``). A full issue URL is accepted too, as GitHub does.
- Azure Boards mentions (learn.microsoft.com "Link GitHub commits, PRs and issues to work items"):
  ``AB#123`` in a pull request's title or description, or in a commit message (upper case, as
  documented).
"""

from __future__ import annotations

import re

_KEYWORD = r"(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*)"
_CLOSING = re.compile(
    rf"(?<![\w-]){_KEYWORD}(?::\s*|\s+)"
    rf"(?:(?P<owner>{_NAME})/(?P<repo>{_NAME}))?#(?P<number>\d+)(?![\w#])"
    rf"|(?<![\w-]){_KEYWORD}(?::\s*|\s+)"
    rf"https?://[^\s/]+/(?P<uowner>{_NAME})/(?P<urepo>{_NAME})/issues/(?P<unumber>\d+)(?![\w/])",
    re.IGNORECASE,
)
_AB_MENTION = re.compile(r"(?<![\w#])AB#(\d+)(?![\w#])")


def closing_references(text: str | None, repo: str) -> list[tuple[str, int]]:
    """Issues a pull request or commit text closes, as ``(owner/repo, number)`` in text order.

    ``repo`` is the repository the text belongs to (``#N`` refers to it). Duplicates are dropped.
    """
    if not text:
        return []
    out: list[tuple[str, int]] = []
    for m in _CLOSING.finditer(text):
        if m.group("number") is not None:
            target = f"{m.group('owner')}/{m.group('repo')}" if m.group("owner") else repo
            number = int(m.group("number"))
        else:
            target = f"{m.group('uowner')}/{m.group('urepo')}"
            number = int(m.group("unumber"))
        if number <= 0:
            continue
        ref = (target, number)
        if all((r.lower(), n) != (ref[0].lower(), ref[1]) for r, n in out):
            out.append(ref)
    return out


def azure_boards_mentions(text: str | None) -> list[int]:
    """Azure Boards work item ids mentioned as ``AB#<id>``, in text order, without duplicates."""
    if not text:
        return []
    out: list[int] = []
    for m in _AB_MENTION.finditer(text):
        work_item = int(m.group(1))
        if work_item > 0 and work_item not in out:
            out.append(work_item)
    return out

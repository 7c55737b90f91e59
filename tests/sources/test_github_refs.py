"""GitHub's closing keywords and Azure Boards' AB# mentions, as the documented syntax defines them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.sources.base import matches_environment
from collector.sources.github_api import format_time, github_time
from collector.sources.github_refs import azure_boards_mentions, closing_references

REPO = "contoso/web"


@pytest.mark.parametrize(
    "keyword", ["close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved"]
)
def test_every_documented_keyword_closes_an_issue_in_the_same_repository(keyword: str) -> None:
    assert closing_references(f"{keyword} #12", REPO) == [(REPO, 12)]
    assert closing_references(f"{keyword.upper()} #12", REPO) == [(REPO, 12)]
    assert closing_references(f"{keyword.capitalize()}: #12", REPO) == [(REPO, 12)]


def test_other_repository_and_several_issues_each_with_its_keyword() -> None:
    text = "Resolves #10, resolves #123, resolves octo-org/octo-repo#100"
    assert closing_references(text, REPO) == [(REPO, 10), (REPO, 123), ("octo-org/octo-repo", 100)]


def test_one_keyword_closes_only_the_first_issue_of_a_list() -> None:
    # GitHub: "Use full syntax for each issue"
    assert closing_references("Closes #1, #2", REPO) == [(REPO, 1)]


def test_issue_url_form_and_duplicates() -> None:
    text = "Fixes https://github.example.com/contoso/api/issues/7\nfixes contoso/API#7 and fixes #3 fixes #3"
    assert closing_references(text, REPO) == [("contoso/api", 7), (REPO, 3)]


@pytest.mark.parametrize(
    "text",
    [
        "prefixes #12",  # keyword inside a longer word
        "unfixed #12",
        "see #12",  # a mention, not a closing reference
        "fixes#12",  # GitHub needs a space or colon after the keyword
        "fixes #12abc",
        "fixes AB#12",  # an Azure Boards mention, not a GitHub issue
        "closes #0",
        "",
        None,
    ],
)
def test_texts_that_close_nothing(text: str | None) -> None:
    assert closing_references(text, REPO) == []


def test_multiline_pull_request_body() -> None:
    body = "## Summary\nRefactor the cart.\n\nFixes #42\nAlso resolved contoso/api#9.\n"
    assert closing_references(body, REPO) == [(REPO, 42), ("contoso/api", 9)]


def test_azure_boards_mentions() -> None:
    assert azure_boards_mentions("AB#123: checkout flow, fixes AB#7 (and AB#123 again)") == [123, 7]
    assert azure_boards_mentions("TAB#5 XAB#6 AB#7x AB#0 AB# 8 ab#9") == []
    assert azure_boards_mentions(None) == []


def test_time_round_trip() -> None:
    at = github_time("2024-05-01T10:00:00Z")
    assert at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert format_time(at) == "2024-05-01T10:00:00Z"
    assert github_time("2024-05-01T12:00:00+02:00") == at
    for bad in (None, "", "yesterday", 12, "Z", "2024-05-01T24:00:00Z", "2024-05-01T10:00:00+00:00Z"):
        with pytest.raises(ValueError):
            github_time(bad)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00.1234567Z",
        "2024-05-01Z",
        "2024-05-01 10:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2024-05-01T10:00:00,5Z",
    ],
)
def test_a_z_time_reads_as_its_offset_form_does(text: str) -> None:
    """The ``Z`` form has its own fast path; it must read as the general one (``+00:00``) does."""
    expected = datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    assert github_time(text) == expected and github_time(text).tzinfo is UTC
    assert github_time(text[:-1] + "+00:00") == expected


def test_production_environment_matching() -> None:
    patterns = ["production", "/^prod-(eu|us)$/"]
    assert matches_environment("production", patterns)
    assert matches_environment("Production", patterns)
    assert matches_environment("prod-eu", patterns)
    assert not matches_environment("prod-asia", patterns)
    assert not matches_environment("staging", patterns)

"""Source registry: adding a source is a module in this folder plus one line here."""

from __future__ import annotations

from collector.sources.azure_boards import AzureBoardsSource
from collector.sources.azure_pipelines import AzurePipelinesSource
from collector.sources.base import Source
from collector.sources.github import GitHubSource

SOURCES: dict[str, type[Source]] = {}
SOURCES[GitHubSource.kind] = GitHubSource
SOURCES[AzureBoardsSource.kind] = AzureBoardsSource
SOURCES[AzurePipelinesSource.kind] = AzurePipelinesSource

"""The sandbox organisation as the benchmarks configure it, with nothing heavier than the standard library.

Kept apart from ``bench_api`` (which imports the sandbox and the collector) so that a client measured
in its own process (``peers/ours.py``) carries no import it would not have as ``cycletime sync``.
"""

from __future__ import annotations

TOKEN = "sandbox-token"
PROJECTS = {"Fabrikam": ("boards", "pipelines"), "Tailspin": ("boards_tailspin", "pipelines_tailspin")}
REPOSITORIES = {
    "contoso/web": ("gh_web", "deployments"),
    "contoso/api": ("gh_api", "releases"),
    "contoso/mobile-app": ("gh_mobile_app", "workflow_runs:deploy.yml"),
}


def organisation_yaml(
    sandbox_url: str, store_url: str, max_concurrency: int | None = None, part: str | None = None
) -> str:
    """The configuration of every project and repository of the sandbox organisation: 2 Boards,
    2 Pipelines, 3 GitHub sources (the Azure ones at ``max_concurrency`` requests in flight, the
    default when None); ``part`` "azure" or "github" keeps that half only."""
    azure = f", max_concurrency: {max_concurrency}" if max_concurrency is not None else ""
    lines = [f"store: {store_url}", "history: 365d", "sources:"]
    if part != "github":
        for project, (boards, pipelines) in PROJECTS.items():
            lines += [
                f"  - {{name: {boards}, kind: azure_boards, organization_url: '{sandbox_url}/contoso', "
                f"project: {project}, token: {TOKEN}{azure}}}",
                f"  - {{name: {pipelines}, kind: azure_pipelines, organization_url: '{sandbox_url}/contoso', "
                f"project: {project}, token: {TOKEN}, production_environments: [production, Prod]{azure}}}",
            ]
    if part != "azure":
        for repo, (name, mode) in REPOSITORIES.items():
            lines.append(
                f"  - {{name: {name}, kind: github, base_url: '{sandbox_url}/api/v3', token: {TOKEN}, "
                f"repositories: [{repo}], deployments_from: '{mode}'}}"
            )
    return "\n".join(lines) + "\n"

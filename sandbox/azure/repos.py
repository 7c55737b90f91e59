"""Azure Repos handlers: repositories, pull requests, their commits, threads and work items.

Shapes from ``specification/git/7.1/git.json`` (``GitRepository``, ``GitPullRequest``,
``GitCommitRef``, ``GitPullRequestCommentThread``, ``ResourceRef``) and its httpExamples (the
completed pull request list, the threads with their ``CodeReviewThreadType`` system threads).
Awkward real variations served: ``description``, ``closedBy`` and ``isDraft`` missing on some pull
requests (older servers send no ``isDraft``), no reviewers, vote threads naming the voter by
``CodeReviewVotedByTfId`` (older) or through ``identities`` (``CodeReviewVotedByIdentity``), draft
pull requests published later, deleted comments, commits in pages of at most ``COMMITS_PAGE``
chained by continuation token whatever ``$top`` asks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from sandbox.azure.common import ApiError, AzureHandlers, Ctx, int_arg, parse_time
from sandbox.azure.data import PullRequest, PullRequestThread, Repo, iso
from sandbox.server import Response

#: the most commits one ``pullRequests/{id}/commits`` page holds (the service caps pages as it likes)
COMMITS_PAGE = 10
#: the service's default page of the pull request list
DEFAULT_TOP = 101
#: the identity the service writes system threads as
SERVICE_ACCOUNT = {
    "id": "41113706-4320-4083-9150-925feb93fc22",
    "displayName": "[DefaultCollection]\\Project Collection Service Accounts",
    "isContainer": True,
}


def _string(value: str) -> dict[str, str]:
    return {"$type": "System.String", "$value": value}


class ReposHandlers(AzureHandlers):
    """Azure Repos: the project's repositories and their completed pull requests."""

    def _repo(self, ctx: Ctx) -> Repo:
        assert ctx.project is not None
        key = unquote(ctx.req.params.get("repository") or "").lower()
        for repo in self.data.repos:
            if repo.project is ctx.project and key in (repo.id.lower(), repo.name.lower()):
                return repo
        raise ApiError(
            404,
            f"TF401019: The Git repository with name or identifier {key} does not exist or you do not have "
            f"permissions for the operation you are attempting.",
            "GitRepositoryNotFoundException",
        )

    def _pull(self, ctx: Ctx) -> PullRequest:
        repo = self._repo(ctx)
        number = int_arg(ctx.req.params.get("pull_request_id"), "pullRequestId")
        for pr in self.data.pull_requests:
            if pr.repo is repo and pr.id == number:
                return pr
        raise ApiError(
            404,
            f"TF401180: The requested pull request was not found. ({number})",
            "GitPullRequestNotFoundException",
        )

    def _repository_json(self, ctx: Ctx, repo: Repo) -> dict[str, Any]:
        url = f"{ctx.org_url}/{repo.project.id}/_apis/git/repositories/{repo.id}"
        return {
            "id": repo.id,
            "name": repo.name,
            "url": url,
            "project": self._project_ref(repo.project),
            "defaultBranch": "refs/heads/main",
            "size": 1024 * (len(repo.commits) + 7),
            "remoteUrl": f"{ctx.org_url}/{repo.project.name}/_git/{repo.name}",
            "sshUrl": f"git@ssh.dev.azure.com:v3/{self.organization}/{repo.project.name}/{repo.name}",
            "webUrl": f"{ctx.org_url}/{repo.project.name}/_git/{repo.name}",
            "isDisabled": False,
            "isInMaintenance": False,
        }

    def git_repositories(self, ctx: Ctx) -> Response:
        value = [self._repository_json(ctx, r) for r in self.data.repos if r.project is ctx.project]
        return Response(200, {"value": value, "count": len(value)})

    # -- pull requests ----------------------------------------------------------------------------------
    def pull_requests(self, ctx: Ctx) -> Response:
        repo = self._repo(ctx)
        req = ctx.req
        status = (req.arg("searchCriteria.status") or "active").lower()
        if status not in ("notset", "active", "abandoned", "completed", "all"):
            raise ApiError(400, f"The value '{status}' is not valid for searchCriteria.status.", "ArgumentException")
        # every pull request the sandbox holds is completed
        prs = [pr for pr in self.data.pull_requests if pr.repo is repo] if status in ("completed", "all") else []
        closed = (req.arg("searchCriteria.queryTimeRangeType") or "created").lower() == "closed"
        low, high = req.arg("searchCriteria.minTime"), req.arg("searchCriteria.maxTime")
        if low:
            floor = parse_time(low, "searchCriteria.minTime")
            prs = [pr for pr in prs if (pr.closed if closed else pr.created) >= floor]
        if high:
            ceiling = parse_time(high, "searchCriteria.maxTime")
            prs = [pr for pr in prs if (pr.closed if closed else pr.created) <= ceiling]
        prs.sort(key=lambda pr: pr.id, reverse=True)  # newest first, as the service lists them
        top = max(int_arg(req.arg("$top"), "$top", DEFAULT_TOP) or DEFAULT_TOP, 1)
        skip = max(int_arg(req.arg("$skip"), "$skip", 0) or 0, 0)
        value = [self._pull_request_json(ctx, pr) for pr in prs[skip : skip + top]]
        return Response(200, {"value": value, "count": len(value)})

    def _pull_request_json(self, ctx: Ctx, pr: PullRequest) -> dict[str, Any]:
        repo = pr.repo
        repo_url = f"{ctx.org_url}/{repo.project.id}/_apis/git/repositories/{repo.id}"
        creator = self._identity(ctx, self.data.people[pr.created_by])
        target = repo.commits[pr.merge.index - 1].sha if pr.merge.index > 0 else pr.merge.sha
        body: dict[str, Any] = {
            "repository": {
                "id": repo.id,
                "name": repo.name,
                "url": repo_url,
                "project": {"id": repo.project.id, "name": repo.project.name, "state": "unchanged"},
            },
            "pullRequestId": pr.id,
            "codeReviewId": pr.id,
            "status": "completed",
            "createdBy": creator,
            "creationDate": iso(pr.created),
            "closedDate": iso(pr.closed),
            "title": pr.title,
            "description": f"{pr.title}.",
            "sourceRefName": f"refs/heads/{self.data.people[pr.created_by].email.split('@')[0]}/pr-{pr.id}",
            "targetRefName": "refs/heads/main",
            "mergeStatus": "succeeded",
            "isDraft": False,
            "mergeId": f"{pr.id:08d}-565e-46f4-ace2-e8cbf50c676b",
            "lastMergeSourceCommit": {
                "commitId": pr.commits[-1].sha,
                "url": f"{repo_url}/commits/{pr.commits[-1].sha}",
            },
            "lastMergeTargetCommit": {"commitId": target, "url": f"{repo_url}/commits/{target}"},
            "lastMergeCommit": {"commitId": pr.merge.sha, "url": f"{repo_url}/commits/{pr.merge.sha}"},
            "reviewers": [
                {
                    "reviewerUrl": f"{repo_url}/pullRequests/{pr.id}/reviewers/{self.data.people[p].id}",
                    "vote": vote,
                    **self._identity(ctx, self.data.people[p]),
                }
                for p, vote in pr.reviewers
            ],
            "url": f"{repo_url}/pullRequests/{pr.id}",
            "supportsIterations": True,
            "completionQueueTime": iso(max(pr.closed - 1500, pr.created)),
            "closedBy": creator,
            "completionOptions": {"mergeStrategy": "squash" if pr.squash else "rebase", "deleteSourceBranch": True},
        }
        # optional fields some answers leave out
        if pr.id % 5 == 0:
            del body["description"]
        if pr.id % 7 == 0:
            del body["isDraft"]  # older servers
        if pr.id % 4 == 0:
            del body["closedBy"]
        return body

    def pull_request_commits(self, ctx: Ctx) -> Response:
        pr = self._pull(ctx)
        repo_url = f"{ctx.org_url}/{pr.repo.project.id}/_apis/git/repositories/{pr.repo.id}"
        commits = [
            {
                "commitId": c.sha,
                "author": {
                    "name": self.data.people[c.author].name,
                    "email": self.data.people[c.author].email,
                    "date": iso(c.at),
                },
                "committer": {
                    "name": self.data.people[c.author].name,
                    "email": self.data.people[c.author].email,
                    # committed when pushed: after the author date, as rebases and amends make it
                    "date": iso(max(c.at, pr.created) + 60_000),
                },
                "comment": c.message,
                "url": f"{repo_url}/commits/{c.sha}",
            }
            for c in reversed(pr.commits)  # newest first
        ]
        page, headers = self._page(commits, ctx.req, default_top=100, max_top=COMMITS_PAGE)
        return Response(200, {"count": len(page), "value": page}, headers)

    def pull_request_work_items(self, ctx: Ctx) -> Response:
        pr = self._pull(ctx)
        value = [{"id": str(i), "url": f"{ctx.org_url}/_apis/wit/workItems/{i}"} for i in pr.items]
        return Response(200, {"count": len(value), "value": value})

    def pull_request_threads(self, ctx: Ctx) -> Response:
        pr = self._pull(ctx)
        value = [self._thread_json(ctx, pr, t) for t in pr.threads]
        return Response(200, {"count": len(value), "value": value})

    def _thread_json(self, ctx: Ctx, pr: PullRequest, thread: PullRequestThread) -> dict[str, Any]:
        person = self.data.people[thread.person]
        who = self._identity(ctx, person)
        system = thread.kind != "text"
        properties: dict[str, Any] = {}
        identities: dict[str, Any] | None = None
        if thread.kind == "vote":
            text = f"{person.name} voted {thread.vote}"
            properties = {
                "CodeReviewThreadType": _string("VoteUpdate"),
                "CodeReviewVoteResult": _string(str(thread.vote)),
            }
            if pr.id % 2:  # older answers name the voter by id; newer ones through ``identities``
                properties["CodeReviewVotedByDisplayName"] = _string(person.name)
                properties["CodeReviewVotedByTfId"] = _string(person.id)
            else:
                properties["CodeReviewVotedByIdentity"] = _string("1")
                identities = {"1": who}
        elif thread.kind == "draft":
            text = f"{person.name} published the pull request"
            properties = {
                "CodeReviewThreadType": _string("IsDraftUpdated"),
                "CodeReviewIsDraft": _string("False"),
                "CodeReviewIsDraftUpdatedByIdentity": _string("1"),
            }
            identities = {"1": who}
        elif thread.kind == "reviewers":
            names = ", ".join(self.data.people[p].name for p, _ in pr.reviewers) or "reviewers"
            text = f"{person.name} added {names} as reviewers"
            properties = {
                "CodeReviewThreadType": _string("ReviewersUpdate"),
                "CodeReviewReviewersUpdatedByDisplayname": _string(person.name),
                "CodeReviewReviewersUpdatedByTfId": _string(person.id.replace("-", "")),
            }
        elif thread.kind == "merge":
            text = f"The pull request is mergable and the target commit would be {pr.merge.sha}."
            properties = {
                "CodeReviewThreadType": _string("MergeAttempt"),
                "CodeReviewMergeStatus": _string("Succeeded"),
            }
        elif thread.kind == "status":
            text = f"{person.name} set the pull request status to Completed"
            properties = {"CodeReviewThreadType": _string("StatusUpdate"), "CodeReviewStatus": _string("Completed")}
        else:
            text = thread.text
        comments = [
            {
                "id": 1,
                "parentCommentId": 0,
                "author": SERVICE_ACCOUNT if system else who,
                "content": text,
                "publishedDate": iso(thread.at),
                "lastUpdatedDate": iso(thread.at),
                "lastContentUpdatedDate": iso(thread.at),
                "commentType": "system" if system else "text",
                "usersLiked": [],
                **({"isDeleted": True} if thread.deleted else {}),
            }
        ]
        for n, (at, replier, reply) in enumerate(thread.replies, start=2):
            comments.append(
                {
                    "id": n,
                    "parentCommentId": 1,
                    "author": self._identity(ctx, self.data.people[replier]),
                    "content": reply,
                    "publishedDate": iso(at),
                    "lastUpdatedDate": iso(at),
                    "lastContentUpdatedDate": iso(at),
                    "commentType": "text",
                    "usersLiked": [],
                }
            )
        last = max([thread.at] + [at for at, _, _ in thread.replies])
        body: dict[str, Any] = {
            "pullRequestThreadContext": None,
            "id": thread.id,
            "publishedDate": iso(thread.at),
            "lastUpdatedDate": iso(last),
            "comments": comments,
            "threadContext": None,
            "properties": properties,
            "isDeleted": False,
        }
        if not system:
            body["status"] = "fixed" if thread.replies else "active"
            del body["properties"]  # a discussion carries no system properties
        if identities is not None:
            body["identities"] = identities
        return body

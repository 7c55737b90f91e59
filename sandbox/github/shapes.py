"""GitHub's JSON shapes (``github/rest-api-description``, api.github.com 2022-11-28): one request's
objects rendered with absolute URLs on the request's own base and prefix, and its pagination."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sandbox.github.common import GitHubHandlers, int_arg, user_id
from sandbox.github.data import (
    BOT,
    DEFAULT_BRANCH,
    LABEL_COLORS,
    MAX_BODY,
    Deployment,
    GitCommit,
    Issue,
    IssueEvent,
    PullRequest,
    Release,
    Repo,
    Review,
    ReviewComment,
    Run,
    Workflow,
    iso,
)
from sandbox.server import Request, Response

_LANGUAGE = {"web": "TypeScript", "api": "Python", "mobile-app": "Kotlin"}


class Shapes:
    """Renders one request's objects with absolute URLs on the request's own base and prefix."""

    def __init__(self, routes: GitHubHandlers, req: Request) -> None:
        self.routes = routes
        self.data = routes.data
        self.org = routes.organization
        self.req = req
        self.web = req.base_url
        self.host = req.base_url.split("://", 1)[-1]
        self.api = req.base_url + (req.params.get("prefix") or "")
        self._users: dict[str, dict[str, Any]] = {}
        self._repos: dict[tuple[str, bool], dict[str, Any]] = {}

    # --- pagination ---------------------------------------------------------------------
    def page(
        self, items: Sequence[Any], render: Callable[[Any], Any], wrap: Callable[[list[Any], int], Any] | None = None
    ) -> Response:
        per_page = int_arg(self.req, "per_page", 30, 1, 100)
        page = int_arg(self.req, "page", 1, 1, 10**9)
        chunk = [render(x) for x in items[(page - 1) * per_page : page * per_page]]
        body = wrap(chunk, len(items)) if wrap else chunk
        links = self.links(page, max(1, -(-len(items) // per_page)))
        return Response(200, body, {"Link": links} if links else {}, etag=True)

    def links(self, page: int, last: int) -> str | None:
        """RFC 5988 ``Link`` in GitHub's order (prev, next, last, first), on the request's own URL."""
        if page == 1 and last == 1:
            return None

        def url(n: int) -> str:
            query = [(k, v) for k, vs in self.req.query.items() if k.lower() != "page" for v in vs]
            query.append(("page", str(n)))
            return f"<{self.web}{self.req.path}?{urlencode(query)}>"

        parts = []
        if page > 1:
            parts.append(f'{url(min(page - 1, last))}; rel="prev"')
        if page < last:
            parts += [f'{url(page + 1)}; rel="next"', f'{url(last)}; rel="last"']
        if page > 1:
            parts.append(f'{url(1)}; rel="first"')
        return ", ".join(parts)

    # --- objects ------------------------------------------------------------------------
    def user(self, login: str) -> dict[str, Any]:
        if login not in self._users:
            uid = user_id(login)
            kind = "Bot" if login.endswith("[bot]") else "Organization" if login == self.org else "User"
            u = f"{self.api}/users/{quote(login)}"
            self._users[login] = {
                "login": login,
                "id": uid,
                "node_id": f"{'O' if kind == 'Organization' else 'U'}_kgDO{uid:08d}",
                "avatar_url": f"{self.web}/avatars/u/{uid}?v=4",
                "gravatar_id": "",
                "url": u,
                "html_url": f"{self.web}/{quote(login)}",
                "followers_url": f"{u}/followers",
                "following_url": f"{u}/following{{/other_user}}",
                "gists_url": f"{u}/gists{{/gist_id}}",
                "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{u}/subscriptions",
                "organizations_url": f"{u}/orgs",
                "repos_url": f"{u}/repos",
                "events_url": f"{u}/events{{/privacy}}",
                "received_events_url": f"{u}/received_events",
                "type": kind,
                "user_view_type": "public",
                "site_admin": False,
            }
        return self._users[login]

    def organization(self) -> dict[str, Any]:
        o = f"{self.api}/orgs/{self.org}"
        count = len(self.data.repos)
        return {
            "login": self.org,
            "id": user_id(self.org),
            "node_id": f"O_kgDO{user_id(self.org):08d}",
            "url": o,
            "repos_url": f"{o}/repos",
            "events_url": f"{o}/events",
            "hooks_url": f"{o}/hooks",
            "issues_url": f"{o}/issues",
            "members_url": f"{o}/members{{/member}}",
            "public_members_url": f"{o}/public_members{{/member}}",
            "avatar_url": f"{self.web}/avatars/u/{user_id(self.org)}?v=4",
            "description": "Sandbox organisation",
            "name": self.org.title(),
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "twitter_username": None,
            "is_verified": False,
            "has_organization_projects": True,
            "has_repository_projects": True,
            "public_repos": count,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "html_url": f"{self.web}/{self.org}",
            "created_at": iso(min(r.created_at for r in self.data.repos.values()) - timedelta(days=100)),
            "updated_at": iso(self.data.now),
            "archived_at": None,
            "type": "Organization",
        }

    def repository(self, repo: Repo, full: bool = False) -> dict[str, Any]:
        key = (repo.name, full)
        if key in self._repos:
            return self._repos[key]
        b = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}"
        open_count = self.routes._sorted_items(
            ("open_count", repo.name), lambda: [sum(1 for i in repo.items.values() if i.state == "open")]
        )[0]
        d: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_kgDO{repo.id:08d}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": False,
            "owner": self.user(self.org),
            "html_url": html,
            "description": f"The {repo.name} service",
            "fork": repo.fork,
            "url": b,
            "forks_url": f"{b}/forks",
            "keys_url": f"{b}/keys{{/key_id}}",
            "collaborators_url": f"{b}/collaborators{{/collaborator}}",
            "teams_url": f"{b}/teams",
            "hooks_url": f"{b}/hooks",
            "issue_events_url": f"{b}/issues/events{{/number}}",
            "events_url": f"{b}/events",
            "assignees_url": f"{b}/assignees{{/user}}",
            "branches_url": f"{b}/branches{{/branch}}",
            "tags_url": f"{b}/tags",
            "blobs_url": f"{b}/git/blobs{{/sha}}",
            "git_tags_url": f"{b}/git/tags{{/sha}}",
            "git_refs_url": f"{b}/git/refs{{/sha}}",
            "trees_url": f"{b}/git/trees{{/sha}}",
            "statuses_url": f"{b}/statuses/{{sha}}",
            "languages_url": f"{b}/languages",
            "stargazers_url": f"{b}/stargazers",
            "contributors_url": f"{b}/contributors",
            "subscribers_url": f"{b}/subscribers",
            "subscription_url": f"{b}/subscription",
            "commits_url": f"{b}/commits{{/sha}}",
            "git_commits_url": f"{b}/git/commits{{/sha}}",
            "comments_url": f"{b}/comments{{/number}}",
            "issue_comment_url": f"{b}/issues/comments{{/number}}",
            "contents_url": f"{b}/contents/{{+path}}",
            "compare_url": f"{b}/compare/{{base}}...{{head}}",
            "merges_url": f"{b}/merges",
            "archive_url": f"{b}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{b}/downloads",
            "issues_url": f"{b}/issues{{/number}}",
            "pulls_url": f"{b}/pulls{{/number}}",
            "milestones_url": f"{b}/milestones{{/number}}",
            "notifications_url": f"{b}/notifications{{?since,all,participating}}",
            "labels_url": f"{b}/labels{{/name}}",
            "releases_url": f"{b}/releases{{/id}}",
            "deployments_url": f"{b}/deployments",
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.updated_at),
            "pushed_at": iso(repo.pushed_at),
            "git_url": f"git://{self.host}/{repo.full_name}.git",
            "ssh_url": f"git@{self.host}:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": ((100 if repo.service else 1) + len(repo.commits) // 10) if repo.commits else 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": _LANGUAGE.get(repo.name),
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": False,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": repo.archived,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": DEFAULT_BRANCH,
            "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        }
        if full:
            d.update(
                {
                    "allow_squash_merge": True,
                    "allow_merge_commit": True,
                    "allow_rebase_merge": True,
                    "allow_auto_merge": False,
                    "delete_branch_on_merge": True,
                    "allow_update_branch": False,
                    "use_squash_pr_title_as_default": False,
                    "squash_merge_commit_message": "COMMIT_MESSAGES",
                    "squash_merge_commit_title": "COMMIT_OR_PR_TITLE",
                    "merge_commit_message": "PR_TITLE",
                    "merge_commit_title": "MERGE_MESSAGE",
                    "temp_clone_token": "",
                    "organization": self.user(self.org),
                    "network_count": 0,
                    "subscribers_count": 0,
                }
            )
        self._repos[key] = d
        return d

    def label(self, repo: Repo, name: str) -> dict[str, Any]:
        lid = label_id(name)
        color = label_color(name)
        return {
            "id": lid,
            "node_id": f"LA_kwDO{lid}",
            "url": f"{self.api}/repos/{repo.full_name}/labels/{quote(name)}",
            "name": name,
            "color": color,
            "default": name == "bug",
            "description": f"Team {name[5:]}" if name.startswith("team/") else None,
        }

    def issue(self, repo: Repo, item: Issue | PullRequest, *, single: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        n = item.number
        is_pr = isinstance(item, PullRequest)
        html = f"{self.web}/{repo.full_name}/{'pull' if is_pr else 'issues'}/{n}"
        assignees = item.assignees if isinstance(item, Issue) else []
        issue_id = item.issue_id if isinstance(item, PullRequest) else item.id
        d: dict[str, Any] = {
            "url": f"{b}/issues/{n}",
            "repository_url": b,
            "labels_url": f"{b}/issues/{n}/labels{{/name}}",
            "comments_url": f"{b}/issues/{n}/comments",
            "events_url": f"{b}/issues/{n}/events",
            "html_url": html,
            "id": issue_id,
            "node_id": f"{'PR' if is_pr else 'I'}_kwDO{issue_id}",
            "number": n,
            "title": item.title,
            "user": self.user(self.data.author_shown(item) if isinstance(item, PullRequest) else item.author),
            "labels": [self.label(repo, lb) for lb in item.labels],
            "state": item.state,
            "locked": False,
            "assignee": self.user(assignees[0]) if assignees else None,
            "assignees": [self.user(a) for a in assignees],
            "milestone": None,
            "comments": 0,
            "created_at": iso(item.created_at),
            "updated_at": iso(item.updated_at),
            "closed_at": iso(item.closed_at),
            "author_association": "MEMBER",
            "active_lock_reason": None,
            "body": item.body,
            "reactions": {
                "url": f"{b}/issues/{n}/reactions",
                "total_count": 0,
                "+1": 0,
                "-1": 0,
                "laugh": 0,
                "hooray": 0,
                "confused": 0,
                "heart": 0,
                "rocket": 0,
                "eyes": 0,
            },
            "timeline_url": f"{b}/issues/{n}/timeline",
            "performed_via_github_app": None,
            "state_reason": item.state_reason if isinstance(item, Issue) else None,
        }
        if isinstance(item, PullRequest):
            d["draft"] = False
            d["pull_request"] = {
                "url": f"{b}/pulls/{n}",
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": iso(item.merged_at),
            }
        else:
            d["type"] = self.issue_type(item.native_type) if item.native_type else None
            if item.legacy_pr_stub:  # as early GitHub issues still carry it
                d["pull_request"] = {"html_url": None, "diff_url": None, "patch_url": None}
        if single:
            closer = item.closed_by if isinstance(item, Issue) else item.merged_by
            d["closed_by"] = self.user(closer) if closer and item.closed_at else None
        if isinstance(item, Issue) and item.malformed:
            _break(d, item.malformed, item.created_at, "closed_at")
        return d

    def pull(self, repo: Repo, pr: PullRequest, *, full: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        n = pr.number
        html = f"{self.web}/{repo.full_name}/pull/{n}"
        links = {
            "self": f"{b}/pulls/{n}",
            "html": html,
            "issue": f"{b}/issues/{n}",
            "comments": f"{b}/issues/{n}/comments",
            "review_comments": f"{b}/pulls/{n}/comments",
            "review_comment": f"{b}/pulls/comments{{/number}}",
            "commits": f"{b}/pulls/{n}/commits",
            "statuses": f"{b}/statuses/{pr.head_sha}",
        }
        owner = self.user(self.org)
        repo_json = self.repository(repo)
        d: dict[str, Any] = {
            "url": links["self"],
            "id": pr.id,
            "node_id": f"PR_kwDO{pr.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": links["issue"],
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": links["statuses"],
            "number": n,
            "state": pr.state,
            "locked": False,
            "title": pr.title,
            "user": self.user(self.data.author_shown(pr)),
            "body": pr.body,
            "labels": [self.label(repo, lb) for lb in pr.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(pr.created_at),
            "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at),
            "merged_at": iso(pr.merged_at),
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": {
                "label": f"{self.org}:{pr.head_ref}",
                "ref": pr.head_ref,
                "sha": pr.head_sha,
                "user": owner,
                "repo": repo_json,
            },
            "base": {
                "label": f"{self.org}:{DEFAULT_BRANCH}",
                "ref": DEFAULT_BRANCH,
                "sha": pr.base_sha,
                "user": owner,
                "repo": repo_json,
            },
            "_links": {k: {"href": v} for k, v in links.items()},
            "author_association": "MEMBER",
            "auto_merge": None,
            "draft": False,
        }
        if full:
            size = len(pr.commits)
            d.update(
                {
                    "merged": pr.merged_at is not None,
                    "mergeable": None if pr.closed_at else True,
                    "rebaseable": None if pr.closed_at else True,
                    "mergeable_state": "unknown" if pr.closed_at else "clean",
                    "merged_by": self.user(pr.merged_by) if pr.merged_by and pr.merged_at else None,
                    "comments": 0,
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": size,
                    "additions": 12 * size,
                    "deletions": 3 * size,
                    "changed_files": size,
                }
            )
        if pr.malformed:
            _break(d, pr.malformed, pr.created_at, "merged_at")
        return d

    def commit(self, repo: Repo, c: GitCommit, *, detail: bool = False) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}/commit"
        merge = len(c.parents) > 1
        author = {"name": c.author.title(), "email": f"{c.author}@{self.org}.example", "date": iso(c.authored)}
        committer = (
            {"name": "GitHub", "email": "noreply@github.com", "date": iso(c.at)}
            if merge
            else {**author, "date": iso(c.at)}
        )
        tree = f"{int(c.sha, 16) ^ 0x5A5A:040x}"[-40:]
        d: dict[str, Any] = {
            "sha": c.sha,
            "node_id": f"C_kwDO{c.sha[:20]}",
            "commit": {
                "author": author,
                "committer": committer,
                "message": c.message,
                "tree": {"sha": tree, "url": f"{b}/git/trees/{tree}"},
                "url": f"{b}/git/commits/{c.sha}",
                "comment_count": 0,
                "verification": {
                    "verified": merge,
                    "reason": "valid" if merge else "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "url": f"{b}/commits/{c.sha}",
            "html_url": f"{html}/{c.sha}",
            "comments_url": f"{b}/commits/{c.sha}/comments",
            "author": self.user(c.author),
            "committer": self.user("web-flow" if merge else c.author),
            "parents": [{"sha": p, "url": f"{b}/commits/{p}", "html_url": f"{html}/{p}"} for p in c.parents],
        }
        if detail:
            d["stats"] = {"total": 15, "additions": 12, "deletions": 3}
            web = f"{self.web}/{repo.full_name}"
            d["files"] = [
                {
                    "sha": tree,
                    "filename": "src/app.txt",
                    "status": "modified",
                    "additions": 12,
                    "deletions": 3,
                    "changes": 15,
                    "blob_url": f"{web}/blob/{c.sha}/src/app.txt",
                    "raw_url": f"{web}/raw/{c.sha}/src/app.txt",
                    "contents_url": f"{b}/contents/src/app.txt?ref={c.sha}",
                    "patch": "@@ -1 +1 @@",
                }
            ]
        return d

    def comparison(
        self,
        repo: Repo,
        basehead: str,
        base: GitCommit,
        head: GitCommit,
        merge_base: GitCommit,
        status: str,
        ahead: int,
        behind: int,
        commits: list[GitCommit],
    ) -> dict[str, Any]:
        html = f"{self.web}/{repo.full_name}/compare/{basehead}"
        return {
            "url": f"{self.api}/repos/{repo.full_name}/compare/{basehead}",
            "html_url": html,
            "permalink_url": (
                f"{self.web}/{repo.full_name}/compare/{self.org}:{base.sha[:7]}...{self.org}:{head.sha[:7]}"
            ),
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "base_commit": self.commit(repo, base),
            "merge_base_commit": self.commit(repo, merge_base),
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": [self.commit(repo, c) for c in commits],
            "files": [],
        }

    def event(
        self,
        repo: Repo,
        item: Issue | PullRequest,
        ev: IssueEvent | Review | ReviewComment,
        *,
        with_issue: bool = False,
    ) -> dict[str, Any]:
        if isinstance(ev, Review):
            # the timeline spells review states in lower case (``/reviews`` in upper case)
            return {**self.review(repo, ev), "state": ev.state.lower(), "event": "reviewed"}
        if isinstance(ev, ReviewComment):
            return {
                "event": "line-commented",
                "node_id": f"PRRT_kwDO{ev.id}",
                "comments": [self.review_comment(repo, ev)],
            }
        if ev.kind == "cross-referenced":
            pr = ev.source
            assert pr is not None
            src = self.data.repos[pr.repo]
            return {
                "actor": self.user(ev.actor),
                "created_at": iso(ev.at),
                "updated_at": iso(ev.at),
                "source": {"type": "issue", "issue": {**self.issue(src, pr), "repository": self.repository(src)}},
                "event": "cross-referenced",
            }
        b = f"{self.api}/repos/{repo.full_name}"
        d: dict[str, Any] = {
            "id": ev.id,
            "node_id": event_node_id(ev),
            "url": f"{b}/issues/events/{ev.id}",
            "actor": self.user(ev.actor),
            "event": ev.kind,
            "commit_id": None,
            "commit_url": None,
            "created_at": iso(ev.at),
            "performed_via_github_app": None,
        }
        commit = ev.commit_id or (ev.source.merge_commit_sha if ev.kind == "closed" and ev.source else None)
        if commit:
            where = ev.source.repo if ev.source else repo.name
            d["commit_id"] = commit
            d["commit_url"] = f"{self.api}/repos/{self.org}/{where}/commits/{commit}"
        if ev.kind in ("labeled", "unlabeled"):
            d["label"] = {"name": ev.label, "color": self.label(repo, ev.label or "")["color"]}
        elif ev.kind in ("assigned", "unassigned"):
            d["assignee"] = self.user(ev.assignee or "")
            d["assigner"] = self.user(ev.actor)
        elif ev.kind == "closed":
            d["state_reason"] = ev.state_reason
        elif ev.kind == "reopened":
            d["state_reason"] = "reopened"
        elif ev.kind == "review_requested":
            d["review_requester"] = self.user(ev.actor)
            d["requested_reviewer"] = self.user(ev.assignee or "")
        if with_issue:
            d["issue"] = self.issue(repo, item)
        return d

    def review(self, repo: Repo, r: Review) -> dict[str, Any]:
        html = f"{self.web}/{repo.full_name}/pull/{r.pr.number}"
        pull = f"{self.api}/repos/{repo.full_name}/pulls/{r.pr.number}"
        d = {
            "id": r.id,
            "node_id": f"PRR_kwDO{r.id}",
            "user": self.user(r.author),
            "body": "Looks good to me." if r.state == "APPROVED" else "A few things to change.",
            "state": r.state,
            "html_url": f"{html}#pullrequestreview-{r.id}",
            "pull_request_url": pull,
            "author_association": "NONE" if r.author.endswith("[bot]") else "MEMBER",
            "_links": {"html": {"href": f"{html}#pullrequestreview-{r.id}"}, "pull_request": {"href": pull}},
            "submitted_at": iso(r.submitted_at),
            "commit_id": r.pr.head_sha,
        }
        if r.submitted_at is None:
            del d["submitted_at"]  # a pending review has not been submitted: GitHub leaves the key out
        return d

    def review_comment(self, repo: Repo, c: ReviewComment) -> dict[str, Any]:
        """A pull request review comment (``GET /pulls/{n}/comments`` items; REST 2022-11-28)."""
        r = c.review
        b = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.web}/{repo.full_name}/pull/{r.pr.number}"
        return {
            "url": f"{b}/pulls/comments/{c.id}",
            "pull_request_review_id": r.id,
            "id": c.id,
            "node_id": f"PRRC_kwDO{c.id}",
            "diff_hunk": "@@ -1,3 +1,4 @@\n line\n+added",
            "path": "README.md",
            "commit_id": r.pr.head_sha,
            "original_commit_id": r.pr.head_sha,
            "user": self.user(r.author),
            "body": "Could this be simpler?",
            "created_at": iso(c.at),
            "updated_at": iso(c.at),
            "html_url": f"{html}#discussion_r{c.id}",
            "pull_request_url": f"{b}/pulls/{r.pr.number}",
            "author_association": "MEMBER",
            "_links": {
                "self": {"href": f"{b}/pulls/comments/{c.id}"},
                "html": {"href": f"{html}#discussion_r{c.id}"},
                "pull_request": {"href": f"{b}/pulls/{r.pr.number}"},
            },
            "reactions": {"url": f"{b}/pulls/comments/{c.id}/reactions", "total_count": 0},
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "line": 2,
            "original_line": 2,
            "side": "RIGHT",
            "subject_type": "line",
        }

    def deployment(self, repo: Repo, d: Deployment) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "url": f"{b}/deployments/{d.id}",
            "id": d.id,
            "node_id": f"DE_kwDO{d.id}",
            "task": "deploy",
            "original_environment": d.environment,
            "environment": d.environment,
            "description": f"Deploy {d.sha[:7]} to {d.environment}",
            "created_at": iso(d.created_at),
            "updated_at": iso(d.statuses[-1].at if d.statuses else d.created_at),
            "statuses_url": f"{b}/deployments/{d.id}/statuses",
            "repository_url": b,
            "creator": self.user(BOT),
            "sha": d.sha,
            "ref": DEFAULT_BRANCH,
            "payload": {},
            "transient_environment": False,
            "production_environment": d.environment == "production",
            "performed_via_github_app": None,
        }

    def status(self, repo: Repo, d: Deployment, s: Any) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        target = f"{self.web}/{repo.full_name}/actions/runs/{d.id}"
        return {
            "url": f"{b}/deployments/{d.id}/statuses/{s.id}",
            "id": s.id,
            "node_id": f"DES_kwDO{s.id}",
            "state": s.state,
            "creator": self.user(BOT),
            "description": "",
            "environment": d.environment,
            "target_url": target,
            "created_at": iso(s.at),
            "updated_at": iso(s.at),
            "deployment_url": f"{b}/deployments/{d.id}",
            "repository_url": b,
            "environment_url": f"https://{d.environment}.{repo.name}.{self.org}.example"
            if s.state == "success"
            else "",
            "log_url": target,
            "performed_via_github_app": None,
        }

    def release(self, repo: Repo, r: Release) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        tag_path = r.tag if not r.draft else f"untagged-{r.id:x}"
        return {
            "url": f"{b}/releases/{r.id}",
            "assets_url": f"{b}/releases/{r.id}/assets",
            "upload_url": f"{self.api}/repos/{repo.full_name}/releases/{r.id}/assets{{?name,label}}",
            "html_url": f"{self.web}/{repo.full_name}/releases/tag/{tag_path}",
            "id": r.id,
            "author": self.user(r.author),
            "node_id": f"RE_kwDO{r.id}",
            "tag_name": r.tag,
            "target_commitish": DEFAULT_BRANCH,
            "name": r.tag,
            "draft": r.draft,
            "immutable": False,
            "prerelease": r.prerelease,
            "created_at": iso(r.created_at),
            "updated_at": iso(r.published_at or r.created_at),
            "published_at": iso(r.published_at),
            "assets": [],
            "tarball_url": None if r.draft else f"{b}/tarball/{r.tag}",
            "zipball_url": None if r.draft else f"{b}/zipball/{r.tag}",
            "body": f"Release {r.tag}",
            "mentions_count": 0,
        }

    def git_ref(self, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "ref": f"refs/{ref}",
            "node_id": f"REF_kwDO{sha[:16]}",
            "url": f"{b}/git/refs/{ref}",
            "object": {"sha": sha, "type": "commit", "url": f"{b}/git/commits/{sha}"},
        }

    def workflow(self, repo: Repo, w: Workflow) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        return {
            "id": w.id,
            "node_id": f"W_kwDO{w.id}",
            "name": w.name,
            "path": w.path,
            "state": "active",
            "created_at": iso(w.created_at),
            "updated_at": iso(w.created_at),
            "url": f"{b}/actions/workflows/{w.id}",
            "html_url": f"{self.web}/{repo.full_name}/blob/{DEFAULT_BRANCH}/{w.path}",
            "badge_url": f"{self.web}/{repo.full_name}/workflows/{quote(w.name)}/badge.svg",
        }

    def issue_type(self, name: str) -> dict[str, Any]:
        tid = 3_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(name))
        return {
            "id": tid,
            "node_id": f"IT_kwDO{tid}",
            "name": name,
            "description": f"A {name.lower()}",
            "color": {"Bug": "red", "Feature": "blue"}.get(name, "gray"),
            "created_at": "2024-01-10T09:00:00Z",
            "updated_at": "2024-01-10T09:00:00Z",
            "is_enabled": True,
        }

    def job(self, repo: Repo, r: Run, job: tuple[int, str, datetime, datetime | None]) -> dict[str, Any]:
        job_id, name, started, completed = job
        b = f"{self.api}/repos/{repo.full_name}"
        done = completed is not None
        conclusion = (r.conclusion if name == "deploy" else "success") if done else None
        step = {
            "name": f"Run {name}",
            "status": "completed" if done else "in_progress",
            "conclusion": conclusion,
            "number": 1,
            "started_at": iso(started),
            "completed_at": iso(completed),
        }
        return {
            "id": job_id,
            "run_id": r.id,
            "run_url": f"{b}/actions/runs/{r.id}",
            "run_attempt": 1,
            "node_id": f"CR_kwDO{job_id}",
            "head_sha": r.head_sha,
            "head_branch": r.head_branch,
            "url": f"{b}/actions/jobs/{job_id}",
            "html_url": f"{self.web}/{repo.full_name}/actions/runs/{r.id}/job/{job_id}",
            "status": "completed" if done else "in_progress",
            "conclusion": conclusion,
            "created_at": iso(r.created_at),
            "started_at": iso(started),
            "completed_at": iso(completed),
            "name": name,
            "steps": [step],
            "check_run_url": f"{b}/check-runs/{job_id}",
            "labels": ["ubuntu-latest"],
            "runner_id": 1,
            "runner_name": "GitHub Actions 1",
            "runner_group_id": 2,
            "runner_group_name": "GitHub Actions",
            "workflow_name": r.workflow.name,
        }

    def run(self, repo: Repo, r: Run) -> dict[str, Any]:
        b = f"{self.api}/repos/{repo.full_name}"
        u = f"{b}/actions/runs/{r.id}"
        c = repo.commits[r.head_sha]
        person = {"name": c.author.title(), "email": f"{c.author}@{self.org}.example"}
        suite = r.id + 10_000_000_000
        return {
            "id": r.id,
            "name": r.workflow.name,
            "node_id": f"WFR_kwLO{r.id}",
            "head_branch": r.head_branch,
            "head_sha": r.head_sha,
            "path": r.workflow.path,
            "display_title": r.title,
            "run_number": r.run_number,
            "event": r.event,
            "status": r.status,
            "conclusion": r.conclusion,
            "workflow_id": r.workflow.id,
            "check_suite_id": suite,
            "check_suite_node_id": f"CS_kwDO{suite}",
            "url": u,
            "html_url": f"{self.web}/{repo.full_name}/actions/runs/{r.id}",
            "pull_requests": [],
            "created_at": iso(r.created_at),
            "updated_at": iso(r.updated_at),
            "actor": self.user(r.actor),
            "run_attempt": 1,
            "referenced_workflows": [],
            "run_started_at": iso(r.run_started_at),
            "triggering_actor": self.user(r.actor),
            "jobs_url": f"{u}/jobs",
            "logs_url": f"{u}/logs",
            "check_suite_url": f"{b}/check-suites/{suite}",
            "artifacts_url": f"{u}/artifacts",
            "cancel_url": f"{u}/cancel",
            "rerun_url": f"{u}/rerun",
            "previous_attempt_url": None,
            "workflow_url": f"{b}/actions/workflows/{r.workflow.id}",
            "head_commit": {
                "id": c.sha,
                "tree_id": f"{int(c.sha, 16) ^ 0x5A5A:040x}"[-40:],
                "message": c.message,
                "timestamp": iso(c.at),
                "author": person,
                "committer": person,
            },
            "repository": self.repository(repo),
            "head_repository": self.repository(repo),
        }


def label_id(name: str) -> int:
    return 4_000_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(name))


def event_node_id(ev: IssueEvent) -> str:
    return f"{_EVENT_NODE.get(ev.kind, 'IE')}_lADO{ev.id}"


def label_color(name: str) -> str:
    return LABEL_COLORS.get(name, "0e8a16" if name.startswith("team/") else "ededed")


_EVENT_NODE = {
    "labeled": "LE",
    "unlabeled": "UNLE",
    "assigned": "AE",
    "unassigned": "UAE",
    "closed": "CE",
    "reopened": "REE",
    "merged": "ME",
    "review_requested": "RRE",
    "ready_for_review": "RFRE",
    "convert_to_draft": "CTDE",
}


def _break(d: dict[str, Any], fault: str, created: datetime, end_field: str) -> None:
    """Make a record malformed the way real data goes wrong (see sandbox.github.data for the reasons)."""
    if fault == "missing_field":
        del d["created_at"]
    elif fault == "bad_timestamp":
        d["created_at"] = "not-a-timestamp"
    elif fault == "wrong_type":
        d["created_at"] = int(created.timestamp())
    elif fault == "end_before_start":
        d["state"] = "closed"
        d["closed_at"] = d[end_field] = iso(created - timedelta(days=3))
    elif fault == "unknown_state":
        d["state"] = "archived"
    elif fault == "too_large":
        d["body"] = _HUGE


_HUGE = "lorem ipsum " * (MAX_BODY // 12 + 400)

"""The GitHub half of the sandbox: a REST API v3 server over the seeded organisation.

Modules: ``data`` (the seeded organisation and its ground truth, no HTTP), ``routes``
(``GitHubRoutes``: routing, auth, rate limits), one handler module per API area (``repos``,
``issues``, ``git``, ``deliveries``, ``actions``), ``shapes`` (the JSON objects, pagination),
``common`` (errors, argument parsing, lookups shared by the areas) and ``graphql`` (GraphQL API v4
over the same data, schema ``schema.graphql``: see that module).

The data and the ground truth (and the exact rules a source must follow to reproduce it) live in
:mod:`sandbox.github.data`; the other modules are the HTTP surface, shaped like
``github/rest-api-description`` (api.github.com 2022-11-28) and PyGithub's recorded responses.

Served both at ``/`` and under ``/api/v3`` (GitHub Enterprise Server). Every absolute URL in a body
or a ``Link`` header is the request's own ``http://host:port`` plus the prefix it came in on:
PyGithub asserts that every URL it follows shares ``base_url``'s host, port and path prefix.

Behaviour shared by every endpoint (endpoint names for ``/_sandbox/stats`` are ``github.<name>``):

- Auth: ``Authorization: Bearer <token>`` or ``token <token>``. None → 401 ``Requires
  authentication``; another token → 401 ``Bad credentials``. With a GitHub App configured
  (``SandboxApp``, module ``apps``), its installation tokens work too until they expire (then 401
  ``Bad credentials``), on their own account's repositories only (404 elsewhere); the app's JWT
  (RS256, verified against its public key) is accepted at ``/orgs/{org}/installation``,
  ``/users/{u}/installation``, ``/repos/{o}/{r}/installation`` and ``POST
  /app/installations/{id}/access_tokens`` (201, ``{token, expires_at, permissions,
  repository_selection}``). ``GitHubRoutes.authorize`` is the one token check.
- Primary rate limit per token (default 5000 an hour, wall-clock reset): ``x-ratelimit-limit``,
  ``-remaining``, ``-reset`` (epoch seconds), ``-used``, ``-resource: core`` on every answer. Each
  request costs 1 except ``GET /rate_limit`` and 304s. Exhausted → 403 ``API rate limit exceeded
  for user ID …`` with ``x-ratelimit-remaining: 0`` until the reset. ``set_rate_limit`` changes the
  budget; ``set_rate_limit(secondary=N, retry_after=S)`` answers the next N requests with 429 +
  ``retry-after: S`` and the secondary-limit message.
- Lists: ``per_page`` (default 30, max 100) and ``page``, with RFC 5988 ``Link`` (prev, next, last,
  first). ``ETag`` on every 200 GET; ``If-None-Match`` with it → 304 (free).
- Unknown repository → 404; ``contoso/private-infra`` → 403 ``Resource not accessible by personal
  access token`` (for fault tests; not listed in the organisation).

Endpoints: ``/rate_limit``; ``/orgs/{org}``; ``/orgs/{org}/repos`` and ``/users/{u}/repos`` (sort
created|updated|pushed|full_name, direction; real ``pushed_at`` (null if never pushed), ``archived``,
``fork``, ``size``; ``extra_repos=N`` adds N repositories, mostly empty, archived or forks, and
``push``/``archive`` change them; ``assign``, ``label``, ``deploy``, ``add_status``, ``release`` and
``review`` make the changes GitHub makes without a push, moving what GitHub moves); under
``/repos/{o}/{r}``: ``''``, ``/issues`` (state, since, sort=created|updated, direction, labels,
assignee, creator), ``/issues/{n}``, ``/issues/{n}/timeline``, ``/issues/{n}/events``,
``/issues/events`` (newest first), ``/pulls`` (state, sort, direction, base, head), ``/pulls/{n}``,
``/pulls/{n}/commits``, ``/pulls/{n}/reviews`` (oldest first, a PENDING one too),
``/pulls/{n}/comments`` (review comments, oldest first; a PR's
``/issues/{n}/timeline`` adds ``reviewed``, ``line-commented``, ``ready_for_review`` and
``convert_to_draft`` events), ``/commits`` (sha, since, until;
newest first), ``/commits/{ref}`` (422 for an unknown sha), ``/compare/{base}...{head}`` (oldest
first; at most 250 commits unless ``page`` or ``per_page`` is given, then paginated, default 250 a
page; 404 for an unknown sha),
``/deployments`` (sha, ref, task, environment; newest first), ``/deployments/{id}``,
``/deployments/{id}/statuses`` (newest first), ``/releases`` (newest first), ``/releases/latest``,
``/releases/tags/{tag}``, ``/releases/{id}``, ``/git/ref/{ref}`` and ``/git/refs/{ref}``
(``tags/<tag>``, ``heads/main``), ``/actions/workflows``, ``/actions/workflows/{id|file}``,
``/actions/workflows/{id|file}/runs`` and ``/actions/runs`` (branch, event, status, created,
head_sha; ``{total_count, workflow_runs}``; like GitHub, a filtered query yields at most 1,000
runs: window by ``created``), ``/actions/runs/{id}``.

GraphQL: ``POST /graphql`` (GHES: ``/api/graphql``), endpoint name ``github.graphql``; same auth
(401 ``This endpoint requires you to be authenticated.`` / ``Bad credentials``) and the same
secondary limit (answered 403 + ``retry-after`` there); its own points budget (default 5,000 an
hour, ``x-ratelimit-resource: graphql``, ``set_rate_limit(resource="graphql", …)``), the points
each answer cost counted under ``points_by_endpoint`` in the stats.
"""

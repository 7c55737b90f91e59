"""Azure Boards: every revision of every work item, its state categories and artifact links.

One incremental stream, the reporting work item revisions API: Microsoft's
documented way to build a warehouse, ⌈revisions / page⌉ requests instead of one per item, and a
continuation token that is our watermark (stream ``revisions``). Consecutive pages, up to
``COMMIT_REVISIONS`` revisions, are one store transaction together with the token that follows the
last of them, so a crash resumes at the last pages written and re-reads at most that many.
The stream has no relations: the same transaction queues the ids of the items the pages touched
(``Store.queued``), and the end of the pass reads each queued item's artifact links once with
``workitemsbatch`` (200 ids a request), removing the ids in the transaction that stores their links.
An item touched on many pages is read once, and a crash anywhere leaves its id queued until read.
States map to categories through the process's own work item type definitions, so renamed and
custom states work. Servers without the reporting API (404)
get the slower WIQL + per-item updates path.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, ClassVar, Literal, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import Field

from collector.errors import Rejected, SourceError
from collector.http import TooDeep
from collector.model import (
    Batch,
    Category,
    Link,
    StateChange,
    WorkItem,
    ado_pr_ref,
    ado_ref,
    build_ref,
    category_of,
    commit_ref,
)
from collector.sources.azure_common import (
    NULL_YEAR,
    AzureDevOps,
    AzureSourceConfig,
    Interrupted,
    NotFound,
    ReadPool,
    azure_time,
    count_problem,
    format_time,
    is_count,
    list_value,
    safe_time,
)
from collector.sources.base import (
    MAX_ID,
    RECORD_ERRORS,
    Pagination,
    PaginationError,
    RecordGuard,
    Source,
    SourceContext,
    SourceStore,
    SyncReport,
    record_label,
)
from collector.sources.registry import register

log = logging.getLogger(__name__)

STREAM = "revisions"
#: the queue of items whose relations are still to be read
RELATIONS = "relations"
WIQL_STREAM = "wiql"
#: ids per workitemsbatch request: the API's maximum
BATCH_IDS = 200
#: revisions stored in one transaction: consecutive pages are stored together, with the token that
#: follows the last of them, so a crash re-reads at most this many (25 pages of 200). Measured on the
#: 10k organisation's 49,640 revisions: the store's CPU 0.49 s a page at a time, 0.31 s per 1,000,
#: 0.21 s per 5,000; the pages held meanwhile are a few MB
COMMIT_REVISIONS = 5_000
#: relations batches read ahead of the one being stored, per request in flight
RELATIONS_AHEAD = 2
#: WIQL refuses more than 20,000 results (VS402337)
WIQL_TOP = 19_999
#: longest string we accept from a field; longer values are rejected as ``too_large``
MAX_NAME = 255
MAX_PATH = 4_000
#: how long the process's states are trusted before they are read again
STATES_TTL = timedelta(hours=24)

BASE_FIELDS = (
    "System.WorkItemType",
    "System.State",
    "System.CreatedDate",
    "System.ChangedDate",
    "System.AreaPath",
    "System.IterationPath",
    "System.TeamProject",
    "System.IsDeleted",
)

#: ArtifactLink URLs (vstfs:///Git/Commit/…, vstfs:///Build/Build/…); the ``/`` inside the id is ``%2F``
_ARTIFACT = re.compile(r"vstfs:///(?P<tool>[^/]+)/(?P<kind>[^/]+)/(?P<id>.+)", re.IGNORECASE)
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_GUID = re.compile(r"[0-9a-fA-F-]{32,36}")


class AzureBoardsConfig(AzureSourceConfig):
    kind: Literal["azure_boards"]
    team_from: str = Field(
        "area_path",
        pattern=r"^(area_path|iteration_path|field:\S+)$",
        description="area_path | iteration_path | field:<reference name>",
    )
    work_item_types: list[str] = Field(default=["User Story", "Bug", "Feature"], min_length=1)


class Revision(NamedTuple):
    """One validated revision in domain terms (no title, no people). A named tuple, not a frozen
    dataclass: one is built per revision of a sync, and a tuple is built in a fraction of the time."""

    item_id: int
    rev: int
    type: str
    state: str
    category: Category
    created_at: datetime
    changed_at: datetime
    project: str
    team: str
    deleted: bool = False


class StateCategories:
    """(work item type, state) → category, read from the process (custom states included)."""

    def __init__(self) -> None:
        self._map: dict[str, dict[str, tuple[str, Category]]] = {}

    def add(self, type_name: str, states: Iterable[Any]) -> None:
        known = self._map.setdefault(type_name.casefold(), {})
        for state in states:
            if not isinstance(state, dict) or not isinstance(state.get("name"), str):
                continue
            try:
                category = category_of(str(state.get("category", "")))
            except ValueError:
                log.warning(
                    "work item type %r state %r has unknown category %r; ignored",
                    type_name,
                    state.get("name"),
                    state.get("category"),
                )
                continue
            known[state["name"].casefold()] = (state["name"], category)

    def has_type(self, type_name: str) -> bool:
        return bool(self._map.get(type_name.casefold()))

    def lookup(self, type_name: str, state: str) -> tuple[str, Category] | None:
        return self._map.get(type_name.casefold(), {}).get(state.casefold())


@register
class AzureBoardsSource(Source):
    kind: ClassVar[str] = "azure_boards"
    config_model = AzureBoardsConfig
    config: AzureBoardsConfig

    def __init__(self, config: AzureBoardsConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.api = AzureDevOps(
            self.name,
            config.organization_url,
            config.project,
            config.token,
            ctx,
            max_concurrency=config.max_concurrency,
        )
        #: reads ahead (the next revisions page, relations batches) run here during a pass; between passes, inline
        self._pool = ReadPool(1, self.name)
        self.types = list(config.work_item_types)
        self._wanted_types = {t.casefold() for t in self.types}
        self.team_field = config.team_from.removeprefix("field:") if config.team_from.startswith("field:") else None
        self.fields = list(BASE_FIELDS) + ([self.team_field] if self.team_field else [])
        self.states = StateCategories()
        self._states_read_at: datetime | None = None
        self._reloaded = False
        self._logged: set[tuple[str, str]] = set()
        self.guard = RecordGuard(self.name)

    # -- the pass ----------------------------------------------------------------------------
    def sync(self, store: SourceStore) -> SyncReport:
        report = SyncReport()
        now = self.ctx.now()
        # the process rarely changes: read it once a day, and again (once a pass) when a state is not
        # in what we read in an earlier pass
        self._reloaded = self._states_read_at is None or now - self._states_read_at > STATES_TTL
        if self._reloaded:
            self._load_states()
        self._pool = ReadPool(self.config.max_concurrency, self.name, self.ctx.should_stop)
        try:
            try:
                self._sync_reporting(store, report)
            except _ReportingUnavailable as exc:
                log.warning(
                    "source=%s the reporting work item revisions API is not available (%s); falling back to "
                    "WIQL + workitemsbatch + per-item updates, which costs one request per changed item",
                    self.name,
                    exc,
                )
                report.details["mode"] = "wiql"
                self._sync_wiql(store, report)
            except Interrupted:
                raise
            except SourceError:
                # the pages committed before the failure still get their relations in this pass
                try:
                    self._read_queued_relations(store, report)
                except SourceError as drain:
                    log.warning("source=%s relations left queued for the next pass: %s", self.name, drain)
                raise
            self._read_queued_relations(store, report)
        except Interrupted:
            if not self.ctx.should_stop():
                raise
            log.info("source=%s stopped mid-batch; the next pass reads it again", self.name)
        finally:
            self._pool.close()
            self._pool = ReadPool(1, self.name)
        return report

    def _load_states(self) -> None:
        """One ``workitemtypes`` call gives every type's states with their category."""
        try:
            body, _ = self.api.get(self.api.project_path("wit/workitemtypes"), "workitemtypes")
        except NotFound as exc:
            raise self.api.not_found(exc) from None
        self.states = StateCategories()
        for wit in list_value(body, "workitemtypes"):
            if isinstance(wit, dict) and isinstance(wit.get("name"), str):
                self.states.add(wit["name"], wit.get("states") or [])
        for type_name in self.types:
            if not self.states.has_type(type_name):
                # older servers list types without their states: ask the type's states endpoint
                path = self.api.project_path(f"wit/workitemtypes/{_q(type_name)}/states")
                try:
                    body, _ = self.api.get(path, "workitemtypestates")
                except NotFound:
                    log.warning(
                        "source=%s work item type %r does not exist in project %r",
                        self.name,
                        type_name,
                        self.config.project,
                    )
                    continue
                self.states.add(type_name, list_value(body, "workitemtypestates"))
        self._states_read_at = self.ctx.now()

    # -- reporting revisions stream -------------------------------------------------------------
    def _sync_reporting(self, store: SourceStore, report: SyncReport) -> None:
        path = self.api.project_path("wit/reporting/workitemrevisions")
        token = store.watermark(self.name, STREAM)
        # what the store's queue holds (we are its only writer): each id is queued once a pass,
        # not once per page that touched it
        queued = set(store.queued(self.name, RELATIONS))
        params: dict[str, Any] = {
            "fields": ",".join(self.fields),
            "types": ",".join(self.types),
            "includeDeleted": "true",
        }
        if token:
            params["continuationToken"] = token
        else:
            params["startDateTime"] = format_time(self.ctx.history_start())
        first = True
        pending: list[Any] = []  # the revisions of pages read but not yet stored
        moved: str | None = None  # the token that follows the last of them
        walk = Pagination(f"{self.name}: reporting revisions")
        page = self._pool.submit(self.api.get, path, "reporting_revisions", params)
        try:
            while not self.ctx.should_stop():
                try:
                    body, _ = page.result()
                except NotFound as exc:
                    if first:
                        raise _ReportingUnavailable(str(exc)) from None
                    raise
                first = False
                # without a "values" list this is no reporting answer; read as empty it would move the watermark
                if not isinstance(body, dict) or not isinstance(body.get("values"), list):
                    raise SourceError(f"{self.name}: unexpected reporting revisions response")
                values = body.get("values") or []
                next_token = _continuation(body)
                walk.page([_revision_key(raw) for raw in values])
                self.ctx.progress(len(values))
                last = body.get("isLastBatch", True) or not next_token or next_token == token
                broken: PaginationError | None = None
                following = params
                if not last and next_token:
                    # the token is all the next request needs besides our filters; rebuilding the URL
                    # (rather than following nextLink verbatim) keeps the fields/types filters on every page
                    following = {k: v for k, v in params.items() if k != "startDateTime"}
                    following["continuationToken"] = next_token
                    try:
                        walk.follow(next_token)  # a token sent before (a cycle) or a list that never ends
                    except PaginationError as exc:
                        broken = exc  # raised once this page is stored: fail visibly
                    else:
                        # the next page is on its way while this one is normalised and stored
                        page = self._pool.submit(self.api.get, path, "reporting_revisions", following)
                if values or (next_token and next_token != token):
                    pending.extend(values)
                    moved = next_token or token
                # pages are stored together up to COMMIT_REVISIONS revisions (as one larger page would be):
                # a transaction per 200-revision page cost 40% of the Boards sync's own CPU
                if moved is not None and (last or broken is not None or len(pending) >= COMMIT_REVISIONS):
                    self._store_pages(store, report, pending, moved, queued)
                    pending, moved = [], None
                if last:
                    return
                if broken is not None:
                    raise broken
                token, params = next_token, following
        except SourceError:
            if moved is not None:  # the pages read before the failure are good: keep them
                self._store_pages(store, report, pending, moved, queued)
            raise
        if moved is not None:  # asked to stop: what was read is kept
            self._store_pages(store, report, pending, moved, queued)

    def _store_pages(
        self, store: SourceStore, report: SyncReport, values: list[Any], watermark: str, queued: set[str]
    ) -> None:
        """One transaction: the pages' revisions, the token that follows the last, the queue's changes."""
        batch, live, deleted = self._batch(values)
        enqueue = [i for i in live if i not in queued]
        dequeue = [i for i in deleted if i in queued]
        store.commit(
            self.name,
            batch,
            stream=STREAM,
            watermark=watermark,
            queue=RELATIONS,
            enqueue=enqueue,
            dequeue=dequeue,
        )
        queued.update(enqueue)
        queued.difference_update(dequeue)
        report.batches += 1
        report.items += len(batch.work_items)

    def _batch(self, values: list[Any]) -> tuple[Batch, list[str], list[str]]:
        """Normalise one page of revisions; also the ids whose relations are to be read (the items
        the page touched) and those whose relations no longer can be (deleted as of this page)."""
        batch = Batch()
        deleted: list[str] = []
        batch.work_items = _work_items(self.name, self._validate(values, batch), deleted)
        gone = set(deleted)
        live = [w.native_id for w in batch.work_items if w.native_id not in gone]
        return batch, live, deleted

    def _validate(self, values: Iterable[Any], batch: Batch) -> list[Revision]:
        out = []
        for raw in values:
            try:
                try:
                    revision = self._revision(raw)
                except Rejected as exc:
                    if exc.reason != "unknown_state" or self._reloaded:
                        raise
                    self._load_states()  # a state added to the process since we read it? (once a pass)
                    self._reloaded = True
                    revision = self._revision(raw)
            except RECORD_ERRORS as exc:
                record = _record_id(raw)
                reason = self.guard.reject(batch, record, exc, record=raw)
                if (record, reason) not in self._logged:
                    self._logged.add((record, reason))
                    log.warning("source=%s work item revision %s rejected: %s", self.name, record, reason)
                continue
            if revision is not None:
                out.append(revision)
        return out

    def _revision(self, raw: Any) -> Revision | None:
        """Validate one revision; None for a revision that is not ours (another type).

        This runs for every revision of a sync, so each check first tests the well-formed case in
        line (exact JSON types) and only otherwise calls the checking helper, which then rejects
        with the precise reason (or accepts what the inline test was too strict for): the outcome
        is the helpers' in every case.
        """
        if type(raw) is not dict and not isinstance(raw, dict):
            raise Rejected("wrong_type", "revision is not an object")
        item_id, rev, fields = raw.get("id"), raw.get("rev"), raw.get("fields")
        if not (
            type(item_id) is int
            and type(rev) is int
            and type(fields) is dict
            and 0 <= item_id <= MAX_ID
            and 0 <= rev <= MAX_ID
        ):
            if item_id is None or rev is None or fields is None:
                raise Rejected("missing_field", "id, rev or fields")
            if not isinstance(fields, dict):
                raise Rejected("wrong_type", "fields")
            problem = count_problem(item_id) or count_problem(rev)
            if problem is not None:
                raise Rejected(problem, "id or rev")
        type_name = fields.get("System.WorkItemType")
        if type(type_name) is not str or not type_name or len(type_name) > MAX_NAME:
            type_name = _text(fields, "System.WorkItemType", MAX_NAME)
        if type_name.casefold() not in self._wanted_types:
            return None  # the server ignored ``types`` (older versions): not an error
        state_name = fields.get("System.State")
        if type(state_name) is not str or not state_name or len(state_name) > MAX_NAME:
            state_name = _text(fields, "System.State", MAX_NAME)
        created_at = _utc_time(fields.get("System.CreatedDate")) or _time(fields, "System.CreatedDate")
        changed_at = _utc_time(fields.get("System.ChangedDate")) or _time(fields, "System.ChangedDate")
        if changed_at < created_at:
            raise Rejected("end_before_start", "ChangedDate before CreatedDate")
        project = fields.get("System.TeamProject")
        if type(project) is not str or not project or len(project) > MAX_NAME:
            project = _text(fields, "System.TeamProject", MAX_NAME, default=self.config.project)
        team = self._team(fields, project)
        deleted = fields.get("System.IsDeleted")
        known = self.states.lookup(type_name, state_name)
        is_deleted = deleted is True or (deleted not in (None, False) and str(deleted).lower() == "true")
        if is_deleted:
            category = Category.REMOVED
            state_name = known[0] if known else state_name
        elif known is None:
            raise Rejected("unknown_state", f"{type_name!r} has no state {state_name!r}")
        else:
            state_name, category = known
        return Revision(
            int(item_id), int(rev), type_name, state_name, category, created_at, changed_at, project, team, is_deleted
        )

    def _team(self, fields: dict[str, Any], project: str) -> str:
        """The full area or iteration path, or the named field (docs/definitions.md "Labels")."""
        mode = self.config.team_from
        if self.team_field:
            value = fields.get(self.team_field)
            if value is None or value == "":
                return ""  # no team: docs/definitions.md "Labels"
            if isinstance(value, dict):  # an identity field: its display name
                value = value.get("displayName") or value.get("uniqueName")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise Rejected("wrong_type", self.team_field)
            if len(str(value)) > MAX_NAME:
                raise Rejected("too_large", self.team_field)
            return str(value)
        key = "System.IterationPath" if mode == "iteration_path" else "System.AreaPath"
        # the full path (Fabrikam\\Web): two teams' "Web" areas under different parents stay apart
        team = fields.get(key)
        if type(team) is not str or not team or len(team) > MAX_PATH:
            team = _text(fields, key, MAX_PATH, default=project)
        team = team.rstrip("\\") or project
        if len(team) > MAX_NAME:
            raise Rejected("too_large", key)
        return team

    # -- relations ----------------------------------------------------------------------------------
    def _read_queued_relations(self, store: Any, report: SyncReport) -> None:
        """The links of every queued item, each read once however many pages touched it.

        Each batch of links is committed with the removal of its ids from the queue, so a crash
        re-reads at most one batch and never drops an item.
        """
        ids = sorted(int(key) for key in store.queued(self.name, RELATIONS))
        chunks = [ids[i : i + BATCH_IDS] for i in range(0, len(ids), BATCH_IDS)]
        path = self.api.project_path("wit/workitemsbatch")
        # the next batches are read (on the pass's pool) while this one is stored
        ahead = RELATIONS_AHEAD * self.config.max_concurrency
        reads = deque(self._pool.submit(self._relations, path, chunk) for chunk in chunks[:ahead])
        for i, chunk in enumerate(chunks):
            if self.ctx.should_stop():
                return
            if i + ahead < len(chunks):
                reads.append(self._pool.submit(self._relations, path, chunks[i + ahead]))
            batch = Batch()
            batch.links = self._links(_relation_items(reads.popleft().result()), batch)
            store.commit(self.name, batch, queue=RELATIONS, dequeue=[str(item) for item in chunk])
            report.batches += 1

    def _links(self, items: Iterable[dict[str, Any]], batch: Batch) -> list[Link]:
        links: set[Link] = set()
        for item in items:
            try:
                links.update(self._item_links(item))
            except RECORD_ERRORS as exc:
                self.guard.reject(batch, f"links:{record_label(item.get('id'))}", exc, record=item)
        return sorted(links, key=lambda link: (link.work_item, link.target))

    def _work_items_with_relations(self, ids: list[int]) -> Iterator[dict[str, Any]]:
        """``workitemsbatch`` with ``$expand=Relations`` (not combinable with ``fields``), 200 ids a call;
        the calls run on the pass's pool, their items come back in order."""
        path = self.api.project_path("wit/workitemsbatch")
        reads = [
            self._pool.submit(self._relations, path, ids[i : i + BATCH_IDS]) for i in range(0, len(ids), BATCH_IDS)
        ]
        for read in reads:
            yield from _relation_items(read.result())

    def _relations(self, path: str, chunk: list[int]) -> Any:
        # errorPolicy=Omit: an item deleted since its revision was read comes back as null
        body, _ = self.api.call(
            "POST", path, "workitemsbatch", json_body={"ids": chunk, "$expand": "Relations", "errorPolicy": "Omit"}
        )
        return body

    def _item_links(self, item: dict[str, Any]) -> Iterator[Link]:
        work_item = ado_ref(item["id"])
        for relation in item.get("relations") or []:
            if not isinstance(relation, dict) or relation.get("rel") != "ArtifactLink":
                continue
            target = artifact_ref(relation.get("url"))
            if target is not None:
                yield Link(self.name, work_item, target)

    # -- fallback: WIQL + workitemsbatch + updates ---------------------------------------------------
    def _sync_wiql(self, store: SourceStore, report: SyncReport) -> None:
        """For servers without the reporting API: ids changed since the watermark, then each one's updates."""
        mark = store.watermark(self.name, WIQL_STREAM)
        since = azure_time(mark) if mark else None
        since = since or self.ctx.history_start()
        while not self.ctx.should_stop():
            ids = self._wiql_ids(since)
            newest = since
            for i in range(0, len(ids), BATCH_IDS):
                if self.ctx.should_stop():
                    return
                items = list(self._work_items_with_relations(ids[i : i + BATCH_IDS]))
                revisions: list[Any] = []
                for item in items:
                    revisions.extend(self._updates_as_revisions(item))
                    changed = safe_time((item.get("fields") or {}).get("System.ChangedDate"))
                    if changed is not None and changed > newest:
                        newest = changed
                batch = Batch()
                batch.work_items = _work_items(self.name, self._validate(revisions, batch))
                batch.links = sorted(
                    {link for item in items for link in self._item_links(item)},
                    key=lambda link: (link.work_item, link.target),
                )
                store.commit(self.name, batch, stream=WIQL_STREAM, watermark=format_time(newest))
                self.ctx.progress(len(revisions))
                report.batches += 1
                report.items += len(batch.work_items)
            if len(ids) < WIQL_TOP or newest <= since:
                return
            since = newest  # more than WIQL returns at once: continue after the newest change read

    def _wiql_ids(self, since: datetime) -> list[int]:
        types = ", ".join("'" + t.replace("'", "''") + "'" for t in self.types)
        query = (
            "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project "
            f"AND [System.WorkItemType] IN ({types}) AND [System.ChangedDate] >= '{format_time(since)}' "
            "ORDER BY [System.ChangedDate] ASC"
        )
        body, _ = self.api.call(
            "POST",
            self.api.project_path("wit/wiql"),
            "wiql",
            params={"timePrecision": "true", "$top": WIQL_TOP},
            json_body={"query": query},
        )
        refs = body.get("workItems") if isinstance(body, dict) else None
        if not isinstance(refs, list):
            raise SourceError(f"{self.name}: unexpected WIQL response")
        return [int(r["id"]) for r in refs if isinstance(r, dict) and is_count(r.get("id"))]

    def _updates_as_revisions(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Replay an item's updates (field deltas) into full revisions like the reporting API's."""
        path = self.api.project_path(f"wit/workItems/{item['id']}/updates")
        current: dict[str, Any] = {}
        skip = 0
        while True:
            body, _ = self.api.get(path, "updates", {"$top": BATCH_IDS, "$skip": skip})
            updates = list_value(body, "updates")
            for update in updates:
                if not isinstance(update, dict):
                    continue
                for name, change in (update.get("fields") or {}).items():
                    if isinstance(change, dict):
                        current[name] = change.get("newValue")
                if update.get("rev") is not None:
                    yield {"id": item["id"], "rev": update["rev"], "fields": dict(current)}
            if len(updates) < BATCH_IDS:
                return
            skip += len(updates)


class _ReportingUnavailable(Exception):
    pass


def artifact_ref(url: Any) -> str | None:
    """The ref an ArtifactLink URL points at, or None for artifacts we do not use.

    GitHub pull requests are linked through a service connection GUID, not a repository name;
    without the service-connection API they cannot be resolved to ``owner/repo``, so they are kept
    as ``ghconn:<guid>#<number>`` (their GitHub commits are plain shas and resolve normally).
    """
    if not isinstance(url, str) or len(url) > 1000:
        return None
    m = _ARTIFACT.fullmatch(url.strip())
    if not m:
        return None
    tool, kind = m["tool"].lower(), m["kind"].lower()
    parts = unquote(m["id"]).split("/")
    if tool == "git" and kind == "commit" and len(parts) == 3 and _SHA.fullmatch(parts[2]):
        return commit_ref(parts[2])
    if tool == "git" and kind == "pullrequestid" and len(parts) == 3 and parts[2].isdigit() and parts[1]:
        return ado_pr_ref(parts[1], int(parts[2]))
    if tool == "build" and kind == "build" and len(parts) == 1 and parts[0].isdigit():
        return build_ref(int(parts[0]))
    if tool == "github" and kind == "commit" and len(parts) == 2 and _SHA.fullmatch(parts[1]):
        return commit_ref(parts[1])
    if (
        tool == "github"
        and kind == "pullrequest"
        and len(parts) == 2
        and parts[1].isdigit()
        and _GUID.fullmatch(parts[0])
    ):
        return f"ghconn:{parts[0].lower()}#{int(parts[1])}"
    return None


def _work_items(source: str, revisions: list[Revision], deleted: list[str] | None = None) -> list[WorkItem]:
    """Group a page's revisions per item; the item's attributes are those of its newest revision.

    A revision number seen twice in a page counts once, with its last copy's values. One plain
    loop per item (no per-item dict or generators): this runs for every revision of a sync.
    ``deleted`` collects the ids of the items whose newest revision deletes them.
    """
    by_item: dict[int, list[Revision]] = {}
    for revision in revisions:
        revs = by_item.get(revision.item_id)
        if revs is None:
            by_item[revision.item_id] = [revision]
        else:
            revs.append(revision)
    out = []
    by_rev = attrgetter("rev")
    for item_id, revs in sorted(by_item.items()):
        native = str(item_id)
        if len(revs) > 1:
            revs.sort(key=by_rev)  # stable: the copies of one revision keep their page order
        history: list[StateChange] = []
        previous = None
        created = revs[0].created_at
        for r in revs:
            change = StateChange(native, r.rev, r.changed_at, r.state, r.category)
            if r.rev == previous:
                history[-1] = change
            else:
                history.append(change)
                previous = r.rev
            if r.created_at < created:
                created = r.created_at
        last = revs[-1]
        if last.deleted and deleted is not None:
            deleted.append(native)
        out.append(
            WorkItem(source, native, ado_ref(item_id), last.project, last.team, last.type, created, tuple(history))
        )
    return out


def _relation_items(body: Any) -> Iterator[dict[str, Any]]:
    """The work items of a ``workitemsbatch`` answer (deleted ones come back as null)."""
    for item in list_value(body, "workitemsbatch"):
        if isinstance(item, dict) and is_count(item.get("id")):
            yield item


def _continuation(body: dict[str, Any]) -> str | None:
    token = body.get("continuationToken")
    if isinstance(token, str) and token:
        return token
    link = body.get("nextLink")
    if isinstance(link, str):
        for key, values in parse_qs(urlsplit(link).query).items():
            if key.lower() in ("continuationtoken", "watermark") and values:
                return values[0]
    return None


def _text(fields: dict[str, Any], name: str, limit: int, default: str | None = None) -> str:
    value = fields.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise Rejected("missing_field", name)
    if not isinstance(value, str):
        raise Rejected("wrong_type", name)
    if len(value) > limit:
        raise Rejected("too_large", name)
    return value


def _time(fields: dict[str, Any], name: str) -> datetime:
    value = fields.get(name)
    if value is None or value == "":
        raise Rejected("missing_field", name)
    if not isinstance(value, str):
        raise Rejected("wrong_type", name)
    try:
        parsed = azure_time(value)
    except ValueError:
        raise Rejected("bad_timestamp", name) from None
    if parsed is None:
        raise Rejected("missing_field", name)
    return parsed


def _utc_time(value: Any) -> datetime | None:
    """The usual form of a timestamp (``…Z``) parsed as ``azure_time`` would; None for any other
    value, which ``_time`` then parses or rejects."""
    if type(value) is str and value[-1:] == "Z" and len(value) <= 40 and "T" in value:
        try:
            parsed = datetime.fromisoformat(value)  # aware, UTC: nothing to convert
        except ValueError:
            return None
        if parsed.tzinfo is UTC and parsed.year >= NULL_YEAR:
            return parsed
    return None


def _record_id(raw: Any) -> str:
    if isinstance(raw, TooDeep):
        return raw.label
    if isinstance(raw, dict):
        return f"{record_label(raw.get('id'))}:{record_label(raw.get('rev'))[:16]}"
    return "unknown"


def _revision_key(raw: Any) -> Any:
    """What identifies a revision within one walk of the stream."""
    if type(raw) is dict:  # the usual case, in line (once per revision)
        item_id, rev = raw.get("id"), raw.get("rev")
        if type(item_id) is int and type(rev) is int and 0 <= item_id <= MAX_ID and 0 <= rev <= MAX_ID:
            return (item_id, rev)
    if isinstance(raw, dict) and is_count(raw.get("id")) and is_count(raw.get("rev")):
        return (raw["id"], raw["rev"])
    return None


def _q(text: str) -> str:
    return quote(text, safe="")

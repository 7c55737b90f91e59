"""Azure Boards handlers: work item types and states, reporting revisions, WIQL, work items,
updates, revisions and artifact-link queries."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode

from sandbox.azure.common import ApiError, AzureHandlers, Ctx, csv_arg, flag_arg, int_arg, parse_time
from sandbox.azure.data import END_OF_TIME, WORK_ITEM_TYPES, Project, Relation, Revision, WorkItem, iso
from sandbox.azure.data import TYPE_REFERENCE_NAMES as _TYPE_REFS
from sandbox.azure.wiql import parse_wiql, wiql_matches, wiql_sort_key
from sandbox.server import Response

MAX_WIQL_RESULTS = 20_000
MAX_BATCH_IDS = 200
_HUGE = 100_000


class BoardsHandlers(AzureHandlers):
    """Azure Boards: process metadata, reporting revisions, WIQL, work items and their history."""

    # -- boards: process ------------------------------------------------------------------------

    def work_item_types(self, ctx: Ctx) -> Response:
        project = ctx.project
        assert project is not None
        wanted = ctx.req.params.get("type")
        types = [t for t in WORK_ITEM_TYPES if wanted is None or t.lower() == unquote(wanted).lower()]
        if not types:
            raise ApiError(
                404, f"TF51535: Cannot find work item type {unquote(wanted or '')}.", "WorkItemTypeNotFoundException"
            )
        value = [self._type_json(ctx, project, t) for t in types]
        return Response(200, value[0] if wanted else {"count": len(value), "value": value})

    def _type_json(self, ctx: Ctx, project: Project, type_: str) -> dict[str, Any]:
        states = project.states[type_]
        names = [s for s, _, _ in states]
        transitions = {"": [{"to": "New"}]}
        transitions.update({s: [{"to": t} for t in names if t != s] for s in names})
        return {
            "name": type_,
            "referenceName": _TYPE_REFS[type_],
            "description": f"Tracks a {type_.lower()}.",
            "color": {"Bug": "CC293D", "Feature": "773B93"}.get(type_, "009CCC"),
            "icon": {
                "id": "icon_book" if type_ == "User Story" else "icon_insect" if type_ == "Bug" else "icon_trophy",
                "url": f"{ctx.org_url}/_apis/wit/workItemIcons/icon_book?v=2",
            },
            "isDisabled": False,
            "fields": [
                {"referenceName": f, "name": f.rsplit(".", 1)[-1], "url": f"{ctx.org_url}/_apis/wit/fields/{f}"}
                for f in ("System.Id", "System.Title", "System.State", "System.AreaPath")
            ],
            "transitions": transitions,
            "states": [{"name": s, "color": c, "category": cat} for s, c, cat in states],
            "url": f"{ctx.org_url}/{project.id}/_apis/wit/workItemTypes/{quote(type_)}",
        }

    def work_item_type_states(self, ctx: Ctx) -> Response:
        project = ctx.project
        assert project is not None
        wanted = unquote(ctx.req.params["type"]).lower()
        type_ = next((t for t in WORK_ITEM_TYPES if t.lower() == wanted), None)
        if type_ is None:
            raise ApiError(404, f"TF51535: Cannot find work item type {wanted}.", "WorkItemTypeNotFoundException")
        value = [{"name": s, "color": c, "category": cat} for s, c, cat in project.states[type_]]
        return Response(200, {"count": len(value), "value": value})

    # -- boards: work item rendering --------------------------------------------------------------

    def _fields(self, ctx: Ctx, r: Revision, identity: str = "object", reporting: bool = False) -> dict[str, Any]:
        """The fields of one revision; ``identity`` is ``object`` (IdentityRef), ``ref`` or ``string``."""
        item = r.item
        people = self.data.people

        def who(index: int) -> Any:
            person = people[index]
            if identity == "string":
                return person.display
            if identity == "ref":
                return {"id": person.id, "uniqueName": person.display}
            return self._identity(ctx, person)

        nxt = item.revs[r.rev] if r.rev < len(item.revs) else None
        column = {"In Review": "Review"}.get(r.state, r.state)
        f: dict[str, Any] = {
            "System.Id": item.id,
            "System.AreaPath": item.area,
            "System.TeamProject": item.project.name,
            "System.Rev": r.rev,
            "System.AuthorizedDate": iso(r.at),
            "System.RevisedDate": iso(nxt.at) if nxt is not None else END_OF_TIME,
            "System.IterationPath": r.iteration,
            "System.WorkItemType": item.type,
            "System.State": r.state,
            "System.Reason": r.reason,
            "System.CreatedDate": iso(item.created),
            "System.CreatedBy": who(item.created_by),
            "System.ChangedDate": iso(r.at),
            "System.ChangedBy": who(r.by),
            "System.AuthorizedAs": who(r.by),
            "System.Title": r.title,
            "System.BoardColumn": column,
            "System.BoardColumnDone": False,
            "System.IsDeleted": r.deleted,
            "System.CommentCount": 0,
            "Microsoft.VSTS.Common.Priority": r.priority,
            "Microsoft.VSTS.Common.StateChangeDate": iso(r.state_changed),
            f"WEF_{item.project.kanban_guid}_Kanban.Column": column,
            f"WEF_{item.project.kanban_guid}_Kanban.Column.Done": False,
        }
        if not reporting:
            f["System.Watermark"] = r.watermark
        if r.assigned >= 0:
            f["System.AssignedTo"] = who(r.assigned)
        if r.links:
            f["System.ExternalLinkCount"] = r.links
        if r.tags:
            f["System.Tags"] = r.tags
        for name, value in (("ActivatedDate", r.activated), ("ResolvedDate", r.resolved), ("ClosedDate", r.closed)):
            if value is not None:
                f[f"Microsoft.VSTS.Common.{name}"] = iso(value)
        if r.defect is not None:
            self._corrupt(f, r)
        return f

    @staticmethod
    def _corrupt(f: dict[str, Any], r: Revision) -> None:
        """Apply a malformed revision's one defect (see the package docstring, ``sandbox.azure``)."""
        if r.defect == "missing_field":
            del f["System.CreatedDate"]
        elif r.defect == "wrong_type":
            f["System.State"] = 2
        elif r.defect == "unknown_state":
            f["System.State"] = "Limbo"
        elif r.defect == "end_before_start":
            f["System.ChangedDate"] = iso(r.item.created - 3 * 86_400_000)
        elif r.defect == "bad_timestamp":
            f["System.ChangedDate"] = "not-a-date"
        elif r.defect == "too_large":
            filler = ("Fabrikam\\" * (_HUGE // 9 + 1))[:_HUGE]
            f["System.AreaPath"] = filler
            f["System.IterationPath"] = filler

    @staticmethod
    def _select(fields: dict[str, Any], wanted: list[str] | None) -> dict[str, Any]:
        if not wanted:
            return fields
        lower = {k.lower(): k for k in fields}
        return {lower[w.lower()]: fields[lower[w.lower()]] for w in wanted if w.lower() in lower}

    def _relation_json(self, rel: Relation) -> dict[str, Any]:
        return {
            "rel": "ArtifactLink",
            "url": rel.url,
            "attributes": {
                "authorizedDate": iso(rel.added_at),
                "id": rel.rid,
                "resourceCreatedDate": iso(rel.added_at),
                "resourceModifiedDate": iso(rel.added_at),
                "revisedDate": END_OF_TIME,
                "name": rel.name,
            },
        }

    def _work_item_json(
        self, ctx: Ctx, r: Revision, fields: list[str] | None, expand: str, revision_url: bool = False
    ) -> dict[str, Any]:
        item = r.item
        url = f"{ctx.org_url}/_apis/wit/workItems/{item.id}"
        body: dict[str, Any] = {"id": item.id, "rev": r.rev, "fields": self._select(self._fields(ctx, r), fields)}
        if expand in ("relations", "all"):
            relations = [self._relation_json(rel) for rel in item.relations if rel.added_at <= r.at]
            if relations:
                body["relations"] = relations
        if expand in ("links", "all"):
            body["_links"] = {
                "self": {"href": url},
                "workItemUpdates": {"href": url + "/updates"},
                "workItemRevisions": {"href": url + "/revisions"},
                "workItemComments": {"href": url + "/comments"},
                "html": {"href": f"{ctx.org_url}/{item.project.id}/_workitems/edit/{item.id}"},
                "workItemType": {"href": f"{ctx.org_url}/{item.project.id}/_apis/wit/workItemTypes/{quote(item.type)}"},
                "fields": {"href": f"{ctx.org_url}/_apis/wit/fields"},
            }
        body["url"] = (
            f"{ctx.org_url}/{item.project.id}/_apis/wit/workItems/{item.id}/revisions/{r.rev}" if revision_url else url
        )
        return body

    def _visible(self, ctx: Ctx, item_id: int) -> WorkItem | None:
        item = self.data.item(item_id)
        if item is None or item.deleted or (ctx.project is not None and item.project is not ctx.project):
            return None
        return item

    def _missing(self, item_id: int) -> ApiError:
        return ApiError(
            404,
            f"TF401232: Work item {item_id} does not exist, or you do not have permissions to read it.",
            "WorkItemUnauthorizedAccessException",
        )

    @staticmethod
    def _as_of(item: WorkItem, as_of: int | None) -> Revision | None:
        if as_of is None:
            return item.latest
        times = [r.at for r in item.revs]
        i = bisect.bisect_right(times, as_of)
        return item.revs[i - 1] if i else None

    # -- boards: reporting revisions ---------------------------------------------------------------

    def reporting_revisions(self, ctx: Ctx) -> Response:
        req = ctx.req
        body = (req.json() or {}) if req.method == "POST" else {}
        if not isinstance(body, dict):
            raise ApiError(
                400, "The request body must be a ReportingWorkItemRevisionsFilter.", "InvalidArgumentValueException"
            )
        fields = body.get("fields") or csv_arg(req.arg("fields"))
        types = body.get("types") or csv_arg(req.arg("types"))
        include_deleted = flag_arg(body.get("includeDeleted", req.arg("includeDeleted", "false")))
        latest_only = flag_arg(body.get("includeLatestOnly", req.arg("includeLatestOnly", "false")))
        identity = (
            "ref" if flag_arg(body.get("includeIdentityRef", req.arg("includeIdentityRef", "false"))) else "string"
        )
        page = self.page_size
        requested = int_arg(req.arg("$maxPageSize"), "$maxPageSize")
        if requested is not None and requested > 0:
            page = min(page, requested)
        log = self.data.log
        token = req.arg("continuationToken") or req.arg("watermark")
        if token:
            try:
                start = int(token.split(";")[0])
            except ValueError:
                raise ApiError(
                    400, f"The continuation token '{token}' is not valid.", "InvalidContinuationTokenException"
                ) from None
            start = min(max(start, 0), len(log))
        elif req.arg("startDateTime"):
            start = bisect.bisect_left(self.data.log_times, parse_time(req.arg("startDateTime") or "", "startDateTime"))
        else:
            start = 0
        projects = [ctx.project] if ctx.project is not None else self.data.projects
        wanted_types = {t.lower() for t in types} if types else {t.lower() for t in WORK_ITEM_TYPES}
        streams = []
        for project in projects:
            for type_ in wanted_types:
                positions = self.data.log_index.get((project.name.lower(), type_))
                if positions:
                    i = bisect.bisect_left(positions, start)
                    streams.append(_tail(positions, i))
        values: list[dict[str, Any]] = []
        resume = start
        last_batch = True
        for position in heapq.merge(*streams):
            r = log[position]
            item = r.item
            if (not include_deleted and item.deleted) or (latest_only and r is not item.latest):
                resume = position + 1
                continue
            if len(values) == page:
                last_batch = False
                break
            values.append(
                {
                    "id": item.id,
                    "rev": r.rev,
                    "fields": self._select(self._fields(ctx, r, identity=identity, reporting=True), fields),
                }
            )
            resume = position + 1
        if last_batch:
            resume = len(log)  # every revision so far was considered for this filter
        token_out = _token(log, resume)
        params = {
            k: v[0]
            for k, v in req.query.items()
            if k.lower() not in ("continuationtoken", "watermark", "startdatetime", "api-version") and v
        }
        params = {"continuationToken": token_out, **params, "api-version": ctx.api_version}
        next_link = f"{req.base_url}{req.path}?{urlencode(params, safe=';,$', quote_via=quote)}"
        return Response(
            200, {"values": values, "nextLink": next_link, "continuationToken": token_out, "isLastBatch": last_batch}
        )

    # -- boards: queries and work items ----------------------------------------------------------

    def wiql(self, ctx: Ctx) -> Response:
        body = ctx.req.json() or {}
        query = body.get("query") if isinstance(body, dict) else None
        if not query:
            raise ApiError(400, "VS402324: A query is required.", "InvalidArgumentValueException")
        plan = parse_wiql(query)
        day_precision = not flag_arg(ctx.req.arg("timePrecision", "false"))
        top = int_arg(ctx.req.arg("$top"), "$top")
        matches = [
            item
            for item in self.data.items
            if not item.deleted
            and all(wiql_matches(item, ctx, cond, day_precision, self.data.now) for cond in plan.conditions)
        ]
        for field_name, descending in reversed(plan.order):
            if field_name != "System.Id" or descending:
                matches.sort(key=lambda i, f=field_name: wiql_sort_key(i, f), reverse=descending)
        if top is None and len(matches) > MAX_WIQL_RESULTS:
            raise ApiError(
                400,
                f"VS402337: The number of work items returned exceeds the size limit of "
                f"{MAX_WIQL_RESULTS}. Change the query to return fewer items.",
                "WorkItemTrackingQueryResultSizeLimitExceededException",
            )
        if top is not None:
            matches = matches[: max(top, 0)]

        def column(name: str) -> dict[str, Any]:
            return {
                "referenceName": name,
                "name": name.rsplit(".", 1)[-1],
                "url": f"{ctx.org_url}/_apis/wit/fields/{name}",
            }

        return Response(
            200,
            {
                "queryType": "flat",
                "queryResultType": "workItem",
                "asOf": iso(self.data.now),
                "columns": [column(c) for c in plan.columns],
                "sortColumns": [{"field": column(f), "descending": d} for f, d in plan.order],
                "workItems": [{"id": i.id, "url": f"{ctx.org_url}/_apis/wit/workItems/{i.id}"} for i in matches],
            },
        )

    def _fetch(
        self, ctx: Ctx, ids: list[int], fields: list[str] | None, expand: str, as_of: int | None, policy: str
    ) -> Response:
        if not ids:
            raise ApiError(400, "VS403474: The ids parameter is required.", "InvalidArgumentValueException")
        if len(ids) > MAX_BATCH_IDS:
            raise ApiError(
                400,
                f"VS403474: The maximum number of work items that can be requested is {MAX_BATCH_IDS}.",
                "InvalidArgumentValueException",
            )
        if fields and expand not in ("", "none"):
            raise ApiError(
                400, "The expand parameter can not be used with the fields parameter.", "ConflictingParametersException"
            )
        value: list[Any] = []
        for item_id in ids:
            item = self._visible(ctx, item_id)
            r = self._as_of(item, as_of) if item is not None else None
            if r is None:
                if policy == "omit":
                    value.append(None)
                    continue
                raise self._missing(item_id)
            value.append(self._work_item_json(ctx, r, fields, expand))
        return Response(200, {"count": len(value), "value": value})

    def work_items_batch(self, ctx: Ctx) -> Response:
        body = ctx.req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a WorkItemBatchGetRequest.", "InvalidArgumentValueException")
        try:
            ids = [int(i) for i in body.get("ids") or []]
        except (TypeError, ValueError):
            raise ApiError(400, "The ids must be integers.", "InvalidArgumentValueException") from None
        as_of = parse_time(body["asOf"], "asOf") if body.get("asOf") else None
        expand = str(body.get("$expand") or "").lower()
        return self._fetch(
            ctx, ids, body.get("fields") or None, expand, as_of, str(body.get("errorPolicy") or "fail").lower()
        )

    def work_items_list(self, ctx: Ctx) -> Response:
        req = ctx.req
        ids = [int(i) for i in csv_arg(req.arg("ids")) if i.isdigit()]
        as_of = parse_time(req.arg("asOf") or "", "asOf") if req.arg("asOf") else None
        return self._fetch(
            ctx,
            ids,
            csv_arg(req.arg("fields")) or None,
            (req.arg("$expand") or "").lower(),
            as_of,
            (req.arg("errorPolicy") or "fail").lower(),
        )

    def work_item(self, ctx: Ctx) -> Response:
        req = ctx.req
        item_id = int(req.params["id"])
        item = self._visible(ctx, item_id)
        as_of = parse_time(req.arg("asOf") or "", "asOf") if req.arg("asOf") else None
        r = self._as_of(item, as_of) if item is not None else None
        if r is None:
            raise self._missing(item_id)
        fields = csv_arg(req.arg("fields")) or None
        expand = (req.arg("$expand") or "").lower()
        if fields and expand not in ("", "none"):
            raise ApiError(
                400, "The expand parameter can not be used with the fields parameter.", "ConflictingParametersException"
            )
        return Response(200, self._work_item_json(ctx, r, fields, expand))

    def _paged_revisions(self, ctx: Ctx) -> tuple[WorkItem, list[Revision], int | None]:
        req = ctx.req
        item_id = int(req.params["id"])
        item = self._visible(ctx, item_id)
        if item is None:
            raise self._missing(item_id)
        number = req.params.get("number")
        if number is not None:
            n = int(number)
            if not 1 <= n <= len(item.revs):
                raise ApiError(
                    404,
                    f"TF401253: Revision {n} of work item {item_id} does not exist.",
                    "WorkItemRevisionNotFoundException",
                )
            return item, [item.revs[n - 1]], n
        skip = max(int_arg(req.arg("$skip"), "$skip", 0) or 0, 0)
        top = min(max(int_arg(req.arg("$top"), "$top", 200) or 0, 0), 200)
        return item, item.revs[skip : skip + top], None

    def updates(self, ctx: Ctx) -> Response:
        item, revs, single = self._paged_revisions(ctx)
        value = [self._update_json(ctx, item, r) for r in revs]
        if single is not None:
            return Response(200, value[0])
        return Response(200, {"count": len(value), "value": value})

    def _update_json(self, ctx: Ctx, item: WorkItem, r: Revision) -> dict[str, Any]:
        new = self._fields(ctx, r)
        old = self._fields(ctx, item.revs[r.rev - 2]) if r.rev > 1 else {}
        changes = {
            k: ({"oldValue": old[k], "newValue": v} if k in old else {"newValue": v})
            for k, v in new.items()
            if old.get(k, _ABSENT) != v
        }
        for k in old.keys() - new.keys():
            changes[k] = {"oldValue": old[k]}
        nxt = item.revs[r.rev] if r.rev < len(item.revs) else None
        body: dict[str, Any] = {
            "id": r.rev,
            "workItemId": item.id,
            "rev": r.rev,
            "revisedBy": self._identity(ctx, self.data.people[r.by]),
            "revisedDate": iso(nxt.at) if nxt is not None else END_OF_TIME,
            "fields": changes,
        }
        if r.added:
            body["relations"] = {"added": [self._relation_json(rel) for rel in r.added]}
        body["url"] = f"{ctx.org_url}/{item.project.id}/_apis/wit/workItems/{item.id}/updates/{r.rev}"
        return body

    def revisions(self, ctx: Ctx) -> Response:
        _item, revs, single = self._paged_revisions(ctx)
        expand = (ctx.req.arg("$expand") or "").lower()
        value = [self._work_item_json(ctx, r, None, expand, revision_url=True) for r in revs]
        if single is not None:
            return Response(200, value[0])
        return Response(200, {"count": len(value), "value": value})

    def artifact_uri_query(self, ctx: Ctx) -> Response:
        body = ctx.req.json() or {}
        uris = body.get("artifactUris") if isinstance(body, dict) else None
        if not isinstance(uris, list):
            raise ApiError(400, "The artifactUris are required.", "InvalidArgumentValueException")
        index = self.data.artifact_index
        result = {}
        for uri in uris:
            ids = []
            for item_id in index.get(str(uri).lower(), []):
                if self._visible(ctx, item_id) is not None:
                    ids.append({"id": item_id, "url": f"{ctx.org_url}/_apis/wit/workItems/{item_id}"})
            result[uri] = ids
        return Response(200, {"artifactUrisQueryResult": result})


_ABSENT = object()


def _tail(positions: list[int], start: int) -> Iterator[int]:
    for i in range(start, len(positions)):
        yield positions[i]


def _token(log: list[Revision], resume: int) -> str:
    """``watermark;id;rev`` of the last revision considered (the real service's token shape)."""
    if resume <= 0:
        return "0;0;0"
    last = log[resume - 1]
    return f"{resume};{last.item.id};{last.rev}"

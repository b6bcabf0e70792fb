"""Report pages: the 1-3-5 page with its chart, and the CSV downloads."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from server.access.scope import Scope
from server.alerting import false_alarms, report, weekly
from server.alerting.wording import beijing_time
from server.api import i18n
from server.api.deps import Db, PageScope, PageUser, Svc, scope_context, templates

router = APIRouter()


def _period(svc: Svc, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """[start, end) from ISO dates (Beijing days) or timestamps; default the last 30 days."""
    def parse(v: str, is_end: bool) -> datetime:
        """A date (whole Beijing day) or an aware timestamp."""
        try:
            if len(v) == 10:
                d = date.fromisoformat(v) + (timedelta(days=1) if is_end else timedelta())
                return datetime.combine(d, time(), tzinfo=UTC) - timedelta(hours=8)
            t = datetime.fromisoformat(v)
        except ValueError as exc:
            raise HTTPException(422, f"bad date {v!r}: use YYYY-MM-DD") from exc
        if t.tzinfo is None:
            raise HTTPException(422, f"{v!r} needs a timezone")
        return t
    now = svc.clock.now()
    e = parse(end, True) if end else now + timedelta(seconds=1)
    s = parse(start, False) if start else e - timedelta(days=30)
    if s >= e:
        raise HTTPException(422, "start must be before end")
    return s, e


def total_name(scope: Scope) -> str:
    """The label of the total row: the county for admins, else the user's own grids."""
    return "全县" if scope.everything else "合计（本人范围）"


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, user: PageUser, scope: PageScope, svc: Svc, s: Db,
                start: str | None = None, end: str | None = None) -> Response:
    """Shares within 1/3/5 minutes per grid in scope and in total, chart and per-alert table."""
    a, b = _period(svc, start, end)
    t = i18n.translator(i18n.lang_of(request))
    labels = (t("report.ack1"), t("report.scene3"), t("report.scene5"))
    rows = report.timings(s, a, b, scope=scope)
    county, grids = report.shares(rows, total_name(scope))
    return templates.TemplateResponse(request, "report.html", {
        "user": user, "rows": rows, "county": county, "grids": grids, **scope_context(scope),
        # chart_svg escapes every name it puts into the markup
        "chart": Markup(report.chart_svg([*grids, county], labels)),  # noqa: S704
        "start": beijing_time(a), "end": beijing_time(b), "q": request.url.query,
        "weekly": weekly.weekly(s, a, b, scope=scope),
        "node_weeks": false_alarms.node_weeks(s, a, b, scope=scope,
                                              budget=svc.cfg.false_alarm_budget),
        "budget": svc.cfg.false_alarm_budget, "week_span": timedelta(days=6),
        "missing": weekly.missing_kit(s, scope=scope)})


@router.get("/report/false-alarms/{node}", response_class=HTMLResponse)
def false_alarm_page(request: Request, user: PageUser, scope: PageScope, svc: Svc, s: Db,
                     node: str, start: str | None = None, end: str | None = None) -> Response:
    """One node's alerts marked 误报 with their snapshots (scope, roles and retention as on the
    alert page); a node outside scope lists nothing, like a missing one."""
    if not scope.sees_node(node):
        raise HTTPException(404, "not found")
    a, b = _period(svc, start, end)
    items = false_alarms.false_alarms(s, node, a, b, scope=scope)
    return templates.TemplateResponse(request, "false_alarms.html", {
        "user": user, **scope_context(scope), "node_id": node, "items": items,
        "may_see": scope.snapshots, "start": beijing_time(a), "end": beijing_time(b)})


@router.get("/report-weekly.csv")
def report_weekly_csv(scope: PageScope, svc: Svc, s: Db, start: str | None = None,
                      end: str | None = None) -> Response:
    """Urgent alerts per pond in scope per week as CSV."""
    a, b = _period(svc, start, end)
    return Response(weekly.weekly_csv(*weekly.weekly(s, a, b, scope=scope)),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             'attachment; filename="pondwatch-weekly.csv"'})


@router.get("/report.csv")
def report_csv(scope: PageScope, svc: Svc, s: Db, start: str | None = None,
               end: str | None = None) -> Response:
    """Per-alert timings in scope as CSV."""
    a, b = _period(svc, start, end)
    return Response(report.to_csv(report.timings(s, a, b, scope=scope)),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="pondwatch-135.csv"'})


@router.get("/report-summary.csv")
def report_summary_csv(scope: PageScope, svc: Svc, s: Db, start: str | None = None,
                       end: str | None = None) -> Response:
    """Per-grid and total shares in scope as CSV."""
    a, b = _period(svc, start, end)
    county, grids = report.shares(report.timings(s, a, b, scope=scope), total_name(scope))
    return Response(report.summary_csv(county, grids), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             'attachment; filename="pondwatch-135-summary.csv"'})

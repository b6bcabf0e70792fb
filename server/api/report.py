"""Report pages: the 1-3-5 page with its chart, and the CSV downloads."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from server import report
from server.api.deps import Db, PageUser, Svc, templates
from server.api.views import local

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


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, user: PageUser, svc: Svc, s: Db, start: str | None = None,
                end: str | None = None) -> Response:
    """Shares within 1/3/5 minutes per grid and county, chart and per-alert table."""
    a, b = _period(svc, start, end)
    rows = report.timings(s, a, b)
    county, grids = report.shares(rows)
    return templates.TemplateResponse(request, "report.html", {
        "user": user, "rows": rows, "county": county, "grids": grids,
        "chart": Markup(report.chart_svg([*grids, county])),  # noqa: S704 (built from numbers)
        "start": local(a), "end": local(b), "q": request.url.query})


@router.get("/report.csv")
def report_csv(user: PageUser, svc: Svc, s: Db, start: str | None = None,
               end: str | None = None) -> Response:
    """Per-alert timings as CSV."""
    a, b = _period(svc, start, end)
    return Response(report.to_csv(report.timings(s, a, b)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="pondwatch-135.csv"'})


@router.get("/report-summary.csv")
def report_summary_csv(user: PageUser, svc: Svc, s: Db, start: str | None = None,
                       end: str | None = None) -> Response:
    """Per-grid and county shares as CSV."""
    a, b = _period(svc, start, end)
    county, grids = report.shares(report.timings(s, a, b))
    return Response(report.summary_csv(county, grids), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition":
                             'attachment; filename="pondwatch-135-summary.csv"'})

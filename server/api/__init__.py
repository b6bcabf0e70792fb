"""HTTP routers: acknowledge pages, dashboard, JSON API, report and metrics."""

"""HTTP routers: acknowledge pages, dashboard, JSON API, report and metrics; and the
non-routers they share: deps (the ServerParts seam), actions (writes), queries (reads),
pages, security, i18n.

May import: server.link, server.fleet, server.alerting, server.access, server.core, protocol;
never server.services, the app or another router (shared code lives in actions and queries).
"""

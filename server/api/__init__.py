"""HTTP routers: acknowledge pages, dashboard, JSON API, report and metrics; page words (i18n)
and the shared queries that turn rows into template and JSON data.

May import: server.link, server.fleet, server.alerting, server.access, server.core, protocol;
never server.services or the app (routers get services through deps).
"""

"""The admin backend over HTTP: a JSON API under /cursor/admin/api (a thin translation of
core's cursorgate.v1.AdminService) and the admin page at /cursor/admin."""

from facade.admin.routes import router

__all__ = ["router"]

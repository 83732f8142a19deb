"""Users, roles and credentials of the sidebar and APIs (``store``), and `copilot users` (``cli``)."""

from copilot.users.store import MIN_PASSWORD, NAME, ROLES, TOKEN_PREFIX, User, UserError, UserStore

__all__ = ["MIN_PASSWORD", "NAME", "ROLES", "TOKEN_PREFIX", "User", "UserError", "UserStore"]

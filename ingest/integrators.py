"""What the bank's integrators read: views over the store whose columns are a contract
(docs/ingest.md, "What integrators read"), the `cocoon_money` notifications, and a read-only
role on PostgreSQL.

The views are the only interface: tables behind them may change with any release. A view's
columns change only with `schema_version` (docs/ingest.md gives the deprecation rule).
"""

from __future__ import annotations

import re

from agent.contract.errors import CocoonError

#: The views an integrator may read; `schema_version` first.
VIEWS = ("schema_version", "purchases", "reconciliation", "devices", "custody_alerts")
ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class NotOnPostgres(CocoonError):
    """Roles exist on PostgreSQL only: a SQLite store is read as a file."""


def grant_reader(store, role: str) -> list[str]:
    """Let an existing PostgreSQL `role` read the views and nothing else; the views granted.

    A view is read with its owner's rights, so the role needs no right on any table: it can
    neither read the tables behind the views nor write anything."""
    if store.db.dialect != "postgresql":
        raise NotOnPostgres("a read-only role needs the PostgreSQL store ([store] url); "
                            "a SQLite store's integrators read a copy of its file")
    if not ROLE_RE.match(role):
        raise CocoonError(f"{role!r} is not a plain role name (lower case, digits, _)")
    with store.db.transaction(()):
        store.db.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for view in VIEWS:
            store.db.execute(f"GRANT SELECT ON {view} TO {role}")
    return list(VIEWS)

"""Who may manage whom: the one rule behind every curator action on a person.

Curators manage annotators and experts; only an admin creates, changes, pauses, excludes or signs
out curators and admins (including making someone a curator or admin). Annotators and experts
manage nobody. Every curator route and service that acts on a person asks :func:`check_may_manage`.

>>> [may_manage(Role.curator, target) for target in Role]
[True, True, False, False]
>>> [may_manage(Role.admin, target) for target in Role]
[True, True, True, True]
"""

from __future__ import annotations

from typing import Any

from annotation_app.errors import PermissionDeniedError
from annotation_app.models import Role

__all__ = ["MANAGED_BY", "may_manage", "check_may_manage"]

# For each role, the roles of the people it manages.
MANAGED_BY: dict[Role, frozenset[Role]] = {
    Role.admin: frozenset(Role),
    Role.curator: frozenset({Role.annotator, Role.expert}),
    Role.expert: frozenset(),
    Role.annotator: frozenset(),
}


def may_manage(actor_role: Role | str, target_role: Role | str) -> bool:
    return Role(target_role) in MANAGED_BY[Role(actor_role)]


def check_may_manage(actor: Any, *, target: Any = None, new_role: Role | str | None = None) -> None:
    """Raise ``PermissionDeniedError`` unless ``actor`` may act on ``target`` (a user with a
    ``role``) and give someone ``new_role``. An unknown ``new_role`` is left to the service that
    validates roles (it answers 422 naming the choices)."""
    roles = [target.role] if target is not None else []
    if new_role is not None and new_role in Role.__members__:
        roles.append(Role(new_role))
    for role in roles:
        if not may_manage(actor.role, role):
            raise PermissionDeniedError(
                f"a {Role(actor.role).value} may not manage a {Role(role).value}: only an admin creates or "
                "changes curators and admins")

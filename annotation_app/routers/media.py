"""Clip media for the player: only for the annotator the clip is leased to, or experts and curators;
and a guidelines example clip for everyone signed in (services.guidelines)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from annotation_app.deps import CurrentUser, SessionDep, require_annotator
from annotation_app.errors import NotFoundError, PermissionDeniedError
from annotation_app.media import media_response, resolve_media
from annotation_app.models import Clip, Role
from annotation_app.routers.schemas import PAGE_RESPONSES, ResourceId
from annotation_app.services import guidelines, work

__all__ = ["router"]

_VIDEO = {"content": {"video/mp4": {}, "video/webm": {}}}
# Outside /api: errors are answered as the pages answer them (HTML).
router = APIRouter(prefix="/media", tags=["media"], dependencies=[Depends(require_annotator)], responses={
    **{status: spec for status, spec in PAGE_RESPONSES.items() if status != 200},
    200: {"description": "The clip's media file", **_VIDEO},
    206: {"description": "The requested byte range", **_VIDEO},
    416: {"description": "The range lies outside the file"},
})


@router.get("/clips/{clip_id}")
def clip_media(
    clip_id: ResourceId, request: Request, session: SessionDep, user: CurrentUser,
    rendition: str | None = Query(None, max_length=16),
) -> Response:
    """The clip's media file; honours ``Range`` (206 / 416) so the player can seek."""
    # An example clip of the guidelines plays for everyone who reads them: it is never work any more.
    if not work.can_access_clip(session, user, clip_id) and not guidelines.is_example(session, clip_id):
        if user.role != Role.annotator:
            raise NotFoundError(f"no clip {clip_id}")  # experts may see any clip: this one does not exist
        raise PermissionDeniedError("this clip is not leased to you")
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFoundError(f"no clip {clip_id}")
    path = resolve_media(request.app.state.settings.media_dir, clip.media_path, rendition=rendition)
    session.close()  # the file streams for a while; the connection goes back to the pool now
    return media_response(path)

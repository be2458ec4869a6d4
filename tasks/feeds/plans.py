"""The feeds' convergence plans: which files to fetch from SFTP, which versions to stage, which rows
to load. Pure: listings and states in, plans out."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from tasks.core.manifests import FetchedFile


@dataclass(frozen=True)
class RemoteFile:
    """A file as listed on the SFTP server."""

    name: str
    size: int
    mtime: int


def settled_files(
    listing: Iterable[RemoteFile], seen: dict[str, FetchedFile], *, now: int, min_age_seconds: int
) -> tuple[list[RemoteFile], list[RemoteFile]]:
    """Split a listing into the files to consider now and those still being written (modified less
    than ``min_age_seconds`` ago). A file still being written that an earlier fetch saw is considered
    as the earlier fetch saw it, so its loaded version stays; an entirely new one waits."""
    ready, waiting = [], []
    for remote in listing:
        if now - remote.mtime >= min_age_seconds:
            ready.append(remote)
        else:
            waiting.append(remote)
            if (known := seen.get(remote.name)) is not None:
                ready.append(RemoteFile(remote.name, known.size, known.mtime))
    return ready, waiting


# A file modified less than this long before a fetch saw it is downloaded again by the next fetch:
# SFTP mtimes have one-second resolution, so a same-size rewrite within the same second keeps size
# and mtime; and the server's clock may run behind ours, so "the same second" is judged generously.
MTIME_TRUST_SECONDS = 60


def too_recent_to_trust(mtime: int, *, now: int) -> bool:
    """Whether a file's size and mtime, listed at ``now``, could hide a rewrite yet to come."""
    return now - mtime < MTIME_TRUST_SECONDS


def files_to_download(
    listing: Iterable[RemoteFile], seen: dict[str, FetchedFile], *, settling: Collection[str] = ()
) -> list[RemoteFile]:
    """Files whose size or mtime differ from what the last fetch saw (or that it never saw), and those
    it saw too soon after their modification to trust, unless they are ``settling`` (being written
    now: rechecked once they settle). Their content hash then decides whether they really changed."""
    return [
        remote
        for remote in listing
        if (known := seen.get(remote.name)) is None
        or (known.recheck and remote.name not in settling)
        or (known.size, known.mtime) != (remote.size, remote.mtime)
    ]


@dataclass(frozen=True)
class StagingPlan:
    """How to make the staging zone hold exactly the latest good version of each current file."""

    parse: list[tuple[str, str]] = field(default_factory=list)  # (file, version) to parse, stage, then
    # drop the file's other staged versions
    drop: list[tuple[str, str]] = field(default_factory=list)  # (file, version) to remove from staging
    held_back: list[tuple[str, str]] = field(default_factory=list)  # latest version quarantined


def plan_staging(
    latest: dict[str, str],
    staged: dict[str, list[str]],
    quarantined: set[tuple[str, str]],
    *,
    keep_removed: bool,
) -> StagingPlan:
    """Compare the latest raw version of each file on SFTP with the staging zone.

    ``staged`` lists each file's staged versions, oldest first (normally one; a crash while staging
    can leave two). A latest version already staged stays and the others go. A latest version that
    was quarantined is held back: the newest staged (good) version stays until a good version
    arrives. Any other latest version is parsed and staged. Files gone from SFTP leave staging unless
    ``keep_removed``.
    """
    plan = StagingPlan()
    for name, version in sorted(latest.items()):
        have = staged.get(name, [])
        keep: str | None
        if version in have:
            keep = version
        elif (name, version) in quarantined:
            plan.held_back.append((name, version))
            keep = have[-1] if have else None
        else:
            # Older versions go only once this one is staged: if it turns out bad, they stay.
            plan.parse.append((name, version))
            continue
        plan.drop.extend((name, old) for old in have if old != keep and old != version)
    if not keep_removed:
        for name in sorted(staged.keys() - latest.keys()):
            plan.drop.extend((name, old) for old in staged[name])
    return plan


@dataclass(frozen=True)
class LoadPlan:
    """The warehouse side of a feed: which files' rows to delete and which versions to insert."""

    remove: list[str]  # files whose rows go (gone from staging)
    load: dict[str, str]  # file -> version to load (new, or replacing the loaded version)

    @property
    def empty(self) -> bool:
        return not self.remove and not self.load


def plan_load(staged: dict[str, str], loaded: dict[str, str]) -> LoadPlan:
    """Converge the loaded set of (file, version) to the staged set."""
    return LoadPlan(
        remove=sorted(loaded.keys() - staged.keys()),
        load={name: version for name, version in sorted(staged.items()) if loaded.get(name) != version},
    )

"""The file feeds' convergence plans (tasks/feeds/plans.py): what to download, what is settled, what
to stage and what to load."""

from __future__ import annotations

from tasks.core.manifests import FetchedFile
from tasks.feeds.plans import (
    MTIME_TRUST_SECONDS,
    RemoteFile,
    files_to_download,
    plan_load,
    plan_staging,
    settled_files,
    too_recent_to_trust,
)


def test_only_files_with_a_new_size_or_mtime_are_downloaded():
    seen = {"a.csv": FetchedFile(10, 100, "h", "v1"), "b.csv": FetchedFile(10, 100, "h", "v1")}
    listing = [RemoteFile("a.csv", 10, 100), RemoteFile("b.csv", 10, 101), RemoteFile("c.csv", 1, 1)]
    assert [r.name for r in files_to_download(listing, seen)] == ["b.csv", "c.csv"]


def test_a_file_seen_too_soon_after_a_change_is_downloaded_again_unless_it_is_being_written():
    seen = {
        "fresh.csv": FetchedFile(10, 100, "h", "v1", recheck=True),
        "settled.csv": FetchedFile(10, 100, "h", "v1"),
        "writing.csv": FetchedFile(10, 100, "h", "v1", recheck=True),
    }
    listing = [RemoteFile(name, 10, 100) for name in seen]
    assert [r.name for r in files_to_download(listing, seen, settling={"writing.csv"})] == ["fresh.csv"]
    assert too_recent_to_trust(100, now=100 + MTIME_TRUST_SECONDS - 1)
    assert not too_recent_to_trust(100, now=100 + MTIME_TRUST_SECONDS)


def test_files_still_being_written_wait_and_keep_their_last_seen_version():
    seen = {"old.csv": FetchedFile(10, 100, "h", "v1")}
    listing = [RemoteFile("old.csv", 12, 995), RemoteFile("new.csv", 5, 990), RemoteFile("done.csv", 5, 900)]
    ready, waiting = settled_files(listing, seen, now=1000, min_age_seconds=30)
    assert [r.name for r in waiting] == ["old.csv", "new.csv"]
    assert ready == [RemoteFile("old.csv", 10, 100), RemoteFile("done.csv", 5, 900)]
    assert files_to_download(ready, seen) == [RemoteFile("done.csv", 5, 900)]


def test_staging_plan_keeps_good_versions_until_a_good_one_replaces_them():
    plan = plan_staging(
        latest={"same": "v1", "new": "v2", "bad": "v3", "fresh": "v1"},
        staged={"same": ["v1"], "new": ["v1"], "bad": ["v2"], "gone": ["v1"]},
        quarantined={("bad", "v3")},
        keep_removed=False,
    )
    assert plan.parse == [("fresh", "v1"), ("new", "v2")]
    assert plan.held_back == [("bad", "v3")]
    # "new"'s old version goes only after v2 is staged (by the stage task), not in the plan.
    assert plan.drop == [("gone", "v1")]
    assert plan_staging({}, {"gone": ["v1"]}, set(), keep_removed=True).drop == []


def test_staging_plan_repairs_two_versions_left_by_a_crash():
    plan = plan_staging({"f": "v2"}, {"f": ["v1", "v2"]}, set(), keep_removed=False)
    assert plan.parse == [] and plan.drop == [("f", "v1")]
    held = plan_staging({"f": "v3"}, {"f": ["v1", "v2"]}, {("f", "v3")}, keep_removed=False)
    assert held.drop == [("f", "v1")] and held.held_back == [("f", "v3")]


def test_load_plan_converges_the_loaded_set_to_the_staged_set():
    plan = plan_load(staged={"a": "v1", "b": "v2", "c": "v1"}, loaded={"a": "v1", "b": "v1", "d": "v1"})
    assert plan.remove == ["d"] and plan.load == {"b": "v2", "c": "v1"}
    assert plan_load({"a": "v1"}, {"a": "v1"}).empty

"""Arguments → items: URLs, URL lists, CSV/JSONL lists with metadata, folders; stable keys; shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.ingest import SourceError, expand_sources, in_shard, parse_shard
from curation.ingest.sources import source_key


def test_url_arguments_are_normalised_and_deduplicated() -> None:
    items = expand_sources(["HTTPS://Example.COM/v/1", "https://example.com/v/1", "https://example.com/v/2"])
    assert [i.source for i in items] == ["https://example.com/v/1", "https://example.com/v/2"]
    assert all(i.kind == "url" for i in items)
    assert items[0].source_key == source_key("https://example.com/v/1")


def test_url_list_skips_blanks_and_comments(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("# my list\nhttps://a.test/1\n\n  https://a.test/2  \n", encoding="utf-8")
    assert [i.source for i in expand_sources([str(urls)])] == ["https://a.test/1", "https://a.test/2"]


def test_csv_list_carries_metadata_and_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    listing = tmp_path / "list.csv"
    listing.write_text(
        "url,platform,uploader,external id,title,language\n"
        "https://www.douyin.com/video/7,douyin,alice,7,开心,zh\n"
        "clips/a.mp4,tiktok,bob,,,en\n",
        encoding="utf-8",
    )
    first, second = expand_sources([str(listing)])
    assert first.metadata() == {"platform": "douyin", "uploader": "alice", "external_id": "7",
                                "title": "开心", "language": "zh"}
    assert second.kind == "file" and second.source == str(tmp_path / "clips" / "a.mp4")
    assert second.metadata() == {"platform": "tiktok", "uploader": "bob", "language": "en"}


def test_jsonl_list_takes_path_or_url(tmp_path: Path) -> None:
    listing = tmp_path / "list.jsonl"
    rows = [{"path": "/data/x.mp4", "uploader": "u1"}, {"url": "file:///data/y.mp4", "platform": "kuaishou"}]
    listing.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    a, b = expand_sources([str(listing)], allow_local_urls=True)
    assert (a.kind, a.source, a.uploader) == ("file", "/data/x.mp4", "u1")
    assert (b.kind, b.source, b.platform) == ("url", "file:///data/y.mp4", "kuaishou")
    with pytest.raises(SourceError, match="file:// URLs read this machine's files.*--allow-local-urls"):
        expand_sources([str(listing)])  # the default (#22)
    with pytest.raises(SourceError, match="--allow-local-urls"):
        expand_sources(["FILE:///etc/passwd"])
    assert [i.source for i in expand_sources(["https://example.com/v", "ftp://example.com/v.mp4"])] == [
        "https://example.com/v", "ftp://example.com/v.mp4"]


def test_bad_lists_and_missing_sources_raise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n", encoding="utf-8")
    with pytest.raises(SourceError, match="not JSON"):
        expand_sources([str(bad)])
    empty_row = tmp_path / "empty.csv"
    empty_row.write_text("url,title\n,hello\n", encoding="utf-8")
    with pytest.raises(SourceError, match="needs a url or path"):
        expand_sources([str(empty_row)])
    with pytest.raises(SourceError, match="neither a URL nor"):
        expand_sources([str(tmp_path / "nowhere")])


def test_folder_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".staging").mkdir()
    for rel in ["z.mp4", "b/a.webm", ".hidden.mp4", ".staging/x.mp4", "notes.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    names = [Path(i.source).relative_to(tmp_path).as_posix() for i in expand_sources([str(tmp_path)])]
    # Inside a folder a .txt is an item (and will be rejected), not a URL list.
    assert names == ["notes.txt", "z.mp4", "b/a.webm"]


def test_shards_partition_the_items() -> None:
    keys = [source_key(f"https://x.test/{n}") for n in range(200)]
    shards = [parse_shard(f"{i}/3") for i in range(3)]
    owners = [[s for s in shards if in_shard(k, s)] for k in keys]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(in_shard(k, s) for k in keys) for s in shards]
    assert min(sizes) > 40  # roughly even
    assert all(in_shard(k, None) for k in keys)


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "0/0", "-1/2"])
def test_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(SourceError):
        parse_shard(text)

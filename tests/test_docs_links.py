"""The docs' relative links and #anchors resolve, with GitHub's heading slugs (tests/support/markdown.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.markdown import anchors, broken_links, slug

ROOT = Path(__file__).resolve().parents[1]


def documents() -> list[Path]:
    docs = sorted((ROOT / "docs").glob("*.md"))
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *docs, ROOT / "bench" / "README.md"]


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    files = documents()
    assert all(path.exists() for path in files), [str(path) for path in files if not path.exists()]
    assert broken_links(files, ROOT) == []


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Task API — FastAPI + SQLModel on Neon", "task-api--fastapi--sqlmodel-on-neon"),
        ("`DB_POOL`: connections on Lambda", "db_pool-connections-on-lambda"),
        ("1. Create the Neon project", "1-create-the-neon-project"),
        ("TLS: bench/tls.py", "tls-benchtlspy"),
        ("A warm invocation, `single` beside `null`", "a-warm-invocation-single-beside-null"),
        ("Local emulation (no AWS account)", "local-emulation-no-aws-account"),
        ("See [the guide](docs/x.md) **now**", "see-the-guide-now"),
        ("Ünïcode stays", "ünïcode-stays"),
    ],
)
def test_slugs_follow_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_repeated_headings_and_fenced_hashes() -> None:
    text = '# Setup\n\n## Setup\n\n```sh\n# not a heading\n```\n\n### Setup ###\n<a id="custom"></a>\n'
    assert anchors(text) == {"setup", "setup-1", "setup-2", "custom"}


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Real section\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/a.md#real-section) [self](#top) [gone](docs/b.md) [bad](docs/a.md#missing)\n"
        "`[not a link](nowhere.md)` [web](https://example.com/x.md)\n\n# Top\n\n```md\n[in code](nowhere.md)\n```\n"
    )
    problems = broken_links([readme], tmp_path)
    assert problems == [
        "README.md:1: docs/b.md (no such file)",
        "README.md:1: docs/a.md#missing (no heading with the anchor #missing)",
    ]

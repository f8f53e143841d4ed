"""Reading the project's Markdown the way GitHub renders it: fenced blocks, headings' anchors, relative links."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s+(?P<text>.*?))?(?:\s+#+)?\s*$")
# An inline link or image, `[text](target "title")`, and a reference definition, `[label]: target`.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# The comment on the line just above a fence that says whether tests/test_readme_commands.py runs the block.
MARK = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<mark>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its info string's first word, the line its opening fence is on, its text, and the
    `<!-- readme-test: ... -->` mark just above it ("" when there is none)."""

    language: str
    line: int
    text: str
    mark: str = ""


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str


def _closes(line: str, opening: re.Match[str]) -> bool:
    match = FENCE.match(line)
    fence = opening["fence"]
    if match is None or match["info"].strip():
        return False
    return match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence)


def fenced_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    opening: re.Match[str] | None = None
    start, body, mark, previous = 0, [], "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        if opening is None:
            opening = FENCE.match(line)
            if opening:
                marked = MARK.match(previous)
                start, body, mark = number, [], marked["mark"] if marked else ""
            previous = line
        elif _closes(line, opening):
            words = opening["info"].split()
            blocks.append(Block(words[0] if words else "", start, "\n".join(body) + "\n", mark))
            opening, previous = None, line
        else:
            body.append(line)
    return blocks


def outside_fences(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines that are not inside a fenced code block (nor its fences)."""
    opening: re.Match[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if opening is None:
            opening = FENCE.match(line)
            if opening is None:
                yield number, line
        elif _closes(line, opening):
            opening = None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): the rendered text lower-cased, every character that is not
    a letter, a number, a mark, a space, "-" or "_" dropped, and each space turned into "-" (not collapsed)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    text = re.sub(r"<[^>]+>", "", text).lower()  # inline HTML tags are not text
    kept = "".join(character for character in text if character in " -_" or unicodedata.category(character)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a file offers: its headings' slugs (a repeated one gets -1, -2, ...) and HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in outside_fences(text):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading["text"] or "")
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[Link]:
    """Every link target in a file's prose (code blocks and inline code spans are not links)."""
    found = []
    for number, line in outside_fences(path.read_text()):
        prose = CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line)
        reference = REFERENCE.match(prose)
        targets = [reference.group(1)] if reference else INLINE_LINK.findall(prose)
        found.extend(Link(path, number, target) for target in targets)
    return found


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith("//")


def broken_links(files: list[Path], root: Path) -> list[str]:
    """Every relative link among `files` whose file is missing, or whose #anchor its Markdown file does not have."""
    problems = []
    anchor_cache: dict[Path, set[str]] = {}
    for source in files:
        for link in links(source):
            if is_external(link.target) or not link.target:
                continue
            path_part, _, anchor = link.target.partition("#")
            target = (source.parent / path_part).resolve() if path_part else source.resolve()
            where = f"{source.relative_to(root)}:{link.line}: {link.target}"
            if not target.exists():
                problems.append(f"{where} (no such file)")
            elif not target.is_relative_to(root):
                problems.append(f"{where} (outside the repository)")
            elif anchor:
                if target.suffix.lower() != ".md":
                    problems.append(f"{where} (an anchor into a file that is not Markdown)")
                    continue
                if target not in anchor_cache:
                    anchor_cache[target] = anchors(target.read_text())
                if anchor not in anchor_cache[target]:
                    problems.append(f"{where} (no heading with the anchor #{anchor})")
    return problems

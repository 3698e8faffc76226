"""The documentation: every relative link and anchor resolves; the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = sorted(
    {
        p
        for p in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("**/README.md")]
        if not {".venv", "node_modules", ".pytest_cache"} & set(p.parts)
    }
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PAGES = (
    "configuration",
    "metrics",
    "security",
    "runbook",
    "deployment",
    "simulator",
    "development",
)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"`|\*\*", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    counts: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6} (.+)$", line)):
            slug = github_slug(match.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")  # GitHub numbers repeats
    return found


def links_of(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # not in code blocks
    return LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links_of(path):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors_of(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_checker_catches_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some Section\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-section) [bad file](nope.md) [bad anchor](a.md#missing) "
        "[self](#here)\n\n## Here\n\n```\n[in code](nope.md)\n```\n"
    )
    assert broken_links(page) == [
        "nope.md: no such file",
        "a.md#missing: no heading with that anchor in a.md",
    ]


def test_the_readme_fits_on_a_few_screens_and_points_at_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260
    for page in PAGES:
        assert (ROOT / "docs" / f"{page}.md").exists(), page
        assert f"docs/{page}.md" in readme, page


def test_every_alert_has_its_runbook_section() -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    runbook = anchors_of(ROOT / "docs" / "runbook.md")
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                url = rule["annotations"]["runbook_url"]
                assert "/docs/runbook.md#" in url
                assert url.rsplit("#", 1)[1] in runbook, rule["alert"]

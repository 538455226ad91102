"""Every reference resolves from inside the repository, and figures are dated by date and
commit: no "session N", no sections of notes files that are not shipped."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SESSION = re.compile(r"\bsessions? \d+", re.IGNORECASE)
OUTSIDE = re.compile(
    r"METHODS(\.md)?\s*\d|TOY-PRIOR-NOTES|TRIPLANE-NOTES|\.\./shared|DESIGN\.md|STYLE\.md"
)


def _texts() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").glob("*.md")]
    code = [p for d in ("src", "benchmarks", "examples", "tests") for p in (ROOT / d).rglob("*.py")]
    return [p for p in docs + code if p != Path(__file__).resolve()]


def test_no_session_numbers_and_no_references_outside_the_repository():
    offenders = []
    for path in _texts():
        text = path.read_text(encoding="utf-8")
        for pattern in (SESSION, OUTSIDE):
            found = sorted({m.group(0) for m in pattern.finditer(text)})
            if found:
                offenders.append(f"{path.relative_to(ROOT)}: {', '.join(found)}")
    assert len(_texts()) > 100  # the scan sees the tree
    assert not offenders, "\n".join(offenders)

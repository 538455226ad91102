"""Why gsplat is unavailable is kept, from a stand-in ``gsplat`` package put on the path."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dreamlift.fields.splat_gsplat import gsplat_available, gsplat_unavailable_reason


def _gsplat_modules() -> dict[str, object]:
    return {k: v for k, v in sys.modules.items() if k == "gsplat" or k.startswith("gsplat.")}


@pytest.fixture
def fake_gsplat(tmp_path: Path, monkeypatch) -> Iterator[Callable[[str], None]]:
    """Writes a ``gsplat`` package whose ``cuda/_backend.py`` is the given source and makes
    it the one imported; the real one (if any) and the cached answer come back afterwards."""
    saved = _gsplat_modules()
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(tmp_path))
    gsplat_unavailable_reason.cache_clear()

    def make(backend: str) -> None:
        cuda = tmp_path / "gsplat" / "cuda"
        cuda.mkdir(parents=True)
        (tmp_path / "gsplat" / "__init__.py").write_text("")
        (cuda / "__init__.py").write_text("")
        (cuda / "_backend.py").write_text(backend)

    yield make
    for name in _gsplat_modules():
        del sys.modules[name]
    sys.modules.update(saved)
    gsplat_unavailable_reason.cache_clear()


def test_a_missing_gsplat_says_it_is_not_installed(fake_gsplat, monkeypatch):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # what an absent package looks like
    reason = gsplat_unavailable_reason()
    assert reason is not None and reason.startswith("ModuleNotFoundError:")
    assert "gsplat" in reason and not gsplat_available()


@pytest.mark.parametrize(
    ("backend", "want"),
    [
        (
            "raise RuntimeError(\"Error building extension 'gsplat_cuda'\\n[1/9] nvcc ...\")",
            "RuntimeError: Error building extension 'gsplat_cuda'",
        ),
        (
            "raise OSError('libcudart.so.12: cannot open shared object file')",
            "OSError: libcudart.so.12: cannot open shared object file",
        ),
        ("import gsplat_missing_dependency", "ModuleNotFoundError: No module named"),
        ("_C = None", "gsplat's CUDA extension is not built"),
    ],
    ids=["build-fails", "library-fails", "dependency-missing", "no-toolkit"],
)
def test_the_reason_names_the_failure(fake_gsplat, backend, want):
    fake_gsplat(backend)
    reason = gsplat_unavailable_reason()
    assert reason is not None and reason.startswith(want) and "\n" not in reason
    assert not gsplat_available()


def test_loaded_kernels_have_no_reason(fake_gsplat):
    fake_gsplat("_C = object()")
    assert gsplat_unavailable_reason() is None and gsplat_available()


def test_a_bug_while_loading_gsplat_propagates(fake_gsplat):
    fake_gsplat("1 / 0")
    with pytest.raises(ZeroDivisionError):
        gsplat_available()

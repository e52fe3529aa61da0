"""atomic_path: the file appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_siam.core.files import atomic_path


def test_replaced_on_success_and_left_alone_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()  # nothing at the target while writing
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target, ".png") as tmp:
        assert tmp.suffix == ".png"
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]

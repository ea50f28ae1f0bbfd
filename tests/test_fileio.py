import pytest

from glx import fileio


def test_atomic_write_text_round_trip(tmp_path):
    target = fileio.atomic_write_text(tmp_path / "sub" / "a.json", "{\"x\": 1}")
    assert target.read_text() == "{\"x\": 1}"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary left


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]

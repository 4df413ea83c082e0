"""Checkpoint files (atomic, checksummed, pruned) and the resume plan, without training."""

import logging

import numpy as np
import pytest
from omegaconf import OmegaConf

from zoo.training import checkpoint
from zoo.training.resume import Phase, config_digest, phases, resume_command


def _arrays(value: float) -> dict[str, np.ndarray]:
    return {"model/0": np.full((3, 2), value, "float32"), "model/1": np.arange(4)}


def test_round_trip_keeps_arrays_meta_and_the_newest_few(tmp_path):
    for step in (5, 10, 15):
        checkpoint.write(tmp_path, step, _arrays(step), {"epoch": 0, "history": {"loss": [1.5]}})
    assert [checkpoint.step_of(p) for p in checkpoint.list_checkpoints(tmp_path)] == [15, 10]
    latest = checkpoint.read_latest(tmp_path)
    assert latest.step == 15
    assert latest.meta == {"epoch": 0, "history": {"loss": [1.5]}, "step": 15}
    for name, value in _arrays(15).items():
        np.testing.assert_array_equal(latest.arrays[name], value)
        assert latest.arrays[name].dtype == value.dtype
    assert not list(tmp_path.glob(".*.tmp"))  # nothing left half-way


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[: len(data) - 100], "fails its sha256 check"),
        (lambda data: data[:5], "truncated or not a checkpoint"),
        (lambda data: data[:40] + bytes([data[40] ^ 1]) + data[41:], "fails its sha256 check"),
        (lambda data: b"PK" + data[2:], "truncated or not a checkpoint"),
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, damage, reason):
    checkpoint.write(tmp_path, 5, _arrays(5), {})
    newest = checkpoint.write(tmp_path, 10, _arrays(10), {})
    newest.write_bytes(damage(newest.read_bytes()))
    with pytest.raises(checkpoint.DamagedCheckpointError, match=reason):
        checkpoint.read(newest)
    with caplog.at_level(logging.WARNING):
        latest = checkpoint.read_latest(tmp_path)
    assert latest.step == 5
    assert f"{newest.name} " in caplog.text
    assert "using the previous one" in caplog.text
    assert "step-0000000005.ckpt" in caplog.text


def test_no_intact_checkpoint_says_so(tmp_path, caplog):
    checkpoint.write(tmp_path, 5, _arrays(5), {}).write_bytes(b"garbage")
    assert checkpoint.read_latest(tmp_path) is None
    assert "no intact checkpoint left" in caplog.text
    assert checkpoint.read_latest(tmp_path / "missing") is None


def test_phases_finish_the_interrupted_epoch_first():
    assert phases(0, 0, 3) == [Phase(0, 3, 0)]
    assert phases(1, 7, 3) == [Phase(1, 2, 7), Phase(2, 3, 0)]
    assert phases(2, 7, 3) == [Phase(2, 3, 7)]
    assert phases(3, 0, 3) == []


def test_resume_command_replaces_any_resume_override():
    argv = ["/repo/train.py", "model=mlp", "resume=auto", "data.source.path=/my data"]
    assert resume_command("abc", argv) == (
        "python /repo/train.py model=mlp 'data.source.path=/my data' resume=abc"
    )
    comparison = ["/repo/evaluate.py", "experiment=compare_faces"]
    assert resume_command("abc", comparison) == "python /repo/evaluate.py experiment=compare_faces"


def test_config_digest_ignores_resume_only():
    base = {"seed": 0, "resume": None, "trainer": {"epochs": 3}}
    digest = config_digest(OmegaConf.create(base))
    assert config_digest(OmegaConf.create({**base, "resume": "auto"})) == digest
    assert config_digest(OmegaConf.create({**base, "trainer": {"epochs": 4}})) != digest


def test_remove_all_deletes_checkpoints_and_partial_writes_only(tmp_path):
    for step in (5, 10):
        checkpoint.write(tmp_path, step, {"w": np.zeros(3)}, {})
    (tmp_path / ".step-0000000015.ckpt.99.tmp").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("mine")
    assert checkpoint.remove_all(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

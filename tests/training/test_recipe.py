"""The training recipe: schedules with warm-up, label smoothing, config errors."""

import keras
import numpy as np
import pytest
from entry_points import ROOT
from hydra import compose, initialize_config_dir

from zoo.training import recipe


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_cosine_with_warmup_rises_linearly_then_follows_the_cosine():
    schedule = recipe.cosine_with_warmup(
        0.01, steps_per_epoch=10, epochs=5, warmup_epochs=1, final_fraction=0.1
    )
    rates = np.array([float(schedule(step)) for step in range(51)])
    # Linear warm-up over the first 10 steps, from lr/10 to the peak.
    np.testing.assert_allclose(rates[:11], 0.001 + 0.0009 * np.arange(11), rtol=1e-5)
    # Then lr * (alpha + (1 - alpha) * (1 + cos(pi * t)) / 2) over the remaining 40 steps.
    t = np.arange(41) / 40
    expected = 0.01 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t)))
    np.testing.assert_allclose(rates[10:], expected, rtol=1e-5)


def test_a_warmup_as_long_as_the_run_is_cut_to_its_first_half(caplog):
    with caplog.at_level("INFO"):
        schedule = recipe.cosine_with_warmup(0.01, steps_per_epoch=10, epochs=1, warmup_epochs=2)
    assert "warming up over the first 5 of 10 steps" in caplog.text
    assert float(schedule(5)) == pytest.approx(0.01)  # the peak, at the end of the warm-up
    assert float(schedule(0)) == pytest.approx(0.002)
    with pytest.raises(ValueError, match=r"schedule.warmup_epochs must be >= 0, got -1"):
        recipe.cosine_with_warmup(0.01, steps_per_epoch=10, epochs=5, warmup_epochs=-1)


def test_label_smoothing_matches_a_hand_computation():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 2])
    smoothing = 0.1
    targets = np.eye(3)[labels] * (1 - smoothing) + smoothing / 3
    expected = np.mean(-np.sum(targets * np.log(probabilities), axis=1))
    loss = recipe.build_loss(smoothing)(labels, probabilities)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # No smoothing: Keras's own sparse cross-entropy, unchanged.
    plain = recipe.build_loss(0.0)
    assert isinstance(plain, keras.losses.SparseCategoricalCrossentropy)
    assert float(plain(labels, probabilities)) == pytest.approx(-np.mean(np.log([0.7, 0.8])))


def test_label_smoothing_out_of_range_names_the_key():
    with pytest.raises(ValueError, match=r"trainer.label_smoothing must lie in \[0, 1\), got 1.5"):
        recipe.build_loss(1.5)


def test_the_smoothed_loss_survives_a_keras_round_trip(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(optimizer="sgd", loss=recipe.build_loss(0.2))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss.label_smoothing == pytest.approx(0.2)


def test_a_schedule_drives_the_optimizer_and_excludes_reduce_lr():
    cfg = _compose("optimizer=adamw", "schedule=cosine", "trainer.epochs=4")
    optimizer = recipe.build_optimizer(cfg, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    warmup = cfg.schedule.warmup_epochs * 5  # steps
    # At step 0 the optimizer runs at the warm-up's first rate, not the configured peak.
    assert float(optimizer.learning_rate) == pytest.approx(cfg.optimizer.learning_rate / warmup)
    with pytest.raises(ValueError, match=r"reduce_lr callback both set the learning rate"):
        plateau = "+trainer.callbacks.reduce_lr={_target_: keras.callbacks.ReduceLROnPlateau}"
        recipe.build_optimizer(_compose("schedule=cosine", plateau), steps_per_epoch=5)
    with pytest.raises(ValueError, match=r"trainer.steps_per_epoch=<batches per epoch>"):
        recipe.build_optimizer(cfg, steps_per_epoch=None)


def test_the_learning_rate_of_each_epoch_is_in_the_logs():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    schedule = recipe.cosine_with_warmup(0.01, steps_per_epoch=4, epochs=3, warmup_epochs=1)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=recipe.build_loss(0.1))
    images, labels = np.zeros((16, 2), "float32"), np.zeros(16, "int32")
    history = model.fit(
        images, labels, batch_size=4, epochs=3, callbacks=[recipe.LearningRateLog()], verbose=0
    )
    expected = [float(schedule(4 * epoch)) for epoch in (1, 2, 3)]  # after each epoch's steps
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-5)

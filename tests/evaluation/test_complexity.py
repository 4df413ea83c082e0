"""Parameter and FLOP counts from built models against the seed articles and DeepFace's paper."""

import pytest

from zoo.data.spec import DataSpec
from zoo.evaluation import complexity
from zoo.models import build_cnn, build_deepface


def _spec(shape, classes=10):
    return DataSpec("test", shape, classes, tuple(str(i) for i in range(classes)))


def test_seed_figures_are_reproduced_by_the_builders():
    measured = {(f.example, f.layer): f.measured for f in complexity.seed_figures()}
    # The seed articles' figures, typed here by hand.
    assert sorted(measured.values()) == sorted(
        [100_352, 288, 802_816, 1_280, 3_072_000, 1_728, 6_400, 98_406_400]
    )
    assert "| equal |" in complexity.seed_table(complexity.seed_figures()[:1])


def test_conv_and_locally_connected_flops_are_equal_by_hand_count():
    cnn = {c.name: c for c in complexity.layer_costs(build_cnn(_spec((28, 28, 1))))}
    lcn = {
        c.name: c
        for c in complexity.layer_costs(build_cnn(_spec((28, 28, 1)), locally_connected=True))
    }
    macs = 28 * 28 * 3 * 3 * 1 * 32
    assert cnn["conv"].flops == lcn["local"].flops == 2 * macs + 28 * 28 * 32
    assert cnn["conv"].weights == 288
    assert lcn["local"].weights == 28 * 28 * 288
    assert cnn["hidden"].flops == 2 * 14 * 14 * 32 * 128 + 128
    assert cnn["pool"].flops == 0


def test_deepface_layer_table_matches_the_paper():
    model = build_deepface(_spec((152, 152, 3), classes=4030))
    table = {c.name: (c.output_shape, c.parameters) for c in complexity.layer_costs(model)}
    paper = {
        "C1": ((142, 142, 32), 11_648),
        "M2": ((71, 71, 32), 0),
        "C3": ((63, 63, 16), 41_488),
        "L4": ((55, 55, 16), 62_774_800),
        "L5": ((25, 25, 16), 7_850_000),
        "L6": ((21, 21, 16), 2_829_456),
        "F7": ((4096,), 28_905_472),
        "F8": ((4030,), 16_510_910),
    }
    for name, expected in paper.items():
        assert table[name] == expected, name
    totals = complexity.totals(model)
    assert totals["parameters"] == model.count_params() > 120_000_000 - 2_000_000
    # 95% of the parameters are in the locally connected and fully connected layers.
    local_and_dense = sum(paper[n][1] for n in ("L4", "L5", "L6", "F7", "F8"))
    assert local_and_dense / totals["parameters"] > 0.95
    markdown = complexity.markdown_table(model)
    assert "| L4 | LocallyConnected2D | 55x55x16 | 62,726,400 | 62,774,800 |" in markdown


@pytest.mark.parametrize("bad", ["nonsense"])
def test_unknown_report_is_a_clear_error(bad):
    from omegaconf import OmegaConf

    from zoo.evaluation import report

    with pytest.raises(ValueError, match="report must be 'params' or 'seeds'"):
        report(OmegaConf.create({"report": bad}))

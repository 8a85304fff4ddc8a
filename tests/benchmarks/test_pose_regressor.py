"""The evaluation-only pose regressor (benchmarks/pose_regressor.py) and Table 2's correlation helper.

Tiny and seeded: a 16 px regressor trained for a few dozen steps must lower its loss and already
tell a face turned +60 degrees from the same face turned -60 degrees.
"""
import math

import pytest
import torch


from benchmarks.bench_table2 import correlation_table
from benchmarks.pose_regressor import (
    PoseRegressor,
    _augment,
    heldout_mae,
    load_pose_regressor,
    pearson,
    predict,
    train_pose_regressor,
)
from facedis_aug.data.synthetic import SyntheticFaces


def test_pearson_planted_linear():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, generator=g)
    assert pearson(x, 3.0 * x + 2.0) == pytest.approx(1.0, abs=1e-12)
    assert pearson(x, -0.5 * x + 7.0) == pytest.approx(-1.0, abs=1e-12)
    # y = x + independent noise of equal variance: r = 1/sqrt(2) in expectation
    n = torch.randn(200_000, generator=g)
    x2 = torch.randn(200_000, generator=g)
    assert pearson(x2, x2 + n) == pytest.approx(1 / math.sqrt(2), abs=0.01)
    assert math.isnan(pearson(x, torch.ones(500)))
    with pytest.raises(ValueError):
        pearson(x, x[:10])


def test_correlation_table_planted_projections():
    # w [N, d]; truth depends only on w . v_yaw, so that direction scores 1 and an orthogonal one ~0
    g = torch.Generator().manual_seed(1)
    w = torch.randn(4000, 8, generator=g)
    v_yaw, v_other = torch.eye(8)[0], torch.eye(8)[1]
    truth = {"yaw": 40.0 * (w @ v_yaw) - 3.0, "pitch": -5.0 * (w @ v_other)}
    tab = correlation_table({"yaw": w @ v_yaw, "other": w @ v_other}, truth)
    assert tab["yaw"]["yaw"] == pytest.approx(1.0, abs=1e-9)
    assert tab["other"]["pitch"] == pytest.approx(-1.0, abs=1e-9)
    assert abs(tab["yaw"]["pitch"]) < 0.05 and abs(tab["other"]["yaw"]) < 0.05


def test_mirror_augmentation_flips_yaw_and_roll_only():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(64, 3, 8, 8, generator=g) * 2 - 1
    y = torch.randn(64, 3, generator=g) * torch.tensor([50.0, 7.0, 3.0])
    xa, ya = _augment(x, y, torch.Generator().manual_seed(3), photometric=False)
    flipped = (ya[:, 0] != y[:, 0])
    assert 10 < int(flipped.sum()) < 54  # about half are mirrored
    assert torch.equal(xa[flipped], x[flipped].flip(-1)) and torch.equal(xa[~flipped], x[~flipped])
    assert torch.equal(ya[flipped, 0], -y[flipped, 0]) and torch.equal(ya[flipped, 2], -y[flipped, 2])
    assert torch.equal(ya[:, 1], y[:, 1]) and torch.equal(ya[~flipped], y[~flipped])


def test_model_shapes_checked():
    m = PoseRegressor(16, width=4)
    assert m(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError):
        m(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError):
        PoseRegressor(24)


@pytest.fixture(scope="module")
def tiny_regressor(tmp_path_factory):
    path = tmp_path_factory.mktemp("reg") / "reg.safetensors"
    train_pose_regressor(16, num_images=512, steps=120, seed=0, out_path=path, num_identities=50,
                         batch=32, width=8, eval_images=64, log=None)
    return path


def test_tiny_training_lowers_loss_and_round_trips(tiny_regressor):
    model = load_pose_regressor(tiny_regressor)
    t = model.meta["train"]
    assert t["final_loss"] < 0.8 * t["initial_loss"]  # seeds 0-2 reach 0.62-0.70
    assert model.resolution == 16 and model.meta["world"]["pose"] == "uniform"
    assert set(model.meta["heldout_mae"]["same_world"]) >= {"mae_yaw", "mae_pitch", "mae_yaw_profile"}
    # the file round-trips: same predictions from a second load
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    a, b = predict(model, x), predict(load_pose_regressor(tiny_regressor), x)
    assert all(torch.equal(a[k], b[k]) and a[k].shape == (5,) for k in ("yaw", "pitch", "roll"))
    # larger inputs are resized to the model's resolution rather than rejected
    assert predict(model, torch.zeros(2, 3, 32, 32))["yaw"].shape == (2,)


def test_tiny_regressor_orders_plus_minus_60_yaw(tiny_regressor):
    model = load_pose_regressor(tiny_regressor)
    # pose='fixed': images 2g and 2g+1 are the same face, light and background at -60 and +60 degrees
    ds = SyntheticFaces(32, 16, seed=123, num_identities=50, pose="fixed", fixed_yaws=[-60.0, 60.0])
    img, lab = ds.batch(torch.arange(32))
    yaw = predict(model, img * 2 - 1)["yaw"]
    assert torch.equal(lab["yaw"][1::2], torch.full((16,), 60.0))
    diff = yaw[1::2] - yaw[0::2]  # pred(+60) - pred(-60) for the same face
    assert float(diff.mean()) > 30.0 and int((diff > 0).sum()) >= 14


def test_heldout_mae_is_zero_for_an_oracle_like_constant_world(tiny_regressor, monkeypatch):
    # with predictions replaced by the labels themselves the MAE must be exactly 0 (checks the bookkeeping)
    import benchmarks.pose_regressor as pr

    model = load_pose_regressor(tiny_regressor)
    images, labels = pr.render_world(40, 16, 0, 50)
    table = {tuple(im.flatten()[:16].tolist()): lab for im, lab in zip(images, labels)}

    def oracle(m, x, batch_size=256):
        u8 = ((x + 1) * 127.5).round().to(torch.uint8)
        lab = torch.stack([table[tuple(im.flatten()[:16].tolist())] for im in u8])
        return {"yaw": lab[:, 0], "pitch": lab[:, 1], "roll": lab[:, 2]}

    monkeypatch.setattr(pr, "predict", oracle)
    mae = heldout_mae(model, 40, 0, 50)
    assert mae["mae_yaw"] == 0.0 and mae["mae_pitch"] == 0.0 and mae["corr_yaw"] == pytest.approx(1.0)
    assert mae["n"] == 40 and mae["n_profile"] == int((labels[:, 0].abs() > 45).sum())


def test_edit_response_slope_on_a_planted_linear_generator(monkeypatch):
    # a fake bundle whose "image" carries w . v_yaw, read back by a fake regressor as yaw = 5 * (w . v) + 1:
    # editing with sigma = 2 sets w'.v = 2 s, so the true yaw must move exactly 10 degrees per sigma
    import benchmarks.bench_table2 as bt
    from facedis_aug.ops.linear import edit_latent

    v = torch.eye(6)[0]

    class FakeBundle:
        info = {"directions": {"yaw": {"units_per_sigma": 9.0}}}

        def sample_w(self, n, seed=0):
            return torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))

        def edit(self, w, name, s):
            return edit_latent(w, v, s, 2.0)

        def generate(self, w):
            return (w @ v / 10)[:, None, None, None].expand(-1, 3, 2, 2)  # inside [-1, 1]: no clamping

    monkeypatch.setattr(bt, "predict", lambda model, img: {"yaw": 50.0 * img[:, 0, 0, 0] + 1.0})
    r = bt.edit_response(FakeBundle(), None, "yaw", n=7, seed=3)
    assert r["true_per_sigma"] == pytest.approx(10.0, abs=1e-5)
    assert r["mean_true"] == pytest.approx([10.0 * s + 1.0 for s in r["s"]], abs=1e-4)
    assert r["bundle_units_per_sigma"] == 9.0 and r["n"] == 7


def test_regressor_reach_judges_the_bundles_promise_on_its_edit_grid(monkeypatch):
    # the "regressor" reads yaw = 10 (w . v), clipped at +-30: the bundle's calibration says 10 deg per sigma
    # (sigma 1), so the promise is kept up to 30 / 0.85 and no further, on the grid the bundle stored
    import benchmarks.bench_table2 as bt

    v = torch.eye(6)[0]
    grid = [float(s) for s in range(-5, 6)]

    class FakeBundle:
        info = {"directions": {"yaw": {"units_per_sigma": 10.0, "intercept": 0.0, "calibration": "edits", "reach": [-20.0, 20.0],
                                       "edit_check": {"curve": {"s": grid}}}}}
        directions = {"yaw": v}
        yaw_reach = (-20.0, 20.0)

        def sigma(self, name):
            return 1.0

        def s_to_yaw(self, s):
            return 10.0 * s

        def sample_w(self, n, seed=0):
            return torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))

        def generate(self, w):  # the left column holds the turn, the right one its opposite: a mirror negates it
            x = (w @ v / 10)[:, None, None, None].expand(-1, 3, 2, 1)
            return torch.cat([x, -x], dim=-1)

    monkeypatch.setattr(bt, "predict", lambda model, img: {"yaw": (100.0 * img[:, 0, 0, 0]).clamp(-30, 30)})
    r = bt.regressor_reach(FakeBundle(), None, n=5, seed=1)
    assert r["s"] == grid and r["asked"] == pytest.approx([10.0 * s for s in grid])
    assert r["delivered_regressor"] == pytest.approx([max(-30.0, min(30.0, 10.0 * s)) for s in grid], abs=1e-4)
    assert r["reach_regressor"] == [-30.0, 30.0]  # 40 asked, 30 delivered: 25% off, the walk stops before it
    # a judge that sees +3 degrees in every face (its mirror bias): the plain reading is off by 3, which stops
    # the walk at the first step (10 asked, 13 read: 30% off); read with the mirror averaged, the bias cancels
    monkeypatch.setattr(bt, "predict", lambda model, img: {"yaw": (100.0 * img[:, 0, 0, 0]).clamp(-30, 30) + 3.0})
    r = bt.regressor_reach(FakeBundle(), None, n=5, seed=1)
    assert r["delivered_regressor"] == pytest.approx([max(-30.0, min(30.0, 10.0 * s)) + 3.0 for s in grid], abs=1e-4)
    assert r["delivered_regressor_mirror_average"] == pytest.approx([max(-30.0, min(30.0, 10.0 * s)) for s in grid], abs=1e-4)
    assert r["reach_regressor_mirror_average"] == [-30.0, 30.0] and r["reach_regressor"][1] < 30.0
    assert r["reach_bundle"] == [-20.0, 20.0] and r["calibration"] == "edits"


def test_mirror_agreement_known_readers():
    from benchmarks.pose_regressor import mirror_agreement

    g = torch.Generator().manual_seed(2)
    yaw = 20.0 * torch.randn(1000, generator=g)
    # a reader that negates the yaw of the mirror image agrees with itself exactly
    assert mirror_agreement({"yaw": yaw, "yaw_mirror": -yaw + 3.0}) == pytest.approx(1.0, abs=1e-12)
    # one blind to mirroring (the same yaw for both) disagrees exactly
    assert mirror_agreement({"yaw": yaw, "yaw_mirror": yaw}) == pytest.approx(-1.0, abs=1e-12)
    # independent errors of the yaw's own size on each reading: r = 1/2 in expectation
    e1, e2 = 20.0 * torch.randn(1000, generator=g), 20.0 * torch.randn(1000, generator=g)
    assert mirror_agreement({"yaw": yaw + e1, "yaw_mirror": -yaw + e2}) == pytest.approx(0.5, abs=0.08)


def test_cross_read_rows_planted_readers():
    from benchmarks.bench_cross_read import _rows

    g = torch.Generator().manual_seed(3)
    truth = 15.0 * torch.randn(500, generator=g)
    reads = {"regressor": (truth.clone(), -truth.clone()),  # exact, mirror-consistent
             "b": (0.5 * truth + 3.0, -0.5 * truth + 3.0)}  # half the turn, and sees +3 degrees in a symmetric face
    rows = {r["reader"]: r for r in _rows("planted", truth, reads, truth.abs() <= 20)}
    assert rows["regressor"]["r"] == pytest.approx(1.0) and rows["regressor"]["mirror bias deg"] == pytest.approx(0.0, abs=1e-6)
    assert rows["b's decomposer"]["slope"] == pytest.approx(0.5, abs=1e-3)
    assert rows["b's decomposer"]["mirror bias deg"] == pytest.approx(3.0, abs=1e-6)
    assert rows["b's decomposer"]["mirror agreement"] == pytest.approx(1.0)
    assert rows["b's decomposer"]["n"] == int((truth.abs() <= 20).sum())

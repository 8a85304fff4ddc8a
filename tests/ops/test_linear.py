"""Eq. 2-4: least-squares directions recover planted gradients; editing obeys Eq. 4."""
import math

import pytest
import torch

from facedis_aug.ops.linear import (
    edit_latent,
    fit_directions,
    fit_directions_with_r2,
    projection_std,
    unit_direction,
)


def _planted(n=300, d=16, k=3, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    dw = torch.randn(n, d, generator=g, dtype=torch.float64)
    grads = torch.randn(k, d, generator=g, dtype=torch.float64)
    dy = dw @ grads.T + noise * torch.randn(n, k, generator=g, dtype=torch.float64)
    return dw, dy, grads


def test_noise_free_gradient_recovered_exactly_with_r2_one():
    dw, dy, grads = _planted()
    est, r2 = fit_directions_with_r2(dw, dy)
    assert est.shape == (3, 16) and r2.shape == (3,)
    torch.testing.assert_close(est, grads, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(r2, torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_noisy_gradient_within_tolerance_float32():
    dw, dy, grads = _planted(n=4000, d=16, noise=0.1, seed=1)
    est, r2 = fit_directions(dw.float(), dy.float(), return_r2=True)
    assert est.dtype == torch.float32
    # OLS error std ~ noise / sqrt(N) = 0.0016 per coefficient
    assert (est.double() - grads).abs().max() < 0.01
    assert (r2 > 0.99).all() and (r2 < 1.0).all()


def test_r2_low_for_pure_noise():
    g = torch.Generator().manual_seed(2)
    dw = torch.randn(500, 8, generator=g)
    dy = torch.randn(500, 1, generator=g)
    _, r2 = fit_directions(dw, dy, return_r2=True)
    assert r2.item() < 0.1


def test_matches_normal_equations_on_ill_conditioned_input():
    g = torch.Generator().manual_seed(3)
    dw = torch.randn(200, 6, generator=g, dtype=torch.float64) * torch.tensor([1e3, 1, 1, 1, 1, 1e-3], dtype=torch.float64)
    truth = torch.randn(1, 6, generator=g, dtype=torch.float64)
    dy = dw @ truth.T
    torch.testing.assert_close(fit_directions(dw, dy), truth, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("n", [8, 16])
def test_too_few_pairs_is_a_clear_error(n):
    with pytest.raises(ValueError, match="N > d"):
        fit_directions(torch.randn(n, 16), torch.randn(n, 2))


def test_shape_errors():
    with pytest.raises(ValueError, match="rows"):
        fit_directions(torch.randn(40, 4), torch.randn(39, 1))
    with pytest.raises(ValueError, match=r"\[N, k\]"):
        fit_directions(torch.randn(40, 4), torch.randn(40))
    with pytest.raises(ValueError, match="rank deficient"):
        dw = torch.randn(40, 4)
        dw[:, 2] = 0
        fit_directions(dw, torch.randn(40, 1))
    with pytest.raises(ValueError, match="NaN"):
        dw = torch.randn(40, 4)
        dw[0, 0] = math.nan
        fit_directions(dw, torch.randn(40, 1))


def test_unit_direction_and_projection_std():
    g = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    v, n = unit_direction(g)
    torch.testing.assert_close(n, torch.tensor([5.0, 2.0]))
    torch.testing.assert_close(v, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    with pytest.raises(ValueError):
        unit_direction(torch.zeros(3))
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(20000, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5])
    # w.v with v = e2 has std 2
    assert abs(projection_std(w, torch.tensor([0.0, 1.0, 0.0])) - 2.0) < 0.05
    # exact against torch.std on a small case
    w2 = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0]])
    assert projection_std(w2, torch.tensor([1.0, 0.0])) == pytest.approx(2.0)


def test_edit_latent_obeys_eq4():
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    v, _ = unit_direction(torch.randn(10, generator=gen, dtype=torch.float64))
    sigma = 1.7
    s = torch.linspace(-4, 4, 7, dtype=torch.float64)  # per-sample scales
    out = edit_latent(w, v, s, sigma)
    assert out.shape == w.shape
    torch.testing.assert_close(out @ v, s * sigma)  # new projection is s * sigma
    orth = lambda x: x - (x @ v)[:, None] * v[None]
    torch.testing.assert_close(orth(out), orth(w))  # orthogonal part unchanged
    # scalar s broadcasts, and equals the per-sample call with a constant vector
    torch.testing.assert_close(edit_latent(w, v, 2.5, sigma), edit_latent(w, v, torch.full((7,), 2.5, dtype=torch.float64), sigma))
    # literal formula
    torch.testing.assert_close(out, w - (w @ v)[:, None] * v + (s * sigma)[:, None] * v)


def test_edit_latent_checks():
    w = torch.randn(3, 4)
    with pytest.raises(ValueError, match="unit length"):
        edit_latent(w, torch.tensor([1.0, 1.0, 0.0, 0.0]), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"\[B\]"):
        edit_latent(w, torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.ones(2), 1.0)
    with pytest.raises(ValueError, match=r"\[d\]"):
        edit_latent(w, torch.tensor([1.0, 0.0, 0.0]), 1.0, 1.0)


def test_edit_latent_gradcheck():
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    v = unit_direction(torch.randn(5, generator=gen, dtype=torch.float64))[0].requires_grad_()
    s = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(edit_latent, (w, v, s, sigma), eps=1e-6, atol=1e-6)


def test_calibration_known_answers_on_floats_arrays_and_tensors():
    import numpy as np

    from facedis_aug.ops.linear import s_to_value, value_to_s

    assert value_to_s(35.0, 5.0, 10.0) == 3.0 and s_to_value(3.0, 5.0, 10.0) == 35.0  # 5 deg + 3 sigma x 10 deg/sigma
    np.testing.assert_allclose(value_to_s(np.array([-45.0, 45.0]), 5.0, 10.0), [-5.0, 4.0])
    t = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(s_to_value(t, -2.0, 0.5), torch.tensor([-2.5, -1.0], dtype=torch.float64))


def test_monotone_knots_pool_violators_and_stop_where_the_response_turns_back():
    from facedis_aug.ops.linear import monotone_knots

    s = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    y = [-9.0, -10.0, -6.0, 0.0, 5.0, 4.0, 12.0, 11.0]  # a turn back at each end (cut) and a dip (pooled)
    ks, kv = monotone_knots(s, y, centre=0.2, increasing=True)
    # the pooled pair is flat, so the walk from the knot nearest the centre stops at it; -10 is the reading at -2
    assert ks == [-2.0, -1.0, 0.0, 1.0] and kv == pytest.approx([-10.0, -6.0, 0.0, 4.5])
    ks, kv = monotone_knots(s, [-v for v in y], centre=0.0, increasing=False)  # a falling response alike
    assert ks == [-2.0, -1.0, 0.0, 1.0] and kv == pytest.approx([10.0, 6.0, 0.0, -4.5])
    # a long tail that turns back far out is cut at the extreme, not pooled into the near side (the v17 bundle's
    # view-head readings along v_yaw, directions.json; pooled they gave one flat knot of -5.27 at s = -0.33)
    s17 = [-9.3323 + k for k in range(21)]
    y17 = [4.572, 1.389, -2.177, -5.781, -8.317, -9.584, -9.669, -8.98, -7.751, -6.414, -3.228, 5.225, 15.654, 22.006,
           26.508, 29.151, 29.846, 29.74, 29.487, 29.182, 28.771]
    ks, kv = monotone_knots(s17, y17, centre=0.6677, increasing=True)
    assert ks == pytest.approx(s17[6:17]) and kv == pytest.approx(y17[6:17])
    with pytest.raises(ValueError, match="do not rise"):
        monotone_knots([0.0, 1.0, 2.0], [1.0, 1.0, 1.0], centre=1.0, increasing=True)
    with pytest.raises(ValueError, match="ascending"):
        monotone_knots([0.0, 0.0], [1.0, 2.0], centre=0.0, increasing=True)


def test_curve_calibration_inverts_and_goes_on_straight_beyond_its_knots():
    from facedis_aug.ops.linear import curve_s_to_value, curve_value_to_s

    ks, kv, k = [-2.0, 0.0, 1.0, 3.0], [-10.0, 0.0, 8.0, 10.0], 5.0
    s = torch.linspace(-5, 6, 23, dtype=torch.float64)
    y = curve_s_to_value(s, ks, kv, k)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    torch.testing.assert_close(curve_value_to_s(y, ks, kv, k), s)  # exact inverse, knots and beyond
    assert curve_s_to_value(0.5, ks, kv, k) == pytest.approx(4.0) and curve_s_to_value(4.0, ks, kv, k) == pytest.approx(15.0)
    assert curve_s_to_value(-3.0, ks, kv, k) == pytest.approx(-15.0)
    # a falling calibration (negative slope) inverts alike
    fk = [-v for v in kv]
    assert curve_value_to_s(-4.0, ks, fk, -k) == pytest.approx(0.5) and curve_value_to_s(-15.0, ks, fk, -k) == pytest.approx(4.0)
    import numpy as np

    arr = curve_value_to_s(np.array([0.0, 8.0]), ks, kv, k)
    assert isinstance(arr, np.ndarray) and arr.tolist() == pytest.approx([0.0, 1.0])

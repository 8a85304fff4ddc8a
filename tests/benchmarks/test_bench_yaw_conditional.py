import torch

from benchmarks.bench_yaw_conditional import project_out


def test_project_out_removes_the_span_of_the_others_and_keeps_the_rest():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(16, generator=g, dtype=torch.float64) for _ in range(3))
    b_perp = project_out(b, [a])  # a unit direction orthogonal to a, in the plane of a and b
    v = 2.0 * a + 3.0 * b_perp + 0.5 * c
    out = project_out(v, [a, b])
    assert abs(float(out.norm()) - 1.0) < 1e-12
    assert abs(float(out @ a)) < 1e-12 and abs(float(out @ b)) < 1e-12
    # what is left is c's part outside span(a, b), up to its length
    c_perp = project_out(c, [a, b])
    assert float(out @ c_perp) > 1 - 1e-12

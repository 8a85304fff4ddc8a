"""Ward clustering over 1 - |cos|, the Fig. 6 dendrogram picture, and region classification."""
import numpy as np
import pytest
import torch
from PIL import Image

from facedis_aug.directions.cluster import (
    abs_cosine_distance,
    cluster_directions,
    component_thumbnail,
    plot_dendrogram,
    region_of_component,
    region_shares,
)


def two_groups(seed=0, d=16, n_a=5, n_b=4, spread=0.1):
    """Columns near +-a (group 0) and near +-b (group 1), a orthogonal to b; signs flipped at random."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
    cols, truth = [], []
    for k, n in ((0, n_a), (1, n_b)):
        for i in range(n):
            sign = -1.0 if i % 2 else 1.0  # every other member flipped: |cos| must ignore sign
            cols.append(sign * (q[:, k] + spread * torch.randn(d, generator=g, dtype=torch.float64)))
            truth.append(k)
    perm = torch.randperm(len(cols), generator=g)
    V = torch.stack(cols, 1)[:, perm]
    return V, np.array(truth)[perm.numpy()]


def same_partition(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return all((a[i] == a[j]) == (b[i] == b[j]) for i in range(len(a)) for j in range(len(a)))


def test_abs_cosine_distance_known_values():
    V = np.array([[1.0, -2.0, 0.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    D = abs_cosine_distance(V)
    assert D[0, 1] == pytest.approx(0.0)  # v and -v are the same direction
    assert D[0, 2] == pytest.approx(1.0)  # orthogonal
    assert D[0, 3] == pytest.approx(1 - 2 ** -0.5)
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)


def test_planted_clusters_recovered_with_sign_flips():
    V, truth = two_groups()
    labels, Z = cluster_directions(V, num_clusters=2)
    assert Z.shape == (V.shape[1] - 1, 4)
    assert labels.min() == 0 and labels.max() == 1
    assert same_partition(labels, truth)
    # a plain (signed) cosine would split each group by sign: check the planted data really needs |cos|
    Vn = (V / V.norm(dim=0)).numpy()
    signed = 1 - Vn.T @ Vn
    assert signed.max() > 1.5
    # a height cut between the within-group and between-group merges gives the same partition
    cut = 0.5 * (np.sort(Z[:, 2])[-2] + Z[-1, 2])
    labels_t, _ = cluster_directions(V, distance_threshold=cut)
    assert same_partition(labels_t, truth)


def test_cluster_edge_cases():
    labels, Z = cluster_directions(torch.randn(8, 1), num_clusters=3)
    assert labels.tolist() == [0] and Z.shape == (0, 4)
    with pytest.raises(ValueError, match="exactly one"):
        cluster_directions(torch.randn(8, 3))
    with pytest.raises(ValueError, match="zero"):
        cluster_directions(torch.zeros(8, 3), num_clusters=2)


def test_dendrogram_png_written(tmp_path):
    V, _ = two_groups(n_a=3, n_b=3)
    labels, Z = cluster_directions(V, num_clusters=2)
    g = torch.Generator().manual_seed(1)
    imgs = [component_thumbnail(torch.randn(4 * 8 * 8, generator=g), 8, 8) for _ in range(V.shape[1])]
    assert imgs[0].shape == (16, 8, 3) and imgs[0].dtype == np.uint8
    path = tmp_path / "sub" / "dendrogram.png"
    plot_dendrogram(Z, imgs, path, labels=[f"local_{i:03d}" for i in range(6)], num_clusters=2)
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        im.verify()
    plot_dendrogram(Z, None, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="leaf images"):
        plot_dendrogram(Z, imgs[:2], tmp_path / "bad.png")


def test_component_thumbnail_values():
    u = np.zeros((4, 2, 2))
    u[0, 0, 0] = 2.0
    u[3, 1, 1] = -1.0
    t = component_thumbnail(u.reshape(-1), 2, 2)
    assert t[0, 0, 0] == 255 and t[0, 0, 1] == 128  # max -> white, zero -> mid grey
    assert (t[3, 1] == 0).all()  # depth half (below): -max -> black, grey in all 3 channels


def test_region_of_component_on_planted_masks():
    H = W = 8
    face = np.zeros((H, W), bool)
    face[2:6, 2:6] = True
    around = np.zeros((H, W), bool)
    around[1:7, 1:7] = True  # a ring once the face is removed
    u = np.zeros((4, H, W))
    u[0, 3, 3] = 1.0  # face
    assert region_of_component(u.reshape(-1), face, around) == "face"
    u2 = np.zeros((4, H, W))
    u2[1:4, 1, 1:7] = -0.5  # on the ring in 3 channels
    u2[3, 3, 3] = 0.2  # a little depth in the face
    assert region_of_component(torch.from_numpy(u2.reshape(-1)), face, around) == "around"
    u3 = np.zeros((4, H, W))
    u3[2, 0, :] = 1.0
    u3[2, 4, 4] = 1.0
    s = region_shares(u3.reshape(-1), face, around)
    assert s["face"] == pytest.approx(1 / 9) and s["around"] == 0 and s["background"] == pytest.approx(8 / 9)
    assert region_of_component(u3.reshape(-1), face, around) == "background"
    assert region_of_component(np.zeros(4 * H * W), face, around) == "background"
    with pytest.raises(ValueError):
        region_shares(np.zeros(10), face, around)

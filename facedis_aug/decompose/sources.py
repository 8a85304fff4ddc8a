"""Where the decomposer's training batches come from: the stage-1 generator (w kept, the paper's
setting) or any stream of images (a folder or the synthetic world, without w).

    sampler, synthesize = generator_sampler(G, size=64, batch=64, seed=0)
    sampler = stream_sampler(lambda start: training_batches(source, 64, seed=0, start_step=start))
    sampler = identity_pair_sampler(source, size=64, batch=64, seed=0)   # two photos of a person per pair
    sampler = data_sampler(source, 64, 64, seed=0, pairs=cfg.identity_pairs)  # either, as the stage picks

A sampler maps a step to (images [B, 3, size, size] in [-1, 1], w [B, d] or None) and is a pure
function of the step, so a resumed run sees the batches an uninterrupted one sees. `G` is any
object with `z_dim`, `mapping(z) -> w` and `synthesis(w, noise_mode=...) -> images` (the gan
package's Generator); this module does not import it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor

from ..ops.resize import resize_square

Sampler = Callable[[int], "tuple[Tensor, Optional[Tensor]]"]


def generator_sampler(G: Any, size: int, batch: int, seed: int, device: Any = "cpu") -> tuple[Sampler, Callable[[Tensor], Tensor]]:
    """(sampler of G's faces with their w, synthesize(w [B, d]) -> faces [B, 3, size, size] in [-1, 1]).
    Faces use G's fixed noise, so a face is a function of its w alone (Eq. 4 edits depend on that)."""

    @torch.no_grad()
    def synthesize(w: Tensor) -> Tensor:
        return resize_square(G.synthesis(w, noise_mode="const"), size).clamp(-1, 1)

    @torch.no_grad()
    def sampler(step: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        w = G.mapping(torch.randn(batch, G.z_dim, generator=gen).to(device))
        return synthesize(w), w

    return sampler, synthesize


def stream_sampler(make_stream: Callable[[int], Iterator[Tensor]], size: int) -> Sampler:
    """Sampler over an endless stream of image batches in [-1, 1] (e.g. `training_batches`), opened at
    the first step asked for; later steps must follow one by one (as the training loop asks)."""
    state: dict[str, Any] = {"next": None, "it": None}

    def sampler(step: int) -> tuple[Tensor, None]:
        if state["next"] != step:
            state["it"], state["next"] = make_stream(step), step
        state["next"] = step + 1
        return resize_square(next(state["it"]), size), None

    return sampler


def alternating_sampler(even: Sampler, odd: Sampler) -> Sampler:
    """Even steps from `even`, odd steps from `odd` (decompose.source = mixed: data images, then G's
    samples with their w). Each sampler is asked for its own steps 0, 1, 2, ... in order, so a stream
    sampler sees no gaps and a resumed run repeats an uninterrupted one."""

    def sampler(step: int) -> tuple[Tensor, Optional[Tensor]]:
        return (even if step % 2 == 0 else odd)(step // 2)

    return sampler


def _is_world(faces: Any) -> bool:
    """Whether `faces` is the synthetic world (`SyntheticFaces`), whose images are rendered from parameters."""
    return hasattr(faces, "params") and hasattr(faces, "world")


def identity_pair_params(faces: Any, indices: Tensor) -> Any:
    """`faces.params(indices)` (a `SyntheticFaces`) with image 2k+1 given the identity of image 2k: one
    person in two photos, each with its own pose, light, background and noise. indices [B], B even."""
    if not _is_world(faces):
        raise TypeError(f"identity pairs need the synthetic world (SyntheticFaces), got {type(faces).__name__}")
    if indices.ndim != 1 or indices.shape[0] % 2:
        raise ValueError(f"identity pairs need an even number of indices [B], got {tuple(indices.shape)}")
    p = faces.params(indices)
    ident = p.identity.clone()
    ident[1::2] = ident[0::2]
    return dataclasses.replace(p, identity=ident, id_code=faces.world.identity_code(ident))


def identity_pair_sampler(faces: Any, size: int, batch: int, seed: int) -> Sampler:
    """Sampler of same-identity pairs (decompose.identity_pairs): images 2k and 2k+1 of a batch show one
    person in two photos. No pose label is used: only which images show the same person.

    `faces`: the synthetic world (`SyntheticFaces`: image 2k+1 is the stream's own image re-rendered as
    2k's person, `identity_pair_params`) or a dataset of `(image [3, R, R] in [0, 1], identity)` items with
    a `targets` list (`ImageFolderFaces`: the identity is the top sub-folder; `RecordFaces`: the label):
    image 2k+1 is another image of 2k's identity, drawn with a generator seeded by the step (2k itself
    when its identity has a single image). The images 2k walk a seeded permutation of the data
    (`step_indices`), so a step's batch is a function of the step."""
    from ..data.stream import step_indices

    if batch < 2 or batch % 2:
        raise ValueError(f"identity pairs need an even batch >= 2, got {batch}")
    n = len(faces)
    if _is_world(faces):

        @torch.no_grad()
        def render(step: int) -> Tensor:
            p = identity_pair_params(faces, torch.from_numpy(step_indices(n, batch, seed, step)))
            return faces.world.render(p)["image"].float()
    elif hasattr(faces, "targets") and hasattr(faces, "__getitem__"):
        groups: dict[Any, list[int]] = {}
        place: list[int] = []  # image j's position in its identity's list
        for j, t in enumerate(faces.targets):
            place.append(len(groups.setdefault(t, [])))
            groups[t].append(j)
        if len(groups) == 1:
            print(f"identity pairs: all {n} images are one identity (no sub-folders or labels): pairs are two "
                  "random images")

        def render(step: int) -> Tensor:
            first = step_indices(n, batch // 2, seed, step)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            idx = []
            for j in first.tolist():
                group = groups[faces.targets[j]]
                if len(group) == 1:
                    idx += [j, j]
                    continue
                r = int(torch.randint(len(group) - 1, (1,), generator=gen))  # uniform over the others, j skipped
                idx += [j, group[r if r < place[j] else r + 1]]
            return torch.stack([faces[j][0] for j in idx]).float()
    else:
        raise TypeError(f"identity pairs need the synthetic world or a dataset with identity targets, got "
                        f"{type(faces).__name__}")

    def sampler(step: int) -> tuple[Tensor, None]:
        images = render(step)
        if images.ndim != 4 or images.shape[0] != batch or images.shape[1] != 3:
            raise ValueError(f"identity pairs: images must be [{batch}, 3, R, R], got {tuple(images.shape)}")
        return resize_square(images * 2.0 - 1.0, size), None

    return sampler


def data_sampler(source: Any, size: int, batch: int, seed: int, pairs: bool, num_workers: int = 0) -> Sampler:
    """The decompose stage's sampler of a data source (`data.stream.make_source`): same-identity pairs
    (`identity_pair_sampler`, decompose.identity_pairs) or the plain stream of `training_batches`."""
    if pairs:
        return identity_pair_sampler(source, size, batch, seed)
    from ..data.stream import training_batches

    return stream_sampler(lambda start: training_batches(source, batch, seed=seed, start_step=start,
                                                         num_workers=num_workers), size)

"""The trainer: run the stages of a recipe into one run folder.

    run/
      recipe.yaml        the resolved recipe (every default filled in)
      log.jsonl          one line per stage event (start, done, skipped, failed)
      data_preview.png   a grid of the training faces
      gan/ decompose/ directions/ encode/ export/   one folder per stage, each with DONE.json when finished

Re-running the same command skips finished stages and lets an interrupted stage resume from its
own checkpoints. Stages hand over files, never Python objects.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from .ops.dataconf import ConfigError, to_dict
from .ops.io import JsonlLogger, atomic_write, read_json, sha256_file, write_json
from .recipe import STAGES, Recipe


@dataclass
class StageContext:
    """What a stage gets: the recipe, where to write, and where earlier stages wrote."""

    recipe: Recipe
    run_dir: Path
    device: str
    # called by the long stages of the main process (gan at each log interval, encode at each step) with their step
    on_progress: Optional[Callable[[int], None]] = None

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def output_of(self, stage: str, name: str) -> Path:
        """Path of a finished earlier stage's output; a clear error if that stage has not run."""
        path = self.run_dir / stage / name
        if not path.exists():
            raise FileNotFoundError(
                f"stage output {path} is missing: run the '{stage}' stage first (add it to run.stages)"
            )
        return path


# a started stage may train longer (re-run with a larger value continues from its checkpoint)
LENGTH_KEYS = {"gan": "kimg", "decompose": "iterations", "encode": "iterations"}
# the files a stage reads from earlier stages; DONE.json records their hashes, and a finished stage
# whose inputs changed (or gained an optional one, like the encoder for export) runs again
STAGE_INPUTS = {
    "gan": [],
    "decompose": ["gan/gan.safetensors"],
    "directions": ["gan/gan.safetensors", "decompose/decomposer.safetensors"],
    "encode": ["gan/gan.safetensors"],
    "export": ["gan/gan.safetensors", "decompose/decomposer.safetensors", "directions/directions.safetensors",
               "directions/directions.json", "encode/encoder.safetensors"],
}


def decompose_needs_gan(recipe: Recipe) -> bool:
    """Whether the decompose stage reads the generator: not with decompose.source = data (the recipe's own
    images, no yaw augmentation), which can then train beside the gan stage."""
    return recipe.decompose.source != "data"


def stage_inputs(recipe: Recipe, stage: str) -> list[str]:
    if stage == "decompose" and not decompose_needs_gan(recipe):
        return []
    return STAGE_INPUTS[stage]


def input_hashes(run_dir: Path, stage: str, recipe: Recipe) -> dict[str, str]:
    """sha256 of each input file of `stage` that exists in run_dir."""
    return {rel: sha256_file(run_dir / rel) for rel in stage_inputs(recipe, stage) if (run_dir / rel).is_file()}


StageFn = Callable[[StageContext], dict[str, Any]]


def _gan_stage(ctx: StageContext) -> dict[str, Any]:
    from .data.stream import make_source, training_batches
    from .gan.train import train_gan

    recipe = ctx.recipe
    cfg = recipe.gan
    source = make_source(recipe.data, cfg.resolution)

    def make_batches(start_step: int, rank: int, world_size: int):
        return training_batches(
            source, cfg.batch, seed=recipe.run.seed, start_step=start_step, rank=rank,
            world_size=world_size, num_workers=recipe.data.num_workers,
        )

    on_snapshot = None
    if cfg.metrics.enabled:
        from .gan.metrics import GanMetrics

        metrics = GanMetrics(cfg.metrics, ctx.device)  # a missing weights file is said once, and labelled
        # real images from their own stream (seed + 1), so the training order is untouched; read once, at
        # the first snapshot (GanMetrics keeps their features)
        real = training_batches(source, cfg.metrics.batch_size, seed=recipe.run.seed + 1, start_step=0)

        def on_snapshot(G, step):
            return metrics(G, real, ppl=cfg.metrics.ppl)

    path = train_gan(cfg, make_batches, ctx.stage_dir("gan"), seed=recipe.run.seed, device=ctx.device,
                     on_snapshot=on_snapshot, on_log=ctx.on_progress)
    return {"weights": str(path.relative_to(ctx.run_dir))}


def _decompose_stage(ctx: StageContext) -> dict[str, Any]:
    """Train the decomposer on the stage-1 generator's faces, keeping each face's w (paper Sec. 3.2-3.4),
    or, with decompose.source = data, on the recipe's images themselves (no w, so no yaw augmentation),
    or with mixed, on both in turn (the augmentation on the generator's steps)."""
    from .decompose.sources import alternating_sampler, data_sampler, generator_sampler
    from .decompose.train import train_decomposer
    from .gan.networks import load_generator

    recipe, cfg = ctx.recipe, ctx.recipe.decompose
    sampler, synthesize = None, None
    if decompose_needs_gan(recipe):
        G = load_generator(ctx.output_of("gan", "gan.safetensors"), device=ctx.device)
        sampler, synthesize = generator_sampler(G, cfg.image_size, cfg.batch, recipe.run.seed, ctx.device)
    if cfg.source in ("data", "mixed"):
        from .data.stream import make_source

        source = make_source(recipe.data, recipe.gan.resolution)
        data = data_sampler(source, cfg.image_size, cfg.batch, recipe.run.seed, cfg.identity_pairs,
                            num_workers=recipe.data.num_workers)
        sampler = data if cfg.source == "data" else alternating_sampler(data, sampler)
    path = train_decomposer(
        cfg, sampler, ctx.stage_dir("decompose"), seed=recipe.run.seed, device=ctx.device,
        generator=synthesize if cfg.yaw_aug and cfg.source != "data" else None,
    )
    return {"weights": str(path.relative_to(ctx.run_dir))}


def _directions_stage(ctx: StageContext) -> dict[str, Any]:
    from .directions.stage import run_directions_stage

    recipe = ctx.recipe
    world = recipe.data.synthetic if recipe.data.source == "synthetic" else None
    return run_directions_stage(ctx.output_of("gan", "gan.safetensors"), ctx.output_of("decompose", "decomposer.safetensors"),
                                recipe.directions, ctx.stage_dir("directions"), device=ctx.device, world=world)


def _encode_stage(ctx: StageContext) -> dict[str, Any]:
    """Train the image -> W encoder on the stage-1 generator's samples (their w is known); images of the
    training data (never used for training) set the encoder's "is this a face?" bound."""
    import torch

    from .data.stream import make_source
    from .encode.train import train_encoder
    from .gan.networks import load_generator
    from .ops.io import read_json

    recipe, cfg = ctx.recipe, ctx.recipe.encode
    G = load_generator(ctx.output_of("gan", "gan.safetensors"), device=ctx.device)
    if recipe.data.source == "synthetic":
        # images right after the training set: new image codes of the same identity pool, never shown to G
        m = recipe.data.synthetic.num_images
        source = make_source(recipe.data, G.resolution, num_images=m + cfg.eval_samples)
        faces, _ = source.batch(torch.arange(m, m + cfg.eval_samples))
    else:  # a folder has no held-out part: its last images (seen by G, never by the encoder)
        source = make_source(recipe.data, G.resolution)
        n = min(cfg.eval_samples, len(source))
        faces = torch.stack([source[i][0] for i in range(len(source) - n, len(source))])
    path = train_encoder(cfg, G, ctx.stage_dir("encode"), seed=recipe.run.seed, device=ctx.device, face_images=faces * 2.0 - 1.0,
                         on_step=ctx.on_progress)
    report = read_json(ctx.stage_dir("encode") / "eval.json")
    keys = ("w_rel_mse", "w_rel_mse_mean_baseline", "l1_gen", "l1_gen_refined", "l1_data", "l1_data_refined", "max_l1")
    return {"weights": str(path.relative_to(ctx.run_dir)), **{k: report[k] for k in keys if k in report}}


def _export_stage(ctx: StageContext) -> dict[str, Any]:
    from .bundle import DECOMPOSER, DIRECTIONS, DIRECTIONS_JSON, ENCODER, GENERATOR
    from .export.stage import run_export_stage

    # bundle file name -> the stage output it is copied from (the run-folder layout lives here)
    sources = {
        GENERATOR: ctx.output_of("gan", "gan.safetensors"),
        DECOMPOSER: ctx.output_of("decompose", "decomposer.safetensors"),
        DIRECTIONS: ctx.output_of("directions", "directions.safetensors"),
        DIRECTIONS_JSON: ctx.output_of("directions", "directions.json"),
    }
    # optional: runs without the encode stage (or from before it) give bundles without an encoder
    if (ctx.stage_dir("encode") / "encoder.safetensors").is_file():
        sources[ENCODER] = ctx.output_of("encode", "encoder.safetensors")
    return run_export_stage(sources, ctx.recipe.export, ctx.stage_dir("export"), recipe=ctx.recipe.to_dict())


def stage_functions() -> dict[str, StageFn]:
    """Stage name -> function. Imported lazily so one stage's dependencies never slow another."""
    return {
        "gan": _gan_stage,
        "decompose": _decompose_stage,
        "directions": _directions_stage,
        "encode": _encode_stage,
        "export": _export_stage,
    }


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device: '{name}' asked for but no CUDA device is available (use 'cpu' or 'auto')")
    return name


def _check_same_recipe(run_dir: Path, recipe: Recipe) -> list[str]:
    """A run folder belongs to one recipe: refuse settings that differ for the data or for a stage
    that has already started. A stage that never started may still change its own section, and a
    started one may train longer (its LENGTH_KEYS value may grow): those stages are returned."""
    old_path = run_dir / "recipe.yaml"
    if not old_path.exists():
        return []
    old = yaml.safe_load(old_path.read_text()) or {}
    try:  # read the old recipe as this version does: keys it did not have yet take their defaults
        from .recipe import recipe_from_dict

        old = to_dict(recipe_from_dict(old))
    except ConfigError:
        pass  # a key this version no longer knows: compare the raw trees, which then differ there
    started = {s for s in STAGES if (run_dir / s).is_dir()}
    # precision picks the arithmetic, not the model: a run started with bf16 on an AVX512_BF16 host resumes in
    # fp32 on one without it (gan.precision auto), as it would on another device
    harmless = {"run.stages", "run.preview_images", "run.device", "gan.precision", "encode.precision"}
    new = to_dict(recipe)
    diffs, longer = [], []
    for d in sorted(_diff_keys(old, new)):
        # gan.metrics.* only measures (nothing it sets changes the training)
        if d in harmless or d.startswith("gan.metrics.") or (d.split(".")[0] in STAGES and d.split(".")[0] not in started):
            continue
        section, _, key = d.partition(".")
        if LENGTH_KEYS.get(section) == key and _number(_get(new, d)) >= _number(_get(old, d)):
            longer.append(section)  # training longer: the stage continues from its last checkpoint
            continue
        diffs.append(d)
    if diffs:
        raise ConfigError(
            f"{run_dir} was made with a different recipe (differs at {', '.join(diffs[:5])}"
            f"{' ...' if len(diffs) > 5 else ''}); use another --out"
        )
    return longer


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for k in dotted.split("."):
        tree = tree.get(k) if isinstance(tree, dict) else None
    return tree


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [prefix]


def write_data_preview(recipe: Recipe, path: Path) -> Path:
    """Grid of the faces the run trains on (the synthetic world or the image folder)."""
    import torch

    from .data.stream import make_source
    from .ops.io import save_image_grid

    n = recipe.run.preview_images
    source = make_source(recipe.data, recipe.gan.resolution, num_images=max(n, 1))
    if hasattr(source, "batch"):
        images, _ = source.batch(torch.arange(min(n, len(source))))
    else:
        images = torch.stack([source[i][0] for i in range(min(n, len(source)))])
    save_image_grid(images, path, value_range=(0.0, 1.0))
    return path


def report_data(recipe: Recipe, run_dir: Path) -> str:
    """One line on what the recipe's image folder (or .rec) gave: images used, files skipped (listed in
    run_dir/data_skipped.txt with their reasons) and ignored."""
    from .data.stream import make_source

    source = make_source(recipe.data, recipe.gan.resolution)
    skipped, ignored = getattr(source, "skipped", []), getattr(source, "ignored", [])
    line = f"data: {len(source)} images from {recipe.data.path}"
    if skipped:
        listing = run_dir / "data_skipped.txt"
        with atomic_write(listing, "w") as f:
            f.writelines(f"{path}\t{why}\n" for path, why in skipped)
        line += f", {len(skipped)} skipped (list: {listing})"
    if ignored:
        line += f", {len(ignored)} non-image files ignored"
    return line


SIDE_ENV = "FACEDIS_AUG_SIDE_JOB"  # set in the side process, which must not start one of its own


class SideDecompose:
    """The decompose stage in a second process beside the gan stage (run.side_by_side): it writes
    decompose/ (and its DONE.json) as the stage itself would, its output going to decompose/side.log."""

    def __init__(self, run_dir: Path, threads: int, total_threads: int):
        import subprocess
        import sys

        self.total_threads = total_threads  # the main process's threads before it gave `threads` away

        self.log_path = run_dir / "decompose" / "side.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), SIDE_ENV: "1"}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "facedis_aug.pipeline", "--side-decompose", str(run_dir)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def finished(self) -> bool:
        return self.proc.poll() is not None

    def wait(self) -> None:
        """Wait for it; raise RuntimeError with the end of its log when it failed."""
        rc = self.proc.wait()
        self._log.close()
        if rc != 0:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"decompose (run beside gan) failed, exit code {rc}; its log {self.log_path} ends: "
                               + " | ".join(tail))

    def stop(self) -> None:
        """End it (the main run failed or was interrupted); its checkpoints let a re-run resume."""
        if not self.finished():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
        self._log.close()


def _start_side_decompose(recipe: Recipe, run_dir: Path, ctx: StageContext, say: Callable[..., None]) -> SideDecompose | None:
    """Start decompose beside gan when both are to run, decompose does not read the generator, and the
    CPU has threads to share; hand the side job's threads back to the main process's stage (gan, or encode while
    decompose finishes) when it ends."""
    import torch

    stages = recipe.run.stages
    if not (recipe.run.side_by_side and "gan" in stages and "decompose" in stages and ctx.device == "cpu"
            and not decompose_needs_gan(recipe) and os.environ.get(SIDE_ENV) is None
            and int(os.environ.get("WORLD_SIZE", "1")) == 1):
        return None
    if (run_dir / "gan" / "DONE.json").exists() or (run_dir / "decompose" / "DONE.json").exists():
        return None
    total = torch.get_num_threads()
    if total < 2:
        return None
    side_threads = total // 2
    side = SideDecompose(run_dir, side_threads, total)
    torch.set_num_threads(total - side_threads)
    say(f"[decompose] training beside gan in a second process ({side_threads} of {total} threads; "
        f"log {side.log_path}); gan on {total - side_threads}")

    def give_back(step: int) -> None:
        if torch.get_num_threads() < total and side.finished():
            torch.set_num_threads(total)
            if side.proc.returncode != 0:  # said now; the run stops (with its log) when it reaches decompose
                print(f"[decompose] the side process failed (exit code {side.proc.returncode}, log {side.log_path})")

    ctx.on_progress = give_back
    return side


def _still_inputs(recorded: dict[str, str], recipe: Recipe, stage: str) -> dict[str, str]:
    """The recorded input hashes that are still the stage's inputs (a decompose stage on the recipe's own
    images recorded the generator's hash before it stopped reading it)."""
    keep = stage_inputs(recipe, stage)
    return {k: v for k, v in recorded.items() if k in keep}


def _set_aside(stage_dir: Path) -> None:
    """Move a stage's folder to <stage>.previous (replacing an older one), so that it starts afresh."""
    import shutil

    old = stage_dir.with_name(stage_dir.name + ".previous")
    if old.exists():
        shutil.rmtree(old)
    stage_dir.rename(old)


def run_pipeline(recipe: Recipe, run_dir: str | Path, *, verbose: bool = True, side: bool = False) -> dict[str, str]:
    """Run `recipe.run.stages` in order into `run_dir`. Returns stage -> 'done' | 'skipped'.

    Under `torchrun`, every process trains the gan stage (data-parallel); the later stages are
    single-device work done by rank 0 alone, and only rank 0 writes the run folder's files. With
    run.side_by_side (see RunConfig), decompose may train in a second process beside gan; `side`:
    this is that process (the run folder's recipe and preview are the main process's).
    """
    run_dir = Path(run_dir)
    rank = int(os.environ.get("RANK", "0"))
    lead = rank == 0
    say = print if verbose and lead else (lambda *a, **k: None)
    longer: list[str] = []
    if lead and not side:
        run_dir.mkdir(parents=True, exist_ok=True)
        longer = _check_same_recipe(run_dir, recipe)
        with atomic_write(run_dir / "recipe.yaml", "w") as f:
            f.write(recipe.to_yaml())
    log = JsonlLogger(run_dir / "log.jsonl") if lead else None
    note = log.log if log else (lambda **k: None)
    ctx = StageContext(recipe=recipe, run_dir=run_dir, device=resolve_device(recipe.run.device))

    preview = run_dir / "data_preview.png"
    if lead and not side and not preview.exists():
        write_data_preview(recipe, preview)
        say(f"data preview: {preview}")
    if lead and recipe.data.source == "folder" and any(s in recipe.run.stages for s in ("gan", "decompose", "encode")):
        say(report_data(recipe, run_dir))
    side_job = _start_side_decompose(recipe, run_dir, ctx, say) if lead and not side else None
    try:
        return _run_stages(recipe, run_dir, ctx, longer, lead, say, note, side_job)
    finally:
        if side_job is not None:
            side_job.stop()


def _run_stages(recipe: Recipe, run_dir: Path, ctx: StageContext, longer: list[str], lead: bool,
                say: Callable[..., None], note: Callable[..., None], side_job: SideDecompose | None) -> dict[str, str]:
    functions = stage_functions()
    status: dict[str, str] = {}
    order = [s for s in STAGES if s in recipe.run.stages]
    i = -1
    while i + 1 < len(order):
        i += 1
        order = stage_order(order, i, side_job is not None and not side_job.finished())
        stage = order[i]
        if not lead and stage != "gan":
            break
        if stage == "decompose" and side_job is not None:
            import torch

            if not side_job.finished():
                say(f"[decompose] waiting for it to finish beside gan (log {side_job.log_path})")
            side_job.wait()
            torch.set_num_threads(side_job.total_threads)
            rec = read_json(run_dir / "decompose" / "DONE.json")
            say(f"[decompose] done beside gan in {rec['seconds']:.0f} s")
            status[stage] = "done"
            continue
        done = run_dir / stage / "DONE.json"
        if done.exists() and lead:
            rec = read_json(done)
            if stage in longer:
                key = f"{stage}.{LENGTH_KEYS[stage]}"
                say(f"[{stage}] {key} grew to {_get(to_dict(recipe), key)}: continuing from its last checkpoint")
                done.unlink()
            elif "inputs" in rec and _still_inputs(rec["inputs"], recipe, stage) != input_hashes(run_dir, stage, recipe):
                changed = sorted(set(_still_inputs(rec["inputs"], recipe, stage).items()) ^ set(input_hashes(run_dir, stage, recipe).items()))
                say(f"[{stage}] its inputs changed since it finished ({', '.join(sorted({c[0] for c in changed}))}): "
                    f"running it again; the old results are in {stage}.previous/")
                _set_aside(run_dir / stage)
        if done.exists():
            say(f"[{stage}] finished earlier ({done}); skipping")
            status[stage] = "skipped"
            note(event="skip", stage=stage, time=time.time())
            continue
        (run_dir / stage).mkdir(parents=True, exist_ok=True)
        say(f"[{stage}] starting")
        note(event="start", stage=stage, time=time.time())
        t0 = time.time()
        try:
            outputs = functions[stage](ctx)
        except BaseException as e:
            note(event="failed", stage=stage, error=f"{type(e).__name__}: {e}", time=time.time())
            raise
        seconds = time.time() - t0
        if lead:
            write_json(done, {"stage": stage, "seconds": seconds, "finished": time.time(), "outputs": outputs,
                              "inputs": input_hashes(run_dir, stage, recipe)})
        note(event="done", stage=stage, seconds=seconds, outputs=outputs, time=time.time())
        say(f"[{stage}] done in {seconds:.0f} s")
        status[stage] = "done"
    return status


def stage_order(order: list[str], i: int, side_running: bool) -> list[str]:
    """The stages to run, given that order[:i] are done: with decompose next and still training in its side
    process, a later encode (it reads only the generator) moves ahead of it, so that the main process trains the
    encoder instead of waiting (tiny recipe: decompose's 4500 steps end after the gan stage)."""
    if side_running and order[i] == "decompose" and "encode" in order[i + 1:]:
        rest = [s for s in order[i:] if s != "encode"]
        return order[:i] + ["encode"] + rest
    return order


def _side_main(argv: list[str]) -> None:
    """`python -m facedis_aug.pipeline --side-decompose RUN`: the decompose stage of RUN's own recipe."""
    from .recipe import load_recipe

    if len(argv) != 2 or argv[0] != "--side-decompose":
        raise SystemExit("usage: python -m facedis_aug.pipeline --side-decompose RUN_DIR (started by run_pipeline)")
    run_dir = Path(argv[1])
    run_pipeline(load_recipe(run_dir / "recipe.yaml", ["run.stages=[decompose]"]), run_dir, side=True)


if __name__ == "__main__":
    import sys

    _side_main(sys.argv[1:])

"""One training loop for every task: `fit(task, recipe, out)`.

A task says what is trained (build), on what (batch), towards what (losses), how it is judged
(validate) and what it leaves behind (export); `fit` owns the rest, once: optimisers and the
learning-rate schedule, bf16 autocast, gradient clipping, compiled forward passes on CUDA,
data parallelism under `torchrun` (the global batch split over the processes), progress,
a log of validation points, a time or step budget, and one checkpoint format.

The checkpoint (`OUT/checkpoint.pt`, written atomically every `checkpoint_minutes` and at the
end) holds the model, every optimiser, the step, the recipe, the task and its configuration,
the record of runs and validations, and the code version. The batch of step s is drawn from a
generator seeded by (seed, s) and the step's noise likewise, so the data position is the step
and a killed run resumed from its last checkpoint continues exactly as it would have run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

FORMAT = 1  # of checkpoint.pt
Group = tuple[list[nn.Parameter], float]
Groups = Group | list[Group]


@dataclass
class Recipe:
    """How long and how fast; the same fields for every task (a task ignores what it lacks)."""

    steps: int = 10_000  # the schedule's length (the lr decays at decay_at of it)
    batch: int = 8  # the global batch (split over torchrun's processes)
    crop: int = 256
    lr: float = 1e-4
    decay_at: float = 0.85  # "step": lr x 0.1 after this fraction of the steps (or minutes)
    schedule: str = "step"  # or "cosine": lr x (1 + cos(pi * fraction)) / 2
    warmup: int = 0  # steps of a linear rise to the full rate at the start
    bf16: bool = True  # autocast; tasks keep rates and losses in float32
    clip: float | None = 1.0  # gradient norm of the main optimiser's parameters
    validate_every: int = 0  # steps between validation points (0: at the end only)
    checkpoint_minutes: float = 5.0
    seed: int = 0
    compile: bool | None = None  # torch.compile the forward pass; None: on CUDA only


class Task:
    """The parts of one training. Subclasses override what they need."""

    name = "task"
    data_keys: tuple[str, ...] = ("data",)  # config keys a start checkpoint may differ in
    record: dict | None = None  # fit's record (runs, validation), set before export
    recipe: Recipe | None = None  # the run's recipe, set before build

    def config(self) -> dict[str, Any]:
        """What the task was built with: a resumed run must be the same task."""
        return {}

    def build(self, device: str) -> nn.Module:
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> dict[str, Groups]:
        """{optimiser name: (parameters, lr scale), or a list of them (one optimiser, several
        rates)}; default: every trainable parameter in one optimiser."""
        return {"main": ([p for p in model.parameters() if p.requires_grad], 1.0)}

    def extra_state(self) -> dict:
        """What the task itself must carry across a resume (saved in the checkpoint)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def ddp_ignore(self, model: nn.Module) -> list[str]:
        """Parameters DDP must not average (trained by a loss of their own, the same in every
        process, such as the entropy bottleneck's quantiles)."""
        return []

    def batch(self, step: int, gen: torch.Generator, recipe: Recipe, device: str) -> Any:
        """The global batch of `step`, drawn from `gen` only (seeded by the loop)."""
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any, frac: float
               ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """({optimiser name: loss}, metrics for the progress bar)."""
        raise NotImplementedError

    def validate(self, model: nn.Module, device: str) -> dict[str, float]:
        return {}

    def score(self, point: dict[str, float]) -> float | None:
        """A validation point's cost, lower is better (the export keeps the best point's
        weights); None: the task does not rank its points (the last weights are exported)."""
        return None

    def trained_start(self) -> bool:
        """Whether the run starts from trained weights (a fine-tune): then its first
        validation point competes with the trained ones, and a run that beats it nowhere
        exports nothing without `force`."""
        return False

    def export(self, model: nn.Module, out: Path) -> Path | None:
        """What the run leaves (a model folder, weights); None: the checkpoint only."""
        return None


def unwrap(model: nn.Module) -> nn.Module:
    """The task's own module under what `fit` wraps it in (torch.compile, DDP)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def steps_trained(record: dict | None) -> int:
    """The steps every run of a record trained (its exports count them)."""
    return sum(r.get("end_step", 0) - r["start_step"] for r in (record or {}).get("runs", []))


def distributed(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process; starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def code_version() -> str:
    """aecodec's version, and the git commit when run from a checkout."""
    import subprocess

    from aecodec import __version__

    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{__version__}+{rev}" if rev else __version__


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def shard(batch: Any, rank: int, world: int) -> Any:
    """This process's share of a global batch (tensors split along dim 0)."""
    if world == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0] // world
        return batch[rank * n:(rank + 1) * n]
    if isinstance(batch, tuple | list):
        return type(batch)(shard(b, rank, world) for b in batch)
    if isinstance(batch, dict):
        return {k: shard(v, rank, world) for k, v in batch.items()}
    return batch


class NoGain(ValueError):
    """A fine-tune whose every validated point is worse than its start: nothing exported."""


def load_checkpoint(path: Path, device: str = "cpu") -> dict:
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of this training loop")
    return state


def _groups(value: Groups) -> list[Group]:
    return value if isinstance(value, list) else [value]


def lr_factor(recipe: Recipe, frac: float, step: int = 0) -> float:
    """The schedule at a fraction of the run (and its warm-up at `step`)."""
    rise = min(1.0, (step + 1) / recipe.warmup) if recipe.warmup else 1.0
    if recipe.schedule == "cosine":
        return rise * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    if recipe.schedule != "step":
        raise ValueError(f"schedule {recipe.schedule!r}: expected step or cosine")
    return rise * (0.1 if frac >= recipe.decay_at else 1.0)


def fit(task: Task, recipe: Recipe, out: Path, device: str = "cpu", resume: bool = True,
        minutes: float | None = None, budget_steps: int | None = None,
        log: Callable[[str], None] = print, start: Path | None = None,
        reserve_s: float = 0.0, force: bool = False) -> dict:
    """Train `task` into `out` (resuming `out/checkpoint.pt` when there is one, else `start`,
    a checkpoint of this loop kept elsewhere); stops at the schedule's end, after `minutes`
    or after `budget_steps` steps of this run. Returns the record (runs, validation points,
    the best point, export).

    `minutes` is the whole call's budget: loading, the validations and `reserve_s` seconds
    left for what the caller does afterwards (an export) are inside it, so training stops
    when one more step would not leave time for the final validation and the reserve.

    A validation point at the start, always (the baseline), and at the end. When the task
    ranks its points (`Task.score`), the export is of the best point's weights; when the
    run started from trained weights (`Task.trained_start`) and no trained point beat the
    start, nothing is exported and `NoGain` is raised (the checkpoint is kept), unless
    `force`, which exports the last weights."""
    t_start = time.time()
    rank, world, device = distributed(device)
    if recipe.batch % world:
        raise ValueError(f"batch {recipe.batch} does not split over {world} processes")
    ckpt = out / "checkpoint.pt"
    torch.manual_seed(recipe.seed)  # the same initial model in every process
    task.recipe = recipe
    model = task.build(device)  # bad data or weights fail here, before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    groups = {k: _groups(v) for k, v in task.param_groups(model).items()}
    opts = {k: torch.optim.Adam([{"params": ps, "lr": recipe.lr * s} for ps, s in gs])
            for k, gs in groups.items()}
    step, record = 0, {"runs": [], "validation": []}
    best_model: dict | None = None  # the best point's weights, while they are not the model's
    source = ckpt if resume and ckpt.is_file() else start
    if source is not None:
        state = load_checkpoint(source, device)
        mine, theirs = _plain(task.config()), state["task_config"]
        if source != ckpt:  # a run elsewhere: the same model, perhaps on other data
            mine, theirs = ({k: v for k, v in c.items() if k not in task.data_keys}
                            for c in (mine, theirs))
        if state["task"] != task.name or theirs != mine:
            raise ValueError(f"{source} is a checkpoint of another task or configuration "
                             f"({state['task']}); use another --out")
        model.load_state_dict(state["model"])
        for k, opt in opts.items():
            opt.load_state_dict(state["optimisers"][k])
        step, record = int(state["step"]), state["record"]
        best_model = state.get("best_model")
        if best_model is None and record.get("best", {}).get("step") == step:
            best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        task.load_extra_state(state.get("task_state", {}))
        log(f"resumed {task.name} at step {step} from {source}")
    forward: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        DDP._set_params_and_buffers_to_ignore_for_model(model, task.ddp_ignore(model))
        forward = DDP(model)
    if recipe.compile if recipe.compile is not None else device.startswith("cuda"):
        forward = torch.compile(forward)
    run = {"hardware": hardware(device), "device": device, "processes": world,
           "start_step": step, "recipe": dataclasses.asdict(recipe), "torch": torch.__version__,
           "code": code_version(), "seconds": 0.0}
    record["runs"].append(run)
    origin = record["runs"][0]["start_step"]  # the step of the weights the run started from
    start_counts = task.trained_start()
    val_seconds = 0.0  # what the last validation took: the final one is budgeted as much

    def save() -> None:
        if rank == 0:
            kept = best_model if record.get("best", {}).get("step") != step else None
            save_atomic({"format": FORMAT, "task": task.name, "task_config": _plain(task.config()),
                         "recipe": dataclasses.asdict(recipe), "step": step,
                         "model": model.state_dict(),
                         "optimisers": {k: o.state_dict() for k, o in opts.items()},
                         "task_state": task.extra_state(), "record": record,
                         "best_model": kept, "code": run["code"]}, ckpt)

    def validate() -> None:
        nonlocal best_model, val_seconds
        if rank == 0:
            t = time.time()
            model.eval()
            with torch.no_grad():
                point = {"step": step, **task.validate(model, device)}
            model.train()
            val_seconds = time.time() - t
            record["validation"].append(point)
            with (out / "log.jsonl").open("a") as f:
                f.write(json.dumps(point) + "\n")
            score = task.score(point)
            best = record.get("best")
            if score is not None and (step > origin or start_counts) and (
                    best is None or score < best["score"]):
                record["best"] = {"step": step, "score": score}
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}

    if step == 0 and not any(p["step"] == 0 for p in record["validation"]):
        validate()  # where a fresh run starts from: the baseline it must beat
    budget = None if minutes is None else minutes * 60
    t0 = last = time.time()
    first, step_seconds, short = step, 0.0, False
    bar = _bar(recipe.steps, step, budget, rank)
    autocast_device = device.split(":")[0]
    while step < recipe.steps:
        if budget_steps is not None and step - first >= budget_steps:
            break
        frac = step / recipe.steps
        if budget is not None:  # the schedule follows the clock, within what training may use
            now = time.time()
            used, trained, tail, last_step = agreed(
                [now - t_start, now - t0, val_seconds + reserve_s, step_seconds], device, world)
            if used + last_step + tail > budget:
                if step > first:
                    break
                short = True  # one step all the same, and said below
            frac = max(frac, trained / max(budget - tail - (used - trained), 1e-9))
            bar.update(min(used, budget) - bar.n)
        t_step = time.time()
        factor = lr_factor(recipe, frac, step)
        for k, opt in opts.items():
            for g, (_, scale) in zip(opt.param_groups, groups[k], strict=True):
                g["lr"] = recipe.lr * scale * factor
        gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        batch = shard(task.batch(step, gen, recipe, device), rank, world)
        torch.manual_seed(recipe.seed * 7_919 + 1_000 * rank + step)  # the step's own noise
        with torch.autocast(device_type=autocast_device, dtype=torch.bfloat16,
                            enabled=recipe.bf16):
            losses, metrics = task.losses(forward, batch, frac)
        for k, opt in opts.items():  # each optimiser steps on its own loss, in order
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            losses[k].backward()
            if recipe.clip and k == "main":
                torch.nn.utils.clip_grad_norm_([p for ps, _ in groups[k] for p in ps],
                                               recipe.clip)
            opt.step()
        step += 1
        step_seconds = time.time() - t_step
        if budget is None:
            bar.update(1)
        if step % 10 == 0 or budget is not None:
            bar.set_postfix({"step": step} | {k: f"{v:.4g}" for k, v in metrics.items()},
                            refresh=False)
        if recipe.validate_every and step % recipe.validate_every == 0:
            validate()
        now = time.time()
        if now - last >= recipe.checkpoint_minutes * 60:
            run["seconds"], run["end_step"] = now - t0, step
            save()
            last = now
    bar.close()
    run["seconds"], run["end_step"] = time.time() - t0, step
    if short:
        log(f"Warning: --minutes {minutes:g} is less than the run needs besides training "
            f"(loading and validating took {t0 - t_start:.0f} s, the end keeps "
            f"{val_seconds + reserve_s:.0f} s for the last validation and the export): one "
            "step trained; give more minutes")
    if not record["validation"] or record["validation"][-1]["step"] != step:
        validate()
    save()
    task.record = record  # the runs and validation points, for what the export writes
    refused = None
    if rank == 0:
        exported, refused = _export_best(task, model, out, record, best_model, step, origin,
                                         force, log)
        if exported is not None:
            record["export"] = str(exported)
            save()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if refused is not None:
        raise refused
    return record


def _bar(steps: int, step: int, budget: float | None, rank: int) -> tqdm:
    """Steps of the schedule, or seconds of the time budget when there is one."""
    if budget is None:
        return tqdm(total=steps, initial=step, dynamic_ncols=True, mininterval=5,
                    disable=rank > 0)
    return tqdm(total=round(budget), unit="s", dynamic_ncols=True, mininterval=5,
                disable=rank > 0, bar_format="{l_bar}{bar}| {n:.0f}/{total} s {postfix}")


def _export_best(task: Task, model: nn.Module, out: Path, record: dict,
                 best_model: dict | None, step: int, origin: int, force: bool,
                 log: Callable[[str], None]) -> tuple[Path | None, NoGain | None]:
    """The task's export of the best validated point (rank 0), or the refusal to export."""
    best = record.get("best")
    chosen = step
    if best is not None and best["step"] != step:
        last = task.score(record["validation"][-1])
        if best["step"] == origin and step > origin:  # no trained point beat the start
            start = f"validation cost {best['score']:.5g} at step {origin} (the start), " \
                    f"{last:.5g} at step {step} (the end)"
            if not force:
                return None, NoGain(f"the run made the model worse: {start}; nothing "
                                    "exported (the checkpoint is kept; --force exports the "
                                    "last weights)")
            log(f"Warning: the run made the model worse ({start}); exporting the last "
                "weights as --force asks")
        else:
            log(f"exporting step {best['step']}'s weights, the best validated point "
                f"(cost {best['score']:.5g}; step {step}, the last: {last:.5g})")
            chosen = best["step"]
            import copy

            model = copy.deepcopy(model)
            model.load_state_dict(best_model)
    record["exported_step"] = chosen
    task.record = record
    return task.export(model, out), None


def agreed(values: list[float], device: str, world: int) -> list[float]:
    """Rank 0's values in every process, so time-boxed runs decay and stop together."""
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return [float(v) for v in t.tolist()]


def _plain(obj: Any) -> Any:
    """A configuration as plain JSON values (paths as strings), comparable after a reload."""
    return json.loads(json.dumps(obj, default=str))

"""``Trainer``: Detectron2's DefaultTrainer on Lightning Fabric.

Builds the model, one optimizer and LR scheduler per name of the model's
``optimizer_groups()`` (SOLVER for "main", ``SOLVER.<NAME>`` for the others), the training
step object (:mod:`vps_d2.solver.train_step`), loaders, checkpointer and hooks from a
config; ``resume_or_load`` then ``train()``. Fabric owns devices, DDP and mixed precision:
the model and every optimizer go through one ``fabric.setup``.

Checkpoints hold ``model``, ``optimizer`` / ``scheduler`` (the "main" ones, the layout of
single-optimizer runs and of Detectron2), ``optimizer_<name>`` / ``scheduler_<name>`` for
the others, ``trainer`` (iteration and the hooks' state, e.g. the best checkpoint) and
``iteration``.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections import OrderedDict
from contextlib import nullcontext

import torch

from vps_d2.checkpoint import VPSCheckpointer, load_model_weights
from vps_d2.data import build_test_loader, build_train_loader
from vps_d2.data.datasets import is_validation_split
from vps_d2.evaluation import (
    build_evaluator,
    format_vps_results,
    inference_on_dataset,
    print_csv_format,
    worst_cases_folder,
)
from vps_d2.modeling import build_model, clip_contract, resolve_clip_config
from vps_d2.solver import build_lr_scheduler, build_optimizer, solver_section
from vps_d2.solver.train_step import NonFiniteLossError, OptimizerSet, build_train_step
from vps_d2.utils import comm
from vps_d2.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardWriter,
    dump_json_atomic,
)
from vps_d2.visualization import draw_worst_cases

from . import hooks
from .launch import accelerator_from_cfg, get_fabric, make_fabric, precision_from_cfg
from .preemption import PreemptionCheckpointer
from .train_loop import TrainerBase, put_step_metrics

__all__ = [
    "Trainer",
    "best_checkpoint_target",
    "build_optimizers",
    "check_optimizer_groups",
    "make_checkpointer",
    "make_optimizer_set",
    "optimizer_checkpointables",
    "report_test_results",
    "run_train_step",
    "setup_optimization",
    "test_splits",
    "train_or_evaluate",
]

logger = logging.getLogger(__name__)


def check_optimizer_groups(model: torch.nn.Module, groups: dict) -> None:
    """Every trainable parameter of ``model`` in exactly one group, "main" among the names."""
    if "main" not in groups:
        raise ValueError(
            f"{type(model).__name__}.optimizer_groups() must name a 'main' group, "
            f"got {list(groups)}"
        )
    owner: dict[int, str] = {}
    for name, params in groups.items():
        for p in params:
            if id(p) in owner:
                raise ValueError(
                    f"{type(model).__name__}.optimizer_groups(): a parameter is in "
                    f"both {owner[id(p)]!r} and {name!r}"
                )
            owner[id(p)] = name
    names = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in owner]
    if names:
        raise ValueError(
            f"{type(model).__name__}.optimizer_groups() leaves trainable "
            f"parameters without an optimizer: {names[:5]}"
        )


def best_checkpoint_target(cfg) -> tuple[str, str] | None:
    """``(dataset, metric)`` that model_best.pth tracks: TEST.VPS.BEST_DATASET /
    BEST_METRIC; the dataset defaults to the first validation split of DATASETS.TEST
    (``holdout_val``, which the set-up adds from DATASETS.HOLDOUT_VAL, or a ``*_val``).
    None (no model_best.pth, said once) when there is none. A test split named in
    TEST.VPS.BEST_DATASET is used with a loud warning: its numbers are then tuned on it."""
    dataset = cfg.TEST.VPS.BEST_DATASET or next(
        (name for name in cfg.DATASETS.TEST if is_validation_split(name)), ""
    )
    if not dataset:
        logger.warning(
            "No validation split in DATASETS.TEST: model_best.pth is not kept (model "
            "selection never uses a test split unless TEST.VPS.BEST_DATASET names it). "
            "DATASETS.HOLDOUT_VAL 0.2 holds out 20%% of the training videos for it"
        )
        return None
    if dataset not in cfg.DATASETS.TEST:
        raise KeyError(f"TEST.VPS.BEST_DATASET {dataset!r} is not in DATASETS.TEST")
    if not is_validation_split(dataset):
        logger.warning(
            "MODEL SELECTION ON A TEST SPLIT: model_best.pth is chosen on %r "
            "(TEST.VPS.BEST_DATASET), so its %s on %r is tuned on that test split; report "
            "model_final.pth's numbers, or select on a validation split (DATASETS.HOLDOUT_VAL)",
            dataset,
            cfg.TEST.VPS.BEST_METRIC,
            dataset,
        )
    return dataset, cfg.TEST.VPS.BEST_METRIC


def build_optimizers(cfg, model: torch.nn.Module) -> tuple[dict, dict]:
    """One optimizer and LR scheduler per group of ``model.optimizer_groups()`` ("main" reads
    SOLVER, another name SOLVER.<NAME>). Returns ``({name: optimizer}, {name: scheduler})``."""
    groups = model.optimizer_groups()
    check_optimizer_groups(model, groups)
    optimizers = {
        name: build_optimizer(cfg, model, params=params, name=name)
        for name, params in groups.items()
    }
    schedulers = {name: build_lr_scheduler(cfg, opt, name=name) for name, opt in optimizers.items()}
    return optimizers, schedulers


def setup_optimization(cfg, model: torch.nn.Module, fabric) -> tuple:
    """:func:`build_optimizers`, then the model and every optimizer through one
    ``fabric.setup``.

    Returns:
        ``(wrapped_model, OptimizerSet, {name: raw optimizer}, {name: LR scheduler})``.
    """
    optimizers, schedulers = build_optimizers(cfg, model)
    wrapped = fabric.setup(model, *optimizers.values())
    optim = make_optimizer_set(cfg, fabric, wrapped[0], dict(zip(optimizers, wrapped[1:])))
    return wrapped[0], optim, optimizers, schedulers


def make_optimizer_set(cfg, backend, model: torch.nn.Module, optimizers: dict) -> OptimizerSet:
    """The :class:`OptimizerSet` of ``optimizers`` (``{name: optimizer}``) on ``backend``
    (Fabric, or a plain-PyTorch stand-in), with each name's CLIP_GRADIENTS section and
    SOLVER.CHECK_FINITE_LOSS."""
    clip = {name: solver_section(cfg, name)[0].CLIP_GRADIENTS for name in optimizers}
    return OptimizerSet(backend, model, optimizers, clip, check_finite=cfg.SOLVER.CHECK_FINITE_LOSS)


def make_checkpointer(
    checkpointer_cls, model, cfg, trainer, optimizers: dict, schedulers: dict, **kwargs
):
    """``checkpointer_cls(model, OUTPUT_DIR, trainer=<weak proxy>, **kwargs)`` saving the named
    optimizers and schedulers too (:func:`optimizer_checkpointables`)."""
    entries = optimizer_checkpointables(optimizers, schedulers)
    return checkpointer_cls(
        model, cfg.OUTPUT_DIR, trainer=weakref.proxy(trainer), **kwargs, **entries
    )


def run_train_step(train_step, model, data, optim: OptimizerSet, seed: int, iteration: int):
    """One training step: with ``seed`` >= 0 the torch seed of ``iteration`` (model-side
    randomness, dropout or noise, depends only on the iteration and the rank, so a resumed
    run reproduces an uninterrupted one), then ``train_step(model, data, optim)``; returns
    its ``{optimizer name: {loss name: tensor}}``."""
    if seed >= 0:
        torch.manual_seed(seed * 1_000_003 + iteration * 101 + comm.get_rank())
    optim.iteration = iteration
    return train_step(model, data, optim)


def report_test_results(cfg, results: dict, print_csv=print_csv_format) -> None:
    """On the main process: ``results`` printed (``print_csv``) and logged, written to
    OUTPUT_DIR/results.json, and the worst frames each evaluation kept
    (TEST.VPS.DUMP_WORST_CASES) drawn in OUTPUT_DIR/worst_cases/<dataset>."""
    if not comm.is_main_process() or not results:
        return
    print_csv(results)
    logger.info("Evaluation results:\n%s", format_vps_results(results))
    if not cfg.OUTPUT_DIR:
        return
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    dump_json_atomic(os.path.join(cfg.OUTPUT_DIR, "results.json"), results)
    if cfg.TEST.VPS.DUMP_WORST_CASES > 0:
        for name in cfg.DATASETS.TEST:
            draw_worst_cases(worst_cases_folder(cfg.OUTPUT_DIR, name))


def test_splits(
    cfg,
    model,
    evaluators,
    build_test_loader,
    build_evaluator,
    inference,
    print_csv=print_csv_format,
) -> OrderedDict:
    """Every DATASETS.TEST split through ``inference(model, loader, evaluator)`` (loaders and
    evaluators from the given builders unless ``evaluators`` lists one per split), then
    :func:`report_test_results`. Returns ``{task: {metric: value}}``."""
    results: OrderedDict = OrderedDict()
    for idx, name in enumerate(cfg.DATASETS.TEST):
        loader = build_test_loader(cfg, name)
        evaluator = (
            evaluators[idx]
            if evaluators is not None
            else build_evaluator(cfg, name, cfg.OUTPUT_DIR)
        )
        results.update(inference(model, loader, evaluator))
    report_test_results(cfg, results, print_csv)
    return results


def optimizer_checkpointables(optimizers: dict, schedulers: dict) -> dict:
    """Checkpoint entries of named optimizers and their LR schedulers: "optimizer" and
    "scheduler" for "main" (the single-optimizer names, so old checkpoints load), and
    "optimizer_<name>" / "scheduler_<name>" for the others."""
    out: dict = {}
    for name in optimizers:
        suffix = "" if name == "main" else f"_{name}"
        out[f"optimizer{suffix}"] = optimizers[name]
        out[f"scheduler{suffix}"] = schedulers[name]
    return out


class Trainer(TrainerBase):
    """Train ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.DATASETS.TRAIN``.

    Per iteration: one batch of clips (a list of mapper dicts), then the training step
    (default: ``losses = model(batch)``, the sum back-propagated by Fabric (AMP-aware),
    gradients optionally clipped, the optimizer stepped), then the hooks (LR schedulers,
    checkpoints, evaluation, writers). A NaN/Inf loss stops training with an error naming
    the iteration and the loss term.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        # INPUT.CLIP.* checked against the model's clip contract (setup_cfg already did;
        # a config built in code gets its unset values filled in a copy here).
        cfg = resolve_clip_config(cfg)
        self.cfg = cfg
        fabric = get_fabric()
        if fabric is None:  # used outside launch(): one process on MODEL.DEVICE
            acc = accelerator_from_cfg(cfg)
            fabric = make_fabric(1, 1, acc, precision_from_cfg(cfg, acc))
        self.fabric = fabric
        model = self.build_model(cfg)
        self.model, self.optim, optimizers, self.schedulers = setup_optimization(cfg, model, fabric)
        # Raw module and optimizers: checkpoints, streaming evaluation, the schedulers.
        self.model_raw, self.optimizers_raw = model, optimizers
        self.optim.after_backward = lambda name: self.after_backward()
        self.train_step = build_train_step(cfg, model)
        self.checkpointer = make_checkpointer(
            VPSCheckpointer,
            self.model_raw,
            cfg,
            self,
            optimizers,
            self.schedulers,
            save_to_disk=comm.is_main_process(),
            metadata={"meta_architecture": cfg.MODEL.META_ARCHITECTURE},
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._data_iter = None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ compatibility
    @property
    def optimizer(self):
        """The "main" optimizer (Fabric-wrapped), as a single-optimizer trainer has."""
        return self.optim["main"]

    @property
    def scheduler(self):
        return self.schedulers["main"]

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        model = build_model(cfg)
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model %s: %.2f M parameters", type(model).__name__, n / 1e6)
        return model

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        """Training clips of INPUT.CLIP.* as resolved against the model's clip contract."""
        return build_train_loader(resolve_clip_config(cfg), start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """Batches of ``test_frames_per_batch`` consecutive frames of one video (the model's
        clip contract)."""
        per_batch = clip_contract(cfg).test_frames_per_batch
        return build_test_loader(cfg, dataset_name, frames_per_batch=per_batch)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_dir: str | None = None):
        return build_evaluator(cfg, dataset_name, output_dir)

    def build_hooks(self) -> list:
        cfg = self.cfg
        ret: list = [
            hooks.IterationTimer(),
            hooks.LRScheduler(self.optimizers_raw, self.schedulers),
            hooks.PeriodicCheckpointer(
                self.checkpointer,
                cfg.SOLVER.CHECKPOINT_PERIOD,
                max_iter=cfg.SOLVER.MAX_ITER,
                max_to_keep=cfg.SOLVER.MAX_TO_KEEP or None,
            ),
        ]
        if cfg.DATASETS.TEST:
            target = best_checkpoint_target(cfg)
            best = hooks.BestCheckpointer(self.checkpointer, *target) if target else None
            run_eval = lambda: self.test(self.cfg, self.model_raw)  # noqa: E731
            if best is not None:
                ret.append(best)
            record = os.path.join(cfg.OUTPUT_DIR, "last_eval.json") if cfg.OUTPUT_DIR else ""
            callbacks = [best] if best is not None else []
            self._eval_hook = hooks.EvalHook(cfg.TEST.EVAL_PERIOD, run_eval, callbacks, record)
            ret.append(self._eval_hook)
        if comm.is_main_process():
            writers = [
                CommonMetricPrinter(self.max_iter),
                JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json")),
                TensorboardWriter(cfg.OUTPUT_DIR),
            ]
            ret.append(hooks.PeriodicWriter(writers, period=20))
            ret.append(hooks.ProgressBar())
        # last: on SIGTERM / SIGUSR1 its checkpoint holds every hook's state of the iteration
        ret.append(PreemptionCheckpointer(self.checkpointer))
        return ret

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: bool = True) -> None:
        """``resume`` and OUTPUT_DIR/last_checkpoint exists: continue from it (model,
        optimizers, schedulers, trainer and hook state, iteration). Otherwise load
        MODEL.WEIGHTS (model only) if set."""
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{os.path.join(self.cfg.OUTPUT_DIR, 'last_checkpoint')} names {path!r}, "
                    "which does not exist: remove last_checkpoint to start afresh, or point it "
                    "at an existing checkpoint"
                )
            ckpt = self.checkpointer.load(path)
            self.start_iter = int(ckpt.get("iteration", -1)) + 1
            logger.info("Resumed from %s at iteration %d", path, self.start_iter)
        elif self.cfg.MODEL.WEIGHTS:
            # the fraction loaded is logged; below MODEL.WEIGHTS_MIN_LOADED it is an error
            self.checkpointer.load_weights(
                self.cfg.MODEL.WEIGHTS, float(self.cfg.MODEL.WEIGHTS_MIN_LOADED)
            )
            self.start_iter = 0
        else:
            self.start_iter = 0

    # ------------------------------------------------------------------ loop
    def train(self) -> OrderedDict | None:
        if self.start_iter >= self.max_iter:
            logger.info(
                "Nothing to train: start iteration %d >= SOLVER.MAX_ITER %d",
                self.start_iter,
                self.max_iter,
            )
            hook = getattr(self, "_eval_hook", None)
            if hook is not None and not hook.final_done(hook._record, self.max_iter):
                logger.info("The final evaluation did not finish: running it now")
                with EventStorage(self.max_iter) as self.storage:
                    hook.run_final(self.max_iter)
                    if comm.is_main_process():  # like a final evaluation after training
                        out = self.cfg.OUTPUT_DIR
                        for writer in (
                            JSONWriter(os.path.join(out, "metrics.json")),
                            TensorboardWriter(out),
                        ):
                            writer.write()
                            writer.close()
            return None
        self._data_iter = iter(self.build_train_loader(self.cfg, start_iter=self.start_iter))
        self.model.train()
        try:
            super().train(self.start_iter, self.max_iter)
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e} {self._good_checkpoint_sentence()}") from None
        return None

    def _good_checkpoint_sentence(self) -> str:
        """Which saved checkpoint a user can resume from (only finite weights are saved)."""
        if self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            if os.path.isfile(path):
                it = torch.load(path, map_location="cpu", weights_only=False).get("iteration")
                return (
                    f"The last good checkpoint is {path} (iteration {it}): --resume "
                    "continues from it (lower the learning rate first)."
                )
        return "No checkpoint was saved before: there is nothing to resume from."

    def run_step(self) -> None:
        t0 = time.perf_counter()
        data = next(self._data_iter)
        data_time = time.perf_counter() - t0
        losses = run_train_step(
            self.train_step, self.model, data, self.optim, self.cfg.SEED, self.iter
        )
        put_step_metrics(losses, data_time)

    # ------------------------------------------------------------------ test
    @classmethod
    def test(cls, cfg, model, evaluators=None) -> OrderedDict:
        """Run every DATASETS.TEST split through ``model`` (per-video streams) and evaluate
        (:func:`test_splits`, under Fabric's autocast when launched)."""
        fabric = get_fabric()

        def inference(model, loader, evaluator):
            with fabric.autocast() if fabric is not None else nullcontext():
                return inference_on_dataset(model, loader, evaluator)

        return test_splits(
            cfg, model, evaluators, cls.build_test_loader, cls.build_evaluator, inference
        )


def train_or_evaluate(trainer_cls, cfg, args):
    """What ``tools/train_net.py`` runs in each process once the config is set up:
    ``--eval-only`` -> build the model, load MODEL.WEIGHTS strictly, ``trainer_cls.test``;
    else ``trainer_cls(cfg)``, ``resume_or_load(args.resume)``, ``train()``. Used by both
    engines (``trainer_cls`` = this Trainer or vps_d2.d2.Trainer)."""
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        load_model_weights(model, cfg.MODEL.WEIGHTS)
        return trainer_cls.test(cfg, model)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()

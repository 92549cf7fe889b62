"""``python -m an_gan check`` (:mod:`common.training.check`): what the check knows about the GAN task: its splits,
the paper's ImageNet numbers, the evaluators' inputs and an estimate of a large evaluation from one timed batch."""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import torch

from an_gan.evaluation import GenerationEvaluator
from an_gan.noise import generate_batch, pack_batches
from an_gan.reference_data import eval_mode
from common.data.class_images import ClassImageDataModule
from common.metrics.generation.features import INCEPTION_WEIGHTS_URL, extract
from common.training.check import NodeFile, Report, TaskCheck

__all__ = ["GANCheck"]

INCEPTION_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[-1]  # torch-fidelity's file name


class GANCheck(TaskCheck):
    """What ``python -m an_gan check`` knows about this task: splits, the paper's ImageNet numbers, the evaluators."""

    task = "an_gan"
    paper_batch = 256  # Section 5.1
    prepare_hint = "python -m an_gan prepare (docs/data.md)"
    #: ILSVRC-2012: training and validation images, classes (the paper's Table 1 data)
    IMAGENET: ClassVar[dict[str, int]] = {"train": 1_281_167, "val": 50_000, "classes": 1000}
    #: images of one validate / test (set by :meth:`evaluation`, read by :meth:`estimate`)
    images: ClassVar[dict[str, int]] = {}

    def splits(self, datamodule: ClassImageDataModule) -> dict[str, Any]:
        """The DataModule's train / val / test datasets."""
        return {split: datamodule.dataset(split) for split in ("train", "val", "test")}

    def expected(self, datamodule: ClassImageDataModule) -> dict[str, int] | None:
        """ImageNet's counts for the ImageNet DataModules (prepared or not)."""
        return self.IMAGENET if "ImageNet" in type(datamodule).__name__ else None

    def num_classes(self, datamodule: ClassImageDataModule) -> int | None:
        """The DataModule's class count."""
        return datamodule.num_classes

    def node_files(self, cli: Any) -> list[NodeFile]:
        """The Inception weights of each evaluator that uses Inception: a configured ``inception_weights`` path must
        exist on every node (else ``fit`` stops at start-up there); without one, torch-fidelity's cache is looked
        for (absent: ``fit`` downloads the file at start-up, and stops on a node without network)."""
        from common.metrics.generation.features import InceptionFeatureExtractor, default_inception_weights_path

        files = []
        for stage, name in (("validate", "val_evaluator"), ("test", "test_evaluator")):
            evaluator: GenerationEvaluator | None = getattr(cli.model, name)
            if evaluator is None or evaluator.extractor_name != InceptionFeatureExtractor.extractor_name:
                continue
            flag = f"--model.{name}.init_args.inception_weights"
            given = evaluator.inception_weights
            files.append(
                NodeFile(
                    name=f"{name} features",
                    label="Inception weights",
                    path=str(given if given is not None else default_inception_weights_path()),
                    required=given is not None,
                    absent=f"{stage} and fit download them at start-up (and stop on a node without network)",
                    fix=f"or give {flag} the path of a local copy of {INCEPTION_FILE} on every node",
                )
            )
        return files

    def evaluation(self, report: Report, cli: Any, budget: int) -> dict[str, Any]:
        """Reference statistics of both evaluators (their Inception weights: :meth:`node_files`); images one
        validation / test handles."""
        from common.metrics.generation.cache import reference_cache_path
        from common.metrics.generation.features import InceptionFeatureExtractor

        data, images = cli.datamodule, {}
        for stage, name in (("validate", "val_evaluator"), ("test", "test_evaluator")):
            evaluator: GenerationEvaluator | None = getattr(cli.model, name)
            if evaluator is None:
                report.add("evaluation", f"{name}", "pass", "none configured: nothing evaluated")
                continue
            if evaluator.extractor_name != InceptionFeatureExtractor.extractor_name:
                report.add(
                    "evaluation",
                    f"{name} features",
                    "pass",
                    f"{evaluator.extractor_name} (not Inception: its FID is not comparable to the paper's)",
                )
            plan = evaluator.plan(data.num_classes)
            generated = sum(max(fid, intra) for _, fid, intra in plan)
            key = data.reference_key(evaluator.reference_split, evaluator.reference_num_samples, 0)
            cache = evaluator.reference_cache_dir
            if cache is not None and reference_cache_path(cache, key, evaluator.extractor_name).is_file():
                reference = 0
                report.add("evaluation", f"{name} reference", "pass", f"statistics cached in {cache}")
            else:
                split, count = evaluator.reference_split, evaluator.reference_num_samples
                reference = len(data.reference_indices(split, None, count, 0)) if evaluator.num_samples else 0
                report.add(
                    "evaluation",
                    f"{name} reference",
                    "pass",
                    f"computed at the first {stage}: {reference:,} {split} images"
                    + (f", then cached in {cache}" if cache else " (no reference_cache_dir: every run)"),
                )
            images[stage] = generated + reference
        self.images = images  # this instance's, over the class default
        return images

    def estimate(self, cli: Any, stage: str, device: torch.device) -> dict[str, float] | None:
        """Seconds of one validation / test from one timed batch of the evaluator's own generation and features
        (``generate_batch`` and ``extract``, as :meth:`GenerationEvaluator.run` calls them), times its batches."""
        evaluator: GenerationEvaluator | None = getattr(
            cli.model, "val_evaluator" if stage == "validate" else "test_evaluator"
        )
        if evaluator is None:
            return None
        data, generator = cli.datamodule, cli.model.evaluation_generator()
        plan = evaluator.plan(data.num_classes)
        batches = pack_batches([(c, max(f, i)) for c, f, i in plan], evaluator.batch_size)
        extractor = evaluator.feature_extractor.to(device)
        original = next(generator.parameters()).device
        generator.to(device)
        try:
            with torch.no_grad(), eval_mode(generator):
                for _ in range(2):  # the first call allocates; time the second
                    start = time.perf_counter()
                    extract(extractor, generate_batch(generator, evaluator.seed, device, batches[0]))
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds = time.perf_counter() - start
        finally:
            generator.to(original)
        count = math.ceil(self.images.get(stage, 0) / evaluator.batch_size)
        return {"seconds": seconds * count, "batch_seconds": seconds, "batches": count}

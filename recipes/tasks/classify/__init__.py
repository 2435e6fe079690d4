"""The classification task: 1-D series and 2-D images, standard vs weighted convolution.

``ndwconv train classify`` / ``ndwconv compare classify`` train a registered model
(``vgg16_bn``, ``resnet18``, ``mnist1d_cnn``, ``fcn``, …) on CIFAR-100, MNIST-1D or a UCR
set (``task``, ``data``); scores are in ``metrics``, the comparison's report parts in
``report``. The task is registered under the name ``classify``
(``ndwconv.recipes.tasks``); see docs/recipes/classification.md.

Example:
    >>> from ndwconv.recipes.tasks import get_task
    >>> [m.name for m in get_task("classify").metrics]
    ['accuracy', 'macro_f1']
"""

from __future__ import annotations

from .. import TaskEntry, register_task
from .data import Split, register_dataset, unregister_dataset
from .report import figure, metric_definitions, report_header, report_sections
from .task import (
    METRICS,
    ClassifyTask,
    build_model,
    check_config,
    make_task,
    model_from_description,
)

__all__ = [
    "ENTRY",
    "ClassifyTask",
    "Split",
    "build_model",
    "check_config",
    "make_task",
    "model_from_description",
    "register_dataset",
    "unregister_dataset",
]

ENTRY = register_task(
    TaskEntry(
        name="classify",
        help="classification: CIFAR-100 (VGG, ResNet), MNIST-1D and UCR series (FCN, ResNet)",
        metrics=METRICS,
        make=make_task,
        check_config=check_config,
        build_model=build_model,
        model_from_description=model_from_description,
        default_config="quick-classify",
        data_help="cifar100: the cifar-100-python/ folder or cifar-100-python.tar.gz; ucr: "
        "the UCR archive folder (holding <Name>/) or one set's folder (default: the copies "
        "sktime bundles); mnist1d: none (generated)",
        metric_definitions=metric_definitions,
        report_header=report_header,
        report_sections=report_sections,
        figure=figure,
        item="sample",
    )
)

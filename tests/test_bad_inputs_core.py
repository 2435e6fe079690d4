"""Bad input to the core gets an exception of the right type whose message names the problem.

Each row: an id, a callable that feeds the bad input, the expected exception type, and a
fragment the message must contain (the argument, key, family or value at fault). The
command-line rows give argv and the expected exit code; no traceback reaches stderr.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ndwconv as nw
from ndwconv import Density
from ndwconv.cli import main
from ndwconv.functional import weighted_conv


def spec(text):
    return lambda: Density.from_spec(text)


def layer(density, **kwargs):
    return lambda: nw.WeightedConv2d(1, 1, 3, density=density, **kwargs)


CASES = [
    # JSON specs: unknown, missing, wrong-typed and nested keys
    (
        "json-unknown-key",
        spec('gaussian:{"sigma": [1], "sigmas": 2}'),
        ValueError,
        "'gaussian' density spec: unknown key 'sigmas'",
    ),
    (
        "json-unknown-key-table",
        spec('table:{"values": [0.7], "x": 1}'),
        ValueError,
        "'table' density spec: unknown key 'x'",
    ),
    (
        "json-two-table-forms",
        spec('table:{"values": [0.7], "per_axis": [[0.7]]}'),
        ValueError,
        "exactly one of 'values', 'by_size', 'per_axis'",
    ),
    (
        "json-ones-takes-nothing",
        spec('ones:{"a": 1}'),
        ValueError,
        "'ones' density spec: unknown key 'a'; it takes no parameters",
    ),
    (
        "json-wrong-type-sigma",
        spec('gaussian:{"sigma": "wide"}'),
        TypeError,
        "'gaussian' density spec: Gaussian(sigma)",
    ),
    (
        "json-null-value",
        spec('table:{"values": [null]}'),
        TypeError,
        "'table' density spec 'values'",
    ),
    (
        "json-by-size-not-mapping",
        spec('table:{"by_size": [0.7]}'),
        TypeError,
        "'by_size' must be a mapping",
    ),
    (
        "json-by-size-bad-key",
        spec('table:{"by_size": {"three": [0.7]}}'),
        ValueError,
        "'by_size': Table(values): mapping keys must be kernel sizes, got 'three'",
    ),
    (
        "json-per-axis-flat",
        spec('table:{"per_axis": [0.7]}'),
        TypeError,
        "'per_axis' must be a list of lists",
    ),
    (
        "json-unit-not-string",
        spec('gaussian:{"sigma": [1], "unit": 5}'),
        TypeError,
        "unit must be a string",
    ),
    (
        "json-nested-unknown-key",
        spec('learned:{"init": {"family": "table", "values": [0.1], "junk": 1}}'),
        ValueError,
        "Learned(init): 'table' density spec: unknown key 'junk'",
    ),
    (
        "json-nested-unknown-family",
        spec('learned:{"init": {"family": "nope"}}'),
        ValueError,
        "Learned(init): unknown density family 'nope'",
    ),
    ("json-learned-init-number", spec('learned:{"init": 3}'), TypeError, "Learned(init)"),
    (
        "json-learned-unknown-key",
        spec('learned:{"ini": [0.7]}'),
        ValueError,
        "'learned' density spec: unknown key 'ini'; it takes 'init'",
    ),
    (
        "json-nested-ones-key",
        lambda: Density.from_spec({"family": "learned", "init": {"family": "ones", "x": 1}}),
        ValueError,
        "'ones' density spec: unknown key 'x'",
    ),
    ("json-broken", spec('gaussian:{"sigma": [1]'), ValueError, "cannot read 'gaussian'"),
    (
        "dict-family-not-string",
        lambda: nw.as_density({"family": ["table"]}),
        TypeError,
        "'family' must be a family name",
    ),
    (
        "dict-family-missing",
        lambda: Density.from_spec({"values": [0.7]}),
        ValueError,
        "needs a 'family' key",
    ),
    (
        "dict-unknown-family",
        lambda: Density.from_spec({"family": "cone"}),
        ValueError,
        "unknown density family 'cone'",
    ),
    # string specs
    ("string-unknown-family", spec("cone:1"), ValueError, "unknown density 'cone:1'"),
    ("string-bad-number", spec("table:0.7,x"), ValueError, "got '0.7,x'"),
    ("string-empty-item", spec("table:0.7,,0.2"), ValueError, "got '0.7,,0.2'"),
    (
        "string-size-not-int",
        spec("table:3=0.7;five=0.2,0.8"),
        ValueError,
        "'five' is not a kernel size",
    ),
    ("string-size-twice", spec("table:3=0.7;3=0.8"), ValueError, "kernel size 3 is given twice"),
    (
        "string-spacing-twice",
        spec("gaussian:1;spacing=1;spacing=2"),
        ValueError,
        "'spacing' is given twice",
    ),
    ("string-unknown-argument", spec("gaussian:1;step=2"), ValueError, "unknown argument 'step=2'"),
    ("string-unknown-unit", spec("gaussian:1.5cm"), ValueError, "unknown unit 'cm'"),
    ("string-default-args", spec("default:0.7"), ValueError, "'default' takes no arguments"),
    # values
    ("table-nan", lambda: nw.Table([float("nan")]), ValueError, "finite and > 0, got nan"),
    ("table-negative", lambda: nw.Table([-0.5]), ValueError, "finite and > 0, got -0.5"),
    ("table-inf-string", spec("table:inf"), ValueError, "finite and > 0, got inf"),
    ("table-bool", lambda: nw.Table([True]), TypeError, "must hold numbers, got True"),
    ("gaussian-zero-sigma", lambda: nw.Gaussian(0.0), ValueError, "Gaussian(sigma)"),
    (
        "gaussian-nan-spacing",
        lambda: nw.Gaussian(1.0, spacing=float("nan")),
        ValueError,
        "Gaussian(spacing)",
    ),
    (
        "gaussian-unit-and-spacing",
        lambda: nw.Gaussian(1.0, spacing=1.0, unit="mm"),
        ValueError,
        "takes no spacing=",
    ),
    ("table-wrong-length", layer([0.2, 0.8]), ValueError, "has 2 value(s) but kernel axis 0"),
    ("density-not-a-density", layer(0.7), TypeError, "density must be a Density"),
    ("unresolved-unit", layer("gaussian:1mm"), ValueError, "resolve it against the sample"),
    # Φ that does not fit the layer's dtype
    (
        "overflow-float16",
        layer([300.0], dtype=torch.float16),
        ValueError,
        "density table:300 for kernel (3, 3) overflows in float16",
    ),
    ("overflow-bfloat16", layer([1e20], dtype=torch.bfloat16), ValueError, "overflows in bfloat16"),
    ("overflow-float32", layer([1e20]), ValueError, "overflows in float32"),
    (
        "overflow-learned-float16",
        layer(nw.Learned([300.0]), dtype=torch.float16),
        ValueError,
        "density learned:300 for kernel (3, 3) overflows in float16",
    ),
    (
        "overflow-on-half",
        lambda: nw.WeightedConv2d(1, 1, 3, density=[300.0]).half(),
        ValueError,
        "overflows in float16",
    ),
    (
        "overflow-convert",
        lambda: nw.convert(nn.Sequential(nn.Conv2d(1, 1, 3)).half(), [300.0]),
        ValueError,
        "layer '0' (Conv2d)",
    ),
    (
        "learned-state-dict-nan",
        lambda: nw.WeightedConv1d(1, 1, 3, density="learned:0.5").load_state_dict(
            {
                "weight": torch.ones(1, 1, 3),
                "bias": torch.zeros(1),
                "phi.log_half.0": torch.tensor([float("nan")]),
            }
        ),
        ValueError,
        "gives non-finite Φ in float32",
    ),
    (
        "underflow-float16",
        lambda: nw.WeightedConv2d(1, 1, 4, density=nw.Gaussian(0.05), dtype=torch.float16),
        ValueError,
        "underflows to all zeros in float16",
    ),
    # conversion and layer arguments
    ("convert-not-module", lambda: nw.convert("net"), TypeError, "model must be an nn.Module"),
    (
        "convert-bad-where",
        lambda: nw.convert(nn.Conv2d(1, 1, 3), where=[1]),
        TypeError,
        "where must be None",
    ),
    (
        "convert-bad-inplace",
        lambda: nw.convert(nn.Conv2d(1, 1, 3), inplace=1),
        TypeError,
        "inplace must be True or False",
    ),
    (
        "convert-strict-unfit",
        lambda: nw.convert(nn.Conv2d(1, 1, 9), strict=True),
        ValueError,
        "no profile for kernel size 9",
    ),
    (
        "param-groups-lr",
        lambda: nw.param_groups(nn.Conv2d(1, 1, 3), density_lr=-1),
        ValueError,
        "density_lr must be a positive finite number",
    ),
    ("convnd-ndim", lambda: nw.WeightedConvNd(0, 1, 1, 3), ValueError, "ndim must be an int"),
    (
        "functional-phi-shape",
        lambda: weighted_conv(torch.ones(1, 1, 5), torch.ones(1, 1, 3), phi=torch.ones(5)),
        ValueError,
        "phi must have the kernel's spatial shape",
    ),
    (
        "functional-phi-dtype",
        lambda: weighted_conv(torch.ones(1, 1, 5), torch.ones(1, 1, 3), phi=torch.ones(3).double()),
        TypeError,
        "phi has dtype torch.float64",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_message_naming_it(make, error, fragment):
    with pytest.raises(error) as caught:
        make()
    assert fragment in str(caught.value)


CLI_CASES = [
    ("unknown-command", ["nosuch"], 2, "invalid choice"),
    ("info-unknown-flag", ["info", "--nope"], 2, "unrecognized arguments: --nope"),
    ("no-command", [], 2, "usage: ndwconv"),
]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_bad_command_line_exits_with_a_usage_error(argv, code, fragment, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err

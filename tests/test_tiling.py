"""sliding_window: exact identity reconstruction in 1-4 D, array-like I/O, tile reads, errors."""

import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from ndwconv.adapters.tiling import sliding_window, tile_starts


def identity(x):
    return x


def volume(rng, shape):
    """float32 values over a wide dynamic range, with exact zeros and negatives."""
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, size=shape)
    x[rng.random(shape) < 0.1] = 0.0
    return x.astype(np.float32)


class ReadTracker:
    """Array-like wrapper (not in memory to the tiler) that records every read's index."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.reads = []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.array[index]


@st.composite
def identity_cases(draw):
    ndim = draw(st.integers(1, 4))
    max_size = (40, 14, 8, 6)[ndim - 1]
    spatial = tuple(draw(st.lists(st.integers(1, max_size), min_size=ndim, max_size=ndim)))
    tile = tuple(draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim)))
    if draw(st.booleans()):
        overlap = draw(st.floats(0.0, 0.9))
    else:
        overlap = tuple(draw(st.integers(0, t - 1)) for t in tile)
    return {
        "channels": draw(st.integers(1, 3)),
        "spatial": spatial,
        "tile": tile,
        "overlap": overlap,
        "blend": draw(st.sampled_from(["gaussian", "constant"])),
        "batch_size": draw(st.integers(1, 5)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@given(identity_cases())
def test_identity_is_bit_exact(case):
    """Identity predictor → output == input bit for bit, borders and short axes included."""
    x = volume(np.random.default_rng(case["seed"]), (case["channels"], *case["spatial"]))
    got = sliding_window(
        identity,
        x,
        case["tile"],
        overlap=case["overlap"],
        blend=case["blend"],
        batch_size=case["batch_size"],
        progress=False,
    )
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
@pytest.mark.parametrize(
    ("spatial", "tile", "overlap"),
    [
        ((37,), 8, 0.5),
        ((9, 13), (4, 5), 0.25),
        ((3, 11, 7), 5, 2),  # first axis shorter than the tile
        ((6, 5, 7, 4), (3, 4, 5, 2), (1, 3, 2, 1)),
    ],
)
def test_identity_is_bit_exact_fixed_cases(spatial, tile, overlap, blend):
    x = volume(np.random.default_rng(0), (2, *spatial))
    got = sliding_window(identity, x, tile, overlap=overlap, blend=blend, progress=False)
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_torch_source(ndim):
    x = volume(np.random.default_rng(ndim), (2, *(9, 7, 5)[:ndim]))
    got = sliding_window(identity, torch.from_numpy(x), 4, progress=False)
    np.testing.assert_array_equal(got, x)


def test_memmap_and_h5py_in_and_out(tmp_path):
    """memmap/h5py sources and outputs give exactly the in-memory result."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 13, 10, 6)).astype(np.float32)

    def predictor(t):
        return torch.cat([t.sum(1, keepdim=True), t * t, torch.tanh(t)], dim=1)

    kwargs = {"tile": (5, 4, 4), "overlap": 0.4, "progress": False}
    expected = sliding_window(predictor, x, **kwargs)
    assert expected.shape == (5, 13, 10, 6)

    source_mm = np.memmap(tmp_path / "in.dat", dtype=np.float32, mode="w+", shape=x.shape)
    source_mm[:] = x
    out_mm = np.memmap(tmp_path / "out.dat", dtype=np.float32, mode="w+", shape=expected.shape)
    assert sliding_window(predictor, source_mm, out=out_mm, **kwargs) is out_mm
    np.testing.assert_array_equal(np.asarray(out_mm), expected)

    with h5py.File(tmp_path / "volumes.h5", "w") as f:
        source_h5 = f.create_dataset("in", data=x, chunks=(1, 4, 4, 4))
        out_h5 = f.create_dataset("out", shape=expected.shape, dtype="f4", chunks=(1, 4, 4, 4))
        assert sliding_window(predictor, source_h5, out=out_h5, **kwargs) is out_h5
        np.testing.assert_array_equal(out_h5[()], expected)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_convolution_matches_whole_volume(ndim, blend):
    """A zero-padded conv of radius r, tiled with margin r and overlap >= 2r, equals the
    whole-volume conv (volume borders included: there both see the same zero padding)."""
    torch.manual_seed(ndim)
    radius = 1
    conv = (F.conv2d, F.conv3d)[ndim - 2]
    weight = torch.randn(3, 2, *(2 * radius + 1,) * ndim)

    def predictor(t):
        return conv(t, weight, padding=radius)

    x = np.random.default_rng(ndim).standard_normal((2, *(17, 12, 9)[:ndim])).astype(np.float32)
    expected = predictor(torch.from_numpy(x)[None])[0].numpy()
    got = sliding_window(
        predictor, x, 6, overlap=2 * radius, margin=radius, blend=blend, progress=False
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_tile_count_and_reads_are_slabs():
    """One predictor row per tile; a source that is not in memory is read once per first-axis
    tile start, as one slab of tile[0] rows spanning the other axes, in increasing order."""
    spatial, tile, overlap = (23, 10, 7), (6, 4, 7), (2, 1, 3)
    source = ReadTracker(np.random.default_rng(2).standard_normal((2, *spatial)))
    calls = []

    def predictor(t):
        calls.append(t.shape[0])
        return t

    got = sliding_window(predictor, source, tile, overlap=overlap, batch_size=3, progress=False)
    expected_tiles = math.prod(
        len(tile_starts(n, t, t - o)) for n, t, o in zip(spatial, tile, overlap, strict=True)
    )
    assert expected_tiles == 6 * 3 * 1
    assert sum(calls) == expected_tiles
    assert max(calls) == 3
    first_starts = tile_starts(spatial[0], tile[0], tile[0] - overlap[0])
    assert first_starts == [0, 4, 8, 12, 16, 17]
    full = (slice(None), slice(None))
    assert source.reads == [(slice(None), slice(z, z + tile[0]), *full) for z in first_starts]
    np.testing.assert_array_equal(got, source.array.astype(np.float32))


def test_short_first_axis_is_read_once():
    """A first axis shorter than the tile: one read of the whole source, padded per tile."""
    source = ReadTracker(np.random.default_rng(3).standard_normal((1, 3, 11)).astype(np.float32))
    got = sliding_window(identity, source, (5, 4), overlap=0.5, progress=False)
    assert source.reads == [(slice(None), slice(0, 3), slice(None))]
    np.testing.assert_array_equal(got, source.array)


class LazyBlock:
    """What a lazy array library returns from slicing: values only through ``__array__``."""

    computed = 0

    def __init__(self, array):
        self.array = array
        self.shape = array.shape

    def __array__(self, dtype=None, copy=None):
        LazyBlock.computed += 1
        return self.array if dtype is None else self.array.astype(dtype)


def test_lazy_slabs_are_computed_once():
    """A slab that is not an array (dask, zarr, xarray) is turned into one once, not per tile."""
    x = np.random.default_rng(5).standard_normal((1, 20, 9, 8)).astype(np.float32)

    class LazySource:
        shape = x.shape

        def __getitem__(self, index):
            return LazyBlock(x[index])

    LazyBlock.computed = 0
    got = sliding_window(identity, LazySource(), 5, overlap=0.4, batch_size=2, progress=False)
    assert LazyBlock.computed == len(tile_starts(20, 5, 3))
    np.testing.assert_array_equal(got, x)


def test_tile_starts_cover_without_gaps():
    for size in range(1, 30):
        for tile in range(1, 8):
            for step in range(1, tile + 1):
                starts = tile_starts(size, tile, step)
                covered = np.zeros(size, bool)
                for s in starts:
                    assert 0 <= s and s + min(tile, size) <= size
                    covered[s : s + tile] = True
                assert covered.all()
                assert starts == sorted(set(starts))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"tile": 0}, "tile"),
        ({"tile": (4, -1)}, "tile"),
        ({"tile": (4, 4, 4)}, "tile"),
        ({"tile": 4.0}, "tile"),
        ({"tile": 4, "overlap": 1.0}, "overlap"),
        ({"tile": 4, "overlap": -0.1}, "overlap"),
        ({"tile": 4, "overlap": 4}, "overlap"),
        ({"tile": 4, "overlap": (1, 5)}, "overlap"),
        ({"tile": 4, "blend": "linear"}, "blend"),
        ({"tile": 4, "batch_size": 0}, "batch_size"),
        ({"tile": 4, "overlap": 2, "margin": 2}, "margin"),
        ({"tile": 4, "out": np.zeros((2, 9, 7), np.float32)}, "out"),
        ({"tile": 4, "out": np.zeros((2, 8), np.float32)}, "out"),
        ({"tile": 4, "out": np.zeros((3, 8, 7), np.float32)}, "out"),
        ({"tile": 4, "out_channels": 5}, "out_channels"),
    ],
)
def test_errors_name_the_argument(kwargs, name):
    x = np.zeros((2, 8, 7), np.float32)
    with pytest.raises(ValueError, match=name):
        sliding_window(identity, x, progress=False, **kwargs)


def test_bad_prediction_shape_is_reported():
    x = np.zeros((1, 8, 7), np.float32)
    with pytest.raises(ValueError, match="predictor"):
        sliding_window(lambda t: t[..., :-1], x, 4, progress=False)


def test_special_values_are_exact():
    """Subnormals, ±0, ±inf and NaN survive blending unchanged."""
    x = volume(np.random.default_rng(3), (1, 11, 9))
    x[0, 0, :4] = [np.inf, -np.inf, np.nan, -0.0]
    x[0, 5, 5:] = np.float32(1e-45) * np.arange(1, 5)
    got = sliding_window(identity, x, 4, overlap=0.75, progress=False)
    np.testing.assert_array_equal(got, x)


class WriteTracker:
    """Output array-like that records the first-axis row range of every write."""

    def __init__(self, shape):
        self.array = np.full(shape, np.nan, np.float32)
        self.shape = shape
        self.dtype = self.array.dtype
        self.rows = []

    def __setitem__(self, index, value):
        rows = index[1]
        self.rows.append((rows.start, rows.stop))
        self.array[index] = value


def test_output_is_streamed_in_slabs():
    """Rows are written once each, in order, in slabs of at most tile[0] rows."""
    x = np.random.default_rng(4).standard_normal((2, 50, 6)).astype(np.float32)
    out = WriteTracker(x.shape)
    sliding_window(identity, x, (8, 4), overlap=0.5, out=out, progress=False)
    ends = [0] + [stop for _, stop in out.rows]
    assert [start for start, _ in out.rows] == ends[:-1]
    assert ends[-1] == 50
    assert max(stop - start for start, stop in out.rows) <= 8
    np.testing.assert_array_equal(out.array, x)


@pytest.mark.parametrize(
    "blend, margin, out_dtype",
    [
        ("gaussian", 0, None),
        ("gaussian", 1, None),
        ("constant", 1, None),
        ("gaussian", 1, np.float32),
        ("gaussian", 1, np.float64),
    ],
)
def test_blend_weights_match_the_documented_formula(blend, margin, out_dtype):
    """Each tile predicts a different constant; the output is Σ w c / Σ w with the weight of a
    tile the product over axes of max(Gaussian, 1e-3) (or 1), zeroed in ``margin`` voxels at
    inner faces: an explicit full-volume float64 reference, corners of tiles included. With
    no ``out`` the result is our own array; a float32 or float64 ``out`` is the caller's."""
    spatial, tile, overlap = (21, 9, 30), (8, 12, 10), (4, 0, 4)  # axis 1 shorter than tile
    constants = iter(range(1, 10_000))

    def predictor(batch):
        return torch.stack([torch.full_like(x, float(next(constants))) for x in batch])

    x = np.zeros((1, *spatial), np.float32)
    out = None if out_dtype is None else np.full(x.shape, np.nan, dtype=out_dtype)
    got = sliding_window(predictor, x, tile, overlap=overlap, blend=blend, batch_size=3,
                         margin=(margin, 0, margin), progress=False, out=out)
    assert out is None or got is out

    def axis_weight(t, start, extent, size, m):
        i = np.arange(extent, dtype=np.float64)
        if blend == "gaussian":
            w = np.maximum(np.exp(-0.5 * ((i - (t - 1) / 2) / (t / 8)) ** 2), 1e-3)
        else:
            w = np.ones(extent)
        if m and start > 0:
            w[:m] = 0.0
        if m and start + extent < size:
            w[extent - m:] = 0.0
        return w

    num, den = np.zeros(spatial), np.zeros(spatial)
    extents = [min(t, n) for t, n in zip(tile, spatial, strict=True)]
    starts = [tile_starts(n, t, t - o) for n, t, o in zip(spatial, tile, overlap, strict=True)]
    margins = (margin, 0, margin)
    for c, corner in enumerate(np.array(np.meshgrid(*starts, indexing="ij")).reshape(3, -1).T,
                               start=1):
        w = np.ones(())
        for a in range(3):
            w = np.multiply.outer(w, axis_weight(tile[a], corner[a], extents[a], spatial[a],
                                                 margins[a]))
        window = tuple(slice(s, s + e) for s, e in zip(corner, extents, strict=True))
        num[window] += c * w
        den[window] += w
    np.testing.assert_allclose(got[0], num / den, rtol=1e-12 if out_dtype == np.float64 else 1e-6)


def test_sources_are_cast_as_numpy_casts_them(tmp_path):
    """int16, float64, big-endian, reversed and read-only memmap sources: an identity
    predictor returns exactly NumPy's float32 cast of the source."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((2, 11, 9)) * 300.0
    np.save(tmp_path / "ro.npy", base.astype(np.float32))
    sources = {
        "int16": base.astype(np.int16),
        "float64": base,
        "big-endian": base.astype(">f4"),
        "reversed": base.astype(np.float32)[:, ::-1],
        "read-only memmap": np.load(tmp_path / "ro.npy", mmap_mode="r"),
    }
    for name, source in sources.items():
        got = sliding_window(identity, source, (4, 5), overlap=0.5, progress=False)
        np.testing.assert_array_equal(got, np.asarray(source).astype(np.float32), err_msg=name)
    # h5py datasets are read into a native-order buffer of their own dtype, then cast
    with h5py.File(tmp_path / "cast.h5", "w") as f:
        for name in ("int16", "float64", "big-endian"):
            dataset = f.create_dataset(name, data=sources[name], chunks=(1, 3, 4))
            got = sliding_window(identity, dataset, (4, 5), overlap=0.5, progress=False)
            np.testing.assert_array_equal(got, sources[name].astype(np.float32), err_msg=name)

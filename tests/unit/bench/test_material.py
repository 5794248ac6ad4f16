"""The conformance material builders (bench/material.py): real teachers from installed packages run on
the data we build for them, with the shapes, dtypes and outputs the conformance benchmark relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import material as m


def test_magika_features_give_magikas_own_predictions() -> None:
    from magika import Magika

    roots = (Path("/usr/share/doc"), Path("/usr/bin"), Path("/etc"))  # a quick walk, varied kinds
    files = [p for p in m.collect_files(60, seed=3, roots=roots) if p.stat().st_size >= 64][:25]
    cfg = m.magika_config()
    x = np.stack([m.magika_features(p, cfg) for p in files])
    assert x.dtype == np.int32 and x.shape == (len(files), 2048)
    assert x.min() >= 0 and x.max() <= cfg["padding_token"]
    probs = m.run_teacher(m.magika_model(), {"bytes": x})["target_label"]
    assert probs.shape == (len(files), 214)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    ours = [cfg["target_labels_space"][i] for i in probs.argmax(1)]
    theirs = [str(r.prediction.dl.label) for r in Magika().identify_paths(files)]
    compared = [(a, b) for a, b in zip(ours, theirs, strict=True) if b != "undefined"]
    assert len(compared) >= 15
    assert all(a == b for a, b in compared), compared


def test_magika_case_is_distinct_real_files(tmp_path: Path) -> None:
    roots = (Path("/usr/share/doc"), Path("/usr/bin"), Path("/etc"))
    case = m.magika(tmp_path, transfer=60, heldout=20, roots=roots)
    tr, te = m.load_npz(case.transfer), m.load_npz(case.heldout)
    assert set(tr) == set(te) == {"bytes"} and tr["bytes"].shape == (60, 2048) and te["bytes"].shape == (20, 2048)
    rows = {r.tobytes() for r in np.concatenate([tr["bytes"], te["bytes"]])}
    assert len(rows) == 80  # no file's features twice, so nothing held out was trained on
    assert case.kinds == {"target_label": "probabilities"}
    again = m.magika(tmp_path, transfer=60, heldout=20, roots=roots)  # cached
    assert again == case


def test_blazeface_sees_faces_in_some_images_and_not_in_others(tmp_path: Path) -> None:
    case = m.blazeface(tmp_path, transfer=8, heldout=16)
    x = m.load_npz(case.heldout)["input"]
    assert x.shape == (16, 128, 128, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    out = m.run_teacher(case.teacher, {"input": x})
    assert out["regressors"].shape == (16, 896, 16) and out["classificators"].shape == (16, 896, 1)
    face = (1 / (1 + np.exp(-np.clip(out["classificators"][..., 0], -60, 60)))).max(1)
    assert (face >= 0.5).any() and (face < 0.5).any()
    assert case.kinds == {"regressors": "boxes", "classificators": "sigmoid_logits"}


def test_wakeword_features_from_real_speech() -> None:
    fe = m.WakeFeatures()
    clip = max((m.read_wav(p) for p in m.speech_files()), key=len)
    emb = fe.embeddings(np.concatenate([np.zeros(8000, np.float32), clip]))
    assert emb.shape[1] == 96 and len(emb) >= 8 and np.isfinite(emb).all()
    head = m.wakeword_dir() / "hey_jarvis.tflite"
    rng = np.random.default_rng(0)
    windows = m._wake_windows([clip], rng, variants=1)
    name = m._tflite_input_name(head)
    p = next(iter(m.run_teacher(head, {name: windows}).values()))
    assert p.shape == (len(windows), 1) and (p >= 0).all() and (p <= 1).all()
    assert (p < 0.5).all()  # nobody says "hey jarvis" in the recordings
    spoken = m._spoken_windows(("en-us",), ("",), [clip], rng)
    ps = next(iter(m.run_teacher(head, {name: spoken}).values()))
    assert (ps >= 0.5).any() and (ps < 0.5).any()  # espeak-ng's "hey jarvis" gives the set detections too


def test_vad_samples_have_speech_and_non_speech_frames() -> None:
    rng = np.random.default_rng(0)
    x, y = m._vad_samples(m.speech_clips()[:4], 12, rng)
    assert x.shape == (12, m.VAD_FRAMES, 32) and y.shape == (12, m.VAD_OUT)
    assert 0.05 < y.mean() < 0.95


def test_reviews_tokenised_with_a_built_vocabulary() -> None:
    tr_text, tr_y, te_text, te_y = m.reviews()
    assert len(tr_text) == 4000 and len(te_text) == 1000
    assert set(np.unique(tr_y)) == {0, 1} and set(np.unique(te_y)) == {0, 1}
    vocab = m.build_vocab(tr_text[:500], size=300)
    assert len(vocab) == 298 and min(vocab.values()) == 2
    ids, mask = m.tokenize(te_text[:50], vocab)
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (50, m.SEQ_LEN)
    assert ((ids != m.PAD) == (mask == 1)).all() and (mask.sum(1) > 0).all()
    assert (ids == m.UNK).any()


def test_skl2onnx_case_has_label_and_probabilities(tmp_path: Path) -> None:
    case = m.skl_forest(tmp_path)
    te = m.load_npz(case.heldout)
    out = m.run_teacher(case.teacher, m.inputs_of(case, te))
    assert list(out) == ["label", "probabilities"]
    assert out["label"].dtype == np.int64 and out["probabilities"].shape == (len(te[case.input_names[0]]), 2)
    assert (out["label"] == out["probabilities"].argmax(1)).all()
    assert case.kinds == {"label": "class_index", "probabilities": "probabilities"}
    assert "y" not in m.load_npz(case.transfer)  # jittered rows have no true labels


def test_fashion_mnist_from_debian() -> None:
    if not m.FASHION_DIR.is_dir():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    x, y = m.load_fashion("test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))


def test_unknown_case_is_named() -> None:
    with pytest.raises(KeyError, match="unknown case"):
        m.build_case("nope", Path("/nonexistent"))


def test_build_case_passes_the_set_sizes_to_the_cases_that_generate_them(tmp_path: Path) -> None:
    case = m.build_case("blazeface", tmp_path, transfer=4, heldout=6)
    assert m.load_npz(case.transfer)["input"].shape[0] == 4
    assert m.load_npz(case.heldout)["input"].shape[0] == 6

"""`dfer train` / `dfer evaluate` end to end on a tiny real DFEW-layout dataset with the real S2D model."""
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from engine_helpers import (FAST, ROOT, landmark_weights, run_config, write_config, write_dfew,  # noqa: E402
                            write_rafdb)

from dfer.cli import main as dfer  # noqa: E402
from dfer.engine import resume as ck  # noqa: E402
from dfer.engine.evaluate import load_weights, evaluation_dataset  # noqa: E402
from dfer.engine.loop import build_landmarks, build_model, predict_views  # noqa: E402
from dfer.engine.runconfig import check  # noqa: E402
from dfer.engine.train import epoch_seed  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dfew(tmp_path_factory.mktemp("data") / "DFEW", n_train=14, n_test=7)


def _train(cfg: dict, path: Path, *extra: str) -> int:
    return dfer(["train", "--config", str(write_config(cfg, path)), "--no-tracking", "--quiet", "--device", "cpu",
                 *extra])


def test_train_with_landmarks_writes_outputs_and_evaluation_averages_view_softmax(tmp_path):
    data = write_dfew(tmp_path / "DFEW", n_train=8, n_test=5, frames=4)
    out = tmp_path / "run"
    # MCP fusion: the frozen landmark net runs on the batch; 2-frame clips keep it fast
    cfg = run_config(data, out, {"train.epochs": 1, "data.num_frames": 2,
                                 "landmarks": landmark_weights(tmp_path)})  # the smallest landmark net
    assert _train(cfg, tmp_path / "run.yaml") == 0
    for name in ("model.pt", "metrics.jsonl", "eval.json", "confusion.png", "predictions.csv", "features.npy",
                 "predictions.npz", "done.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1] and rows[0]["clips_per_s"] > 0 and np.isfinite(rows[0]["train_loss"])
    ev = json.loads((out / "eval.json").read_text())
    # 2 temporal x 2 spatial views, the identical square crops computed once
    assert ev["selection"] == "last" and ev["num_samples"] == 5 and ev["protocol"]["views_per_video"] == 2
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # predictions.csv = the mean of each video's views' softmax, recomputed here view by view
    run = check(cfg)
    model = build_model(run, init=False)
    load_weights(model, out / "model.pt")
    ds = evaluation_dataset(run)
    views = predict_views(model, ds, torch.device("cpu"), 3, build_landmarks(run.landmarks), show=False)
    assert np.bincount(views.sample_index).tolist() == [2] * 5
    with open(out / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    classes = ev["classes"]
    for i, row in enumerate(table):
        probs = np.array([float(row[f"p_{c}"]) for c in classes])
        np.testing.assert_allclose(probs, views.probs[views.sample_index == i].mean(0), atol=2e-6)
        assert row["pred"] == classes[int(probs.argmax())]
    # eval.json numbers agree with the per-video predictions
    correct = [r["label"] == r["pred"] for r in table]
    assert ev["war"] == pytest.approx(np.mean(correct))
    assert np.load(out / "features.npy").shape == (5, model.num_features)
    assert np.asarray(ev["confusion"]).sum() == 5


def test_same_seed_same_results_different_seed_different_weights(data, tmp_path):
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = run_config(data, tmp_path / name, {"seed": seed, "train.epochs": 1, **FAST})
        assert _train(cfg, tmp_path / f"{name}.yaml") == 0
        outs.append(tmp_path / name)
    w = [torch.load(o / "model.pt", weights_only=True)["model"] for o in outs]
    metrics = [[{k: r[k] for k in ("train_loss", "lr")} for r in map(json.loads, (o / "metrics.jsonl").read_text()
                                                                       .splitlines())] for o in outs]
    assert metrics[0] == metrics[1]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert json.loads((outs[0] / "eval.json").read_text())["confusion"] == \
        json.loads((outs[1] / "eval.json").read_text())["confusion"]
    assert any(not torch.equal(w[0][k], w[2][k]) for k in w[0])


def test_finished_run_is_skipped_and_never_overwritten_by_a_failing_rerun(data, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = run_config(data, out, {"train.epochs": 1, **FAST})
    assert _train(cfg, tmp_path / "run.yaml") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert _train(cfg, tmp_path / "run.yaml") == 0
    assert "already finished" in capsys.readouterr().out
    # Break the data, then force a retrain: it fails, the finished results stay byte for byte.
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    shutil.rmtree(broken / "Clip" / "clip_224x224_16f" / "00003")
    cfg_broken = {**cfg, "data": {**cfg["data"], "root": str(broken)}}
    write_config(cfg_broken, tmp_path / "run.yaml")
    # a different config hash pointing at the finished folder is refused
    assert dfer(["train", "--config", str(tmp_path / "run.yaml"), "--no-tracking", "--quiet"]) == 2
    assert "holds the finished run" in capsys.readouterr().err
    assert _train(cfg_broken, tmp_path / "run.yaml", "--force") == 2
    assert "00003: frame folder not found" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before


def test_freezing_mixup_and_best_on_test_selection(data, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = run_config(data, out, {"train.epochs": 2, "train.freeze": "auto", "train.validate_every_epoch": True,
                                 "train.augment.mixup": 0.8, "train.augment.cutmix": 1.0, **FAST})
    assert _train(cfg, tmp_path / "run.yaml") == 0
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("val_uar" in r and "val_war" in r for r in rows)
    assert (out / "best.pt").is_file()
    # S2D DFER: the ViT blocks stay at their initial values, MCP/TMA/head move
    ck.seed_everything(epoch_seed(0, 0, -1))
    init = build_model(check(cfg)).state_dict()
    trained = torch.load(out / "model.pt", weights_only=True)["model"]
    assert torch.equal(init["blocks.0.attn.qkv.weight"], trained["blocks.0.attn.qkv.weight"])
    assert torch.equal(init["patch_embed.proj.weight"], trained["patch_embed.proj.weight"])
    assert not torch.equal(init["head.fc_cls.weight"], trained["head.fc_cls.weight"])

    capsys.readouterr()
    assert dfer(["evaluate", "--run", str(out), "--select", "best_on_test", "--out", str(tmp_path / "best" /
                                                                                         "eval.json"),
                 "--no-tracking", "--quiet"]) == 0
    ev = json.loads((tmp_path / "best" / "eval.json").read_text())
    assert ev["selection"] == "best_on_test (official; selected on the test split)"
    best_epoch = max(rows, key=lambda r: r["val_war"])["epoch"]
    assert ev["epoch"] == best_epoch
    # re-evaluating the same checkpoint is a no-op
    assert dfer(["evaluate", "--run", str(out), "--no-tracking", "--quiet"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_best_on_test_needs_validation_every_epoch(data, tmp_path, capsys):
    cfg = run_config(data, tmp_path / "run", FAST)
    cfg["evaluate"]["select"] = "best_on_test"  # without train.validate_every_epoch: refused
    assert _train(cfg, tmp_path / "run.yaml") == 2
    assert "validate_every_epoch" in capsys.readouterr().err


def test_predict_on_a_video_file_with_our_checkpoint(data, tmp_path, capsys):
    from dfer.data.video import write_video
    from engine_helpers import PALETTE

    out = tmp_path / "run"
    cfg = run_config(data, out, {"train.epochs": 1, **FAST})
    assert _train(cfg, tmp_path / "run.yaml") == 0
    frames = np.repeat(np.full((1, 32, 32, 3), PALETTE[2], dtype=np.uint8), 10, axis=0)
    video = write_video(tmp_path / "mine.mp4", frames, fps=10)
    capsys.readouterr()
    assert dfer(["predict", str(video), "--checkpoint", str(out / "model.pt"), "--detector", "none",
                 "--json"]) == 0
    probs = json.loads(capsys.readouterr().out)["probabilities"]
    assert list(probs) and set(probs) == set(json.loads((out / "eval.json").read_text())["classes"])
    values = list(probs.values())
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0, abs=1e-5)
    assert dfer(["predict", str(tmp_path / "missing.mp4"), "--checkpoint", str(out / "model.pt")]) == 2


# ---- UniLearn's joint fine-tuning ----------------------------------------------------------------
def test_joint_batches_keep_one_modality_per_step_and_share_the_order_across_processes():
    from dfer.engine.loop import EpochSampler, JointBatchSampler

    def joint(rank: int, world: int, rate: float = 0.5) -> JointBatchSampler:
        videos = EpochSampler([i % 7 for i in range(40)], 3, 4, rank=rank, world_size=world, accum_steps=2)
        images = EpochSampler([i % 7 for i in range(64)], 4, 4, rank=rank, world_size=world, accum_steps=2)
        return JointBatchSampler(videos, images, n_videos=40, data_rate=rate)

    s = joint(0, 1)
    assert (s.videos.steps, s.image_steps, s.steps) == (5, 4, 9)  # 40 clips / 8, half of 64 images / 8
    mbs = s.micro_batches()
    assert len(mbs) == 18 and all(len(mb) == 4 for mb in mbs)
    steps = [mbs[i] + mbs[i + 1] for i in range(0, 18, 2)]  # the micro-batches of one optimizer step
    assert all(max(st) < 40 or min(st) >= 40 for st in steps)
    assert sum(min(st) >= 40 for st in steps) == 4 and len({i for st in steps for i in st if i < 40}) == 40
    s.set_epoch(1)
    assert s.micro_batches() != mbs
    s.set_epoch(1, skip=3 * 4)  # items, as EpochSampler: 3 micro-batches in
    assert list(s) == s.micro_batches()[3:] and len(s) == 15
    # Two processes: the same modality at every step, disjoint items.
    r0, r1 = joint(0, 2), joint(1, 2)
    a, b = r0.micro_batches(), r1.micro_batches()
    assert [min(x) >= 40 for x in a] == [min(x) >= 40 for x in b]
    assert not {i for x in a for i in x if i < 40} & {i for x in b for i in x if i < 40}


def test_image_batches_train_the_image_head_and_clips_the_video_head():
    import torch

    from dfer.engine.loop import Precision, StepState, micro_step_loss
    from dfer.models import create_model

    torch.manual_seed(0)
    model = create_model("unilearn_tiny", num_classes=11, num_image_classes=7)
    opt = torch.optim.AdamW(model.parameters())
    st = StepState(opt, None, 1, Precision(), None, None, False, None, "onehot", 0.0, 11)
    batches = {"image": {"video": torch.randn(2, 3, 1, 64, 64), "label": torch.tensor([0, 6]),
                         "task": torch.tensor([1, 1])},
               "video": {"video": torch.randn(2, 3, 4, 64, 64), "label": torch.tensor([0, 10]),
                         "task": torch.tensor([0, 0])}}
    for task, batch in batches.items():
        model.zero_grad(set_to_none=True)
        micro_step_loss(model, batch, st, torch.device("cpu")).backward()
        other = "video" if task == "image" else "image"
        assert model.head[task].weight.grad is not None and model.head[other].weight.grad is None, task


def test_flops_of_one_view_are_counted_and_scale_with_the_frames(tmp_path):
    """eval.json's FLOPs (`gflops` in the tables): counted by torch's flop counter on one test view; a ViT's
    grow with the tokens, so twice the frames cost about twice as much."""
    import torch

    from dfer.engine.evaluate import model_flops
    from dfer.engine.loop import build_model
    from dfer.workflow.tables import metric_value

    counts = {}
    for frames in (4, 8):
        run = check(run_config(tmp_path / "DFEW", tmp_path / "out", {**FAST, "data.num_frames": frames}))
        flops = model_flops(build_model(run, init=False, verbose=False), run.data, None, torch.device("cpu"))
        assert flops["input"] == [1, 3, frames, 32, 32] and flops["landmark_net_gmacs"] == 0
        assert flops["model_gflops"] == pytest.approx(2 * flops["model_gmacs"])
        counts[frames] = flops["model_gmacs"]
    assert 1.8 < counts[8] / counts[4] < 2.2
    assert metric_value({"flops": {"model_gmacs": 6.33}}, "gflops", "DFEW", "DFEW") == 6.33


def test_evaluation_counts_how_often_the_snippet_filter_fires(tmp_path):
    """NR-DFERNet's snippet-based filter acts at inference only; predict_views counts the views it changed."""
    import torch

    from dfer.data.annotations import load_split
    from dfer.data.datasets import VideoClipDataset
    from dfer.engine.loop import predict_views
    from dfer.models import create_model

    write_dfew(tmp_path / "DFEW", n_train=7, n_test=7, frames=8)
    samples = load_split("DFEW", tmp_path / "DFEW", "test", fold=1, frames="Clip/clip_224x224_16f")
    ds = VideoClipDataset(samples, num_frames=8, input_size=64, mode="test", test_views={"temporal": 2, "spatial": 1})
    torch.manual_seed(0)
    model = create_model("nr_dfernet_tiny", num_classes=7, num_frames=8, img_size=64, neutral_index=2)
    model.sf_mu1, model.sf_mu2 = 0.0, 1.0          # every clip passes the test: the filter fires on all 14 views
    assert predict_views(model, ds, torch.device("cpu"), 4, show=False).filtered == 14
    model.sf_mu1 = 1.0                              # no snippet is that sure: it never fires
    assert predict_views(model, ds, torch.device("cpu"), 4, show=False).filtered == 0
    model.snippet_filter_enabled = False
    assert predict_views(model, ds, torch.device("cpu"), 4, show=False).filtered is None


def test_inference_variants_score_one_trained_model_under_each_snippet_filter(tmp_path):
    """evaluate.variants: the same model and test set under other inference settings, after the main evaluation
    (NR-DFERNet's Tables 1 and 2 read the snippet filter off / at each window and stride from one trained run)."""
    from dfer.config import load_params, set_path
    from dfer.data.labels import classes
    from dfer.workflow.claims import run_items
    from dfer.workflow.plan import method_run_config
    from dfer.workflow.tables import metric_value

    data = write_dfew(tmp_path / "DFEW", n_train=7, n_test=7, frames=8)
    out = tmp_path / "run"
    cfg = method_run_config(load_params(ROOT / "params.yaml"), "nr_dfernet", "DFEW", fold=1)
    for key, value in {"name": "test/nr_dfernet/DFEW/fold1", "output_dir": str(out), "data.root": str(data),
                       "data.frames": "Clip/clip_224x224_16f", "data.input_size": 32, "train.epochs": 1,
                       "train.batch_size": 4, "train.total_batch": 4, "train.warmup_epochs": 0,
                       "tracking.tracking_uri": "sqlite:///unused.db",
                       "evaluate.variants": {"no_sf": {"snippet_filter": False},
                                             "always": {"sf_mu1": 0.0, "sf_mu2": 1.0}}}.items():
        set_path(cfg, key.split("."), value)
    run = check(cfg, source="test")
    assert _train(cfg, tmp_path / "run.yaml") == 0
    ev = json.loads((out / "eval.json").read_text())
    assert set(ev["variants"]) == {"no_sf", "always"}
    always, off = ev["variants"]["always"], ev["variants"]["no_sf"]
    neutral = classes("DFEW").index("Neutral")
    # every snippet passes the test: the filter fires on every view and "Neutral" is never predicted
    assert always["snippet_filter"]["rate"] == 1.0 and neutral not in always["items"]["pred"]
    assert "snippet_filter" not in off and off["num_samples"] == ev["num_samples"] == 7
    assert metric_value(ev, "uar", "DFEW", "DFEW", "always") == pytest.approx(100 * always["uar"])
    # per-item predictions in the order of the main evaluation's, for the claims' paired bootstrap
    main_ids = [r["id"] for r in csv.DictReader(open(out / "predictions.csv"))]
    items = run_items(tmp_path, {"output_dir": str(out), "dataset": "DFEW"}, "DFEW", "always")
    assert list(items.ids) == main_ids and list(items.pred) == always["items"]["pred"]
    # the settings are the model's own again after each variant
    model = build_model(run, init=False)
    assert model.inference_settings(sf_mu1=0.0) == {"sf_mu1": 0.7}
    with pytest.raises(ValueError, match="no inference setting"):
        model.inference_settings(depth=3)


def test_cross_dataset_tests_read_the_head_trained_for_them():
    """An SFER model is scored on other image sets with its own classes (Table I); a UniLearn model's image head on
    its joint static set, in that set's classes (UniLearn Table 4); a DFER model without such a head is not."""
    from dfer.config import load_params
    from dfer.data.labels import classes
    from dfer.engine.evaluate import CrossHead, cross_head
    from dfer.workflow.plan import method_run_config

    params = load_params(ROOT / "params.yaml")
    sfer = check(method_run_config(params, "sfer", "RAF-DB"))
    joint = check(method_run_config(params, "unilearn", "FERV39K"))
    alone = check(method_run_config(params, "unilearn", "FERV39K", {"train.joint": None}))
    assert cross_head(sfer, "FERPlus") == CrossHead(classes("RAF-DB"), image_head=False)
    assert joint.eval_datasets == ("AffectNet-7",)
    assert cross_head(joint, "AffectNet-7") == CrossHead(classes("AffectNet-7"), image_head=True)
    assert cross_head(alone, "AffectNet-7") is None and cross_head(joint, "RAF-DB") is None


def test_a_jointly_fine_tuned_model_is_scored_on_its_image_set_by_its_image_head(tmp_path):
    """UniLearn Table 4's SFER columns: the joint model's image head, fed 4-D images as in training, predicts the
    static test set; the video head, which the image set's [B,3,1,H,W] batches would select, must not."""
    from dfer.config import load_params
    from dfer.workflow.plan import Planner

    write_dfew(tmp_path / "DFEW", n_train=8, n_test=5)
    write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=7)
    out = tmp_path / "unilearn"
    cfg = run_config(tmp_path / "DFEW", out, {
        "method": "unilearn", "model.name": "unilearn_tiny", "model.kwargs": {}, "landmarks": None,
        "data.input_size": 64, "train.freeze": "none", "train.epochs": 1,
        "train.joint": {"dataset": "RAF-DB", "data_rate": 1.0, "oversample": False}})
    planner = Planner(load_params(ROOT / "params.yaml"))
    cfg["joint_data"] = {**planner._run_data("RAF-DB"), "root": str(tmp_path / "RAF-DB"), "num_frames": 1,
                         "sampling_rate": 1, "input_size": 64, "oversample": False}
    cfg["eval_datasets"] = ["RAF-DB"]
    cfg["eval_data"] = {"RAF-DB": {**planner._dataset_data("RAF-DB"), "root": str(tmp_path / "RAF-DB")}}
    assert _train(cfg, tmp_path / "unilearn.yaml") == 0
    cross = json.loads((out / "eval.json").read_text())["cross"]["RAF-DB"]

    run = check(cfg)
    model = build_model(run, init=False)
    load_weights(model, out / "model.pt")
    ds = evaluation_dataset(run, "RAF-DB")
    images = torch.stack([ds[i]["video"] for i in range(len(ds))])      # [N,3,1,H,W], as the loader batches them
    with torch.no_grad():
        by_image_head = model.eval()(images[:, :, 0])[0].argmax(1).tolist()
        by_video_head = model(images)[0].argmax(1).tolist()
    assert by_image_head != by_video_head  # else this test could not tell the heads apart
    assert cross["items"]["pred"] == by_image_head and len(by_image_head) == 7

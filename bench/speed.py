#!/usr/bin/env python3
"""Speed and memory of our Mask R-CNN, beside torchvision's, on this machine, in one run.

    python bench/speed.py --out logs/bench_speed.json
    python bench/speed.py --peer-python .peer-venv/bin/python          # + the peer and ours/peer ratios
    python bench/speed.py --quick                                       # 256/512 only, 3 repeats, no throughput
    python bench/speed.py --profile                                     # + where detect time goes at 512

Measures (each phase in its own subprocess, so its peak resident memory is its own):
  backbone  backbone+FPN forward alone (mrcnn.backbone.backbone_model in a tf.function): the floor
  detect    MaskRCNN.detect() per image, "matterport" settings (ResNet-50-FPN, 1000 proposals,
            PRE_NMS_LIMIT 6000, 100 detections, FPN 256, FC 1024, NUM_CLASSES 2, batch 1) and
            "lesion" settings (LesionConfig: 100 proposals, 4 detections, FPN 128, FC 256)
  train     one compiled training step, batch 2 at 512 px, 200 ROIs/image, 2000 proposals,
            all layers and batch-norm trainable (as the peer), fixed batch from DataGenerator
  train lesion  the same isolated step with LesionConfig at 256 px (batch 2, its Adam), the model
            `lesions.py --mode train` builds, on 8 shuffled batches of the end-to-end row's data
            with lesions.py's default augmentation (what the loop trains on), timed after 30
            untimed training steps (a random model's step is cheaper: few positive ROIs)
  train_e2e `lesions.py --mode train` itself on a real layout (PH2 from ../shared/data when present,
            else a synthetic folder) for 2 epochs of --e2e-steps steps: seconds per step of the second
            epoch (EpochSummary's figure), beside the isolated LesionConfig step
  predict   skinlesion.inference.Predictor.run() over 50 ISIC-sized JPEGs (3008x2000, q90):
            decode, resize, detect, mask + overlay writing; images/s and CPU cores busy
  profile   (--profile) cumulative sub-graphs of the 512 px detect graph, plus mold / unmold
  peer      the peer script (--peer-script, default <repo root>/../shared/bench/peer_torchvision.py)
            --size S in the peer's interpreter (--peer-python)

Every phase runs in the default configuration unless told otherwise: COMPUTE_DTYPE "auto" and
the oneDNN / allocator choices of mrcnn.runtime for its mode (train phases "train", the others
"predict"); the "_bf16" / "_fp32" rows force the other precision than "auto" picks here
(bfloat16 where it picks float32, float32 where it picks bfloat16), so one run shows both. Each row records the CPU, its flags, whether oneDNN
was on, the precision used and the share of its CPU time spent in the kernel (system time).
All weights are random; timings are medians after warm-up. detect() is called with
min_confidence --min-confidence (default 0, every scored detection, as `lesions.py --mode
predict` asks for it; the graph always keeps them) and the random classifier is biased to
foreground (favour_foreground), so the mask head works on the full DETECTION_MAX_INSTANCES like
the peer's, whose random-weight scores all pass its 0.05 threshold (--natural-detections: no bias). The machine may be shared: compare the ratios of one run, not seconds
across runs. Targets are reported as pass/fail, never asserted.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

if __package__:  # imported as bench.speed
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

ROOT = common.ROOT
PEER_SCRIPT = os.path.join(common.SHARED, "bench", "peer_torchvision.py")
SHARED_DATA = common.SHARED_DATA
RESULT_TAG = "BENCH_RESULT "
PREDICT_IMAGES = 50
ISIC_SIZE = (2000, 3008)  # (H, W) of a typical ISIC 2017/2018 image
LESION_BATCHES = 8  # distinct batches timed for the LesionConfig training row
LESION_WARM_STEPS = 30  # untimed training steps before it (as many as one end-to-end epoch)


# --------------------------------------------------------------------------- child side
def _setup_child(mode="predict", tensorflow=True):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mrcnn import runtime
    runtime.configure(mode)  # before TensorFlow is imported, as lesions.py does
    if not tensorflow:
        return
    import logging
    logging.basicConfig(level=logging.WARNING)
    import keras
    keras.utils.set_random_seed(0)


def matterport_config(size, images_per_gpu=1):
    """Matterport's defaults with ResNet-50, 2 classes and a square `size` input."""
    from mrcnn.config import Config

    class BenchConfig(Config):
        NAME = "bench"
        BACKBONE = "resnet50"
        NUM_CLASSES = 2
        GPU_COUNT = 1
        IMAGES_PER_GPU = images_per_gpu
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        WORKERS = 1
        VERBOSE = 0

    return BenchConfig()


def lesion_config(size):
    """LesionConfig at `size`, one image per batch (as lesions.py runs inference)."""
    from skinlesion import LesionConfig
    return LesionConfig(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, IMAGES_PER_GPU=1, GPU_COUNT=1)


# Config-name suffixes: the same settings with COMPUTE_DTYPE forced.
SUFFIX_DTYPE = {"_bf16": "bfloat16", "_fp32": "float32"}


def other_precision_suffix():
    """The suffix of the precision COMPUTE_DTYPE = "auto" does not pick on this machine."""
    from mrcnn.runtime import native_bfloat16
    return "_fp32" if native_bfloat16() else "_bf16"


def forced_dtype(name):
    """COMPUTE_DTYPE forced by a config name's suffix, or None (the default, "auto")."""
    return next((dtype for suffix, dtype in SUFFIX_DTYPE.items() if name.endswith(suffix)), None)


def make_config(spec):
    """The config named by spec["config"]: matterport | lesion, optionally + "_bf16" or "_fp32"."""
    name = spec["config"]
    if name.startswith("lesion"):
        config = lesion_config(spec["size"])
    else:
        config = matterport_config(spec["size"])
    config.COMPUTE_DTYPE = forced_dtype(name) or config.COMPUTE_DTYPE
    return config


def favour_foreground(model, margin=4.0):
    """Shift the random classifier's foreground logits up so every ROI scores as a lesion.

    With plain random weights most ROIs argmax to background and the mask head
    (which runs on real detections only) sees a handful of boxes; the peer's random
    model returns the full 100. This makes ours do the same work: ~DETECTION_MAX_INSTANCES masks.
    """
    layer = model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    # Random features can be large, so a bias alone does not always win: drop the kernel.
    kernel[:] = 0.0
    bias[:] = 0.0
    bias[1:] = margin
    layer.set_weights([kernel, bias])


def phase_backbone(spec):
    import numpy as np
    import tensorflow as tf
    from mrcnn.backbone import backbone_model
    from mrcnn.precision import compute_dtype_scope
    size = spec["size"]
    config = make_config(spec)
    with compute_dtype_scope(config.COMPUTE_DTYPE):
        net = backbone_model(config, (size, size, 3))
    forward = tf.function(lambda x: net(x, training=False))
    image = tf.constant(np.random.default_rng(0).uniform(-120, 130, (1, size, size, 3)).astype(np.float32))
    median, times, cores = common.timed_median(lambda: [p.numpy() for p in forward(image)], spec["repeats"],
                                               warmup=2)
    return {"s_per_image": round(median, 4), "times": times, "cores_busy": cores}


def phase_detect(spec):
    import numpy as np
    from mrcnn.model import MaskRCNN
    size = spec["size"]
    config = make_config(spec)
    t0 = time.perf_counter()
    model = MaskRCNN("inference", config, model_dir=tempfile.mkdtemp(prefix="bench_speed_"))
    if spec.get("full_detections", True):
        favour_foreground(model)
    build_s = time.perf_counter() - t0
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    threshold = spec.get("min_confidence", 0.0)
    t0 = time.perf_counter()
    result = model.detect([image], min_confidence=threshold)[0]
    first_s = time.perf_counter() - t0
    median, times, cores = common.timed_median(lambda: model.detect([image], min_confidence=threshold),
                                               spec["repeats"], warmup=1)
    return {"s_per_image": round(median, 4), "times": times, "cores_busy": cores,
            "build_s": round(build_s, 2), "first_call_s": round(first_s, 2),
            "detections": int(len(result["scores"])), "runtime": model.runtime_settings(),
            "settings": {**{k: getattr(config, k) for k in (
                "BACKBONE", "POST_NMS_ROIS_INFERENCE", "PRE_NMS_LIMIT", "DETECTION_MAX_INSTANCES",
                "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE", "NUM_CLASSES", "IMAGES_PER_GPU")},
                "min_confidence": threshold}}


def _synthetic_dataset(size, count):
    """A tiny mrcnn Dataset of synthetic lesions (one instance per image) at size x size."""
    import numpy as np
    from mrcnn.dataset import Dataset
    from skinlesion import synthetic

    class Lesions(Dataset):
        def load_image(self, image_id):
            return synthetic.generate((17, image_id), size=(size, size))[0]

        def load_mask(self, image_id):
            mask = synthetic.generate((17, image_id), size=(size, size))[1]
            return mask[:, :, None], np.array([1], np.int32)

    dataset = Lesions()
    dataset.add_class("bench", 1, "lesion")
    for i in range(count):
        dataset.add_image("bench", i, f"synthetic:{i}")
    dataset.prepare()
    return dataset


def step_optimizer(config):
    """The optimizer MaskRCNN.train() builds for config (mrcnn.training.make_optimizer), at a constant
    LEARNING_RATE: the isolated step needs no learning-rate schedule.

    LesionConfig: Adam; Matterport's Config: SGD with momentum (both 1e-3).
    """
    from mrcnn.training import make_optimizer
    return make_optimizer(config, config.LEARNING_RATE)


def phase_train(spec):
    import numpy as np
    import tensorflow as tf
    from mrcnn.data import DataGenerator
    from mrcnn.model import LAYER_REGEX, MaskRCNN
    from mrcnn.training import MaskRCNNTrainer, build_optimizer
    size = spec["size"]
    lesion = spec["config"].startswith("lesion")
    if lesion:
        # The model lesions.py --mode train builds (LesionConfig: Adam, group norm, batch 2).
        # Its first batch comes from the end-to-end row's data and classes (real PH2 when
        # present), so both rows do the same work: the mask head runs on the batch's positives.
        from skinlesion import LesionConfig, LesionDataset
        folder, classes = common.training_folder(spec["cache_dir"])
        config = LesionConfig(IMAGE_MIN_DIM=size, IMAGE_MAX_DIM=size, WORKERS=1, classes=classes)
        dataset = LesionDataset()
        dataset.load(folder, "train", classes=classes)
        dataset.prepare()
    else:
        config = matterport_config(size, images_per_gpu=2)
        config.TRAIN_BN = True  # the peer trains every layer, batch-norm included (no pretrained weights)
        dataset = _synthetic_dataset(size, config.BATCH_SIZE)
    optimizer = step_optimizer(config)
    config.COMPUTE_DTYPE = forced_dtype(spec["config"]) or config.COMPUTE_DTYPE
    t0 = time.perf_counter()
    model = MaskRCNN("training", config, model_dir=tempfile.mkdtemp(prefix="bench_speed_"))
    model.set_trainable(LAYER_REGEX["all"])
    trainer = MaskRCNNTrainer(model.keras_model, config)
    trainer.compile(optimizer=optimizer)
    build_optimizer(trainer.optimizer, model.keras_model.trainable_variables)  # as MaskRCNN.train does
    build_s = time.perf_counter() - t0
    augmentation = None
    if lesion:
        # The batches lesions.py --mode train makes: shuffled, with its default augmentation.
        # The step's cost follows the batch (the mask head runs on its positives, and the
        # re-framed lesions give more of them): unaugmented PH2 batches ran 15-20 % faster.
        from skinlesion.augment import dermoscopy_augmentation  # augmentation_for("default"), seeded
        augmentation = dermoscopy_augmentation(seed=7)
    generator = DataGenerator(dataset, config, shuffle=lesion, augmentation=augmentation, workers=1, seed=7)
    batch = {k: tf.constant(v) for k, v in generator[0].items()}
    t0 = time.perf_counter()
    logs = trainer.train_on_batch(batch, return_dict=True)
    first_s = time.perf_counter() - t0
    batches = [batch]
    repeats = spec["repeats"]
    if lesion:
        # A different real batch per timed step, at least LESION_BATCHES of them (built beforehand,
        # so loading is not timed): the cost varies from batch to batch. Then a model past its
        # first steps: once the RPN finds the lesion, more ROIs are positive and the mask head
        # works on them, so a step costs about 25 % more than at random weights (the same 8
        # batches, session 11: 0.99 s at random weights, 1.25 s after 30 steps).
        repeats = max(repeats, LESION_BATCHES)
        batches = [{k: tf.constant(v) for k, v in generator[i % len(generator)].items()}
                   for i in range(repeats + 1)]
        for i in range(LESION_WARM_STEPS):
            trainer.train_on_batch(batches[i % len(batches)])
    turn = iter(range(10 ** 6))

    def step():
        return trainer.train_on_batch(batches[next(turn) % len(batches)])

    median, times, cores = common.timed_median(step, repeats, warmup=1)
    logs = trainer.train_on_batch(batch, return_dict=True)
    return {"s_per_step": round(median, 4), "times": times, "cores_busy": cores,
            "build_s": round(build_s, 2), "first_step_s": round(first_s, 2),
            "loss_finite": bool(np.isfinite(float(logs["loss"]))),
            "runtime": model.runtime_settings(),
            "settings": {"batch": config.BATCH_SIZE, "TRAIN_ROIS_PER_IMAGE": config.TRAIN_ROIS_PER_IMAGE,
                         "POST_NMS_ROIS_TRAINING": config.POST_NMS_ROIS_TRAINING, "layers": "all",
                         "TRAIN_BN": config.TRAIN_BN, "optimizer": type(optimizer).__name__,
                         "COMPUTE_DTYPE": config.COMPUTE_DTYPE, "distinct_batches": len(batches),
                         "augmentation": "default" if lesion else None,
                         "warm_steps": LESION_WARM_STEPS if lesion else 0}}


def phase_train_e2e(spec):
    """lesions.py --mode train in a child process for 2 epochs; seconds per step of the second."""
    import re
    dataset, classes = common.training_folder(spec["cache_dir"])
    logs = tempfile.mkdtemp(prefix="bench_e2e_")
    steps = int(spec["steps"])
    cmd = [sys.executable, os.path.join(ROOT, "lesions.py"), "--mode", "train", "--dataset", dataset,
           "--classes", classes, "--logs", logs, "--epochs-heads", "2", "--epochs-all", "0",
           "--config", f"STEPS_PER_EPOCH={steps}", "--config", "VALIDATION_STEPS=0",
           "--config", "LEARNING_RATE_DECAY=cosine", "--config", f"IMAGE_MAX_DIM={spec['size']}",
           "--config", f"IMAGE_MIN_DIM={spec['size']}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    found = re.findall(r"epoch (\d+) \((\d+) steps, ([0-9.]+) s/step\)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"lesions.py exited {proc.returncode}: {proc.stderr[-2000:]}")
    per_epoch = [float(f[2]) for f in found]
    runtime_json = None
    for root, _, files in os.walk(logs):
        if "runtime.json" in files:
            with open(os.path.join(root, "runtime.json")) as f:
                runtime_json = json.load(f)
    return {"s_per_step": per_epoch[-1], "per_epoch_s_per_step": per_epoch, "steps_per_epoch": steps,
            "dataset": dataset, "classes": classes, "wall_s": round(wall, 1), "runtime": runtime_json,
            "command": " ".join(cmd[1:])}


def isic_folder(cache_dir, count=PREDICT_IMAGES):
    """Folder of `count` ISIC-sized synthetic JPEGs (quality 90), generated once and reused."""
    import cv2
    from PIL import Image
    from skinlesion import synthetic
    folder = os.path.join(cache_dir, f"isic{count}_{ISIC_SIZE[1]}x{ISIC_SIZE[0]}")
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return folder
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        small, _, _ = synthetic.generate((23, i), size=(ISIC_SIZE[0] // 4, ISIC_SIZE[1] // 4))
        big = cv2.resize(small, (ISIC_SIZE[1], ISIC_SIZE[0]), interpolation=cv2.INTER_CUBIC)
        Image.fromarray(big).save(os.path.join(folder, f"ISIC_{i:07d}.jpg"), quality=90)
    open(done, "w").close()
    return folder


def inference_model_unthresholded(config):
    """An inference MaskRCNN as lesions.py --mode predict builds it (skinlesion.runs.inference_model_for).

    Random weights; its detect() returns every scored detection and
    Predictor applies config.DETECTION_MIN_CONFIDENCE itself.
    """
    from skinlesion.runs import inference_model_for
    return inference_model_for(config, "none", model_dir=tempfile.mkdtemp(prefix="bench_speed_"))


class TimedDetect:
    """A MaskRCNN whose detect() calls are timed (seconds: one entry per call); all else passes through.

    Wraps the model instead of replacing its detect method: Predictor only
    needs .detect() and .config, and the library has no timing hook.
    """

    def __init__(self, model):
        self.model = model
        self.seconds = []

    def detect(self, images, verbose=0, min_confidence=None):
        """model.detect(images, verbose, min_confidence), timed. Returns its list of result dicts."""
        start = time.perf_counter()
        results = self.model.detect(images, verbose=verbose, min_confidence=min_confidence)
        self.seconds.append(time.perf_counter() - start)
        return results

    def __getattr__(self, name):
        return getattr(self.model, name)


def phase_predict(spec):
    import numpy as np
    from skinlesion import LesionConfig
    from skinlesion.inference import Predictor, list_images
    folder = isic_folder(spec["cache_dir"])
    paths = list_images(folder)
    config = LesionConfig(IMAGES_PER_GPU=1, GPU_COUNT=1)
    model = inference_model_unthresholded(config)
    if spec.get("full_detections", True):
        favour_foreground(model)
    warm = np.random.default_rng(0).integers(0, 256, ISIC_SIZE + (3,), dtype=np.uint8)
    model.detect([warm] * config.BATCH_SIZE)
    model.detect([warm] * config.BATCH_SIZE)
    timed = TimedDetect(model)
    out_dir = tempfile.mkdtemp(prefix="bench_speed_predict_")
    predictor = Predictor(timed, config.CLASS_NAMES, out_dir, config.DETECTION_MIN_CONFIDENCE)
    with common.Stopwatch() as clock:
        outcome = predictor.run(Predictor.file_sources(paths), progress=False)
        predictor.write_summary(outcome, {"weights": None})
    wall = clock.wall_s
    detections = [len(r["detections"]) for r in outcome["images"]]
    return {"images": len(outcome["images"]), "skipped": len(outcome["skipped"]),
            "wall_s": round(wall, 2), "images_per_s": round(len(outcome["images"]) / wall, 3),
            "cores_busy": round(clock.cores_busy, 2), "cpu_count": os.cpu_count(),
            "detect_busy_fraction": round(sum(timed.seconds) / wall, 3),
            "detect_s_per_image": round(statistics.median(timed.seconds), 4),
            "mean_detections": round(float(np.mean(detections)), 2) if detections else 0,
            "image_size": f"{ISIC_SIZE[1]}x{ISIC_SIZE[0]}", "model_input": int(config.IMAGE_MAX_DIM),
            "overlays": True, "folder": folder}


def phase_profile(spec):
    """Cumulative sub-graphs of the detect graph at spec['size'], plus the numpy ends of detect()."""
    import keras
    import numpy as np
    import tensorflow as tf
    from mrcnn.model import MaskRCNN
    from mrcnn.transform import transform_of
    size = spec["size"]
    config = make_config(spec)
    model = MaskRCNN("inference", config, model_dir=tempfile.mkdtemp(prefix="bench_speed_"))
    if spec.get("full_detections", True):
        favour_foreground(model)
    km = model.keras_model
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    molded, metas, windows = model.mold_inputs([image])
    anchors = model.get_anchors(molded[0].shape)[None]
    inputs = {"input_image": tf.constant(molded), "input_image_meta": tf.constant(metas, tf.float32),
              "input_anchors": tf.constant(anchors)}
    layer = km.get_layer
    stages = [  # (name, outputs of the cumulative sub-graph that ends the stage)
        ("backbone+FPN", [layer(n).output for n in ("fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6")]),
        ("RPN heads", [layer("rpn_class").output, layer("rpn_bbox").output]),
        ("proposal layer (top-k, NMS)", [layer("ROI").output]),
        ("classifier ROIAlign", [layer("roi_align_classifier").output]),
        ("classifier head", [layer("mrcnn_class").output, layer("mrcnn_bbox").output]),
        ("detection layer", list(layer("mrcnn_detection").output)),
        ("mask ROIAlign", [layer("roi_align_mask").output]),
        ("mask head", list(km.outputs)),
    ]
    # Stage costs are differences of cumulative medians. The sub-graphs are timed round-robin
    # (one call of each per round) so a change in the machine's load hits every stage alike.
    functions = []
    for name, outputs in stages:
        sub = keras.Model(km.input, outputs)
        fn = tf.function(lambda x, sub=sub: sub(x, training=False))
        functions.append(lambda fn=fn: [o.numpy() for o in tf.nest.flatten(fn(inputs))])
        functions[-1]()
        functions[-1]()
    times = [[] for _ in stages]
    for _ in range(2 * spec["repeats"]):
        for i, fn in enumerate(functions):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    rows, previous = [], 0.0
    for (name, _), stage_times in zip(stages, times):
        median = statistics.median(stage_times)
        rows.append({"stage": name, "cumulative_s": round(median, 4), "stage_s": round(median - previous, 4)})
        previous = median
    raw, _, _, _ = model.run_inference([image])
    threshold = spec.get("min_confidence", 0.0)
    transform = transform_of(model)
    median_mold, _, _ = common.timed_median(lambda: model.mold_inputs([image]), spec["repeats"])
    median_unmold, _, _ = common.timed_median(lambda: transform.unmold(
        {k: v[0] for k, v in raw.items()}, image.shape, molded[0].shape, windows[0], threshold), spec["repeats"])
    median_detect, _, _ = common.timed_median(lambda: model.detect([image], min_confidence=threshold),
                                              spec["repeats"], warmup=1)
    graph = rows[-1]["cumulative_s"]
    rows.append({"stage": "mold_inputs (numpy)", "stage_s": round(median_mold, 4)})
    rows.append({"stage": "unmold (numpy: threshold, unmold_detections)", "stage_s": round(median_unmold, 4)})
    rows.append({"stage": "detect() total", "stage_s": round(median_detect, 4)})
    rows.append({"stage": "detect() - graph - mold - unmold (feed/fetch)",
                 "stage_s": round(median_detect - graph - median_mold - median_unmold, 4)})
    real = int(np.sum(raw["detections"][0][:, 4] > 0))
    return {"size": size, "stages": rows, "detections": real}


PHASES = {"backbone": phase_backbone, "detect": phase_detect, "train": phase_train,
          "train_e2e": phase_train_e2e, "predict": phase_predict, "profile": phase_profile}


def run_phase(spec):
    # The end-to-end row only launches lesions.py: its own process imports no TensorFlow.
    _setup_child("train" if spec["phase"].startswith("train") else "predict",
                 tensorflow=spec["phase"] != "train_e2e")
    t0 = time.perf_counter()
    result = PHASES[spec["phase"]](spec)
    result["phase_wall_s"] = round(time.perf_counter() - t0, 1)
    result["peak_rss_mb_self"] = round(common.peak_rss_mb(), 1)
    print(RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent side
def run_child(cmd, timeout, log_path):
    """Run cmd; return (stdout, exit code, peak RSS MB, wall seconds, CPU cores busy, system-time share).

    The share is the child's system time over its CPU time (None when it used none).
    """
    with open(log_path, "ab") as err:
        err.write(f"\n==== {' '.join(cmd)}\n".encode())
        err.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read().decode(errors="replace")
            # wait4 gives this child's own rusage: its peak RSS, not the maximum over all children.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        cpu = usage.ru_utime + usage.ru_stime
        cores = cpu / max(wall, 1e-9)
        system_share = round(usage.ru_stime / cpu, 3) if cpu else None
        return out, proc.returncode, usage.ru_maxrss / 1024.0, wall, cores, system_share


def last_json(text, tag=""):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(tag):
            try:
                return json.loads(line[len(tag):])
            except ValueError:
                continue
    return None


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def plan(args):
    sizes = args.sizes
    lesion_sizes = [s for s in sizes if s <= 512]
    phases = [{"phase": "backbone", "config": "matterport", "size": s} for s in sizes]
    phases += [{"phase": "backbone", "config": "lesion", "size": s} for s in lesion_sizes]
    phases += [{"phase": "detect", "config": "matterport", "size": s} for s in sizes]
    phases += [{"phase": "detect", "config": "lesion", "size": s} for s in lesion_sizes]
    other = other_precision_suffix()
    if args.bf16:
        # Rows in the other precision at 512 (the target size): floor, detect and train.
        phases += [{"phase": "backbone", "config": "matterport" + other, "size": 512},
                   {"phase": "backbone", "config": "lesion" + other, "size": 512},
                   {"phase": "detect", "config": "matterport" + other, "size": 512},
                   {"phase": "detect", "config": "lesion" + other, "size": 512}]
    if not args.skip_train:
        phases.append({"phase": "train", "config": "matterport", "size": 512})
        if args.bf16:
            phases.append({"phase": "train", "config": "matterport" + other, "size": 512})
        phases.append({"phase": "train", "config": "lesion", "size": 256, "cache_dir": args.cache_dir})
        if args.e2e_steps:
            phases.append({"phase": "train_e2e", "config": "lesion", "size": 256, "steps": args.e2e_steps,
                           "cache_dir": args.cache_dir})
    if args.peer_python:
        phases += [{"phase": "peer", "size": s} for s in args.peer_sizes]
    if not args.skip_predict:
        phases.append({"phase": "predict", "config": "lesion", "size": 256, "cache_dir": args.cache_dir})
    if args.profile:
        phases.append({"phase": "profile", "config": "matterport", "size": 512})
    if args.phases:
        wanted = set(args.phases.split(","))
        phases = [p for p in phases if p["phase"] in wanted]
    for spec in phases:
        spec.setdefault("repeats", args.repeats)
        spec.setdefault("min_confidence", args.min_confidence)
        spec.setdefault("full_detections", not args.natural_detections)
    return phases


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def summarise(results, args):
    def find(phase, config=None, size=None):
        for r in results:
            if r["phase"] == phase and r.get("ok") and (config is None or r.get("config") == config) \
                    and (size is None or r.get("size") == size):
                return r
        return None

    def val(phase, key, config=None, size=None):
        r = find(phase, config, size)
        return r.get(key) if r else None

    peer = {r["size"]: r for r in results if r["phase"] == "peer" and r.get("ok")}
    ours_detect = {s: val("detect", "s_per_image", "matterport", s) for s in args.sizes}
    lesion_detect = {s: val("detect", "s_per_image", "lesion", s) for s in args.sizes if s <= 512}
    floor = {s: val("backbone", "s_per_image", "matterport", s) for s in args.sizes}
    lesion_floor = {s: val("backbone", "s_per_image", "lesion", s) for s in args.sizes if s <= 512}
    train = val("train", "s_per_step", "matterport")
    lesion_train = val("train", "s_per_step", "lesion")
    e2e_train = val("train_e2e", "s_per_step")
    other = other_precision_suffix()
    label = SUFFIX_DTYPE[other]
    alt = {"precision": label,
           "detect": val("detect", "s_per_image", "matterport" + other, 512),
           "lesion_detect": val("detect", "s_per_image", "lesion" + other, 512),
           "floor": val("backbone", "s_per_image", "matterport" + other, 512),
           "lesion_floor": val("backbone", "s_per_image", "lesion" + other, 512),
           "train": val("train", "s_per_step", "matterport" + other)}
    peer_detect = {s: p.get("detect_s_per_image") for s, p in peer.items()}
    peer_train = peer.get(512, {}).get("train_s_per_step")
    lo, hi = min(args.sizes), max(args.sizes)
    pixels = (hi / lo) ** 2
    growth = ratio(ratio(ours_detect.get(hi), ours_detect.get(lo)), pixels) if hi != lo else None
    peer_growth = (ratio(ratio(peer_detect.get(hi), peer_detect.get(lo)), pixels)
                   if lo in peer_detect and hi in peer_detect and hi != lo else None)
    cores = val("predict", "cores_busy")

    budgets = {}

    def flop_ratio(config_name):
        """Total / backbone+FPN multiply-accumulates at 512 px (bench/flops.py): the best ratio possible."""
        if config_name not in budgets:
            try:
                from bench.flops import budget
                config = lesion_config(512) if config_name == "lesion" else matterport_config(512)
                budgets[config_name] = budget(config, 512)
            except Exception as err:  # the table must still print
                budgets[config_name] = {"error": str(err)}
        return budgets[config_name].get("ideal_total_over_floor")

    def target(name, value, limit, above=False):
        passed = None if value is None else (value > limit if above else value <= limit)
        return {"target": name, "value": value, "limit": (">" if above else "<=") + f" {limit}",
                "pass": passed}

    def same_load(ours):
        """Whether ours and the peer ran with alike CPU (whole-process cores busy within 0.3).

        Both sides are measured the same way (CPU time / wall time of the child
        process, build included): the peer reports no timed-loop figure.
        """
        theirs = peer.get(512, {}).get("process_cores_busy")
        if ours is None or theirs is None:
            return None
        return abs(ours - theirs) <= 0.3

    targets = [
        dict(target("detect 512 ours/peer", ratio(ours_detect.get(512), peer_detect.get(512)), 0.5),
             same_load=same_load(val("detect", "process_cores_busy", "matterport", 512))),
        dict(target("train step 512 ours/peer", ratio(train, peer_train), 0.5),
             same_load=same_load(val("train", "process_cores_busy", "matterport"))),
        dict(target("detect 512 / backbone+FPN floor", ratio(ours_detect.get(512), floor.get(512)), 1.5),
             ideal=flop_ratio("matterport")),
        dict(target("  same, lesion settings", ratio(lesion_detect.get(512), lesion_floor.get(512)), 1.5),
             ideal=flop_ratio("lesion")),
        target(f"cost growth {lo}->{hi} / pixel growth", growth, 1.0),
        # steps/s of lesions.py --mode train over steps/s of the isolated step = isolated s / e2e s.
        target("lesions.py train / isolated step (steps/s)", ratio(lesion_train, e2e_train), 0.9, above=True),
    ]
    if args.bf16:
        targets += [
            dict(target(f"{label}: detect 512 ours/peer (fp32)", ratio(alt["detect"], peer_detect.get(512)), 0.5),
                 same_load=same_load(val("detect", "process_cores_busy", "matterport" + other, 512))),
            dict(target(f"{label}: train step 512 ours/peer (fp32)", ratio(alt["train"], peer_train), 0.5),
                 same_load=same_load(val("train", "process_cores_busy", "matterport" + other))),
            target(f"{label}: detect 512 / its floor", ratio(alt["detect"], alt["floor"]), 1.5),
            target(f"{label}:   same, lesion settings", ratio(alt["lesion_detect"], alt["lesion_floor"]), 1.5),
        ]
    targets += [
        target("predict: CPU cores busy", cores, 1.5, above=True),
    ]
    summary = {"detect_s_per_image": {"matterport": ours_detect, "lesion": lesion_detect, "peer": peer_detect},
               "other_precision_512": alt,
               "backbone_fpn_s_per_image": floor, "lesion_backbone_fpn_s_per_image": lesion_floor,
               "gmac_512": budgets, "train_s_per_step": {"ours": train, "peer": peer_train,
                                                         "lesion_isolated_256": lesion_train,
                                                         "lesion_e2e_256": e2e_train},
               "lesion_over_matterport": {s: ratio(lesion_detect.get(s), ours_detect.get(s)) for s in lesion_detect},
               "peer_cost_growth": peer_growth,
               "predict": {k: val("predict", k) for k in ("images_per_s", "cores_busy", "detect_busy_fraction",
                                                          "detect_s_per_image", "wall_s", "images")}}
    return summary, targets


def fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_machine(results):
    """CPU, flags, oneDNN state and precision of the phases (from their runtime rows)."""
    rows = [r.get("runtime") for r in results if r.get("runtime")]
    if not rows:
        return
    first = rows[0]
    print(f"\nCPU: {first['cpu']} ({os.cpu_count()} cores); flags: {' '.join(first['flags']) or '-'}")
    seen = {}
    for r in results:
        rt = r.get("runtime")
        if rt:
            key = (r["phase"], "on" if rt["onednn"] else "off", rt["onednn_source"], rt.get("compute_dtype"),
                   rt.get("malloc_tuned"))
            seen.setdefault(key, []).append(f"{r.get('config', '')} {r['size']}")
    for (phase, onednn, source, dtype, malloc), which in seen.items():
        print(f"  {phase:<10} oneDNN {onednn} ({source}), precision {dtype}, malloc tuned {malloc}: "
              f"{', '.join(which)}")


def print_table(results, summary, targets, args):
    peer = {r["size"]: r for r in results if r["phase"] == "peer" and r.get("ok")}
    print_machine(results)
    print(f"\n{'measure':<38}{'size':>6}{'ours':>10}{'peer':>10}{'ours/peer':>11}{'peak MB':>9}{'cores':>7}"
          f"{'sys %':>7}")
    for r in results:
        if r["phase"] == "peer":
            continue
        if not r.get("ok"):
            print(f"{r['phase'] + ' ' + r.get('config', ''):<38}{r.get('size', ''):>6}  FAILED: {r.get('error')}")
            continue
        p = peer.get(r["size"], {})
        if r["phase"] == "backbone":
            name, ours, theirs = f"backbone+FPN forward s/img ({r['config']})", r["s_per_image"], None
        elif r["phase"] == "detect":
            name = f"detect s/img ({r['config']}, {r['detections']} det)"
            ours = r["s_per_image"]
            theirs = p.get("detect_s_per_image") if r["config"].startswith("matterport") else None
        elif r["phase"] == "train":
            name, ours, theirs = (f"train s/step (batch 2, {r['config']})", r["s_per_step"],
                                  p.get("train_s_per_step") if r["config"].startswith("matterport") else None)
        elif r["phase"] == "train_e2e":
            name, ours, theirs = (f"lesions.py train s/step ({r['classes']})", r["s_per_step"], None)
        elif r["phase"] == "predict":
            name, ours, theirs = (f"predict img/s ({r['images']} x {r['image_size']})",
                                  r["images_per_s"], None)
        else:
            continue
        share = r.get("system_time_share")
        print(f"{name:<38}{r['size']:>6}{fmt(ours):>10}{fmt(theirs):>10}{fmt(ratio(ours, theirs)):>11}"
              f"{fmt(r.get('peak_rss_mb'), 0):>9}{fmt(r.get('cores_busy'), 2):>7}"
              f"{fmt(None if share is None else 100 * share, 0):>7}")
    for s, r in sorted(peer.items()):
        print(f"{'peer torchvision (detect | train)':<38}{s:>6}{fmt(r.get('detect_s_per_image')):>10}"
              f"{fmt(r.get('train_s_per_step')):>10}{'':>11}{fmt(r.get('peak_rss_mb'), 0):>9}"
              f"{fmt(r.get('process_cores_busy'), 2):>7}")
    for r in results:
        if r["phase"] == "peer" and not r.get("ok"):
            print(f"{'peer':<38}{r['size']:>6}  FAILED: {r.get('error')}")
    for s, v in summary["lesion_over_matterport"].items():
        print(f"{'lesion settings / matterport (detect)':<38}{s:>6}{fmt(v):>10}")
    pr = summary["predict"]
    if pr.get("images_per_s") is not None:
        print(f"predict: {pr['images_per_s']} img/s, {pr['cores_busy']} cores busy, "
              f"model busy {pr['detect_busy_fraction']:.0%} of the wall time")
    loads = [r["loadavg_1min_at_end"] for r in results if "loadavg_1min_at_end" in r]
    if loads:
        print(f"machine: {os.cpu_count()} cores; 1-min load average after the phases {min(loads)}..{max(loads)} "
              "(cores < ~1.8 in a model phase: another process held CPU)")
    print(f"\n{'target':<38}{'value':>10}{'limit':>10}{'':>3}result")
    for t in targets:
        note = "  (ours and peer ran under different CPU load: rerun)" if t.get("same_load") is False else ""
        if t.get("ideal") is not None:
            note += f"  (arithmetic bound {t['ideal']}: total / floor multiply-accumulates, bench/flops.py)"
        print(f"{t['target']:<38}{fmt(t['value']):>10}{t['limit']:>10}{'':>3}"
              f"{'n/a' if t['pass'] is None else fmt(t['pass'])}{note}")
    prof = next((r for r in results if r["phase"] == "profile" and r.get("ok")), None)
    if prof:
        print(f"\nprofile: detect at {prof['size']} px ({prof['detections']} detections), median seconds")
        for row in prof["stages"]:
            print(f"  {row['stage']:<48}{row['stage_s']:>8.3f}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated detect sizes (default 256,512,1024; "
                                                 "--quick: 256,512)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measure (default 5; --quick 3)")
    p.add_argument("--quick", action="store_true", help="3 repeats, no 1024, no predict throughput")
    p.add_argument("--peer-python", default=None, help="interpreter with torch+torchvision (e.g. .peer-venv/bin/python)")
    p.add_argument("--peer-script", default=PEER_SCRIPT,
                   help="the torchvision peer (default: <repo root>/../shared/bench/peer_torchvision.py)")
    p.add_argument("--peer-sizes", default="512", help="sizes to run the peer at (comma-separated; 512 "
                                                       "is needed for the ratios)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--no-other-precision", "--no-bf16", dest="bf16", action="store_false",
                   help="skip the rows in the precision COMPUTE_DTYPE=auto does not pick here (floor, detect, "
                        "train at 512: bfloat16 where auto is float32, float32 where auto is bfloat16)")
    p.add_argument("--skip-predict", action="store_true")
    p.add_argument("--phases", default=None,
                   help="only these phases, comma-separated (backbone,detect,train,train_e2e,peer,predict,profile)")
    p.add_argument("--e2e-steps", type=int, default=30,
                   help="steps per epoch of the lesions.py --mode train row (2 epochs; 0 skips it)")
    p.add_argument("--profile", action="store_true", help="also time the sub-graphs of detect at 512")
    p.add_argument("--min-confidence", type=float, default=0.0,
                   help="detect(min_confidence=) of the detect and profile rows (the graph keeps every scored "
                        "detection whatever it is; the mask head works on ~all 100 slots)")
    p.add_argument("--natural-detections", action="store_true",
                   help="keep the plain random classifier (few detections) instead of biasing it to "
                        "foreground so the mask head sees ~DETECTION_MAX_INSTANCES boxes, as the peer's does")
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "mrcnn_bench_cache"),
                   help="where the 50 ISIC-sized JPEGs are generated once")
    p.add_argument("--timeout", type=float, default=900, help="seconds per phase before it is killed")
    common.add_out_argument(p, "bench_speed.json", "result JSON; the children's stderr goes beside it")
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal: run one phase (JSON spec)
    args = p.parse_args(argv)
    if args.phase:
        return args
    args.sizes = [int(s) for s in (args.sizes or ("256,512" if args.quick else "256,512,1024")).split(",")]
    args.peer_sizes = [int(s) for s in args.peer_sizes.split(",")]
    args.repeats = args.repeats or (3 if args.quick else 5)
    if args.quick:
        args.skip_predict = True
    if args.peer_python and not os.path.exists(args.peer_python):
        p.error(f"--peer-python {args.peer_python}: no such interpreter; create it as in bench/README.md")
    peer_runs = args.peer_python and (not args.phases or "peer" in args.phases.split(","))
    if peer_runs and not os.path.isfile(args.peer_script):
        p.error(f"--peer-script {args.peer_script}: no such file; the peer script is looked for at "
                "<repo root>/../shared/bench/peer_torchvision.py unless --peer-script PATH names it")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.phase:
        run_phase(json.loads(args.phase))
        return 0
    out_path = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    log_path = os.path.splitext(out_path)[0] + ".stderr.log"
    open(log_path, "w").close()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_before = os.getloadavg()
    results = []
    for spec in plan(args):
        label = f"{spec['phase']} {spec.get('config', 'torchvision')} {spec['size']}"
        print(f"[{time.strftime('%H:%M:%S')}] {label} ...", file=sys.stderr, flush=True)
        if spec["phase"] == "peer":
            cmd = [args.peer_python, args.peer_script, "--size", str(spec["size"]), "--repeats", str(spec["repeats"])]
            text, code, rss, wall, cores, system_share = run_child(cmd, args.timeout, log_path)
            payload = last_json(text)
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--phase", json.dumps(spec)]
            text, code, rss, wall, cores, system_share = run_child(cmd, args.timeout, log_path)
            payload = last_json(text, RESULT_TAG)
        entry = dict(spec, ok=bool(code == 0 and payload), peak_rss_mb=round(rss, 1), wall_s=round(wall, 1),
                     loadavg_1min_at_end=round(os.getloadavg()[0], 2), process_cores_busy=round(cores, 2),
                     system_time_share=system_share)
        if entry["ok"]:
            entry.update(payload)
        else:
            entry["error"] = f"exit {code}; see {log_path}"
            print(tail(log_path), file=sys.stderr)
        results.append(entry)
    summary, targets = summarise(results, args)
    print_table(results, summary, targets, args)
    header = common.run_header(__file__, argv)
    machine = dict(common.machine_info(), loadavg_before=[round(v, 2) for v in load_before],
                   loadavg_after=[round(v, 2) for v in os.getloadavg()])
    payload = {"command": header["command"], "commit": header["commit"],
               "started": started, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": machine,
               "settings": {"sizes": args.sizes, "repeats": args.repeats, "quick": args.quick,
                            "min_confidence": args.min_confidence, "peer_sizes": args.peer_sizes
                            if args.peer_python else [], "peer_python": args.peer_python},
               "summary": summary, "targets": targets, "phases": results}
    common.write_json(out_path, payload)
    print(f"\nwritten: {out_path} (child stderr: {log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

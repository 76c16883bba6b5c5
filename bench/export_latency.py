#!/usr/bin/env python3
"""Latency per image of the exported SavedModel against MaskRCNN.detect(), same weights, one run.

    python bench/export_latency.py                       # LesionConfig (256 px), ISIC and HAM10000 sizes
    python bench/export_latency.py --quick               # 3 repeats, the HAM10000 size only
    python bench/export_latency.py --out logs/bench_export_latency.json

Builds a LesionConfig inference model with random weights (float32, the graph
keeping every scored detection, as `lesions.py --mode export` builds it),
biased to foreground so the mask head works on DETECTION_MAX_INSTANCES boxes
(bench/speed.py's favour_foreground), exports it with mrcnn.export and loads it
back with tf.saved_model.load in this process. Each row times one image of
that size end to end: detect() (cv2 molding, the graph, numpy unmolding,
full-size bool masks) against loaded.serve (TensorFlow molding, the graph,
TensorFlow unmolding, full-size uint8 masks, outputs fetched as numpy).
Calls alternate between the two; medians after two warm-up calls each. Target: the export no more than 10 % slower
(reported pass/fail, never asserted). The machine may be shared: compare the
ratio of one run, not seconds across runs.
"""
import argparse
import os
import statistics
import tempfile
import time

if __package__:  # imported as bench.export_latency
    from . import common
    from .speed import favour_foreground
else:  # run as a script: bench/ is sys.path[0]
    import common
    from speed import favour_foreground

SIZES = {"isic": (2000, 3008), "ham10000": (450, 600)}
TARGET_RATIO = 1.10
TABLE_HEADERS = ("image", "detect() ms", "SavedModel ms", "export / detect", "target <= 1.10")


def build(out_dir):
    """(MaskRCNN, loaded SavedModel) of one random-weight LesionConfig model exported to out_dir."""
    import keras
    import tensorflow as tf
    from mrcnn.export import export_saved_model
    from mrcnn.model import MaskRCNN
    from skinlesion import LesionConfig
    keras.utils.set_random_seed(0)
    config = LesionConfig(IMAGES_PER_GPU=1, GPU_COUNT=1, COMPUTE_DTYPE="float32")
    model = MaskRCNN("inference", config, out_dir)
    favour_foreground(model)
    export_saved_model(model, os.path.join(out_dir, "saved"), config.CLASS_NAMES)
    return model, tf.saved_model.load(os.path.join(out_dir, "saved"))


def measure(model, loaded, size, repeats):
    """Row dict of one image size: median seconds of detect() and of the SavedModel, their ratio."""
    import cv2
    import numpy as np
    import tensorflow as tf
    from skinlesion import synthetic
    small, _, _ = synthetic.generate(11, size=(size[0] // 4, size[1] // 4))
    image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    batch = tf.constant(image[None])

    def served():
        return {k: v.numpy() for k, v in loaded.serve(batch).items()}

    def detect():
        return model.detect([image])

    times = {"detect": [], "export": []}
    for call in (detect, served, detect, served):  # warm-up: tracing, graph optimisation
        call()
    # Alternating calls, so a load that comes and goes on a shared machine hits both alike.
    for _ in range(repeats):
        for name, call in (("detect", detect), ("export", served)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    detect_s, export_s = statistics.median(times["detect"]), statistics.median(times["export"])
    found = int(served()["num_detections"][0]), len(detect()[0]["scores"])
    ratio = export_s / detect_s
    return {"size": list(size), "detect_s": round(detect_s, 4), "export_s": round(export_s, 4),
            "ratio": round(ratio, 3), "passes": bool(ratio <= TARGET_RATIO),
            "times": {k: [round(t, 4) for t in v] for k, v in times.items()},
            "detections": {"export": found[0], "detect": found[1]}, "pixels": int(np.prod(size))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_out_argument(parser, "bench_export_latency.json")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per size (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, the HAM10000 size only")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mrcnn import runtime
    runtime.configure("predict")  # before TensorFlow is imported, as lesions.py does
    repeats = 3 if args.quick else args.repeats
    sizes = {"ham10000": SIZES["ham10000"]} if args.quick else SIZES
    with tempfile.TemporaryDirectory(prefix="bench_export_") as folder:
        model, loaded = build(folder)
        rows = {name: measure(model, loaded, size, repeats) for name, size in sizes.items()}
    table = common.markdown_table(TABLE_HEADERS, [
        (f"{name} {r['size'][1]}x{r['size'][0]}", f"{r['detect_s'] * 1000:.0f}", f"{r['export_s'] * 1000:.0f}",
         f"{r['ratio']:.2f}", "pass" if r["passes"] else "FAIL") for name, r in rows.items()])
    info = common.machine_info("float32")
    print(common.machine_summary(info))
    print(table)
    path = common.write_json(args.out, {**common.run_header(__file__, argv), "rows": rows, "table": table,
                                        "machine": info})
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does bfloat16 pay for the second-stage classifier? float32 vs mixed_bfloat16, side by side, per backbone.

    python bench/classifier_precision.py                                   # efficientnetv2b0, resnet50 at 128 px
    python bench/classifier_precision.py --backbones convnexttiny --sizes 128,224

Each (backbone, size, precision) runs in its own process (Keras' dtype policy
is process-wide): build_classifier with random weights, AdamW, two warm-up
``train_on_batch`` calls on one random batch, then the median of --repeats
timed calls, and images per second of ``predict_on_batch``. The result tells
whether ClassifierConfig should follow the Mask R-CNN's COMPUTE_DTYPE "auto"
(it trains in float32; README, "Second-stage classifier"). Not run by CI.
"""
import argparse
import json
import os
import subprocess
import sys
import time

if __package__:  # imported as bench.classifier_precision
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common


def child(backbone, size, precision, batch, repeats):
    """Time one configuration in this process; returns a dict (seconds per training batch, images per second)."""
    import keras
    import numpy as np
    if precision == "bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    from skinlesion.classifier import ClassifierConfig, build_classifier
    model = build_classifier(ClassifierConfig(BACKBONE=backbone, IMAGE_SIZE=size, CLASS_SCHEME="melanoma"), 2)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, batch)
    train = common.timed_median(lambda: model.train_on_batch(x, y), repeats, warmup=2)[0]
    predict = common.timed_median(lambda: model.predict_on_batch(x), repeats, warmup=1)[0]
    return {"backbone": backbone, "size": size, "precision": precision, "batch": batch,
            "train_s_per_batch": train, "train_images_per_s": batch / train, "predict_images_per_s": batch / predict}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="efficientnetv2b0,resnet50")
    parser.add_argument("--sizes", default="128")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    common.add_out_argument(parser, "bench_classifier_precision.json")
    args = parser.parse_args(argv)
    if args.child:
        backbone, size, precision = args.child.split(":")
        print(json.dumps(child(backbone, int(size), precision, args.batch, args.repeats)))
        return 0
    rows = []
    for backbone in args.backbones.split(","):
        for size in args.sizes.split(","):
            for precision in ("float32", "bfloat16"):
                started = time.perf_counter()
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child",
                                      f"{backbone}:{size}:{precision}", "--batch", str(args.batch),
                                      "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["process_s"] = round(time.perf_counter() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    common.write_json(args.out, {**common.run_header(__file__, argv), "rows": rows})
    table = [[r["backbone"], r["size"], r["precision"], f"{r['train_s_per_batch']:.3f}",
              f"{r['train_images_per_s']:.1f}", f"{r['predict_images_per_s']:.1f}"] for r in rows]
    print(common.markdown_table(["backbone", "px", "precision", "train s / batch", "train images / s",
                                 "predict images / s"], table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

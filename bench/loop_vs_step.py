"""Does the training loop run at the speed of its step? One model, timed both ways at the same point.

    python bench/loop_vs_step.py                      # PH2 from ../shared/data (else a synthetic folder)
    python bench/loop_vs_step.py --epochs 2 --steps 30 --batches 8 --out logs/bench_loop_vs_step.json

A training step's cost changes as the model learns: at random weights the RPN
proposes few boxes on the lesion, so few of the ROIs are positive and the mask
head (trained on real positives only) has little to do; once it finds lesions
the step costs more. Comparing ``lesions.py --mode train`` with an isolated
step of a fresh model (bench/speed.py's rows) therefore mixes two things. Here
one LesionConfig model (256 px, as lesions.py builds it) alternates between
``MaskRCNN.train`` epochs of ``--steps`` steps (the loop lesions.py runs: its
data generator, augmentation, callbacks) and ``train_on_batch`` on ``--batches``
fixed, shuffled, augmented batches built beforehand (loading not timed) at a
negligible learning rate, so timing them does not move the model. Printed and
written to --out: the isolated median before training and after each epoch,
each epoch's seconds per step (EpochSummary's figure: first to last step), and
loop / isolated per epoch (isolated after the epoch over the epoch's s/step,
as steps per second: >= 0.9 is issue 16's target).
"""
import argparse
import logging
import os
import tempfile
import time

if __package__:  # imported as bench.loop_vs_step
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

TIMING_RATE = 1e-9  # Adam's update is ~rate per weight: timing steps leave the model as it was


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="loop epochs (default 2)")
    parser.add_argument("--steps", type=int, default=30, help="steps per loop epoch (default 30)")
    parser.add_argument("--batches", type=int, default=8, help="fixed batches timed in isolation (default 8)")
    parser.add_argument("--size", type=int, default=256)
    common.add_out_argument(parser, "bench_loop_vs_step")
    args = parser.parse_args(argv)
    import mrcnn.runtime
    mrcnn.runtime.configure("train")
    import numpy as np
    import tensorflow as tf
    from mrcnn.callbacks import EpochSummary
    from mrcnn.data import DataGenerator
    from mrcnn.model import LAYER_REGEX, MaskRCNN
    from mrcnn.training import MaskRCNNTrainer, build_optimizer, make_optimizer
    from skinlesion import LesionConfig, LesionDataset
    from skinlesion.augment import dermoscopy_augmentation
    from skinlesion.runs import augmentation_for
    logging.basicConfig(level=logging.WARNING)

    path, scheme = common.training_folder(os.path.join(tempfile.gettempdir(), "mrcnn_bench_cache"))
    config = LesionConfig(IMAGE_MIN_DIM=args.size, IMAGE_MAX_DIM=args.size, classes=scheme,
                          LEARNING_RATE_DECAY="cosine", STEPS_PER_EPOCH=args.steps, VALIDATION_STEPS=0,
                          VERBOSE=0)
    dataset = LesionDataset()
    dataset.load(path, "train", classes=scheme)
    dataset.prepare()
    model = MaskRCNN("training", config, model_dir=tempfile.mkdtemp(prefix="bench_loop_"))
    model.set_trainable(LAYER_REGEX["all"])
    timer = MaskRCNNTrainer(model.keras_model, config)
    timer.compile(optimizer=make_optimizer(config, TIMING_RATE))
    build_optimizer(timer.optimizer, model.keras_model.trainable_variables)
    generator = DataGenerator(dataset, config, shuffle=True, augmentation=dermoscopy_augmentation(seed=7),
                              workers=1, seed=7)
    batches = [{k: tf.constant(v) for k, v in generator[i].items()} for i in range(args.batches + 1)]

    def isolated():
        timer.train_on_batch(batches[0])  # warm-up (the first call traces)
        times = []
        for batch in batches[1:]:
            start = time.perf_counter()
            timer.train_on_batch(batch)
            times.append(time.perf_counter() - start)
        return float(np.median(times)), [round(t, 3) for t in times]

    rows = []
    median, times = isolated()
    rows.append({"after_loop_steps": 0, "isolated_s": round(median, 4), "isolated_times": times})
    print(f"isolated, random weights: {median:.3f} s/step", flush=True)
    for epoch in range(1, args.epochs + 1):
        summary = EpochSummary()  # a second one beside the run's own: its figure, read back here
        model.train(dataset, None, config.LEARNING_RATE, epochs=model.epoch + 1, layers="all",
                    augmentation=augmentation_for("default"), custom_callbacks=[summary])
        loop_s = round(summary.seconds_per_step, 4)
        median, times = isolated()
        ratio = round(median / loop_s, 3) if loop_s else None
        rows.append({"after_loop_steps": epoch * args.steps, "loop_s_per_step": loop_s,
                     "isolated_s": round(median, 4), "isolated_times": times, "loop_over_isolated": ratio})
        print(f"loop epoch {epoch}: {loop_s:.3f} s/step; isolated after it: {median:.3f} s/step; "
              f"loop / isolated (steps/s) {ratio}", flush=True)
    out = common.write_json(args.out, {**common.run_header(__file__, argv), "dataset": path, "scheme": scheme,
                                       "size": args.size, "steps_per_epoch": args.steps, "rows": rows})
    print(f"written: {out}")
    return rows


if __name__ == "__main__":
    main()

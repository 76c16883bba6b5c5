"""The learning test's score over seeds: how far tests/test_learning.py's mark sits from its runs.

    python bench/learning_seeds.py --seeds 1,2,3,4 --jobs 2                 # the test's data and steps
    python bench/learning_seeds.py --seeds 1,2,3 --overlapping --count 24   # the data the test used before

tests/test_learning.py trains one 64 px shapes model from random weights and
asserts mask mAP@0.5 >= 0.9 on its training images. A test like that is only
worth its time if a working model passes it every time on every CPU and a
broken loss cannot; this script measures the first half. Each seed is its own
process (``--jobs`` at once): Keras' initial weights and the image order are
seeded (``keras.utils.set_random_seed``, ``MaskRCNN.shuffle_seed``), the
training is the test's (``LearningConfig``, ``--epochs`` x 50 steps of 2
images, cosine decay), and every image's AP is kept, so an image that fails
under most seeds (a draw no model can get right) stands out from one that
fails by chance. The JSON (--out) holds every run; the table prints mAP and
the images under AP 1 per seed.
"""
import argparse
import json
import os
import subprocess
import sys

if __package__:  # imported as bench.learning_seeds
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

TESTS = os.path.join(common.ROOT, "tests")


def train_and_score(seed, epochs, count, separate):
    """Train the learning test's model with one seed; return {"map", "aps", "train_s"} (runs in a child)."""
    import tempfile
    import time

    sys.path.insert(0, TESTS)
    import test_learning
    from mrcnn_shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load(count, seed=1, separate=separate)
    dataset.prepare()
    test_learning.EPOCHS = epochs
    started = time.monotonic()
    model = test_learning.train_learning_model(dataset, tempfile.mkdtemp(prefix="learning_seeds_"), seed)
    train_s = time.monotonic() - started  # training, plus building the inference model
    aps = [round(ap, 4) for ap in test_learning.image_aps(dataset, model)]
    return {"map": sum(aps) / len(aps), "aps": aps, "train_s": round(train_s, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3,4", help="comma list of seeds, one training each")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of 50 steps (the test: 8)")
    parser.add_argument("--count", type=int, default=32, help="shapes images (the test: 32)")
    parser.add_argument("--overlapping", action="store_true",
                        help="shapes may overlap (the test's data before session 13)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (each its own process)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    common.add_out_argument(parser, "bench_learning_seeds.json")
    args = parser.parse_args(argv)
    if args.child is not None:  # one training, its result as the last stdout line
        print("RESULT " + json.dumps(train_and_score(args.child, args.epochs, args.count, not args.overlapping)))
        return
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    header = common.run_header(__file__, argv)
    runs, pending = [], list(seeds)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    while pending:
        batch, pending = pending[:args.jobs], pending[args.jobs:]
        children = [(seed, subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", str(seed), "--epochs", str(args.epochs),
             "--count", str(args.count)] + (["--overlapping"] if args.overlapping else []),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=common.ROOT))
            for seed in batch]
        for seed, child in children:
            out, _ = child.communicate()
            lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
            if child.returncode or not lines:
                runs.append({"seed": seed, "error": f"exit {child.returncode}"})
                print(f"seed {seed}: failed (exit {child.returncode})", flush=True)
                continue
            run = {"seed": seed, **json.loads(lines[-1][len("RESULT "):])}
            runs.append(run)
            print(f"seed {seed}: mAP@0.5 {run['map']:.3f} in {run['train_s']:.0f} s", flush=True)
    rows = [[r["seed"], f"{r['map']:.3f}" if "map" in r else r["error"],
             ", ".join(f"{i}: {ap:g}" for i, ap in enumerate(r.get("aps", [])) if ap < 1) or "-",
             r.get("train_s", "")] for r in runs]
    print(common.markdown_table(["seed", "mask mAP@0.5", "images under AP 1 (index: AP)", "train s"], rows))
    payload = {**header, "epochs": args.epochs, "count": args.count, "separate": not args.overlapping,
               "runs": runs}
    print("wrote", common.write_json(args.out, payload))


if __name__ == "__main__":
    main()

"""The fixed PH2 benchmark split, shared by bench/ph2.py and the baselines.

``python bench/ph2_split.py --data ../shared/data/PH2Dataset --out logs/ph2/split.json``
(both are the defaults, relative to the repository root)

The split is the one ``lesions.py --dataset PH2 --split 0.8,0,0.2 --seed 0``
uses (skinlesion.splits.assign_subsets, stratified by diagnosis): 160 train /
40 test with the 80/80/40 class mix kept in each. The JSON lists, per
subset, {"stem", "image", "mask", "diagnosis"} so a baseline reads exactly
the same files; bench/ph2.py and the command line also record the machine
in it (common.write_json), which readers of the split ignore.
"""
import argparse
import os
import sys

if __package__:  # imported as bench.ph2_split
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

from skinlesion import LesionDataset  # noqa: E402  (common puts the repository on sys.path)

SPLIT = (0.8, 0.0, 0.2)
SEED = 0
DEFAULT_DATA = os.path.join(common.SHARED_DATA, "PH2Dataset")


def ph2_split(data_dir, seed=SEED, split=SPLIT):
    """{"train": [...], "test": [...]} of {"stem", "image", "mask", "diagnosis"} for PH2 at data_dir."""
    result = {"data": os.path.abspath(data_dir), "seed": seed, "split": list(split)}
    for subset in ("train", "test"):
        dataset = LesionDataset()
        dataset.load(data_dir, subset, classes="ph2", seed=seed, split=split)
        dataset.prepare()
        result[subset] = [{"stem": info["stem"], "image": info["path"], "mask": info["mask_path"],
                           "diagnosis": info["label"]} for info in dataset.image_info]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="PH2Dataset folder")
    common.add_out_argument(parser, os.path.join("ph2", "split.json"), "split JSON")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        sys.exit(f"--data {args.data}: no such folder (the PH2Dataset folder with 'PH2 Dataset images')")
    split = ph2_split(args.data)
    common.write_json(args.out, split)
    counts = {s: {} for s in ("train", "test")}
    for s in counts:
        for item in split[s]:
            counts[s][item["diagnosis"]] = counts[s].get(item["diagnosis"], 0) + 1
    print(f"wrote {args.out}: train {len(split['train'])} {counts['train']}, "
          f"test {len(split['test'])} {counts['test']}")


if __name__ == "__main__":
    main()

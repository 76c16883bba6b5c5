"""The fixed PH2 benchmark split, shared by bench/ph2.py and the baselines.

``python bench/ph2_split.py --data ../shared/data/PH2Dataset --out logs/ph2/split.json``

The split is the one ``lesions.py --dataset PH2 --split 0.8,0,0.2 --seed 0``
uses (skinlesion.splits.assign_subsets, stratified by diagnosis): 160 train /
40 test with the 80/80/40 class mix kept in each. The JSON lists, per
subset, {"stem", "image", "mask", "diagnosis"} so a baseline reads exactly
the same files.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from skinlesion import LesionDataset  # noqa: E402

SPLIT = (0.8, 0.0, 0.2)
SEED = 0
DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                            "PH2Dataset")


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
    parser.add_argument("--out", default="logs/ph2/split.json")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        sys.exit(f"--data {args.data}: no such folder (the PH2Dataset folder with 'PH2 Dataset images')")
    split = ph2_split(args.data)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(split, f, indent=1)
    counts = {s: {} for s in ("train", "test")}
    for s in counts:
        for item in split[s]:
            counts[s][item["diagnosis"]] = counts[s].get(item["diagnosis"], 0) + 1
    print(f"wrote {args.out}: train {len(split['train'])} {counts['train']}, "
          f"test {len(split['test'])} {counts['test']}")


if __name__ == "__main__":
    main()

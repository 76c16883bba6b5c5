"""Multiply-accumulate counts of a Mask R-CNN config, per component: what the hardware must do.

    python bench/flops.py --size 512             # matterport and lesion settings
    python bench/flops.py --out logs/bench_flops.json    # (the default) 256 and 512 px

Counts convolutions and dense layers only (they are >99% of the arithmetic):
backbone + FPN by walking the built Keras graph, the RPN, classifier and mask
heads from the config (one image; POST_NMS_ROIS_INFERENCE ROIs through the
classifier, DETECTION_MAX_INSTANCES boxes through the mask head). The ratio
total / backbone+FPN is the best "detect / floor" a perfect implementation
could reach; bench/speed.py measures how close ours gets. Prints one line per
settings and size, then the markdown table of bench/README.md, and writes
them to --out (JSON, with the machine, which does not change the counts).
"""
import argparse

if __package__:  # imported as bench.flops
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

TABLE_HEADERS = ("settings", "size", "backbone+FPN", "RPN", "classifier", "mask head", "total GMAC",
                 "ideal total / floor")


def conv_macs(height, width, kernel, channels_in, channels_out):
    """MACs of a dense 2-D convolution producing a [height, width, channels_out] map."""
    return height * width * kernel * kernel * channels_in * channels_out


def backbone_fpn_macs(config, size):
    """MACs of backbone + FPN at a size x size input, from the built graph's Conv2D layers."""
    import keras
    from mrcnn.backbone import backbone_model
    net = backbone_model(config, (size, size, 3))
    total = 0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += h * w * k * layer.input.shape[-1] * c_out
    return total


def head_macs(config, size):
    """MACs of the RPN, the classifier on every proposal and the mask head on every detection slot."""
    depth = config.TOP_DOWN_PYRAMID_SIZE
    rpn_channels = config.RPN_CONV_CHANNELS
    anchors = len(config.RPN_ANCHOR_RATIOS)
    rpn = 0
    for stride in config.BACKBONE_STRIDES:
        side = size // stride
        rpn += conv_macs(side, side, 3, depth, rpn_channels)
        rpn += conv_macs(side, side, 1, rpn_channels, anchors * 2 + anchors * 4)
    fc = config.FPN_CLASSIF_FC_LAYERS_SIZE
    pool = config.POOL_SIZE
    per_roi = pool * pool * depth * fc + fc * fc + fc * config.NUM_CLASSES * 5
    classifier = per_roi * config.POST_NMS_ROIS_INFERENCE
    m = config.MASK_POOL_SIZE
    per_mask = (conv_macs(m, m, 3, depth, 256) + 3 * conv_macs(m, m, 3, 256, 256)
                + m * m * 4 * 256 * 256 + conv_macs(2 * m, 2 * m, 1, 256, config.NUM_CLASSES))
    mask = per_mask * config.DETECTION_MAX_INSTANCES
    return {"rpn": rpn, "classifier": classifier, "mask": mask}


def budget(config, size):
    """{component: GMAC} and the ideal total / floor ratio for one image."""
    parts = {"backbone_fpn": backbone_fpn_macs(config, size), **head_macs(config, size)}
    gmac = {k: round(v / 1e9, 2) for k, v in parts.items()}
    total = sum(parts.values())
    gmac["total"] = round(total / 1e9, 2)
    gmac["ideal_total_over_floor"] = round(total / parts["backbone_fpn"], 2)
    return gmac


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append", help="input size (repeatable; default 256, 512)")
    common.add_out_argument(parser, "bench_flops.json")
    args = parser.parse_args(argv)
    from bench.speed import lesion_config, matterport_config
    rows = []
    for size in args.size or [256, 512]:
        for name, config in (("matterport", matterport_config(size)), ("lesion", lesion_config(size))):
            gmac = budget(config, size)
            print(f"{name:<11}{size:>5} px  {gmac}")
            rows.append({"settings": name, "size": size, "gmac": gmac})
    print()
    print(common.markdown_table(TABLE_HEADERS, [
        (r["settings"], r["size"], *(r["gmac"][k] for k in ("backbone_fpn", "rpn", "classifier", "mask", "total",
                                                              "ideal_total_over_floor"))) for r in rows]))
    path = common.write_json(args.out, {**common.run_header(__file__, argv), "rows": rows})
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()

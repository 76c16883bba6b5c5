"""Normalization layers, forward + backward on one activation tensor: keras' against ours.

    python bench/norms.py                 # 2x128x128x256, one CPU thread, float32 and bfloat16
    python bench/norms.py --shape 1,32,32,64 --repeats 3    # a quick check (seconds)

Times one training-mode call plus the gradient to the input and the weights
(median of --repeats after a warm-up): keras BatchNormalization vs
mrcnn.backbone.FusedBatchNorm, keras GroupNormalization (32 groups) vs
mrcnn.backbone's group norm. The README's design notes quote its output.
Prints one line per precision and layer, then the markdown table of
bench/README.md, and writes both to --out (JSON, with the machine).
"""
import argparse

if __package__:  # imported as bench.norms
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

TABLE_HEADERS = ("precision", "layer", "keras ms", "ours ms", "keras / ours")


def time_layer(layer, x, repeats):
    """Median milliseconds of one training-mode forward + backward of layer on x.

    x: a [B, H, W, C] tensor (float32 or bfloat16). The gradient is taken
    to x and to the layer's trainable weights; one untimed call first.
    """
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32))
        return tape.gradient(loss, [x] + layer.trainable_weights)

    median, _, _ = common.timed_median(step, repeats, warmup=1)
    return median * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2,128,128,256", help="B,H,W,C")
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads")
    parser.add_argument("--repeats", type=int, default=10)
    common.add_out_argument(parser, "bench_norms.json")
    args = parser.parse_args(argv)
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras import layers
    from mrcnn.backbone import FusedBatchNorm, _GroupNorm

    shape = tuple(int(v) for v in args.shape.split(","))
    print(f"forward+backward, {'x'.join(map(str, shape))}, {args.threads} thread(s), median ms")
    rows = []
    for policy, dtype in (("float32", tf.float32), ("mixed_bfloat16", tf.bfloat16)):
        x = tf.cast(tf.constant(np.random.default_rng(0).normal(2, 3, shape).astype(np.float32)), dtype)
        pairs = (("BatchNormalization", layers.BatchNormalization, FusedBatchNorm, {}),
                 ("GroupNormalization", layers.GroupNormalization, _GroupNorm, {"groups": 32}))
        for label, keras_cls, our_cls, extra in pairs:
            row = []
            for index, cls in enumerate((keras_cls, our_cls)):
                kwargs = dict(extra) if cls is keras_cls else {}
                layer = cls(dtype=policy, name=f"{label.lower()}_{index}", **kwargs)
                layer.build(x.shape)
                row.append(time_layer(layer, x, args.repeats))
            print(f"  {dtype.name:9} {label:19} keras {row[0]:7.1f}   ours {row[1]:7.1f}   "
                  f"keras/ours {row[0] / row[1]:.2f}")
            rows.append({"precision": dtype.name, "layer": label, "keras_ms": round(row[0], 2),
                         "ours_ms": round(row[1], 2), "keras_over_ours": round(row[0] / row[1], 2)})
    print()
    print(common.markdown_table(TABLE_HEADERS, [
        (r["precision"], r["layer"], f"{r['keras_ms']:.1f}", f"{r['ours_ms']:.1f}", f"{r['keras_over_ours']:.2f}")
        for r in rows]))
    payload = {**common.run_header(__file__, argv), "shape": list(shape), "threads": args.threads,
               "repeats": args.repeats, "rows": rows}
    path = common.write_json(args.out, payload)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()

"""Normalization layers, forward + backward on one activation tensor: keras' against ours.

    python bench/norms.py                 # 2x128x128x256, one CPU thread, float32 and bfloat16

Times one training-mode call plus the gradient to the input and the weights
(median of --repeats after a warm-up): keras BatchNormalization vs
mrcnn.backbone.FusedBatchNorm, keras GroupNormalization (32 groups) vs
mrcnn.backbone's group norm. The README's design notes quote its output.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2,128,128,256", help="B,H,W,C")
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras import layers
    from mrcnn.backbone import FusedBatchNorm, _GroupNorm

    shape = tuple(int(v) for v in args.shape.split(","))
    print(f"forward+backward, {'x'.join(map(str, shape))}, {args.threads} thread(s), median ms")
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

                @tf.function
                def step(layer=layer):
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        loss = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32))
                    return tape.gradient(loss, [x] + layer.trainable_weights)

                step()
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                row.append(statistics.median(times) * 1000)
            print(f"  {dtype.name:9} {label:19} keras {row[0]:7.1f}   ours {row[1]:7.1f}   "
                  f"keras/ours {row[0] / row[1]:.2f}")


if __name__ == "__main__":
    main()

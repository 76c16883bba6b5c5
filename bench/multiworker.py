"""Multi-worker training overhead: steps per second with 1 and 2 CPU workers on this machine.

    python bench/multiworker.py                       # 128 px, 2 epochs x 5 steps per run
    python bench/multiworker.py --size 64 --steps 3   # a quicker look

Runs ``lesions.py --mode train`` on the synthetic set once as one process
and once as two worker processes on localhost under TF_CONFIG
(mrcnn.distribute), each with IMAGES_PER_GPU=1 per replica, so a two-worker
step trains twice the images. The cores are split between the workers
(--threads per process, default cores / workers): both workers share this
machine's cores, so the figure shows the cost of the all-reduce and the
coordination, not the speed-up of a second machine. Seconds per step are
the last epoch's (mrcnn.callbacks.EpochSummary: graph tracing left out).
Bytes all-reduced per step: the trainable weights' sizes x 4 (one float32
gradient each) of the model trained (layers "all" from scratch).
Prints the markdown row of bench/README.md and writes JSON to --out.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile

if __package__:  # imported as bench.multiworker
    from . import common
else:  # run as a script: bench/ is sys.path[0]
    import common

TABLE_HEADERS = ("workers", "threads each", "s/step", "steps/s", "images/s", "all-reduce per step")
STEP_LINE = re.compile(r"epoch (\d+) \((\d+) steps, ([\d.]+) s/step\)")


def config_overrides(size, steps):
    """The --config pairs of every run: LesionConfig at ``size`` px, one image per replica, no validation."""
    values = {"IMAGE_MAX_DIM": size, "IMAGE_MIN_DIM": size, "STEPS_PER_EPOCH": steps, "VALIDATION_STEPS": 0,
              "IMAGES_PER_GPU": 1, "WORKERS": 1, "VERBOSE": 0}
    if size < 128:
        values["RPN_ANCHOR_SCALES"] = "(8,16,32,64,128)"
    return [arg for key, value in values.items() for arg in ("--config", f"{key}={value}")]


def free_port():
    """A TCP port the OS says is free on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_workers(count, threads, size, steps, epochs, work, timeout):
    """Train with ``count`` worker processes; returns the chief's last-epoch seconds per step."""
    ports = [free_port() for _ in range(count)]
    procs = []
    for index in range(count):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_NUM_INTRAOP_THREADS=str(threads),
                   TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_CONFIG", None)
        if count > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                           "task": {"type": "worker", "index": index}})
        argv = [sys.executable, os.path.join(common.ROOT, "lesions.py"), "--mode", "train",
                "--logs", os.path.join(work, f"logs{count}_{index}"), "--dataset", "synthetic:16",
                "--augment", "none", "--split", "1,0,0", "--epochs-heads", str(epochs), "--epochs-all", "0",
                *config_overrides(size, steps)]
        log = open(os.path.join(work, f"workers{count}_{index}.log"), "w")
        procs.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    try:
        for proc, _ in procs:
            if proc.wait(timeout=timeout) != 0:
                raise RuntimeError(f"{count} worker(s): exit {proc.returncode}; see {work}")
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
            log.close()
    with open(os.path.join(work, f"workers{count}_0.log")) as f:
        found = STEP_LINE.findall(f.read())
    if not found:
        raise RuntimeError(f"{count} worker(s): no epoch summary line in {work}/workers{count}_0.log")
    return float(found[-1][2])


def allreduce_bytes(size, steps):
    """Bytes of float32 gradients all-reduced per step: sum of the trainable weights' sizes x 4."""
    import numpy as np
    from mrcnn.model import MaskRCNN
    from skinlesion import LesionConfig
    fields = LesionConfig.parse_overrides([a for a in config_overrides(size, steps) if a != "--config"])
    model = MaskRCNN("training", LesionConfig(**fields), tempfile.mkdtemp())
    model.set_trainable(".*")
    return int(sum(int(np.prod(w.shape)) for w in model.keras_model.trainable_weights) * 4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="IMAGE_MAX_DIM (default 128)")
    parser.add_argument("--steps", type=int, default=5, help="steps per epoch (default 5)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per process "
                        "(default: the cores divided among the workers)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a run may take")
    common.add_out_argument(parser, "bench_multiworker.json")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="bench_multiworker_")
    rows = []
    for count in (1, 2):
        threads = args.threads or max(1, cores // count)
        seconds = run_workers(count, threads, args.size, args.steps, args.epochs, work, args.timeout)
        rows.append({"workers": count, "threads": threads, "seconds_per_step": seconds,
                     "steps_per_second": round(1 / seconds, 3), "images_per_second": round(count / seconds, 3)})
        print(f"  {count} worker(s), {threads} thread(s) each: {seconds:.3f} s/step", flush=True)
    from mrcnn import runtime
    runtime.configure("train")
    reduced = allreduce_bytes(args.size, args.steps)
    print()
    print(common.markdown_table(TABLE_HEADERS, [
        (r["workers"], r["threads"], f"{r['seconds_per_step']:.3f}", f"{r['steps_per_second']:.2f}",
         f"{r['images_per_second']:.2f}", f"{reduced / 1e6:.1f} MB" if r["workers"] > 1 else "-")
        for r in rows]))
    payload = {**common.run_header(__file__, argv), "size": args.size, "steps": args.steps,
               "epochs": args.epochs, "allreduce_bytes_per_step": reduced, "rows": rows, "logs": work}
    path = common.write_json(args.out, payload)
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()

"""One training run across several worker processes: tf.distribute.MultiWorkerMirroredStrategy.

The workers are described by the ``TF_CONFIG`` environment variable (set by
hand, by Ray Train's TensorflowTrainer or by a Kubernetes TFJob): when it
names more than one worker, ``MaskRCNN`` in training mode trains under
:func:`multi_worker_strategy`, which must exist before TensorFlow runs its
first op (``lesions.py`` creates it first thing). Task 0 (the chief, or
worker 0 when there is no chief) is the only one that writes.

What the workers must agree on, and how:

- the run folder: the chief's timestamp, broadcast (:func:`agreed_now`);
- the clock of ``--minutes`` and of the cosine decay: the chief's
  ``time.monotonic()``, broadcast at every reading (:class:`AgreedClock`),
  so every worker stops after the same step;
- the weights: MultiWorkerMirroredStrategy broadcasts the chief's initial
  values; after loading a file they are broadcast again
  (:func:`sync_weights_from_chief`);
- the images: every worker draws the same seeded permutation of the image
  ids each epoch and reads its own replicas' slices of it
  (:class:`ShardedBatches`), so the shards are disjoint.

Global batch = IMAGES_PER_GPU x GPU_COUNT (the replicas of one worker) x
the number of workers; the learning rate is not scaled (README, "Training
on several machines"). A run that lost a worker resumes when the same
command is started again on every worker (mrcnn.distribute_runs).
"""
import contextlib
import datetime
import itertools
import json
import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)

# Seconds a collective (the gradient all-reduce, a broadcast) may wait for
# the other workers before it fails; MRCNN_COLLECTIVE_TIMEOUT overrides it.
# It must outlast the slowest worker's graph tracing and the chief's
# checkpoint writing, during which the others wait in the next all-reduce.
COLLECTIVE_TIMEOUT_SECONDS = 600.0

_state = {}


# ---------------------------------------------------------------- TF_CONFIG
def _tf_config(environ=None):
    """The TF_CONFIG dict ({} when unset). Raises ValueError naming TF_CONFIG when it is not JSON."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from err
    if not isinstance(value, dict):
        raise ValueError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return value


def cluster_spec(environ=None):
    """TF_CONFIG's cluster as {job: [host:port, ...]} (chief and worker jobs), or None when unset."""
    cluster = _tf_config(environ).get("cluster")
    if not cluster:
        return None
    return {job: list(cluster[job]) for job in ("chief", "worker") if cluster.get(job)}


def num_workers(environ=None):
    """How many processes train together: TF_CONFIG's chief + worker tasks (1 without TF_CONFIG)."""
    spec = cluster_spec(environ)
    return sum(len(hosts) for hosts in spec.values()) if spec else 1


def is_multi_worker(environ=None):
    """True when TF_CONFIG names more than one worker: training then spans the processes."""
    return num_workers(environ) > 1


def task_index(environ=None):
    """This process's rank among the workers: 0 for the chief (or worker 0 without a chief), 0 alone.

    Raises ValueError naming TF_CONFIG's task when it is missing or outside the cluster.
    """
    spec = cluster_spec(environ)
    if not spec:
        return 0
    task = _tf_config(environ).get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in spec or not 0 <= int(index) < len(spec[kind]):
        raise ValueError(f"TF_CONFIG task {task!r} is not in its cluster {spec!r}; set task.type to "
                         "'worker' (or 'chief') and task.index to this process's place in that list")
    return int(index) + (len(spec.get("chief", [])) if kind == "worker" else 0)


def is_chief(environ=None):
    """True for the process that writes the run (task 0), and for a single process."""
    return task_index(environ) == 0


# ----------------------------------------------------------------- strategy
def collective_timeout():
    """Seconds a collective waits for the other workers (MRCNN_COLLECTIVE_TIMEOUT, default 600)."""
    text = os.environ.get("MRCNN_COLLECTIVE_TIMEOUT", "")
    try:
        return float(text) if text else COLLECTIVE_TIMEOUT_SECONDS
    except ValueError:
        raise ValueError(f"MRCNN_COLLECTIVE_TIMEOUT={text!r}: give seconds, e.g. 600") from None


def multi_worker_strategy():
    """The process's MultiWorkerMirroredStrategy for TF_CONFIG, created on the first call.

    RING collectives on CPU workers, NCCL on GPU workers, each collective
    failing after collective_timeout() seconds. Must be first called before
    TensorFlow runs any op. Raises RuntimeError saying so when it is too late.
    """
    if "strategy" in _state:
        return _state["strategy"]
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    options = tf.distribute.experimental.CommunicationOptions(implementation=implementation,
                                                              timeout_seconds=collective_timeout())
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, ValueError) as err:
        raise RuntimeError(f"TF_CONFIG names {num_workers()} workers but the multi-worker strategy could not "
                           f"be created ({err}); create it first thing in the program "
                           "(mrcnn.distribute.multi_worker_strategy(), as lesions.py does)") from err
    _state["strategy"] = strategy
    log.info("multi-worker training: worker %d of %d, %d replicas in sync (%s collectives)", task_index(),
             num_workers(), strategy.num_replicas_in_sync, "NCCL" if gpus else "RING")
    return strategy


def training_strategy(config):
    """The strategy a training MaskRCNN builds under: multi-worker (TF_CONFIG), mirrored (GPU_COUNT > 1) or None."""
    if is_multi_worker():
        strategy = multi_worker_strategy()
        check_config(config, strategy)
        return strategy
    if config.GPU_COUNT > 1:
        from .training import mirrored_strategy
        return mirrored_strategy(config.GPU_COUNT)
    return None


def check_config(config, strategy):
    """Raise ValueError naming GPU_COUNT when it differs from the replicas each worker trains."""
    per_worker = strategy.num_replicas_in_sync // num_workers()
    if config.GPU_COUNT != per_worker:
        raise ValueError(f"Config.GPU_COUNT={config.GPU_COUNT} but each worker trains {per_worker} replica(s) "
                         f"(its visible GPUs, or 1 CPU); set GPU_COUNT={per_worker}")


def in_multi_worker(strategy):
    """True when ``strategy`` is a MultiWorkerMirroredStrategy spanning several workers."""
    import tensorflow as tf
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and num_workers() > 1


# --------------------------------------------------------------- agreement
def _chief_tensors(strategy, tensors):
    """The chief's values of ``tensors`` on every worker: one batched all-reduce sum, replica 0 adding its own.

    tensors: a list of tensors (any shapes, float dtypes), the same shapes on
    every worker. Returns: the list of the chief's values (tf.Tensor, same
    shapes). Every worker must call it at the same point, with the same shapes.
    """
    import tensorflow as tf
    key = ("chief_tensors", id(strategy))
    if key not in _state:
        def replica_fn(values):
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            return context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      [tf.where(first, value, tf.zeros_like(value)) for value in values])

        # In a tf.function: run eagerly, the strategy warns of its overhead at every call.
        @tf.function(reduce_retracing=True)
        def chief_values(values):
            result = strategy.run(replica_fn, args=(values,))
            return [strategy.experimental_local_results(value)[0] for value in result]
        _state[key] = chief_values
    return _state[key]([tf.convert_to_tensor(t) for t in tensors])


def broadcast_from_chief(strategy, values):
    """The chief's ``values`` on every worker.

    values: float64 array [N] (float64 holds a YYYYmmddHHMMSS stamp exactly).
    Returns: float64 array [N]. Every worker must call it at the same point.
    """
    return np.asarray(_chief_tensors(strategy, [np.asarray(values, np.float64)])[0])


def agreed_now(strategy):
    """The chief's datetime.now() to the second (the run folder's timestamp), on every worker."""
    now = datetime.datetime.now()
    stamp = int(broadcast_from_chief(strategy, [float(now.strftime("%Y%m%d%H%M%S"))])[0])
    return datetime.datetime.strptime(f"{stamp:014d}", "%Y%m%d%H%M%S")


class AgreedClock:
    """time.monotonic() of the chief, read by every worker at the same step (a broadcast per reading)."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self):
        return float(broadcast_from_chief(self.strategy, [time.monotonic()])[0])


def clock_for(strategy):
    """The clock a model's deadlines use: the chief's under a multi-worker strategy, else None (local)."""
    return AgreedClock(strategy) if strategy is not None and in_multi_worker(strategy) else None


def sync_weights_from_chief(strategy, model):
    """Give every worker the chief's values of all of ``model``'s weights (after only it loaded a file)."""
    variables = list(model.weights)
    for variable, value in zip(variables, _chief_tensors(strategy, [v.value for v in variables])):
        variable.assign(value)


# ------------------------------------------------------------------ inputs
def shard_order(image_ids, seed, epoch, shard, shards):
    """The image ids replica ``shard`` of ``shards`` reads in ``epoch``: every shards-th id of one permutation.

    image_ids: int [N]. The permutation depends only on (seed, epoch), so the
    shards of one epoch are disjoint and a rerun with the same seed reads
    the same ids in the same order. Returns: int [ceil((N - shard) / shards)].
    """
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(np.asarray(image_ids))
    return order[shard::shards]


class ShardedBatches:
    """Per-replica training batches from disjoint shards of the image ids, for distribute_datasets_from_function.

    Replica g of R (global, in sync-group order) reads shard_order(ids, seed,
    epoch, g, R), IMAGES_PER_GPU images a step, wrapping around its shard;
    epoch numbers start at ``start_epoch`` and each lasts ``steps`` steps.
    Items are mrcnn.data.DataGenerator's dicts with batch IMAGES_PER_GPU.
    """

    def __init__(self, dataset, config, seed, start_epoch, steps, augmentation=None):
        self.dataset = dataset
        self.config = config
        self.seed = int(seed)
        self.start_epoch = int(start_epoch)
        self.steps = int(steps)
        self.augmentation = augmentation
        self.generators = []

    def dataset_fn(self, input_context):
        """The tf.data.Dataset of one input pipeline (one worker): its replicas' batches in turn."""
        import tensorflow as tf
        from .data import DataGenerator
        replicas = input_context.num_replicas_in_sync
        local = replicas // input_context.num_input_pipelines
        first = input_context.input_pipeline_id * local
        batch = self.config.IMAGES_PER_GPU
        if len(self.dataset.image_ids) < replicas:
            raise ValueError(f"{len(self.dataset.image_ids)} training images for {replicas} replicas: "
                             "every replica needs an image of its own; add images or use fewer workers")
        generator = DataGenerator(self.dataset, self.config, shuffle=False, augmentation=self.augmentation,
                                  workers=1, batch_size=batch)
        self.generators.append(generator)
        signature = {key: tf.TensorSpec(value.shape, value.dtype) for key, value in generator.empty_batch().items()}

        def batches():
            for epoch in itertools.count(self.start_epoch):
                orders = [shard_order(generator.image_ids, self.seed, epoch, first + j, replicas)
                          for j in range(local)]
                read = [[] for _ in range(local)]
                for step in range(self.steps):
                    for j in range(local):
                        generator.order = orders[j]
                        item = generator[step]
                        read[j] += [int(i) for i in generator.last_batch_ids]
                        if step == self.steps - 1:  # logged as the epoch's last batch is built
                            log.info("input pipeline %d, replica %d, epoch %d read image ids %s",
                                     input_context.input_pipeline_id, first + j, epoch + 1, read[j])
                        yield item

        # The generator never ends (one epoch follows another), and saying so matters: for a dataset
        # that may end, MultiWorkerMirroredStrategy adds its partial-batch handling (an all-reduce of
        # "has data" per step, empty stand-in batches), which leaves every input's batch dimension
        # unknown in the traced step. Grappler then fuses and folds that step differently from the
        # one-process graph with static shapes, and in bfloat16 the other rounding flips proposal
        # and ROI choices: 2 % apart in a loss at the first step from the same weights and images.
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY)).prefetch(1)

    @property
    def skipped(self):
        """The images skipped by this worker's pipelines (DataGenerator.skipped entries)."""
        return [entry for generator in self.generators for entry in generator.skipped]


def distributed_batches(strategy, dataset, config, seed, start_epoch, steps, augmentation=None):
    """(distributed dataset for fit, ShardedBatches) of one train() call under ``strategy``."""
    import tensorflow as tf
    source = ShardedBatches(dataset, config, seed, start_epoch, steps, augmentation)
    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(source.dataset_fn, options), source


def training_inputs(model, train_dataset, val_dataset, augmentation=None):
    """The inputs of one MaskRCNN.train() call: (train data, validation data or None, sources).

    One process (shuffle_seed None): DataGenerators in an unseeded order, as
    always. Several workers, or model.shuffle_seed set: ShardedBatches
    (seeded disjoint shards per epoch, numbered from model.epoch).
    sources: what the data came from, each with ``skipped`` (images left out).
    """
    from .data import DataGenerator
    cfg = model.config
    with_val = val_dataset is not None and len(val_dataset.image_ids) and cfg.VALIDATION_STEPS
    if model.shuffle_seed is None and not in_multi_worker(model.strategy):
        train = DataGenerator(train_dataset, cfg, shuffle=True, augmentation=augmentation, steps=cfg.STEPS_PER_EPOCH)
        val = DataGenerator(val_dataset, cfg, shuffle=True, steps=cfg.VALIDATION_STEPS) if with_val else None
        return train, val, [train] + ([val] if val else [])
    import tensorflow as tf
    strategy = model.strategy or tf.distribute.get_strategy()
    seed = model.shuffle_seed or 0
    train, train_source = distributed_batches(strategy, train_dataset, cfg, seed, model.epoch,
                                              cfg.STEPS_PER_EPOCH, augmentation)
    if not with_val:
        return train, None, [train_source]
    val, val_source = distributed_batches(strategy, val_dataset, cfg, seed + 1, model.epoch, cfg.VALIDATION_STEPS)
    return train, val, [train_source, val_source]


@contextlib.contextmanager
def collective_errors(strategy):
    """Turn a failed collective under several workers into a RuntimeError that says what to do.

    A dead or unreachable worker makes the others' all-reduce fail (at once,
    or after collective_timeout()); a single process re-raises unchanged.
    """
    import tensorflow as tf
    try:
        yield
    except tf.errors.OpError as err:
        if not in_multi_worker(strategy):
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RuntimeError(f"worker {task_index()} of {num_workers()}: lost contact with the other workers "
                           f"({type(err).__name__}: {first_line[:300]}); a worker died or the network failed. "
                           "Start the same command again on every worker: the run resumes from the "
                           "chief's last checkpoint") from err


# The run-level parts (resume, run state, weights digest) live in mrcnn.distribute_runs.
from .distribute_runs import (RUN_STATE_FILE, log_weights_digest, mark_run, resume_unfinished_run,  # noqa: E402,F401
                              unfinished_run)

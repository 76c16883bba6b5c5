"""What every benchmark in bench/ shares: the import set-up, timing, machine info, JSON and tables.

A script imports it first, so that it runs as ``python bench/x.py`` from the
repository root or from anywhere else::

    if __package__:          # imported as bench.x
        from . import common
    else:                    # run as a script: bench/ is sys.path[0]
        import common

Importing this module puts the repository root at the front of sys.path
(this worktree's mrcnn/ and skinlesion/ win over an installed copy) and
imports neither TensorFlow nor mrcnn: speed.py's children must call
mrcnn.runtime.configure(mode) before TensorFlow loads, so machine_info()
reads the library lazily.
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# The shared folder beside the repository: data sets and the torchvision peer script.
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
SHARED_DATA = os.path.join(SHARED, "data")
LOGS = os.path.join(ROOT, "logs")

# CPU flags a reader of the results needs to tell the machines apart (float32 SIMD width,
# native bfloat16); "amx" stands for any amx_* flag.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx")
# Environment variables that change what TensorFlow runs (oneDNN, thread pools, allocator).
RUNTIME_ENV = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "MRCNN_MALLOPT", "OMP_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Package -> the distributions that provide it (TensorFlow ships under several names).
VERSIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"),
            "keras": ("keras",), "numpy": ("numpy",), "opencv-python-headless": ("opencv-python-headless",),
            "Pillow": ("Pillow",)}


# --------------------------------------------------------------------------- paths

def training_folder(cache_dir):
    """(--dataset folder, --classes) to train on: real PH2 from SHARED_DATA when present, else synthetic.

    The synthetic stand-in is 60 images at 256 px (seed 11, "lesion" scheme), written once
    under cache_dir. Used by bench/speed.py's training rows and bench/loop_vs_step.py.
    """
    ph2 = os.path.join(SHARED_DATA, "PH2Dataset")
    if os.path.isdir(os.path.join(ph2, "PH2 Dataset images")):
        return ph2, "ph2"
    from skinlesion import synthetic
    folder = os.path.join(cache_dir, "e2e_folder_256")
    if not os.path.exists(os.path.join(folder, ".complete")):
        synthetic.write_folder(folder, 60, size=(256, 256), seed=11, scheme="lesion")
        open(os.path.join(folder, ".complete"), "w").close()
    return folder, "lesion"


def default_out(name):
    """The default result path <repo root>/logs/<name> (name: a file or folder name)."""
    return os.path.join(LOGS, name)


def add_out_argument(parser, name, what="result JSON"):
    """Add --out (default <repo root>/logs/<name>) to an argparse parser."""
    parser.add_argument("--out", default=default_out(name),
                        help=f"{what} (default: <repo root>/logs/{name})")


def absolute(path):
    """path made absolute against the current directory (None stays None).

    The benchmarks start lesions.py with the repository root as its working
    directory, so a relative path the user typed must be fixed first.
    """
    return None if path is None else os.path.abspath(path)


# --------------------------------------------------------------------------- timing

class Stopwatch:
    """Wall, CPU and system time of a with-block in this process.

    After the block: wall_s, cpu_s (user + system), system_s, cores_busy
    (cpu_s / wall_s: 2.0 is two cores busy all the time).
    """

    def __enter__(self):
        self._cpu, self._wall = os.times(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        cpu, self.wall_s = os.times(), time.perf_counter() - self._wall
        self.system_s = cpu.system - self._cpu.system
        self.cpu_s = (cpu.user - self._cpu.user) + self.system_s
        self.cores_busy = self.cpu_s / max(self.wall_s, 1e-9)
        return False


def timed_median(fn, repeats, warmup=1):
    """(median seconds, all seconds rounded to 0.1 ms, cores busy) of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    with Stopwatch() as clock:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times), [round(t, 4) for t in times], round(clock.cores_busy, 2)


def peak_rss_mb():
    """Peak resident memory of this process in MB: VmHWM (Linux), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- machine

def _versions():
    """Installed versions of the packages whose speed we measure (read from metadata, nothing imported)."""
    from importlib import metadata
    versions = {}
    for name, distributions in VERSIONS.items():
        versions[name] = None
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def _tensorflow_state():
    """oneDNN and thread pools as TensorFlow reports them, or None when TensorFlow is not imported.

    Never imports TensorFlow: importing it here would fix its oneDNN setting
    before the benchmark chose one.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return None
    state = {"intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
             "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or os.cpu_count()}
    try:  # TensorFlow's own answer (environment and CPU); not public API, so optional
        from tensorflow.python.util import _pywrap_util_port
        state["onednn"] = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        state["onednn"] = None
    return state


def machine_info(compute_dtype=None):
    """What the numbers were measured on: CPU, ISA flags, oneDNN, versions, threads, precision.

    compute_dtype: the precision the script ran with ("float32" or "bfloat16"),
    when it knows one. CPU model and flags come from mrcnn.runtime; oneDNN is
    given as the environment decides it and, once TensorFlow is imported, as
    TensorFlow reports it.
    """
    from mrcnn import runtime
    settings = runtime.describe()
    flags = runtime.cpu_flags()
    tensorflow = _tensorflow_state()
    return {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "cpu": {"model": runtime.cpu_model(), "flags": settings["flags"],
                "isa": {name: (any(f.startswith("amx") for f in flags) if name == "amx" else name in flags)
                        for name in ISA_FLAGS},
                "onednn_default": runtime.onednn_default(), "native_bfloat16": runtime.native_bfloat16(),
                "env": {k: os.environ[k] for k in RUNTIME_ENV if k in os.environ}},
        "onednn": {"enabled": settings["onednn"], "source": settings["onednn_source"],
                   "tensorflow": tensorflow["onednn"] if tensorflow else None},
        "malloc_tuned": settings["malloc_tuned"],
        "threads": {k: v for k, v in (tensorflow or {}).items() if k.endswith("_threads")} or None,
        "compute_dtype": compute_dtype, "compute_dtype_auto": settings["compute_dtype_auto"],
        "versions": _versions(),
    }


def machine_summary(info):
    """One line for a results table: CPU, cores, ISA flags, oneDNN, precision, TF/Keras versions."""
    isa = info["cpu"]["isa"]
    has = [name for name in ISA_FLAGS if isa.get(name)]
    lacks = [name for name in ISA_FLAGS if not isa.get(name)]
    onednn = info["onednn"]["tensorflow"]
    onednn = info["onednn"]["enabled"] if onednn is None else onednn
    parts = [f"{info['cpu']['model']}, {info['cpu_count']} cores",
             "ISA " + (" ".join(has) or "-") + (f" (no {', '.join(lacks)})" if lacks else ""),
             f"oneDNN {'on' if onednn else 'off'}"]
    if info.get("compute_dtype"):
        parts.append(info["compute_dtype"])
    versions = info["versions"]
    parts.append(f"TensorFlow {versions.get('tensorflow')}, Keras {versions.get('keras')}")
    return ", ".join(parts)


def commit():
    """The repository's HEAD commit (short), with "+changes" when the tree is dirty; None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def run_header(script_file, argv=None):
    """command, date and commit of this run: the keys every result JSON starts with.

    script_file: the benchmark's __file__; argv: its arguments (None: sys.argv[1:]).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    script = os.path.relpath(os.path.abspath(script_file), ROOT)
    return {"command": " ".join(["python", script] + argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit()}


# --------------------------------------------------------------------------- output

def write_json(path, payload, machine=True):
    """Write payload as JSON to path (parent folders made); returns the absolute path.

    machine: True adds "machine": machine_info() unless payload has one already.
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if machine and "machine" not in payload:
        payload = {**payload, "machine": machine_info()}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)
    return path


def markdown_table(headers, rows):
    """A markdown table: a header row, a |---| rule, one line per row (cells as given, str()-ed).

    A row may have fewer cells than headers (e.g. one error cell after the name).
    """
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

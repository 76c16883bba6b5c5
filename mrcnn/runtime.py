"""Runtime settings chosen per CPU: precision, oneDNN, allocator. Call configure() before TensorFlow loads.

TensorFlow reads some settings only once, when it is imported: whether its
CPU kernels go through oneDNN (``TF_ENABLE_ONEDNN_OPTS``) among them. This
module decides them from the CPU's flags, without importing TensorFlow, so
``lesions.py`` and ``import mrcnn`` can call :func:`configure` first. A
variable the user set in the environment is never overridden.

What is chosen, and the measurement behind each choice (bench/README.md,
"Runtime choices"; every figure is a ratio taken in one run on one CPU):

- **Precision** (``Config.COMPUTE_DTYPE = "auto"``, the default): bfloat16
  where the hardware executes it (the ``avx512_bf16`` or ``amx_bf16`` CPU
  flags with oneDNN on, or a GPU), float32 elsewhere. Without those flags
  TensorFlow emulates bfloat16 and a training step ran 6x slower than in
  float32. With them but ``TF_ENABLE_ONEDNN_OPTS=0`` the Eigen kernels
  emulate it too (a one-off check on an Intel Xeon AMX CPU: a 3x3
  convolution slower in bfloat16 than in float32 with oneDNN off, several
  times faster with it on).
- **oneDNN**: TensorFlow's own default, made explicit. TensorFlow turns it
  on for CPUs with AVX-512 VNNI / BF16 / AMX (where the project's earlier
  speed figures were taken) and leaves its Eigen kernels elsewhere. On an
  AVX2-only CPU (AMD EPYC Zen 3, 2 cores, float32) oneDNN was slower or
  equal in every mode once the classifier head's 7x7 convolution became a
  matrix product (mrcnn.heads.PooledConv2D): detect at 512 px 3.78 s vs
  2.02 s (Matterport settings) and 0.96 vs 0.54 s (LesionConfig); a
  Matterport training step 10.3 vs 9.6 s; `lesions.py --mode train` on PH2
  1.34-1.55 vs 1.48 s per step. So Eigen stays, for training too.
- **Allocator**: glibc's malloc returns large blocks to the kernel with
  munmap and trims the heap; TensorFlow allocates and frees hundreds of MB
  per training step, so every step faulted its pages in again. ``mallopt``
  keeps large blocks in the heap and stops the trimming (set before the
  first large allocation). Measured with 60 steps of ``lesions.py --mode
  train`` on PH2 (AVX2 EPYC): 45.7 M minor page faults and 114 s of system
  time (a third of the CPU time) without it, 0.9 M and 10 s with it; the
  run took 2 min 34 s instead of 3 min 39 s. Peak memory rose from 2.5 to
  2.8 GB. ``MRCNN_MALLOPT=0`` turns it off.
"""
import ctypes
import ctypes.util
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

# CPU flags (as /proc/cpuinfo names them) with which bfloat16 arithmetic runs natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Flags with which TensorFlow turns oneDNN on by itself (TF 2.9+: "CPUs with
# neural-network-focused hardware features such as AVX512_VNNI, AVX512_BF16, AMX").
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")
# Where TensorFlow's default is the Eigen path (no ONEDNN_DEFAULT_FLAGS): the
# oneDNN setting per lesions.py mode, written to TF_ENABLE_ONEDNN_OPTS when the
# user has not set it. Measured on an AMD EPYC (Zen 3, AVX2 + FMA, 2 cores):
# Eigen was as fast or faster in every mode (module docstring).
ONEDNN_CHOICE = {"train": False, "predict": False, "evaluate": False, "investigate": False}
# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_state = {}


def cpu_flags():
    """The CPU's feature flags as a frozenset of lower-case names (empty off Linux)."""
    if "flags" not in _state:
        flags = frozenset()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = frozenset(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
        _state["flags"] = flags
    return _state["flags"]


def cpu_model():
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ...") or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_visible():
    """True when TensorFlow is already imported and sees a GPU (never imports it)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    try:
        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # an odd build must not stop model building
        return False


def native_bfloat16():
    """Whether bfloat16 arithmetic runs natively here: a GPU, or CPU flags avx512_bf16 / amx_bf16 with oneDNN on.

    TensorFlow's Eigen CPU kernels (oneDNN off) emulate bfloat16 whatever the CPU.
    """
    cpu_native = any(flag in cpu_flags() for flag in BF16_FLAGS) and onednn_enabled()
    return cpu_native or _gpu_visible()


def resolve_compute_dtype(value):
    """Config.COMPUTE_DTYPE -> "float32" or "bfloat16" ("auto": bfloat16 only where native).

    Logs the automatic choice once per process.
    """
    if value != "auto":
        return value
    chosen = "bfloat16" if native_bfloat16() else "float32"
    if _state.get("logged_dtype") != chosen:
        _state["logged_dtype"] = chosen
        if chosen == "bfloat16":
            reason = "this CPU executes bfloat16 natively"
        elif any(flag in cpu_flags() for flag in BF16_FLAGS):
            reason = "TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's Eigen kernels would emulate bfloat16"
        else:
            reason = f"no {' / '.join(BF16_FLAGS)} flag on this CPU: bfloat16 would be emulated"
        log.info("COMPUTE_DTYPE auto -> %s (%s)", chosen, reason)
    return chosen


def onednn_default():
    """Whether TensorFlow turns oneDNN on by itself on this CPU (x86 with AVX-512 VNNI/BF16 or AMX)."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return False
    return any(flag in cpu_flags() for flag in ONEDNN_DEFAULT_FLAGS)


def _set_malloc_options():
    """Keep large blocks in glibc's heap and stop trimming it. Returns True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1) and ok
    return ok


def configure(mode=None):
    """Decide the settings TensorFlow reads at import; returns what was chosen.

    mode: "train", "predict", "evaluate", "investigate" or None (a library
    import: TensorFlow's own default for oneDNN). Does nothing to oneDNN once
    TensorFlow is imported (too late to matter) or when TF_ENABLE_ONEDNN_OPTS
    is already set; MRCNN_MALLOPT=0 leaves the allocator alone. Safe to call
    more than once: the first call before TensorFlow's import decides.
    Returns a dict for logs and benchmarks: cpu, flags, onednn, precision, malloc.
    """
    tf_loaded = "tensorflow" in sys.modules
    previous = _state.get("configured")
    if previous is not None and (tf_loaded or previous["mode"] == mode or mode is None):
        return dict(previous)
    user_onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    onednn_source = "environment" if user_onednn is not None else "tensorflow default"
    if user_onednn is None and not tf_loaded and not onednn_default() and mode in ONEDNN_CHOICE:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if ONEDNN_CHOICE[mode] else "0"
        onednn_source = f"mrcnn.runtime for {mode}"
    malloc = bool(previous and previous["malloc_tuned"])
    if not malloc and os.environ.get("MRCNN_MALLOPT", "1") != "0" and not tf_loaded:
        malloc = _set_malloc_options()
    chosen = _settings(mode, onednn_source, malloc, tf_loaded)
    _state["configured"] = chosen
    return dict(chosen)


def _settings(mode, onednn_source, malloc_tuned, tensorflow_loaded_before):
    """The dict configure() and describe() return (see configure)."""
    return {"cpu": cpu_model(), "mode": mode,
            "flags": sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma"))),
            "onednn": onednn_enabled(), "onednn_source": onednn_source,
            "compute_dtype_auto": "bfloat16" if native_bfloat16() else "float32",
            "malloc_tuned": malloc_tuned, "tensorflow_loaded_before": tensorflow_loaded_before}


def onednn_enabled():
    """Whether oneDNN is (or will be) on: the environment variable, else TensorFlow's default rule."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is not None:
        return value.strip().lower() in ("1", "true", "yes", "on")
    return onednn_default()


def describe():
    """The settings in force (configure()'s dict, computed now if configure was never called)."""
    if "configured" in _state:
        return dict(_state["configured"])
    return _settings(None, "not configured", False, "tensorflow" in sys.modules)

"""Who measured: the machine and code state every record carries."""
import os
import platform
import re
import subprocess
from functools import cache
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _jax_version():
    try:
        import jax
    except ImportError:
        return ""
    return jax.__version__


def machine_info():
    """The machine and code state; the thread count is read on every call (perf --threads sets it)."""
    info = {**_static_info(), "threads": torch.get_num_threads()}
    info["machine_id"] = machine_id(info)
    return info


def _gpu_info():
    """(name, driver, compute capability) of GPU 0, empty strings without one."""
    if not torch.cuda.is_available():
        return "", "", ""
    props = torch.cuda.get_device_properties(0)
    driver = ""
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return props.name, driver, f"{props.major}.{props.minor}"


@cache
def _static_info():
    gpu, driver, capability = _gpu_info()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "gpu": gpu,
        "gpu_driver": driver,
        "gpu_capability": capability,
        "cuda": torch.version.cuda or "",
        "torch": torch.__version__,
        "jax": _jax_version(),
        "python": platform.python_version(),
        **code_state(),
    }


def code_state():
    """The commit measured and whether the tree had uncommitted changes, read now (not cached): a
    run resumed after a commit stamps its new rows with the new commit."""
    if not _is_checkout():  # installed from a wheel: the git folder around it, if any, is not scanlab's
        return {"commit": f"scanlab {_version()}", "dirty": False}
    return {"commit": _git("rev-parse", "--short=12", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def _is_checkout():
    top = _git("rev-parse", "--show-toplevel")
    return bool(top) and Path(top).resolve() == ROOT


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scanlab")
    except PackageNotFoundError:
        return "unknown"


def machine_id(info):
    """A folder name: the GPU when there is one, else the CPU model and thread count."""
    name = info["gpu"] or f"{info['cpu']}-{info['threads']}t"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return ("cuda-" if info["gpu"] else "cpu-") + slug[:60]

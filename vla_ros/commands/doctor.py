"""`vla-ros doctor`: what a user needs to know to debug an installation."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from typing import Callable


def register(subparsers) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="print the ROS, ML and rendering set-up of this machine",
        description="Print what matters when debugging vla_ros: ROS distribution or wheels, RMW, domain id and "
        "discovery range, torch and onnxruntime with their devices and providers, GPUs, the MuJoCo rendering "
        "backend, the image converter, and the installed graphs and models. Exits non-zero when a required part "
        "is missing.",
    )
    doctor.add_argument("--no-render", action="store_true", help="skip the (slower) headless rendering check")
    doctor.set_defaults(func=_doctor)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ros() -> tuple[bool, str]:
    distro = os.environ.get("ROS_DISTRO")
    try:
        import rclpy  # noqa: PLC0415, F401
    except ImportError as exc:
        return False, f"rclpy cannot be imported ({exc}); run `make setup` or source a ROS 2 distribution"
    where = f"distribution {distro} (sourced)" if distro else f"PyPI wheels (ros-rclpy {_version('ros-rclpy')})"
    return True, where


def _rmw() -> tuple[bool, str]:
    name = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    try:
        from rclpy.utilities import get_rmw_implementation_identifier  # noqa: PLC0415

        return True, f"{get_rmw_implementation_identifier()} (RMW_IMPLEMENTATION={name})"
    except Exception as exc:  # rmw loading errors vary by implementation
        return False, f"no usable RMW ({exc}); install ros-rmw-fastrtps-cpp"


def _discovery() -> tuple[bool, str]:
    domain = os.environ.get("ROS_DOMAIN_ID", "0 (default)")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or (
        "LOCALHOST (ROS_LOCALHOST_ONLY=1)" if os.environ.get("ROS_LOCALHOST_ONLY") == "1" else "SUBNET (default)"
    )
    from vla_ros.core.dds_profile import use_discovery_profile  # noqa: PLC0415

    profile = use_discovery_profile(dict(os.environ)) or "none (middleware defaults)"
    return True, f"ROS_DOMAIN_ID={domain}, discovery range {scope}, Fast DDS profile {profile}"


def _torch() -> tuple[bool, str]:
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return False, "torch is not installed (pip install torch==2.13.0)"
    cuda = torch.cuda.is_available()
    device = f"CUDA {torch.cuda.get_device_name(0)}" if cuda else "CPU only"
    return True, f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads"


def _onnxruntime() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        return False, "onnxruntime is not installed"
    return True, f"onnxruntime {onnxruntime.__version__}, providers: {', '.join(onnxruntime.get_available_providers())}"


def _gpu() -> tuple[bool, str]:
    if not shutil.which("nvidia-smi"):
        return True, "no NVIDIA GPU tools found (CPU inference)"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return True, out or "nvidia-smi lists no GPU"
    except (subprocess.SubprocessError, OSError) as exc:
        return True, f"nvidia-smi failed: {exc}"


def _rendering(skip: bool) -> tuple[bool, str]:
    backend = os.environ.get("MUJOCO_GL", "(unset: vla_ros uses egl)")
    try:
        import mujoco  # noqa: PLC0415
    except ImportError:
        return False, "mujoco is not installed"
    if skip:
        return True, f"mujoco {mujoco.__version__}, MUJOCO_GL={backend} (not checked)"
    probe = (
        "import mujoco;"
        "m=mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>');"
        "r=mujoco.Renderer(m,32,32);d=mujoco.MjData(m);r.update_scene(d);r.render();print('ok')"
    )
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    if result.returncode == 0:
        return True, f"mujoco {mujoco.__version__}, headless rendering works with MUJOCO_GL={env['MUJOCO_GL']}"
    last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
    return False, (
        f"mujoco {mujoco.__version__} cannot render with MUJOCO_GL={env['MUJOCO_GL']}: {last} "
        "(install libegl1 libgl1-mesa-dri, or set MUJOCO_GL=osmesa with libosmesa6)"
    )


def _images() -> tuple[bool, str]:
    try:
        from vla_ros.core.image_msgs import CONVERTER_NAME  # noqa: PLC0415
    except ImportError as exc:
        return False, f"no image converter ({exc}); install rosbags-image"
    return True, CONVERTER_NAME


def _package() -> tuple[bool, str]:
    from vla_ros.graphs.spec import available_graphs, default_config_dir  # noqa: PLC0415

    config = default_config_dir()
    return True, f"config {config}; graphs: {', '.join(available_graphs(config)) or 'none'}"


def _doctor(args) -> int:
    checks: list[tuple[str, Callable[[], tuple[bool, str]], bool]] = [
        ("python", lambda: (True, f"{platform.python_version()} at {sys.executable}"), True),
        ("ROS 2", _ros, True),
        ("RMW", _rmw, True),
        ("discovery", _discovery, True),
        ("image converter", _images, True),
        ("torch", _torch, False),
        ("onnxruntime", _onnxruntime, False),
        ("GPU", _gpu, False),
        ("rendering", lambda: _rendering(args.no_render), False),
        ("vla_ros", _package, True),
    ]
    problems = 0
    for label, check, required in checks:
        try:
            ok, text = check()
        except Exception as exc:  # a broken check must not hide the others
            ok, text = False, f"check failed: {exc}"
        mark = "ok  " if ok else ("FAIL" if required else "warn")
        problems += (not ok) and required
        print(f"[{mark}] {label:16s} {text}")
    return 1 if problems else 0

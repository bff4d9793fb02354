"""ament_python package definition: `colcon build` on a ROS 2 distribution, `pip install -e .` without one."""

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
)

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        # One entry per folder keeps models/<kind>/<name>/config.json files apart in share/.
        *(
            (f"share/{PACKAGE}/{folder}",
             sorted(str(f) for f in Path(folder).iterdir() if f.is_file() and not f.name.startswith("checkpoint")))
            for folder in sorted({str(f.parent) for f in Path("models").rglob("*") if f.is_file()})
            if not folder.endswith("__pycache__")
        ),
    ],
    package_data={PACKAGE: ["sim/assets/*", "sim/assets/**/*"]},
    include_package_data=True,
    install_requires=["setuptools", "numpy", "pyyaml"],
    zip_safe=False,
    maintainer="vla_ros developers",
    maintainer_email="vla-ros@example.com",
    description="Vision-Language-Action policies on ROS 2 for the WidowX 250 arm, with a MuJoCo workcell.",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{node} = {PACKAGE}.nodes.{node}:main" for node in NODES]
        + ["vla-ros = vla_ros.cli:main"],
    },
)

"""Finding the package's own files (models/, config/) in a source tree, an editable install or a ROS share dir."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "vla_ros"


def package_roots() -> list[Path]:
    """Directories that hold models/ and config/: the source tree first, then share/vla_ros of an install: the
    ament index's (colcon, a sourced distribution), else the one `pip install .` put under the interpreter's prefix."""
    roots = [Path(__file__).resolve().parents[2]]
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        roots.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # no ament index (no distribution) or the package is not installed there
        pass
    share = Path(sys.prefix) / "share" / PACKAGE
    if share.is_dir() and share not in roots:
        roots.append(share)
    return roots


def resolve_resource(path: str | Path) -> Path:
    """An absolute path as is; a relative one from the working directory, else from the package roots."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for root in package_roots():
        if (root / candidate).exists():
            return root / candidate
    return candidate

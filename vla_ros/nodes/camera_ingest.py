"""camera_ingest: camera frames (ROS topic or an OpenCV source) → rgb8 at the model's size on /vla/image.

With `extra_cameras` (e.g. 'wrist') it also reads /camera/<name>/image_raw of each and publishes the views side by
side, the primary camera's frame first (docs/policy.md, "A second view")."""

from __future__ import annotations

import sys
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from vla_ros.core import topics
from vla_ros.core.image_msgs import CONVERTER_NAME, compressed_to_rgb8, image_to_rgb8
from vla_ros.core.stages.ingest import IngestSettings, IngestStage
from vla_ros.core.stream_stats import StreamStats
from vla_ros.core.timing import Peak
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import SENSOR, SENSOR_LATEST
from vla_ros.nodes.runtime import run_node


class CameraIngest(Node):
    def __init__(self):
        super().__init__("camera_ingest")
        self.stage = IngestStage(IngestSettings(), RCLPY)
        self.settings = SettingsParameters(self, IngestSettings, on_change=self._settings_changed).value
        self.stage.settings = self.settings
        self.stats = StreamStats()
        self.age_peak = Peak()  # the oldest frame that arrived, dropped or not
        self.publisher = self.create_publisher(Image, topics.MODEL_IMAGE, SENSOR_LATEST)
        self.capture = None
        source = self.settings.source
        if source == "topic":
            if self.settings.compressed:
                self.create_subscription(CompressedImage, topics.CAMERA_IMAGE_COMPRESSED, self.on_compressed, SENSOR)
                described = topics.CAMERA_IMAGE_COMPRESSED
            else:
                self.create_subscription(Image, topics.CAMERA_IMAGE, self.on_image, SENSOR)
                described = topics.CAMERA_IMAGE
        else:
            self.capture = self._open_capture(source)
            self.create_timer(
                1.0 / self.settings.frame_rate, self.on_capture_tick, callback_group=MutuallyExclusiveCallbackGroup()
            )
            described = f"OpenCV source {source}"
        for camera in self.stage.extra_cameras:
            topic = topics.camera_image(camera)
            if self.settings.compressed:
                self.create_subscription(CompressedImage, topic + "/compressed",
                                         lambda msg, c=camera: self.on_extra(c, msg, True), SENSOR)
            else:
                self.create_subscription(Image, topic, lambda msg, c=camera: self.on_extra(c, msg, False), SENSOR)
            described += f" beside {topic}"
        DiagnosticsReporter(self, self.report)
        self.get_logger().info(
            f"frames from {described} → {topics.MODEL_IMAGE} at {self.settings.image_size}px "
            f"(converter: {CONVERTER_NAME})"
        )

    def _settings_changed(self, settings: IngestSettings) -> None:
        self.stage.settings = settings

    # --- inputs -------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        self._ingest(msg.header, lambda: image_to_rgb8(msg))

    def on_compressed(self, msg: CompressedImage) -> None:
        self._ingest(msg.header, lambda: compressed_to_rgb8(msg))

    def on_extra(self, camera: str, msg, compressed: bool) -> None:
        problem = self.stage.on_extra_image(camera, msg, compressed)
        if problem:
            self._drop("malformed", problem)

    def _open_capture(self, source: str):
        import cv2  # noqa: PLC0415

        capture = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
        if not capture.isOpened():
            raise ParameterError(
                f"parameter source='{source}' could not be opened by OpenCV; give 'topic', a device index or a "
                "readable video file"
            )
        return capture

    def on_capture_tick(self) -> None:
        import cv2  # noqa: PLC0415

        ok, frame = self.capture.read()
        if not ok and self.settings.loop:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        if not ok:
            self._drop("read", "OpenCV source returned no frame")
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.settings.frame_id)
        self._ingest(header, lambda: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))

    # --- processing -----------------------------------------------------------------------------
    def _ingest(self, header: Header, convert) -> None:
        started = time.perf_counter()
        now = self.get_clock().now().nanoseconds
        result = self.stage.on_frame(header, convert, now)
        self.age_peak.add(result.age_s, now * 1e-9)
        if result.image is None:
            self._drop(result.drop, result.reason)
            return
        self.publisher.publish(result.image)
        self.stats.accept(time.monotonic(), time.perf_counter() - started)

    def _drop(self, key: str, message: str) -> None:
        self.stats.drop(key, message)
        self.get_logger().warning(message, throttle_duration_sec=2.0)

    def report(self):
        now = time.monotonic()
        summary = self.stats.summary(now) | self.age_peak.summary("frame_age")
        rate = self.stats.rate_hz(now)
        level = OK if rate > 0 else WARN
        return level, f"{rate:.1f} Hz" if rate > 0 else "no frames in the last 5 s", summary


def main(args: list[str] | None = None) -> int:
    # Two executor threads only for an OpenCV source, whose capture blocks in its timer. With topic input the
    # multi-threaded executor was the suspect of ~3 s pauses in taking frames.
    return run_node("camera_ingest", CameraIngest, args, threads=lambda node: 2 if node.capture is not None else 1)


if __name__ == "__main__":
    sys.exit(main())

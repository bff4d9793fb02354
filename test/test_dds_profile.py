"""The packaged Fast DDS discovery profile: used unless the user chose a profile or another middleware."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from vla_ros.core.dds_profile import discovery_profile, use_discovery_profile

NS = "{http://www.eprosima.com}"


def test_profile_is_a_default_participant_profile_with_fast_announcements():
    root = ET.parse(discovery_profile()).getroot()
    participant = root.find(f"{NS}profiles/{NS}participant")
    assert participant.get("is_default_profile") == "true"
    config = participant.find(f"{NS}rtps/{NS}builtin/{NS}discovery_config")
    period = config.find(f"{NS}leaseAnnouncement")
    seconds = int(period.find(f"{NS}sec").text) + int(period.find(f"{NS}nanosec").text) * 1e-9
    assert 0 < seconds < 3.0  # Fast DDS's default is 3 s
    lease = config.find(f"{NS}leaseDuration")
    assert int(lease.find(f"{NS}sec").text) > 2 * seconds  # several announcements fit in a lease


def test_profile_is_set_where_nobody_chose():
    environ: dict[str, str] = {}
    chosen = use_discovery_profile(environ)
    assert chosen == environ["FASTDDS_DEFAULT_PROFILES_FILE"] == str(discovery_profile())
    environ = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    assert use_discovery_profile(environ) == str(discovery_profile())


def test_a_users_profile_or_another_middleware_is_left_alone():
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        environ = {variable: "/etc/mine.xml"}
        assert use_discovery_profile(environ) == "/etc/mine.xml"
        assert environ == {variable: "/etc/mine.xml"}
    environ = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert use_discovery_profile(environ) is None
    assert environ == {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}

"""Instruction rules with no ROS: normalization, stop requests, rejection reasons, raw String payloads."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from vla_ros.core.cdr import string_payload
from vla_ros.core.instruction import interpret_instruction, is_stop_request, normalize_instruction

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
String = TYPESTORE.types["std_msgs/msg/String"]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("pick up the red block", "pick up the red block"),
        ("  Pick   UP the RED block!  ", "pick up the red block"),
        ("pick\tup\nthe\r\nred block.", "pick up the red block"),
        ("pick\x00up\x07the\x1b[31mred block", "pick up the [31mred block"),
        ("put the ｂｌｕｅ block on the plate", "put the blue block on the plate"),  # NFKC folds full-width
        ("stack\u200bthe green block", "stack the green block"),  # zero-width space is a format char
    ],
)
def test_normalization(raw, expected):
    assert normalize_instruction(raw) == expected


@pytest.mark.parametrize("text", ["stop", "STOP!", "cancel", "please stop", "stop now", "halt", "abort the task",
                                  "Stop the robot.", "cancel that please", "freeze"])
def test_stop_variants_publish_the_idle_task(text):
    decision = interpret_instruction(text)
    assert decision.accepted and decision.is_stop and decision.task == ""


@pytest.mark.parametrize("text", ["stop at the red block", "pick up the stop sign", "stopwatch", "don't stop"])
def test_instructions_mentioning_stop_are_tasks(text):
    assert not is_stop_request(normalize_instruction(text))
    assert interpret_instruction(text).task == normalize_instruction(text)


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ("", "empty"),
        ("   \t\n  ", "empty"),
        ("\x00\x01\x02\x1f", "empty"),
        ("x" * (1 << 20), "1048576 characters long; at most 512"),
        (b"\xff\xfepick", "not valid UTF-8 (byte 0xff at offset 0)"),
        (b"pick up the \xc3", "not valid UTF-8 (byte 0xc3 at offset 12)"),
    ],
)
def test_rejections_name_the_problem(payload, fragment):
    decision = interpret_instruction(payload)
    assert not decision.accepted
    assert fragment in decision.reason


def test_max_chars_is_a_limit_not_a_target():
    assert interpret_instruction("a" * 512).accepted
    assert not interpret_instruction("a" * 513).accepted
    assert interpret_instruction("a" * 513, max_chars=600).accepted


@pytest.mark.parametrize("text", [". .", "go . !", "a .\t.", "\u01f0 ."])
def test_normalization_reaches_its_fixed_point_in_one_call(text):
    # Found by the property test below: ". ." became "." and only the second call made it "".
    once = normalize_instruction(text)
    assert normalize_instruction(once) == once


@given(st.text(max_size=200))
def test_normalization_is_idempotent_and_clean(text):
    once = normalize_instruction(text)
    assert normalize_instruction(once) == once
    assert "  " not in once and once == once.strip()
    assert all(ch.isprintable() for ch in once)


@given(st.text(max_size=300))
def test_any_unicode_text_gets_a_decision(text):
    decision = interpret_instruction(text.encode("utf-8"))
    assert decision.accepted == bool(normalize_instruction(text)) or len(text) > 512
    assert decision.accepted or decision.reason


@given(st.text(max_size=100))
def test_string_payload_reads_what_rosbags_serializes(text):
    raw = bytes(TYPESTORE.serialize_cdr(String(data=text), "std_msgs/msg/String"))
    assert string_payload(raw).decode("utf-8") == text


def test_string_payload_keeps_invalid_utf8_bytes_and_rejects_truncation():
    raw = b"\x00\x01\x00\x00" + struct.pack("<I", 4) + b"\xff\xfeA\x00"
    assert string_payload(raw) == b"\xff\xfeA"
    with pytest.raises(ValueError, match="declares 51 bytes"):
        string_payload(b"\x00\x01\x00\x00" + struct.pack("<I", 51) + b"hi\x00")
    with pytest.raises(ValueError, match="encapsulation"):
        string_payload(b"\x07\x07\x00\x00\x03\x00\x00\x00hi\x00")

"""Teleoperation's pure logic: joystick and keyboard → 7-D deltas (deadman, speed, gripper, events, limits), and
the scripted joystick's inverse mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_ros.teleop.keyboard import BUTTON_KEYS, KEYBOARD_AXES, KEYBOARD_BUTTONS, KeyboardJoystick
from vla_ros.teleop.mapping import EVENTS, MOTION, JoyTeleop, MappingError, load_mapping, parse_mapping, shape_axis
from vla_ros.teleop.scripted import ScriptedJoystick

CONFIG = Path(__file__).resolve().parents[1] / "config" / "teleop"
GAMEPAD = load_mapping(CONFIG / "joy.yaml")
KEYBOARD = load_mapping(CONFIG / "keyboard.yaml")
LB, RB, A, B, BACK, START, Y = 4, 5, 0, 1, 6, 7, 3


def joy(axes=None, pressed=()):
    values = [0.0] * 8
    for index, value in (axes or {}).items():
        values[index] = value
    return values, [int(i in pressed) for i in range(11)]


def test_nothing_moves_without_the_deadman_and_the_gripper_keeps_its_state():
    teleop = JoyTeleop(GAMEPAD)
    command = teleop.update(*joy({1: 1.0, 0: -1.0, 4: 1.0}, pressed=(A,)))  # full sticks, "close", no LB
    assert not command.engaged
    assert np.all(command.action[:6] == 0) and command.action[6] == 1.0


def test_held_deadman_maps_each_axis_to_its_dimension_scaled_by_the_speed_preset():
    teleop = JoyTeleop(GAMEPAD)
    assert teleop.speed == 0.5  # initial_speed 1 of [0.25, 0.5, 1.0]
    command = teleop.update(*joy({1: 1.0, 0: -1.0, 4: 0.55}, pressed=(LB,)))
    assert command.engaged
    dz = shape_axis(0.55, GAMEPAD.deadzone) * 0.03 * 0.5
    assert np.allclose(command.action, [0.015, -0.015, dz, 0, 0, 0, 1.0])


def test_speed_button_cycles_presets_once_per_press():
    teleop = JoyTeleop(GAMEPAD)
    teleop.update(*joy(pressed=(RB,)))
    teleop.update(*joy(pressed=(RB,)))  # still held: no second step
    assert teleop.speed == 1.0
    teleop.update(*joy())
    teleop.update(*joy(pressed=(RB,)))
    assert teleop.speed == 0.25  # wraps around


def test_gripper_buttons_set_the_opening_only_with_the_deadman():
    teleop = JoyTeleop(GAMEPAD)
    assert teleop.update(*joy(pressed=(LB, A))).action[6] == 0.0
    assert teleop.update(*joy(pressed=(B,))).action[6] == 0.0  # no deadman: ignored
    assert teleop.update(*joy(pressed=(LB, B))).action[6] == 1.0


def test_events_fire_on_the_press_edge_only():
    teleop = JoyTeleop(GAMEPAD)
    assert teleop.update(*joy(pressed=(BACK,))).events == ("toggle_mode",)
    assert teleop.update(*joy(pressed=(BACK,))).events == ()
    assert teleop.update(*joy(pressed=(START, Y))).events == ("start_episode", "stop_success")


def test_a_short_joystick_is_reported_not_crashed_on():
    teleop = JoyTeleop(GAMEPAD)
    command = teleop.update([0.5, 0.5], [0] * 5 + [0])  # 2 axes, 6 buttons: LB exists, stick 4 does not
    assert np.all(command.action[:6] == 0)
    assert any("axes" in p for p in teleop.problems) or not command.engaged


@settings(max_examples=300, deadline=None)
@given(axes=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=8, max_size=8),
       buttons=st.lists(st.integers(0, 1), min_size=11, max_size=11), presses=st.integers(0, 5))
def test_no_joystick_input_ever_exceeds_the_per_step_limits(axes, buttons, presses):
    teleop = JoyTeleop(GAMEPAD)
    for _ in range(presses):  # any speed preset
        teleop.update(*joy(pressed=(RB,)))
        teleop.update(*joy())
    action = teleop.update(axes, buttons).action
    assert np.all(np.isfinite(action))
    assert np.all(np.abs(action[:3]) <= GAMEPAD.max_translation + 1e-12)
    assert np.all(np.abs(action[3:6]) <= GAMEPAD.max_rotation + 1e-12)
    assert action[6] in (0.0, 1.0)


def test_bad_mappings_are_refused_with_the_file_and_key_named(tmp_path):
    with pytest.raises(MappingError, match="motion.dq is not an action dimension"):
        parse_mapping({"motion": {"dq": {"axis": 0, "scale": 0.1}}}, "pad.yaml")
    with pytest.raises(MappingError, match="button 4 is bound twice"):
        parse_mapping({"motion": {"dx": {"axis": 0, "scale": 0.1}}, "deadman_button": 4,
                       "gripper": {"toggle_button": 4}}, "pad.yaml")
    path = tmp_path / "broken.yaml"
    path.write_text("motion: [1, 2")
    with pytest.raises(MappingError, match=f"{path} is not valid YAML"):
        load_mapping(path)
    with pytest.raises(MappingError, match="does not exist"):
        load_mapping(tmp_path / "missing.yaml")


def test_the_keyboard_mapping_file_matches_the_virtual_joysticks_layout():
    assert [KEYBOARD.motion[name].axis for name in MOTION] == [KEYBOARD_AXES.index(name) for name in MOTION]
    assert KEYBOARD.deadman_button == KEYBOARD_BUTTONS.index("deadman")
    assert KEYBOARD.gripper.close_button == KEYBOARD_BUTTONS.index("close_gripper")
    assert KEYBOARD.gripper.open_button == KEYBOARD_BUTTONS.index("open_gripper")
    assert KEYBOARD.speed_button == KEYBOARD_BUTTONS.index("speed")
    assert {e: KEYBOARD_BUTTONS.index(e) for e in EVENTS} == KEYBOARD.events


def test_keys_drive_the_arm_while_pressed_and_stop_when_they_stop():
    keyboard, teleop = KeyboardJoystick(hold_s=0.3), JoyTeleop(KEYBOARD)
    keyboard.key("w", 0.0)
    keyboard.key("f", 0.1)
    command = teleop.update(*keyboard.joy(0.2))
    assert command.engaged and np.allclose(command.action[:3], [0.015, 0, -0.015])
    command = teleop.update(*keyboard.joy(0.35))  # w has expired, f not yet
    assert np.allclose(command.action[:3], [0, 0, -0.015])
    command = teleop.update(*keyboard.joy(1.0))
    assert not command.engaged and np.all(command.action[:6] == 0)
    keyboard.key("c", 1.0)
    assert teleop.update(*keyboard.joy(1.05)).action[6] == 0.0
    keyboard.key("t", 2.0)
    events = [teleop.update(*keyboard.joy(2.0 + i * 0.05)).events for i in range(3)]
    assert events == [("toggle_mode",), (), ()]
    assert keyboard.key("?", 3.0) is None and "c" in BUTTON_KEYS


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.03, 0.03), st.floats(-0.03, 0.03), st.floats(-0.03, 0.03),
                          st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.floats(-0.3, 0.3), st.sampled_from([0.0, 1.0])),
                min_size=1, max_size=6))
def test_the_scripted_joystick_makes_the_teleop_node_reproduce_the_actions(actions):
    scripted, node_side = ScriptedJoystick(GAMEPAD), JoyTeleop(GAMEPAD)
    node_side.update(*scripted.joy(None))  # the speed button press (no motion yet)
    for action in actions:
        produced = node_side.update(*scripted.joy(np.array(action))).action
        assert np.allclose(produced, action, atol=1e-9), (produced, action)
    scripted.press("start_episode")
    assert node_side.update(*scripted.joy(np.array(actions[-1]))).events == ("start_episode",)

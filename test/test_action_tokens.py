"""The /vla/action_tokens layout: round trip and every rejection the decoder node relies on."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_ros.core.action_tokens import (
    HEADER_WORDS,
    MAGIC_VERSION,
    TokenMessageError,
    normalize_task,
    pack_action_tokens,
    task_hash,
    unpack_action_tokens,
    validate,
)

IDENTITY = "0123456789abcdef"
TASK = "Pick up the red block"


def packed(tokens=(5, 1023, 0, 7, 7, 9, 100, 512), stamp_ns=1_700_000_000_123_456_789, task=TASK, identity=IDENTITY):
    return pack_action_tokens(np.asarray(tokens, dtype=np.int64), stamp_ns, task, identity)


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=64),
    stamp_ns=st.integers(0, (2**31 - 1) * 1_000_000_000 + 999_999_999),
    task=st.text(max_size=40),
    identity=st.integers(0, 2**64 - 1).map(lambda v: f"{v:016x}"),
)
def test_round_trip_keeps_tokens_stamp_task_and_identity(tokens, stamp_ns, task, identity):
    fields = pack_action_tokens(np.asarray(tokens, dtype=np.int64), stamp_ns, task, identity)
    assert fields.data.dtype == np.int32
    assert fields.data_offset == HEADER_WORDS
    assert fields.dims == [("chunk", 1, len(tokens)), ("token", len(tokens), 1)]
    out = unpack_action_tokens(fields.dims, fields.data_offset, fields.data.tolist(), expected_identity=identity)
    np.testing.assert_array_equal(out.tokens, tokens)
    assert out.tokens.dtype == np.int64
    assert out.stamp_ns == stamp_ns
    assert out.identity == identity
    assert out.task_hash == task_hash(task)


def test_task_hash_ignores_case_and_spacing_but_not_words():
    assert normalize_task("  Pick up   the RED block ") == "pick up the red block"
    assert task_hash("  Pick up   the RED block ") == task_hash("pick up the red block")
    assert task_hash("pick up the red block") != task_hash("pick up the blue block")


def test_consumer_checks_pass_for_a_good_message():
    fields = packed()
    out = unpack_action_tokens(fields.dims, fields.data_offset, fields.data, vocab_size=1024, tokens_per_chunk=8,
                               expected_identity=IDENTITY.upper(), expected_task="pick up the red   block")
    assert out.tokens.tolist() == [5, 1023, 0, 7, 7, 9, 100, 512]


def test_rejects_wrong_magic_or_version():
    fields = packed()
    data = fields.data.copy()
    data[0] = MAGIC_VERSION + 1  # layout version 2
    with pytest.raises(TokenMessageError, match="magic/version"):
        unpack_action_tokens(fields.dims, fields.data_offset, data)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d, o, x: (d, 4, x), "data_offset"),
        (lambda d, o, x: (d, o, x[:-1]), "data has"),
        (lambda d, o, x: (d, o, np.append(x, 3)), "data has"),
        (lambda d, o, x: ([("chunk", 1, 9), ("token", 9, 1)], o, x), "data has"),
        (lambda d, o, x: ([("chunk", 1, 8), ("token", 8, 2)], o, x), "one chunk"),
        (lambda d, o, x: ([("chunk", 2, 8), ("token", 4, 1)], o, x), "one chunk"),
        (lambda d, o, x: ([("token", 8, 1)], o, x), "labels"),
        (lambda d, o, x: (d, o, x[:3]), "fewer than"),
    ],
)
def test_rejects_offset_or_dims_inconsistent_with_data(change, message):
    fields = packed()
    dims, offset, data = change(fields.dims, fields.data_offset, fields.data)
    with pytest.raises(TokenMessageError, match=message):
        unpack_action_tokens(dims, offset, data)


def test_rejects_tokens_out_of_vocabulary_or_wrong_count():
    fields = packed(tokens=(1, 2, 3, 4, 5, 6, 7, 1024))
    with pytest.raises(TokenMessageError, match="outside the tokenizer's vocabulary"):
        unpack_action_tokens(fields.dims, fields.data_offset, fields.data, vocab_size=1024, tokens_per_chunk=8)
    with pytest.raises(TokenMessageError, match="expects 16 per chunk"):
        unpack_action_tokens(fields.dims, fields.data_offset, fields.data, vocab_size=2048, tokens_per_chunk=16)
    data = fields.data.copy()
    data[HEADER_WORDS] = -3  # a negative id can only come from a corrupt producer
    with pytest.raises(TokenMessageError, match="token id -3"):
        unpack_action_tokens(fields.dims, fields.data_offset, data, vocab_size=1024)
    validate(np.arange(8), 8, 8)  # the boundary case is accepted


def test_rejects_identity_mismatch():
    fields = packed()
    with pytest.raises(TokenMessageError, match="tokenizer 0123456789abcdef"):
        unpack_action_tokens(fields.dims, fields.data_offset, fields.data, expected_identity="fedcba9876543210")


def test_rejects_task_mismatch_and_no_current_task():
    fields = packed()
    with pytest.raises(TokenMessageError, match="not the current task"):
        unpack_action_tokens(fields.dims, fields.data_offset, fields.data, expected_task="push the red block left")
    with pytest.raises(TokenMessageError, match="no current task"):
        unpack_action_tokens(fields.dims, fields.data_offset, fields.data, expected_task="  ")


def test_rejects_an_impossible_stamp():
    fields = packed()
    data = fields.data.copy()
    data[2] = 1_000_000_000
    with pytest.raises(TokenMessageError, match="stamp"):
        unpack_action_tokens(fields.dims, fields.data_offset, data)


def test_pack_refuses_bad_inputs():
    with pytest.raises(ValueError, match="hex digits"):
        packed(identity="xyz")
    with pytest.raises(ValueError, match="1-D"):
        pack_action_tokens(np.zeros((2, 4), np.int64), 0, TASK, IDENTITY)
    with pytest.raises(ValueError, match=r"\[0, 2\*\*31\)"):
        packed(tokens=(-1, 2))


def test_the_decoders_check_narrows_ids_per_position_for_residual_vq():
    from vla_ros.core.token_checks import check_token_message

    low, high = np.array([0, 0, 16, 16]), np.array([16, 16, 32, 32])  # two levels of a 16-code book
    fine_in_coarse = pack_action_tokens(np.array([20, 1, 17, 18]), 1, "pick up the red block", "00000000000000aa")
    verdict = check_token_message(fine_in_coarse.dims, fine_in_coarse.data_offset, fine_in_coarse.data,
                                  vocab_size=32, tokens_per_chunk=4, identity="00000000000000aa",
                                  task="pick up the red block", token_ranges=(low, high))
    assert verdict.reason_key == "out_of_range" and "position 0" in verdict.reason
    good = pack_action_tokens(np.array([3, 1, 17, 18]), 1, "pick up the red block", "00000000000000aa")
    assert check_token_message(good.dims, good.data_offset, good.data, vocab_size=32, tokens_per_chunk=4,
                               identity="00000000000000aa", task="pick up the red block",
                               token_ranges=(low, high)).tokens is not None

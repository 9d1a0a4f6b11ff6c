"""LeRobot's π0.5 (``type = "pi05"``) as an rtchunk bundle. π0.5 is π0 with two changes that matter here: the
action expert is conditioned on time through adaptive RMS norms and takes no state token, and the state enters the
*prompt*: LeRobot's preprocessor discretises the normalised state into 256 bins and writes
``"Task: {task}, State: {b1} {b2} ...;\\nAction: "``, tokenised and padded to ``tokenizer_max_length``.

The bundle keeps that per observation without a tokenizer at run time: its prompt input is the fixed head
(``"Task: {task}, State:"`` tokenised, ``<bos>`` included) and the prefix graph appends, from tables
(:class:`StatePrompt`), the tokens of each dimension's bin and of the fixed tail, then pads. That is exact when the
tokenizer splits the prompt at those seams (byte-level BPE splits at the spaces and at digit/punctuation
boundaries; Gemma's SentencePiece keeps digits apart): the exporter checks it against LeRobot's own preprocessor
on states across every bin and refuses a tokenizer that does not.

The context is the VLM's cache flattened (its padded prompt slots included) followed by the prefix's pad mask
(1 real, 0 padding), which the velocity graph hands to LeRobot's ``denoise_step``.
"""

from dataclasses import dataclass

import numpy as np
import torch
from lerobot.policies.pi05 import modeling_pi05
from lerobot.policies.pi05.configuration_pi05 import PI05Config
from lerobot.policies.pi05.modeling_pi05 import PI05Policy
from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors
from lerobot.processor import TokenizerProcessorStep, TransitionKey
from lerobot.processor.converters import create_transition
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

from .graphs import Architecture, Prefill, UnsupportedCheckpoint
from .pi0 import Pi0Graphs, attention, building_in, embedded_prefix, paligemma_sizes, prefix_cache, to_bfloat16

# LeRobot's bin edges for the normalised state (``Pi05PrepareStateTokenizerProcessorStep``): a value's bin is the
# number of edges at or below it, minus one (-1 below the first edge), compared in float64.
STATE_EDGES = np.linspace(-1, 1, 256 + 1)[:-1]
# The prompt around the state, as LeRobot's preprocessor writes it.
STATE_TAIL = ";\nAction: "


def _preprocessor_step(checkpoint, kind: str):
    return next(step for step in checkpoint.preprocessor.steps if type(step).__name__ == kind)


def prompt_head(task: str) -> str:
    """The prompt before the state's numbers, as LeRobot's preprocessor cleans the task."""
    cleaned = task.strip().replace("_", " ").replace("\n", " ")
    return f"Task: {cleaned}, State:"


@dataclass
class StatePrompt:
    """The state's part of π0.5's prompt as token tables: ``segments[v + 1]`` holds the tokens of ``" {v}"`` for a
    bin v in -1..255 (``lengths[v + 1]`` of them, then ``pad_id``), ``tail`` the tokens after the state; prompts
    are padded or cut to ``length`` tokens."""

    segments: torch.Tensor
    lengths: torch.Tensor
    tail: torch.Tensor
    length: int
    pad_id: int

    @classmethod
    def of(cls, checkpoint, head_length: int) -> "StatePrompt":
        """The tables of the checkpoint's own tokenizer, for prompts whose head has ``head_length`` tokens."""
        step = _preprocessor_step(checkpoint, TokenizerProcessorStep.__name__)
        tokenizer = step.input_tokenizer
        pieces = [tokenizer(f" {v}", add_special_tokens=False)["input_ids"] for v in range(-1, 256)]
        width = max(map(len, pieces))
        pad_id = tokenizer.pad_token_id or 0
        segments = torch.tensor([p + [pad_id] * (width - len(p)) for p in pieces], dtype=torch.int64)
        tail = tokenizer(STATE_TAIL, add_special_tokens=False)["input_ids"]
        dims = checkpoint.policy.config.robot_state_feature.shape[0]
        length = min(step.max_length, head_length + dims * width + len(tail))
        return cls(segments, torch.tensor(list(map(len, pieces))), torch.tensor(tail, dtype=torch.int64), length,
                   pad_id)

    def tokens(self, state: torch.Tensor, head: torch.Tensor) -> tuple:
        """The prompt's tokens ``[B, length]`` and which are real, for the normalised ``state`` ``[B, D]`` after
        the ``head`` tokens ``[B, H]`` (all real)."""
        batch = state.shape[0]
        edges = torch.from_numpy(STATE_EDGES).to(state.device)
        index = (state.to(torch.float64)[..., None] >= edges).to(torch.int64).sum(-1)  # bin + 1
        width = self.segments.shape[1]
        real_piece = torch.arange(width, device=state.device) < self.lengths.to(state.device)[index][..., None]
        tail = self.tail.to(state.device).expand(batch, -1)
        pieces = torch.cat([head, self.segments.to(state.device)[index].flatten(1), tail], dim=1)
        real = torch.cat([torch.ones_like(head, dtype=torch.bool), real_piece.flatten(1),
                          torch.ones_like(tail, dtype=torch.bool)], dim=1)
        position = torch.cumsum(real.to(torch.int64), dim=1) - 1
        # Real tokens go to their place; padding pieces and tokens past ``length`` to a last slot, then dropped.
        position = torch.where(real & (position < self.length), position, self.length)
        tokens = torch.full((batch, self.length + 1), self.pad_id, dtype=torch.int64, device=state.device)
        tokens = tokens.scatter(1, position, pieces)[:, : self.length]
        count = real.to(torch.int64).sum(1, keepdim=True)
        return tokens, torch.arange(self.length, device=state.device)[None] < count

    def check(self, checkpoint, head: list, task: str) -> None:
        """Raises unless the tables give the tokens LeRobot's preprocessor gives, for states across every bin
        (and below and above the range)."""
        dims = checkpoint.policy.config.robot_state_feature.shape[0]
        values = np.concatenate([STATE_EDGES, STATE_EDGES + 1e-4, [-1.5, -1.0 - 1e-6, 0.999, 1.0, 1.5]])
        rows = np.resize(np.random.default_rng(0).permutation(values), (-(-len(values) // dims), dims))
        states = torch.from_numpy(rows.astype(np.float32))
        prepare = _preprocessor_step(checkpoint, "Pi05PrepareStateTokenizerProcessorStep")
        tokenize = _preprocessor_step(checkpoint, TokenizerProcessorStep.__name__)
        transition = create_transition(observation={OBS_STATE: states},
                                       complementary_data={"task": [task] * len(rows)})
        observation = tokenize(prepare(transition))[TransitionKey.OBSERVATION]
        expected_tokens, expected_mask = observation[OBS_LANGUAGE_TOKENS], observation[OBS_LANGUAGE_ATTENTION_MASK]
        tokens, mask = self.tokens(states, torch.tensor([head] * len(rows), dtype=torch.int64))
        for row in range(len(rows)):
            got, expected = tokens[row][mask[row]], expected_tokens[row][expected_mask[row].bool()]
            if not torch.equal(got, expected):
                raise UnsupportedCheckpoint(
                    f"{checkpoint.path / 'policy_preprocessor.json'}: tokenizer_processor splits π0.5's prompt "
                    f"across the state's numbers (state {rows[row].tolist()}: {expected.tolist()}, tables "
                    f"{got.tolist()}); the bundle writes the state's tokens from per-number tables")


class Pi05Graphs(Pi0Graphs):
    """The bundle's functions for a π0.5 ``policy``: the prompt input is its head, the state's tokens are written
    in the graph (``state_prompt``), and the context ends with the prefix's pad mask."""

    def __init__(self, policy, camera_keys: list, sample: tuple, state_prompt: StatePrompt):
        self.state_prompt = state_prompt
        super().__init__(policy, camera_keys, sample)

    def _prompt(self, state: torch.Tensor, tokens: torch.Tensor) -> tuple:
        return self.state_prompt.tokens(state, tokens)

    def _after_cache(self, batch: dict, pad_masks: torch.Tensor) -> torch.Tensor:
        return pad_masks

    def velocity(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        layers, pad_masks = self.split(context)
        return self.model.denoise_step(pad_masks > 0.5, layers, actions, t[:, 0])

    def cached(self, context: torch.Tensor) -> tuple:
        _, pad_masks = self.split(context)
        return self._cache_of(context), pad_masks > 0.5


def graphs(checkpoint, camera_keys: list, sample: tuple, prompt: str) -> Pi05Graphs:
    """The π0.5 graphs of a checkpoint for the task ``prompt``, its state-prompt tables checked against LeRobot's
    preprocessor."""
    head = sample[-1][0].tolist()
    state_prompt = StatePrompt.of(checkpoint, len(head))
    state_prompt.check(checkpoint, head, prompt)
    return Pi05Graphs(checkpoint.policy, camera_keys, sample, state_prompt)


def prompt_ids(checkpoint, prompt: str, processed: dict) -> list:
    """The bundle's prompt: the head before the state, tokenised by the checkpoint's tokenizer (``<bos>``
    included)."""
    tokenizer = _preprocessor_step(checkpoint, TokenizerProcessorStep.__name__).input_tokenizer
    return tokenizer(prompt_head(prompt))["input_ids"]


def prefill(policy, processed: dict) -> Prefill:
    """LeRobot's cache and denoising step for a preprocessed batch (its prompt carries the state)."""
    embeddings, pad_masks, att_masks = embedded_prefix(policy, processed, processed[OBS_LANGUAGE_TOKENS],
                                                       processed[OBS_LANGUAGE_ATTENTION_MASK])
    cache = prefix_cache(policy.model, embeddings, pad_masks, att_masks)

    def step(actions: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return policy.model.denoise_step(pad_masks, cache, actions, time)

    return Prefill(cache, pad_masks, step)


ARCHITECTURE = Architecture(
    kind="pi05",
    config_class=PI05Config,
    policy_class=PI05Policy,
    make_processors=make_pi05_pre_post_processors,
    graphs=graphs,
    prefill=prefill,
    steps_field="num_inference_steps",
    attention=attention,
    unsupported_flags={"use_relative_actions": "actions relative to the state, converted around the model"},
    # The tiny π0.5's prompts hold its state's numbers: room for them, and for padding after them.
    sizes=paligemma_sizes("pi05", tokenizer_max_length=64),
    building=building_in(modeling_pi05, PI05Config),
    to_bfloat16=to_bfloat16,
    prompt_ids=prompt_ids,
)

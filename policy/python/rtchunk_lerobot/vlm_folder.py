"""Writes a VLM's folder (configuration, tokenizer, processor) without downloading anything.

SmolVLA builds its VLM from ``vlm_model_name`` with ``AutoConfig`` / ``AutoProcessor.from_pretrained`` even when it
loads no VLM weights, and π0's processor loads PaliGemma's tokenizer from the hub, so a checkpoint can only be built
on a machine without network access from a local folder. ``write_vlm_folder`` writes one: a SmolVLM of the
SmolVLM2-500M shapes (``SMOLVLM2_500M``, what SmolVLA uses) or a tiny one for tests, or PaliGemma's tokenizer alone
(``paligemma``: π0 builds its model from its own configuration). The tokenizer is a byte-level BPE trained here on a
small corpus, carrying the model's special tokens (PaliGemma's prepends ``<bos>``, as Gemma's does); a real
checkpoint's own tokenizer is used whenever the folder of the real VLM is at hand.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

# SmolVLM's special tokens, named as its processor and SmolVLA look them up.
SPECIAL_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
CORPUS = [
    "pick up the red cube and place it in the bin",
    "push the block to the goal",
    "fold the towel",
    "open the drawer and put the cup inside",
    "reach the target without touching the obstacle",
    "0123456789 .,:;!?-_/\n",
]

# HuggingFaceTB/SmolVLM2-500M-Video-Instruct, the VLM of SmolVLA (its published config.json).
SMOLVLM2_500M = {
    "text": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5, head_dim=64, rms_norm_eps=1e-5, rope_theta=100000.0, vocab_size=49280,
                 max_position_embeddings=8192),
    "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=512, patch_size=16),
    "scale_factor": 4,
}
# A SmolVLM small enough to build, export and check on a CPU in seconds.
TINY = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, rope_theta=100000.0, vocab_size=320,
                 max_position_embeddings=512),
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8),
    "scale_factor": 2,
}
PRESETS = {"smolvlm2-500m": SMOLVLM2_500M, "tiny": TINY, "paligemma": None}
# The largest vocabulary trained (it covers the corpus well before this).
VOCAB_SIZE = 512


def _bpe(specials: list, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE of at most ``vocab_size`` tokens trained on ``CORPUS``, whose first tokens are
    ``specials``."""
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    return bpe


def _smolvlm_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer with SmolVLM's special tokens and a padding token."""
    bpe = _bpe(["<|endoftext|>", *SPECIAL_TOKENS.values()], min(vocab_size, VOCAB_SIZE))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   extra_special_tokens=dict(SPECIAL_TOKENS))


def _paligemma_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer with Gemma's special tokens that prepends ``<bos>`` to every text."""
    bpe = _bpe(["<pad>", "<eos>", "<bos>"])
    bpe.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def write_vlm_folder(out: Path, preset: str = "tiny") -> Path:
    """Writes the configuration, tokenizer and processor of the VLM ``preset`` (PRESETS) into ``out``; returns
    ``out``."""
    shapes = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    if shapes is None:
        _paligemma_tokenizer().save_pretrained(out)
        return out
    tokenizer = _smolvlm_tokenizer(shapes["text"]["vocab_size"])
    text = dict(shapes["text"], model_type="llama", pad_token_id=tokenizer.pad_token_id)
    config = SmolVLMConfig(text_config=text, vision_config=shapes["vision"], scale_factor=shapes["scale_factor"],
                           image_token_id=tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS["image_token"]),
                           pad_token_id=tokenizer.pad_token_id)
    config.save_pretrained(out)
    image_size = shapes["vision"]["image_size"]
    image_processor = SmolVLMImageProcessor(size={"longest_edge": image_size},
                                            max_image_size={"longest_edge": image_size})
    tokens_per_image = (image_size // shapes["vision"]["patch_size"]) ** 2 // shapes["scale_factor"] ** 2
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=SmolVLMVideoProcessor(), image_seq_len=tokens_per_image)
    processor.save_pretrained(out)
    return out

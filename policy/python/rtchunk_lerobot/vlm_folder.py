"""Writes a SmolVLM model folder (configuration, tokenizer, processor) without downloading anything.

SmolVLA builds its VLM from ``vlm_model_name`` with ``AutoConfig`` / ``AutoProcessor.from_pretrained`` even when it
loads no VLM weights, so a checkpoint can only be built on a machine without network access from a local folder.
``write_vlm_folder`` writes one: the SmolVLM2-500M shapes (``SMOLVLM2_500M``, what SmolVLA uses), or a tiny model
for tests. Its tokenizer is a byte-level BPE trained here on a small corpus, carrying SmolVLM's special tokens; a
real checkpoint's own tokenizer is used whenever the folder of the real VLM is at hand.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
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
PRESETS = {"smolvlm2-500m": SMOLVLM2_500M, "tiny": TINY}


def _tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with SmolVLM's special tokens and a padding token."""
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", *SPECIAL_TOKENS.values()]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   extra_special_tokens=dict(SPECIAL_TOKENS))


def write_vlm_folder(out: Path, preset: str = "tiny") -> Path:
    """Writes the configuration, tokenizer and processor of the SmolVLM ``preset`` into ``out``; returns ``out``."""
    shapes = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(min(shapes["text"]["vocab_size"], 512))
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

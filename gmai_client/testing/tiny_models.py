"""Tiny random-weight vision-language models, built fully offline, for tests and benchmarks.

Owns: a byte-level BPE tokenizer trained in memory (no download), and builders that save a
complete model directory (weights, config, tokenizer, processor, chat template) which
``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained`` reload.

The models answer nonsense; what they are for is exercising the real transformers code paths
(processor, chat template, left padding, batched ``generate``) in seconds on a CPU.

Two families:

* ``build_tiny_llava``    LlavaForConditionalGeneration (CLIP vision tower + Llama text model)
* ``build_tiny_idefics3`` Idefics3ForConditionalGeneration (SmolVLM's architecture)

Needs ``torch``, ``transformers`` and ``tokenizers`` (the ``torch`` and ``dev`` extras); never
torchvision: transformers falls back to its PIL image processors without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# Nothing here may reach a hub: everything is built in code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Sentences the tokenizer's BPE merges are learnt from: the vocabulary of the prompts the tests
# and GMAI-MMBench send, so prompts tokenize into a realistic number of tokens.
_CORPUS: tuple[str, ...] = (
    "Question: Which abnormality is shown in this image?",
    "Options: A. pneumonia B. normal C. nodule D. effusion E. fracture",
    "Answer with the option's letter from the given choices directly.",
    "Please select the correct answer from the options above.",
    "The modality is CT, MRI, X-ray, ultrasound, dermoscopy, fundus or pathology.",
    "Hint: the lesion is located in the left lower lobe of the lung.",
    "What organ is visible? What is the diagnosis? Which department should treat it?",
    "The answer is A. The answer is B. The answer is C. The answer is D.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,:;?!'\"()[]-_/",
)

# Plain chat template: BOS, optional system line, "USER: <images><text>", "ASSISTANT:". Images
# come first in a turn because that is where the client puts them; content may be a plain string.
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}SYSTEM: "
    "{% elif message['role'] == 'user' %}USER: "
    "{% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ image_token }}{{ '\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _require() -> None:
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"building tiny models needs torch, transformers and tokenizers ({exc}): "
            "pip install 'gmai-client[torch,dev]'"
        ) from exc


def build_tokenizer(extra_special: Sequence[str] = (), *, image_token: str = "<image>", vocab_size: int = 400):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``_CORPUS`` (about 10 ms, offline)."""
    _require()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base_special = ["<pad>", "<s>", "</s>", "<unk>", image_token]
    special = base_special + [token for token in extra_special if token not in base_special]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        # Batched generation of a decoder-only model must pad on the left.
        padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special[4:]})
    return tokenizer


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide transformers' "Writing model shards" progress bar (global state, restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _seed_everything(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# The vision tower and the Llama text model both families share: tiny, so a model builds and runs in seconds.
_VISION_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
_IMAGE_SIZE, _PATCH_SIZE = 32, 8


def _text_config(tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _save_model(model_class, config, tokenizer, out: Path, seed: int) -> None:
    """Initialise ``model_class(config)`` from ``seed`` with greedy generation defaults, and save it."""
    _seed_everything(seed)
    model = model_class(config).eval()
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.do_sample = False
    with _quiet():
        model.save_pretrained(out)


def build_tiny_llava(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a tiny random ``LlavaForConditionalGeneration`` (CLIP 32 px + 2-layer Llama) to ``path``."""
    _require()
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(**_VISION_SIZES, image_size=_IMAGE_SIZE, patch_size=_PATCH_SIZE, projection_dim=32)
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    _save_model(LlavaForConditionalGeneration, config, tokenizer, out, seed)

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": _IMAGE_SIZE},
        crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, which "default" then drops again
        chat_template=_CHAT_TEMPLATE.replace("{{ image_token }}", "<image>"),
    )
    processor.save_pretrained(out)
    return out


# Special tokens Idefics3Processor looks up by name; without them they would map to <unk>.
_IDEFICS3_SPECIAL: tuple[str, ...] = (
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)


def build_tiny_idefics3(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a tiny random ``Idefics3ForConditionalGeneration`` (SmolVLM's architecture) to ``path``.

    Image splitting is off and images are resized to one 32 px square, so each image costs a
    fixed ``image_seq_len`` (4) tokens: (32 / 8)² patches, pixel-shuffled by ``scale_factor`` 2.
    """
    _require()
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(_IDEFICS3_SPECIAL)
    scale_factor = 2
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(**_VISION_SIZES, image_size=_IMAGE_SIZE, patch_size=_PATCH_SIZE),
        text_config=_text_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
    )
    _save_model(Idefics3ForConditionalGeneration, config, tokenizer, out, seed)

    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": _IMAGE_SIZE},
        max_image_size={"longest_edge": _IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=(_IMAGE_SIZE // _PATCH_SIZE) ** 2 // scale_factor**2,
        chat_template=_CHAT_TEMPLATE.replace("{{ image_token }}", "<image>"),
    )
    processor.save_pretrained(out)
    return out

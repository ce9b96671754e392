"""Tests for gmai_client.protocol.prompt: the reference prompt text, templates, and image pass-through."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image as PILImage

from gmai_client.errors import ConfigError, DataError
from gmai_client.protocol.prompt import (
    DEFAULT_TEMPLATE,
    MULTI_ANSWER_SUFFIX,
    build_request,
    render_prompt,
    sniff_mime,
    validate_template,
)
from gmai_client.types import Item, SamplingParams, SourceRef


def tiny_png() -> bytes:
    """A real 1x1 grey PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b"")
    )


PNG = tiny_png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
BMP = b"BM" + b"\x00" * 60


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_item(
    *,
    answer: tuple[str, ...] | None = ("C",),
    hint: str = "",
    images: tuple[str, ...] = (),
    options: tuple[tuple[str, str], ...] = (
        ("A", "pneumonia"),
        ("B", "healthy bone"),
        ("C", "tumor"),
        ("D", "fracture"),
    ),
) -> Item:
    return Item(
        index="1042",
        question="What abnormality does this X-ray show?",
        options=options,
        answer=answer,
        images_b64=images if images else (b64(PNG),),
        hint=hint,
        source=SourceRef("GMAI-MMBench_VAL.tsv", 17, "1042"),
    )


FOUR_OPTION_PROMPT = (
    "Question: What abnormality does this X-ray show?\n"
    "Options:\n"
    "A. pneumonia\n"
    "B. healthy bone\n"
    "C. tumor\n"
    "D. fracture\n"
    "Please select the correct answer from the options above. \n"
)


# ---------------------------------------------------------------------------------- prompt text


def test_reference_prompt_for_a_four_option_item() -> None:
    assert render_prompt(make_item()) == FOUR_OPTION_PROMPT


def test_prompt_for_an_item_without_key_is_single_answer() -> None:
    assert render_prompt(make_item(answer=None)) == FOUR_OPTION_PROMPT


def test_hint_line_comes_first() -> None:
    assert render_prompt(make_item(hint="Sagittal T1 MRI of the knee.")) == (
        "Hint: Sagittal T1 MRI of the knee.\n" + FOUR_OPTION_PROMPT
    )


def test_multi_answer_item_gets_the_reference_prompt_by_default() -> None:
    # VLMEvalKit sends the single-answer prompt for every item.
    assert render_prompt(make_item(answer=("A", "C"))) == render_prompt(make_item(answer=("A",)))


def test_multi_answer_item_gets_the_paper_instruction_when_asked() -> None:
    text = render_prompt(make_item(answer=("A", "C")), multi_answer_instruction=True)
    assert render_prompt(make_item(answer=("A",)), multi_answer_instruction=True).endswith("above. \n")
    assert text == (
        "Question: What abnormality does this X-ray show?\n"
        "Options:\nA. pneumonia\nB. healthy bone\nC. tumor\nD. fracture\n"
        "Please select all correct answers from the options above. Note that there is more than one "
        "correct answer. Please output the answer options directly, separated by commas. For example: A,B\n"
    )
    assert text.endswith(MULTI_ANSWER_SUFFIX + "\n")
    assert "Please select the correct answer" not in text


def test_two_and_five_options_render_all_and_only_their_options() -> None:
    two = make_item(options=(("A", "yes"), ("B", "no")), answer=("B",))
    assert render_prompt(two).endswith(
        "Options:\nA. yes\nB. no\nPlease select the correct answer from the options above. \n"
    )
    five = make_item(options=(("A", "a1"), ("B", "b1"), ("C", "c1"), ("D", "d1"), ("E", "e1")))
    assert "D. d1\nE. e1\nPlease select" in render_prompt(five)


def test_default_template_renders_the_same_text() -> None:
    item = make_item(hint="h")
    assert render_prompt(item, DEFAULT_TEMPLATE) == render_prompt(item)


def test_custom_template() -> None:
    template = "{hint}Q: {question}\n{options}Reply with one letter.{instruction}"
    assert render_prompt(make_item(hint="CT"), template) == (
        "Hint: CT\nQ: What abnormality does this X-ray show?\n"
        "A. pneumonia\nB. healthy bone\nC. tumor\nD. fracture\n"
        "Reply with one letter.Please select the correct answer from the options above. \n"
    )


def test_braces_in_question_text_are_not_reformatted() -> None:
    item = Item(
        index="9",
        question="Is {x} a {question}?",
        options=(("A", "{yes}"), ("B", "no")),
        answer=("A",),
        images_b64=(),
    )
    assert render_prompt(item, "{question}|{options}") == "Is {x} a {question}?|A. {yes}\nB. no\n"


def test_literal_braces_in_template() -> None:
    assert render_prompt(make_item(), "{{json}} {question}\n{options}").startswith("{json} What abnormality")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{question}\n{options}\n{answer}", "unknown field {answer}"),
        ("{question}\n{options}\n{}", "positional"),
        ("{question}\n{options}\n{0}", "unknown field {0}"),
        ("{question.upper}\n{options}", "unknown field {question.upper}"),
        ("{question}\n{options", "not a valid format string"),
        ("Question: {question}", "must contain {options}"),
        ("{options}{instruction}", "must contain {question}"),
    ],
)
def test_bad_templates_raise_config_error(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_template(template)
    assert message in str(caught.value)
    with pytest.raises(ConfigError):
        build_request(make_item(), template=template)


def test_unknown_field_error_lists_allowed_fields() -> None:
    with pytest.raises(ConfigError) as caught:
        render_prompt(make_item(), "{question} {options} {category}")
    assert "{hint}, {instruction}, {options}, {question}" in str(caught.value)


# ---------------------------------------------------------------------------------- the request


def test_build_request_fields() -> None:
    params = SamplingParams(temperature=0.7, max_tokens=64, seed=3, repeat=1)
    item = make_item(images=(b64(PNG), b64(JPEG)))
    request = build_request(item, params=params, system="You are a radiologist.")
    assert request.item_index == "1042"
    assert request.text == FOUR_OPTION_PROMPT
    assert request.params == params
    assert request.system == "You are a radiologist."
    assert request.options == item.options
    assert [image.mime for image in request.images] == ["image/png", "image/jpeg"]


def test_build_request_defaults() -> None:
    request = build_request(make_item())
    assert request.params == SamplingParams()
    assert request.system == ""


def test_image_bytes_round_trip_exactly() -> None:
    encoded = b64(PNG)
    (image,) = build_request(make_item(images=(encoded,))).images
    assert image.data == PNG
    assert image.b64 == encoded
    assert image.mime == "image/png"
    assert image.data_url() == "data:image/png;base64," + encoded


def test_surrounding_whitespace_and_line_wrapping_are_tolerated() -> None:
    encoded = base64.encodebytes(PNG).decode("ascii")  # 76-column lines, trailing newline
    assert "\n" in encoded.strip()
    (image,) = build_request(make_item(images=("  \n" + encoded + "\r\n",))).images
    assert image.data == PNG
    assert image.b64 == b64(PNG)  # what is sent is the cleaned text, not the wrapped cell


def test_the_dataset_text_is_sent_as_is_and_only_bytes_travel_to_other_processes() -> None:
    encoded = b64(PNG)
    (image,) = build_request(make_item(images=(encoded,))).images
    assert image.encoded is encoded  # no second base64 encode for the API backends
    bare = image.without_text()
    assert bare.encoded is None and bare.data == PNG and bare == image
    assert bare.b64 == encoded  # encoded again from the bytes when needed


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp"), (BMP, "image/bmp")],
)
def test_mime_detection(data: bytes, mime: str) -> None:
    assert sniff_mime(data) == mime
    (image,) = build_request(make_item(images=(b64(data),))).images
    assert image.mime == mime
    assert image.data == data


@pytest.mark.parametrize("data", [b"", b"BM", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"%PDF-1.7\n", b"hello world"])
def test_unknown_bytes_are_not_images(data: bytes) -> None:
    assert sniff_mime(data) is None


@pytest.mark.parametrize(
    ("encoded", "why"),
    [
        ("iVBORw0KGgo!!!!", "not valid base64"),
        ("iVBORw0KGgo", "not valid base64"),  # bad padding
        (b64(PNG)[:-4], "is cut short"),  # a PNG ends with its IEND chunk
        (b64(PNG)[:20] + '"' + b64(PNG)[21:], "outside the base64 alphabet"),  # would break the JSON body
        (b64(PNG)[:-8] + "@@@@" + b64(PNG)[-4:], "not valid base64"),  # a damaged last block
        ("", "is empty"),
        ("   \n", "is empty"),
        (b64(b"%PDF-1.7 not an image"), "is not a PNG, JPEG, GIF, WebP or BMP image"),
    ],
)
def test_bad_image_raises_data_error_naming_where(encoded: str, why: str) -> None:
    with pytest.raises(DataError) as caught:
        build_request(make_item(images=(b64(PNG), encoded)))
    error = caught.value
    assert (error.file, error.row, error.index, error.field) == ("GMAI-MMBench_VAL.tsv", 17, "1042", "image")
    assert str(error).startswith("GMAI-MMBench_VAL.tsv, row 17, index 1042, field 'image': image 2 of 2 ")
    assert why in str(error)


def test_single_image_error_does_not_number_the_image() -> None:
    with pytest.raises(DataError, match=r"field 'image': image is not valid base64"):
        build_request(make_item(images=("@@@@",)))


def test_the_image_text_is_checked_not_decoded() -> None:
    # A damage in the middle passes the cheap checks: the server's refusal names the cell instead
    # (scoring.score_error); nothing here decodes the ~2 MB of a real item.
    buffer = io.BytesIO()
    PILImage.effect_noise((64, 64), 40).save(buffer, format="PNG")
    text = b64(buffer.getvalue())
    middle = len(text) // 2 // 4 * 4
    damaged = text[:middle] + "@@@@" + text[middle + 4 :]
    (image,) = build_request(make_item(images=(damaged,))).images
    assert image.mime == "image/png" and image.encoded == damaged
    with pytest.raises(ValueError, match="not valid base64"):
        image.data  # noqa: B018  (decoding is what fails, when a backend asks for the bytes)

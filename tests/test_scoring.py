"""Tests for gmai_client.protocol.scoring: both readings of an answer, and what an error record says."""

from __future__ import annotations

from gmai_client.errors import BadRequest, UnsupportedInput
from gmai_client.protocol.scoring import score_answer, score_error
from gmai_client.types import Item, Response, SourceRef

ITEM = Item(
    index="7",
    question="Which?",
    options=(("A", "cyst"), ("B", "mass")),
    answer=("B",),
    answer_cell="B",
    images_b64=("iVBORw0KGgo=",),
    source=SourceRef("val.tsv", 12, "7"),
)


def test_an_answer_is_read_by_the_reference_and_by_the_lenient_rules() -> None:
    record = score_answer(ITEM, "m", Response("Final answer: b"))
    assert (record.status, record.letters, record.correct) == ("unparsed", (), False)  # VLMEvalKit reads nothing
    assert (record.lenient_letters, record.lenient_correct) == (("B",), True)
    assert score_answer(ITEM, "m", Response("B")).correct is True


def test_an_image_the_server_refuses_is_traced_to_its_cell() -> None:
    record = score_error(ITEM, "m", UnsupportedInput("openai: HTTP 400: image_url is not valid base64 image data"))
    assert record.error.startswith("val.tsv, row 12, index 7: field 'image': openai: HTTP 400")
    assert record.correct is False and record.status == "error"
    other = score_error(ITEM, "m", BadRequest("openai: HTTP 400: bad temperature"))
    assert other.error == "openai: HTTP 400: bad temperature"

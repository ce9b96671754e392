"""The torch backend on tiny random Llava and Idefics3 models built offline: answers, micro-batching,
batched == unbatched under greedy decoding, image and load errors, one load per process."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from PIL import Image as PILImage  # noqa: E402
from PIL import ImageDraw  # noqa: E402

import gmai_client  # noqa: E402
from gmai_client.backends import _torch_model as torch_backend  # noqa: E402
from gmai_client.backends import registry  # noqa: E402
from gmai_client.backends.torch import TorchBackend, fingerprint  # noqa: E402
from gmai_client.config import RunConfig, parse_model_spec  # noqa: E402
from gmai_client.errors import ConfigError, FatalError, ModelNotFound, UnsupportedInput  # noqa: E402
from gmai_client.results.records import read_records  # noqa: E402
from gmai_client.testing.tiny_models import build_tiny_idefics3, build_tiny_llava  # noqa: E402
from gmai_client.types import Image, Request, Response, SamplingParams  # noqa: E402

FAMILIES = ("llava", "idefics3")

PROMPTS = (
    "Which abnormality is shown?",
    "Question: What organ is visible in this CT image? Options: A. lung B. liver C. heart D. kidney. "
    "Answer with the option's letter from the given choices directly.",
    "Hint: the lesion is in the left lower lobe. What is the diagnosis?",
    "A or B?",
    "Please select the correct answer from the options above. The modality is MRI.",
    "What is the diagnosis? Which department should treat it? Options: A. pneumonia B. normal C. nodule",
    "Answer:",
    "The modality is ultrasound, dermoscopy or fundus. Which one is it? Answer with the letter.",
)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Two cores shared with other work: keep torch from oversubscribing them.
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_models")
    return {"llava": build_tiny_llava(root / "llava"), "idefics3": build_tiny_idefics3(root / "idefics3")}


def png(width: int, height: int, shade: int) -> bytes:
    """A real PNG of the given size with a PIL-drawn shape (different per shade)."""
    image = PILImage.new("RGB", (width, height), (shade, 40, 255 - shade))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 5, height // 4, width // 2 + shade % 7, height // 2), fill=(250, shade, 20))
    draw.rectangle((0, height - 4, width // 3, height - 1), fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def requests(n: int = 8, *, max_tokens: int = 10, images_per_item: int = 1) -> list[Request]:
    """Different prompt lengths and image sizes, so batching needs real left padding."""
    return [
        Request(
            item_index=str(i),
            text=PROMPTS[i % len(PROMPTS)],
            images=tuple(Image(png(24 + 13 * i + 5 * k, 20 + 9 * i, 30 * i + k)) for k in range(images_per_item)),
            params=SamplingParams(max_tokens=max_tokens),
        )
        for i in range(n)
    ]


def backend(path: Path, **options: str) -> TorchBackend:
    return TorchBackend.from_spec(parse_model_spec(f"torch:{path}", options))


async def answer_all(b: TorchBackend, reqs: list[Request], *, close: bool = True):
    await b.start()
    try:
        return await asyncio.gather(*(b.generate(r) for r in reqs))
    finally:
        if close:
            await b.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_loads_and_answers(tiny_models: dict[str, Path], family: str) -> None:
    b = backend(tiny_models[family], device="auto", dtype="auto")
    assert (b.options.device, b.options.dtype) == ("cpu", "float32")  # no GPU here
    [response] = asyncio.run(answer_all(b, requests(1, max_tokens=6)))
    assert isinstance(response.text, str)
    assert response.finish_reason in ("stop", "length")
    assert response.usage is not None and response.usage.input_tokens > 4
    assert 1 <= response.usage.output_tokens <= 6
    assert response.model == family
    identity = b.identity()
    assert identity["backend"] == "torch" and identity["endpoint"] == "cpu"
    assert identity["model"] == f"{tiny_models[family]}#{fingerprint(str(tiny_models[family]))}"


def test_concurrent_requests_share_generate_calls(tiny_models: dict[str, Path]) -> None:
    b = backend(tiny_models["llava"], max_batch_size="8", max_wait_ms="200")
    responses = asyncio.run(answer_all(b, requests(8)))
    assert len(responses) == 8
    assert b.stats.generate_calls < 8, b.stats
    assert sum(b.stats.batch_sizes) == 8
    assert max(b.stats.batch_sizes) > 1


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_answers_equal_unbatched_answers(tiny_models: dict[str, Path], family: str) -> None:
    # Idefics3 also gets two images per item, so rows carry different numbers of image tokens.
    reqs = requests(8, max_tokens=12, images_per_item=1) + (
        requests(4, max_tokens=12, images_per_item=2) if family == "idefics3" else []
    )
    reqs = [Request(f"r{i}", r.text, r.images, r.params) for i, r in enumerate(reqs)]
    alone = backend(tiny_models[family], max_batch_size="1")
    batched = backend(tiny_models[family], max_batch_size="16", max_wait_ms="200")
    one_by_one = asyncio.run(answer_all(alone, reqs))
    together = asyncio.run(answer_all(batched, reqs))
    assert alone.stats.batch_sizes == [1] * len(reqs)
    assert max(batched.stats.batch_sizes) > 1
    lengths = {r.usage.input_tokens for r in one_by_one if r.usage}
    assert len(lengths) > 3, "prompts must differ in length, or left padding is not exercised"
    for request, a, b in zip(reqs, one_by_one, together, strict=True):
        assert (a.text, a.usage, a.finish_reason) == (b.text, b.usage, b.finish_reason), request.item_index


def test_requests_with_different_params_are_batched_apart(tiny_models: dict[str, Path]) -> None:
    reqs = [
        Request(str(i), PROMPTS[i], (Image(png(30, 30, i)),), SamplingParams(max_tokens=3 if i % 2 else 7))
        for i in range(6)
    ]
    b = backend(tiny_models["llava"], max_batch_size="8", max_wait_ms="200", max_new_tokens="5")
    responses = asyncio.run(answer_all(b, reqs))
    assert sorted(b.stats.batch_sizes) == [3, 3]
    for request, response in zip(reqs, responses, strict=True):
        assert response.usage is not None
        assert response.usage.output_tokens <= min(request.params.max_tokens, 5)  # the option caps it


def test_a_corrupt_image_fails_only_its_own_request(tiny_models: dict[str, Path]) -> None:
    good = requests(3, max_tokens=4)
    bad = Request("bad-7", "Which?", (Image(good[0].images[0].data[:60]),), SamplingParams(max_tokens=4))
    b = backend(tiny_models["llava"], max_wait_ms="100")

    async def scenario():
        await b.start()
        try:
            return await asyncio.gather(*(b.generate(r) for r in [*good, bad]), return_exceptions=True)
        finally:
            await b.close()

    *answers, error = asyncio.run(scenario())
    assert isinstance(error, UnsupportedInput)
    assert "item bad-7" in str(error) and "image" in str(error)
    assert "0x" not in str(error)  # no object addresses in records
    assert all(isinstance(a, Response) for a in answers)


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    b = registry.create(parse_model_spec(f"torch:{missing}"))
    with pytest.raises(ModelNotFound, match=f"no model directory at {missing}"):
        asyncio.run(b.start())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        asyncio.run(backend(tmp_path / "empty").start())
    assert not torch_backend._MODELS  # a failed load leaves nothing behind


def test_bad_options_are_config_errors(tiny_models: dict[str, Path]) -> None:
    bad = ({"device": "tpu"}, {"dtype": "int8"}, {"max_batch_size": "0"}, {"max_wait_ms": "soon"})
    for options in (*bad, {"trust_remote_code": "ok"}):
        with pytest.raises(ConfigError):
            backend(tiny_models["llava"], **options)
    with pytest.raises(ConfigError):
        TorchBackend.from_spec(parse_model_spec("torch"))


def test_two_backends_on_one_path_share_one_load(tiny_models: dict[str, Path]) -> None:
    first = backend(tiny_models["llava"], max_batch_size="1")
    second = backend(tiny_models["llava"], max_batch_size="4")

    async def scenario() -> None:
        loads = torch_backend.load_count()
        await asyncio.gather(first.start(), second.start())
        assert torch_backend.load_count() == loads + 1
        assert first.model is second.model
        answers = await asyncio.gather(*(b.generate(r) for b in (first, second) for r in requests(2)))
        assert len(answers) == 4
        await first.close()
        assert second.model is not None  # still used by the second backend
        await second.close()
        assert first.model is None and not torch_backend._MODELS  # the last close frees the model

    asyncio.run(scenario())


def test_identity_changes_when_the_model_directory_changes(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_models["llava"], tmp_path / "llava"))
    before = backend(copy).identity()["model"]
    config = json.loads((copy / "generation_config.json").read_text())
    config["max_length"] = 99
    (copy / "generation_config.json").write_text(json.dumps(config))
    assert backend(copy).identity()["model"] != before
    assert backend(tiny_models["llava"]).identity() != backend(tiny_models["idefics3"]).identity()


def test_the_runner_drives_the_torch_backend(tiny_models: dict[str, Path], small_tsv: Path, tmp_path: Path) -> None:
    config = RunConfig.build(
        [f"torch:{tiny_models['idefics3']}"],
        data=[str(small_tsv)],
        out=tmp_path / "runs",
        limit=6,
        concurrency=6,
        params=SamplingParams(max_tokens=4),
        progress=False,
    )
    result = asyncio.run(gmai_client.run(config))
    records = read_records(result.run_dir / "records.jsonl")
    assert len(records) == 6
    assert all(r.status != "error" for r in records), [r.error for r in records]
    assert all(r.input_tokens and r.output_tokens for r in records)


def test_close_with_requests_in_flight_fails_them_instead_of_hanging(tiny_models: dict[str, Path]) -> None:
    b = backend(tiny_models["llava"], max_batch_size="2", max_wait_ms="0")

    async def scenario():
        await b.start()
        pending = [asyncio.ensure_future(b.generate(r)) for r in requests(6, max_tokens=30)]
        await asyncio.sleep(0.05)  # let the first batch start on the model thread
        await b.close()
        return await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=30)

    outcomes = asyncio.run(scenario())
    assert len(outcomes) == 6
    assert all(isinstance(o, (Response, FatalError)) for o in outcomes), outcomes
    assert not torch_backend._MODELS


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(FatalError, match="sees no CUDA GPU"):
        asyncio.run(backend(tiny_models["llava"], device="cuda").start())

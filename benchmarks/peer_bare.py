"""The bare loop gmai_client is compared with: the twenty lines a user would write with AsyncOpenAI.

    python benchmarks/peer_bare.py DATA.tsv BASE_URL CONCURRENCY

Reads the TSV (csv module), sends every item with its image as a data URL, ``max_retries=0``,
``asyncio.gather`` behind a semaphore, writes nothing. Prints ``ok N``.
"""

import asyncio
import csv
import sys

from openai import AsyncOpenAI


async def main(path: str, base_url: str, concurrency: int) -> None:
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def ask(row: dict[str, str]) -> str:
        options = "".join(f"{k}. {row[k]}\n" for k in "ABCDE" if row.get(k))
        text = f"Question: {row['question']}\nOptions:\n{options}Please select the correct answer from the options above. \n"  # noqa: E501
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + row["image"]}}
        async with gate:
            reply = await client.chat.completions.create(
                model="fake",
                messages=[{"role": "user", "content": [image, {"type": "text", "text": text}]}],
                max_tokens=512,
                temperature=0,
            )
        return reply.choices[0].message.content or ""

    answers = await asyncio.gather(*(ask(row) for row in rows), return_exceptions=True)
    print("ok", sum(not isinstance(a, BaseException) for a in answers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""The same GMAI-format items as an inspect_ai task (for benchmarks/peer.py; runs in inspect_ai's env).

inspect eval benchmarks/peer_inspect_task.py -T data=DATA.tsv --model openai/fake ...
"""

import csv

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import ChatMessageUser, ContentImage, ContentText
from inspect_ai.scorer import match
from inspect_ai.solver import generate


@task
def gmai(data: str) -> Task:
    csv.field_size_limit(2**31 - 1)
    samples = []
    with open(data, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            options = "".join(f"{k}. {row[k]}\n" for k in "ABCDE" if row.get(k))
            text = (
                f"Question: {row['question']}\nOptions:\n{options}"
                "Please select the correct answer from the options above. \n"
            )
            image = ContentImage(image=f"data:image/png;base64,{row['image']}")
            message = ChatMessageUser(content=[image, ContentText(text=text)])
            samples.append(Sample(input=[message], target=row.get("answer", ""), id=row["index"]))
    return Task(dataset=MemoryDataset(samples), solver=generate(), scorer=match())

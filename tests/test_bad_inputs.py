"""Bad input, as a table: the command line, a fragment of the message the user must see, the exit status.

Every row runs ``python -m gmai_client``'s ``main`` in-process (argparse exits are caught), and must
end with that status, show that message and never a traceback. To add a case, add a row; ``{tmp}``
in an argument is the test's own folder, where ``prepare`` (optional) writes what the row needs.
Rows run with ``--no-progress`` and, unless they give one, ``--out {tmp}/runs``.

Exit statuses (``cli`` module docstring): 2 usage, 3 stopped by a fatal error, 4 errored items,
5 nothing selected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gmai_client.cli import main
from gmai_client.cli.common import EXIT_EMPTY, EXIT_ERRORS, EXIT_STOPPED, EXIT_USAGE
from gmai_client.data.splits import sample_path


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    message: str
    status: int
    prepare: Callable[[Path, pytest.MonkeyPatch], None] | None = None


def header_only(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    header = sample_path().read_text(encoding="utf-8").splitlines()[0]
    (tmp / "header.tsv").write_text(header + "\n", encoding="utf-8")


def a_file(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp / "afile").write_text("not a folder\n")


def read_only_out(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, whom chmod does not stop: the refusal comes from mkdir itself.
    real = Path.mkdir

    def mkdir(self: Path, *args, **kwargs) -> None:
        if "readonly" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def replay_file(name: str, content: bytes) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp / name).write_bytes(content)

    return prepare


def sample_rows(edit: Callable[[list[str]], None]) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """{tmp}/d.tsv: the sample's header and first five rows, after ``edit`` (on the lines)."""

    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        lines = sample_path().read_text(encoding="utf-8").splitlines()[:6]
        edit(lines)
        (tmp / "d.tsv").write_bytes(("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape"))

    return prepare


def _stray_quote(lines: list[str]) -> None:
    cells = lines[2].split("\t")
    cells[1] = '"' + cells[1]
    lines[2] = "\t".join(cells)


def _not_utf8(lines: list[str]) -> None:
    cells = lines[3].split("\t")
    cells[1] += "\udcff"  # a lone 0xff byte once encoded with surrogateescape
    lines[3] = "\t".join(cells)


def _duplicate_index(lines: list[str]) -> None:
    lines[4] = lines[1].split("\t", 1)[0] + "\t" + lines[4].split("\t", 1)[1]


def sample_at(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """The sample at {tmp}/NAME; NAME may hold bytes that are not UTF-8 (as surrogate escapes)."""

    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample_path().read_bytes())

    return prepare


def a_finished_run(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["run", "--no-progress", "--limit", "3", "--out", str(tmp / "runs"), "--run-name", "r"]
    assert main([*argv, "-m", "random", "-B", "seed=1"]) == 0


CASES: dict[str, Case] = {
    # backend options
    "random-seed-not-a-number": Case(("-m", "random", "-B", "seed=abc"), "option seed='abc' is not an integer", 2),
    "misspelt-option": Case(("-m", "random", "-B", "sed=3"), "unknown option -B sed; did you mean seed?", 2),
    "unknown-option": Case(("-m", "random", "-B", "colour=red"), "unknown option -B colour (random takes:", 2),
    "misspelt-judge-option": Case(("--judge", "random", "-J", "sedd=1"), "did you mean seed?", 2),
    "judge-option-without-judge": Case(("-J", "seed=1"), "-J options need a --judge", 2),
    "option-before-model": Case(("-B", "seed=1"), "-B key=value must follow the --model", 2),
    "rpm-option-nan": Case(("-m", "random", "-B", "rpm=nan"), "rpm must be a positive finite number", 2),
    "unknown-backend": Case(("-m", "opneai:gpt-4o",), "unknown backend 'opneai'", 2),
    # numbers
    "rpm-nan": Case(("--rpm", "nan"), "--rpm: 'nan' is not a finite number", 2),
    "rpm-inf": Case(("--rpm", "inf"), "--rpm: 'inf' is not a finite number", 2),
    "rpm-negative": Case(("--rpm", "-5"), "--rpm: must be greater than 0", 2),
    "tpm-nan": Case(("--tpm", "nan"), "--tpm: 'nan' is not a finite number", 2),
    "max-errors-nan": Case(("--max-errors", "nan"), "--max-errors: 'nan' is not a finite number", 2),
    "max-errors-zero": Case(("--max-errors", "0"), "--max-errors: must be greater than 0", 2),
    "attempt-timeout-nan": Case(("--attempt-timeout", "nan"), "--attempt-timeout: 'nan' is not a finite number", 2),
    "attempt-timeout-inf": Case(("--attempt-timeout", "inf"), "--attempt-timeout: 'inf' is not a finite number", 2),
    "item-deadline-zero": Case(("--item-deadline", "0"), "--item-deadline: must be greater than 0", 2),
    "max-attempts-zero": Case(("--max-attempts", "0"), "--max-attempts: must be at least 1", 2),
    "token-budget-text": Case(("--token-budget", "lots"), "'lots' is not a whole number", 2),
    "max-tokens-zero": Case(("--max-tokens", "0"), "--max-tokens: must be at least 1", 2),
    "max-tokens-negative": Case(("--max-tokens", "-3"), "--max-tokens: must be at least 1", 2),
    "temperature-nan": Case(("--temperature", "nan"), "--temperature: 'nan' is not a finite number", 2),
    "concurrency-absurd": Case(("--concurrency", "5000000"), "must be between 1 and 4096", 2),
    "concurrency-zero": Case(("-c", "0"), "must be between 1 and 4096", 2),
    "limit-zero": Case(("--limit", "0"), "--limit 0 would evaluate nothing", 2),
    # files and folders
    "template-missing": Case(("--template", "{tmp}/nope.txt"), "--template {tmp}/nope.txt: no such file", 2),
    "template-is-a-directory": Case(("--template", "{tmp}"), "is a directory, not a template file", 2),
    "out-is-a-file": Case(("--out", "{tmp}/afile"), "cannot create the run folder {tmp}/afile/", 2, a_file),
    "out-read-only": Case(("--out", "{tmp}/readonly"), "Permission denied", 2, read_only_out),
    "resume-not-a-run-folder": Case(("--resume", "{tmp}"), "no config.json there", 2),
    # a run folder that holds something else
    "folder-holds-another-run": Case(
        ("--limit", "3", "--run-name", "r", "-m", "random", "-B", "seed=2"),
        "holds another run, so it is not resumed: models.random.options.seed: '1' in the folder, '2' here",
        2,
        a_finished_run,
    ),
    "folder-holds-other-models": Case(
        ("--limit", "3", "--run-name", "r", "-m", "random", "-B", "seed=1", "-m", "random:b"),
        "models: random in the folder, random, random:b here",
        2,
        a_finished_run,
    ),
    "resume-with-another-temperature": Case(
        ("--resume", "{tmp}/runs/r", "--temperature", "0.5", "--select", "granularity=Box Level"),
        "--select granularity=Box Level (the saved run has none); --temperature 0.5 (the saved run has 0)",
        2,
        a_finished_run,
    ),
    "resume-with-a-smaller-limit": Case(
        ("--resume", "{tmp}/runs/r", "--limit", "2"), "--limit 2 (the saved run has 3; a limit may only grow)", 2,
        a_finished_run,
    ),
    "resume-with-models": Case(
        ("--resume", "{tmp}/runs/r", "-m", "random"), "--model/-B random (the saved run has random -B seed=1)", 2,
        a_finished_run,
    ),
    "resume-with-out": Case(("--resume", "{tmp}/runs/r", "--out", "{tmp}/x"), "--resume names the run folder", 2,
                            a_finished_run),
    # nothing to evaluate, or nothing that can be
    "header-only-file": Case(("--data", "{tmp}/header.tsv"), "no item was selected", EXIT_EMPTY, header_only),
    "select-matches-nothing": Case(
        ("--select", "department=Ophthalmology & modality=CT"), "no item was selected", EXIT_EMPTY
    ),
    "unreadable-replay-file": Case(
        ("-m", "replay:{tmp}/nope.jsonl"), "stopped early: could not start", EXIT_STOPPED
    ),
    "replay-line-is-a-number": Case(
        ("-m", "replay:{tmp}/p.jsonl"), "p.jsonl, line 1: needs 'index' and 'prediction' fields", EXIT_STOPPED,
        replay_file("p.jsonl", b"12\n"),
    ),
    "replay-line-is-a-list": Case(
        ("-m", "replay:{tmp}/p.jsonl"), "p.jsonl, line 1: needs 'index' and 'prediction' fields", EXIT_STOPPED,
        replay_file("p.jsonl", b'[1, "A"]\n'),
    ),
    "replay-binary-file": Case(
        ("-m", "replay:{tmp}/p.jsonl"), "not UTF-8 text", EXIT_STOPPED, replay_file("p.jsonl", b"\xff\xfe\x00\x01\x02"),
    ),
    "replay-corrupt-xlsx": Case(
        ("-m", "replay:{tmp}/p.xlsx"), "not a readable xlsx workbook", EXIT_STOPPED,
        replay_file("p.xlsx", b"PK\x03\x04 not really a workbook"),
    ),
    # data files that are not what they should be, and rows that break
    "data-is-an-xlsx": Case(
        ("--data", "{tmp}/d.tsv"), "not a TSV: this is a zip archive", 2, replay_file("d.tsv", b"PK\x03\x04zip"),
    ),
    "data-is-a-csv": Case(
        ("--data", "{tmp}/d.tsv"), "the header has commas and no tabs", 2,
        replay_file("d.tsv", b"index,question,A,B,answer,image\n1,q,a,b,A,xx\n"),
    ),
    "row-with-a-stray-quote": Case(
        ("--data", "{tmp}/d.tsv"), "a cell starts with a double quote that is never closed", EXIT_ERRORS,
        sample_rows(_stray_quote),
    ),
    "row-not-utf8": Case(("--data", "{tmp}/d.tsv"), "not UTF-8 text", EXIT_ERRORS, sample_rows(_not_utf8)),
    # paths whose bytes are not UTF-8 (argv holds them as surrogate escapes): the run folder's files
    # name them in UTF-8, so they are refused before anything is written
    "out-not-utf8": Case(("--out", "{tmp}/out\udcff"), "--out: the path '{tmp}/out\\xff' is not UTF-8 text", 2),
    "cache-path-not-utf8": Case(("--cache-path", "{tmp}/c\udcff.sqlite"), "is not UTF-8 text", 2),
    "data-file-not-utf8": Case(
        ("--data", "{tmp}/d\udcff.tsv"), "{tmp}/d\\xff.tsv: the file's name is not UTF-8 text", 2,
        sample_at("d\udcff.tsv"),
    ),
    "data-folder-not-utf8": Case(
        ("--data", "{tmp}/f\udcff"), "{tmp}/f\\xff/s.tsv: the file's name is not UTF-8 text", 2,
        sample_at("f\udcff/s.tsv"),
    ),
    "duplicate-index": Case(("--data", "{tmp}/d.tsv"), "is used twice: already at row 1", EXIT_ERRORS,
                            sample_rows(_duplicate_index)),
}  # fmt: skip


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exit on a bad option value
        return int(exc.code or 0)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_message_and_its_exit_status(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    if case.prepare is not None:
        case.prepare(tmp_path, monkeypatch)
        capsys.readouterr()
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    if "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(tmp_path / "runs")]
    status = run_main(["run", "--no-progress", *argv])
    printed = capsys.readouterr()
    text = " ".join((printed.out + printed.err).split())  # rich may wrap a long line
    assert "Traceback" not in text
    assert case.message.replace("{tmp}", str(tmp_path)) in text, text[-2000:]
    assert status == case.status, text[-2000:]
    if status == EXIT_USAGE:
        assert text.count("error:") == 1  # one line, not a usage block or a cascade


def test_a_usage_error_creates_no_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["-m", "random", "-B", "sed=1"], ["--rpm", "nan"], ["--template", str(tmp_path / "nope")]):
        assert run_main(["run", "--no-progress", "--out", str(tmp_path / "runs"), *argv]) == EXIT_USAGE
    assert not (tmp_path / "runs").exists()


def test_report_on_a_folder_whose_records_are_not_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "records.jsonl").write_text('[1, 2]\n{"index": "1"}\n"text"\n', encoding="utf-8")
    status = run_main(["report", str(tmp_path)])
    text = " ".join(capsys.readouterr().err.split()) + " ".join(capsys.readouterr().out.split())
    assert status == EXIT_USAGE and "Traceback" not in text


def test_report_with_an_unknown_reference_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-progress", "--limit", "3", "--out", str(tmp_path), "--run-name", "r"]) == 0
    capsys.readouterr()
    status = run_main(["report", str(tmp_path / "r"), "--reference", "gpt-5"])
    printed = capsys.readouterr()
    assert status == EXIT_USAGE
    assert "--reference 'gpt-5' is not a model of" in printed.out + printed.err and "random" in printed.err


@pytest.mark.parametrize("name", ["..", ".", "../x", "{tmp}/elsewhere", "a/b", "x\0y"])
def test_a_run_name_that_is_a_path_is_refused_and_nothing_is_written_outside_out(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a" / "runs"
    run_name = name.replace("{tmp}", str(tmp_path))
    status = run_main(["run", "--no-progress", "--limit", "2", "--out", str(out), "--run-name", run_name])
    text = " ".join(capsys.readouterr().err.split())
    assert status == EXIT_USAGE and "--run-name" in text and "Traceback" not in text
    assert "is not a folder name" in text or "one folder name, not a path" in text
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no run folder, inside --out or elsewhere


def test_resume_dot_resumes_the_folder_it_is_run_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a_finished_run(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path / "runs" / "r")
    assert run_main(["run", "--no-progress", "--resume", "."]) == 0
    # That run, not a new one (the old code made a second run folder inside it, named by hash).
    assert list((tmp_path / "runs").rglob("config.json")) == [tmp_path / "runs" / "r" / "config.json"]


def test_report_on_records_with_a_wrong_typed_field_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--no-progress", "--limit", "3", "--out", str(tmp_path), "--run-name", "r"]) == 0
    journal = tmp_path / "r" / "records.jsonl"
    lines = journal.read_text(encoding="utf-8").split("\n")
    lines[1] = lines[1].replace('"latency_s":', '"latency_s":"fast","was":', 1)  # a hand edit gone wrong
    journal.write_text("\n".join(lines), encoding="utf-8")
    capsys.readouterr()
    status = run_main(["report", str(tmp_path / "r")])
    printed = capsys.readouterr()
    text = " ".join((printed.out + printed.err).split())
    assert status == EXIT_USAGE and "Traceback" not in text
    assert f"{journal}: line 2, field 'latency_s': \"fast\" is not a number" in text


def test_a_data_error_is_advised_a_fix_of_the_data_file_not_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreadable image is in the file: sending the item again (--retry-errors) can never fix it.
    lines = sample_path().read_text(encoding="utf-8").splitlines()[:6]
    image = lines[0].split("\t").index("image")
    cells = lines[2].split("\t")
    good, cells[image] = cells[image], "notbase64!!" * 10
    lines[2] = "\t".join(cells)
    data = tmp_path / "d.tsv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["run", "--no-progress", "--data", str(data), "--out", str(tmp_path / "runs"), "--run-name", "r"]
    assert run_main(argv) == EXIT_ERRORS
    printed = capsys.readouterr()
    text = " ".join((printed.out + printed.err).split())
    report = (tmp_path / "runs" / "r" / "report.md").read_text(encoding="utf-8")
    for said in (text, " ".join(report.split())):
        assert "--retry-errors" not in said
        assert f"{data}, row 2, index" in said and "field 'image'" in said
        assert "correct the data file" in said
    # Fixed in the file, the same command reads the row again and answers it.
    cells[image] = good
    lines[2] = "\t".join(cells)
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_main(argv) == 0

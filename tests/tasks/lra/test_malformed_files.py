"""Malformed released LRA files (ListOps / Text / Retrieval TSVs, IMDb folders, CIFAR batches,
Pathfinder metadata and images): each is one ConfigError naming the file and the line or record,
raised while the task is built, never a traceback or a silently wrong label."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from tasks.lra.image import LRAImage, TEST_FILE, TRAIN_FILES
from tasks.lra.listops import LRAListOps, RELEASED_FILES as LISTOPS_FILES, tree_source, write_tsv
from tasks.lra.pathfinder import read_metadata, read_release
from tasks.lra.retrieval import LRARetrieval, RELEASED_FILES as AAN_FILES
from tasks.lra.text import LRAText
from tests.helpers import config_error, run_cli


@pytest.fixture(autouse=True)
def no_release_root(monkeypatch):
    monkeypatch.delenv("LRA_DATA", raising=False)


# --- ListOps --------------------------------------------------------------------------------

GOOD = tree_source(("[MAX", [2, 9]))  # value 9


def listops_folder(tmp_path, test_rows: list[str] | str) -> str:
    for split, name in LISTOPS_FILES.items():
        write_tsv(str(tmp_path / name), [(GOOD, 9), (tree_source(("[MIN", [3, 4])), 3)])
    if isinstance(test_rows, str):
        (tmp_path / LISTOPS_FILES["test"]).write_text(test_rows)
    else:
        (tmp_path / LISTOPS_FILES["test"]).write_text("Source\tTarget\n" + "".join(f"{r}\n" for r in test_rows))
    return str(tmp_path)


def test_listops_reads_good_rows_and_skips_header_and_blank_lines(tmp_path):
    task = LRAListOps(data_dir=listops_folder(tmp_path, [f"{GOOD}\t9", "", f"{GOOD}\t9.0"]), max_length=20)
    assert task.splits["test"]["label"].tolist() == [9, 9]


@pytest.mark.parametrize("row, line, problem", [
    (f"{GOOD}\t12", 3, "the label 12 is outside the classes 0..9"),
    (f"{GOOD}\t-1", 3, "the label -1 is outside"),
    (f"{GOOD}\t4.5", 3, "the label '4.5' is not an integer"),
    (f"{GOOD}\tnine", 3, "the label 'nine' is not a number"),
    (f"{GOOD}", 3, "expected 'source<TAB>label', got 1 field(s)"),
    (f"{GOOD}\t9\textra", 3, "got 3 field(s)"),
    ("( ( [MAX 2 ) 9\t9", 3, "1 operator(s) but 0 closing ']'"),  # a row cut short
    ("( ( [MAX 2 ) banana ] )\t2", 3, "unknown token(s) ['banana']"),
    ("( )\t2", 3, "empty expression"),
])
def test_listops_bad_row_names_file_and_line(tmp_path, row, line, problem):
    folder = listops_folder(tmp_path, [f"{GOOD}\t9", row])
    with config_error("basic_test.tsv", f"line {line}", problem):
        LRAListOps(data_dir=folder, max_length=20)


def test_listops_missing_empty_and_truncated_files(tmp_path):
    folder = listops_folder(tmp_path, [f"{GOOD}\t9"])
    os.remove(os.path.join(folder, "basic_val.tsv"))
    with config_error("LRAListOps.data_dir", "missing: basic_val.tsv"):
        LRAListOps(data_dir=folder, max_length=20)
    listops_folder(tmp_path, "")  # an empty file
    with config_error("basic_test.tsv", "holds no rows"):
        LRAListOps(data_dir=folder, max_length=20)
    whole = f"Source\tTarget\n{GOOD}\t9\n{GOOD}\t9\n"
    listops_folder(tmp_path, whole[:-9])  # cut inside the last expression
    with config_error("basic_test.tsv", "line 3", "expected 'source<TAB>label', got 1 field(s)"):
        LRAListOps(data_dir=folder, max_length=20)


# --- Text: TSV and IMDb ---------------------------------------------------------------------

def test_text_tsv_labels_must_be_integers_in_range(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext\n1\tgood\n0\tbad\n")
    for body, line, problem in [("0\tmeh\n1.5\thalf\n", 2, "the label '1.5' is not an integer"),
                                ("0\tmeh\n2\ttwo\n", 2, "outside the classes 0..1; set LRAText.num_classes"),
                                ("0\tmeh\n1 no tab here\n", 2, "the label '1 no tab here' is not a number"),
                                ("0\tmeh\n1\n", 2, "expected 'label<TAB>text', found no tab"),
                                ("label\ttext\n\n", None, "holds no rows")]:
        (tmp_path / "test.tsv").write_text(body)
        parts = ["test.tsv", problem] + ([f"line {line}"] if line else [])
        with config_error(*parts):
            LRAText(data_dir=str(tmp_path), max_length=8)
    (tmp_path / "test.tsv").write_text("0\tmeh\n2\ttwo\n")
    assert LRAText(data_dir=str(tmp_path), max_length=8, num_classes=3).splits["test"]["label"].tolist() == [0, 2]


def imdb(tmp_path, reviews: dict) -> str:
    for (split, polarity), names in reviews.items():
        os.makedirs(tmp_path / "aclImdb" / split / polarity, exist_ok=True)
        for name, text in names.items():
            (tmp_path / "aclImdb" / split / polarity / name).write_bytes(text)
    return str(tmp_path)


GOOD_IMDB = {("train", "pos"): {"0_9.txt": b"Great"}, ("train", "neg"): {"0_1.txt": b"Dull"},
             ("test", "pos"): {"1_8.txt": b"Fine"}, ("test", "neg"): {"1_3.txt": b"Meh"}}


def test_imdb_empty_misfiled_and_missing_reviews_name_the_file(tmp_path):
    folder = imdb(tmp_path, GOOD_IMDB)
    assert LRAText(data_dir=folder, max_length=8).splits["train"]["label"].tolist() == [0, 1]
    imdb(tmp_path, {("train", "pos"): {"5_10.txt": b""}})  # a truncated (empty) copy
    with config_error(os.path.join("train", "pos", "5_10.txt"), "is empty"):
        LRAText(data_dir=folder, max_length=8)
    os.remove(tmp_path / "aclImdb" / "train" / "pos" / "5_10.txt")
    imdb(tmp_path, {("test", "neg"): {"7_9.txt": b"Wonderful"}})  # a positive review among the negatives
    with config_error(os.path.join("test", "neg", "7_9.txt"), "names rating 9, not a neg rating"):
        LRAText(data_dir=folder, max_length=8)
    os.remove(tmp_path / "aclImdb" / "test" / "neg" / "7_9.txt")
    os.remove(tmp_path / "aclImdb" / "test" / "neg" / "1_3.txt")
    with config_error("no reviews (*.txt) in", os.path.join("test", "neg")):
        LRAText(data_dir=folder, max_length=8)


# --- Retrieval ------------------------------------------------------------------------------

def aan(tmp_path, test_rows: list[str]) -> str:
    for name in AAN_FILES.values():
        (tmp_path / name).write_text("1.0\ta\tb\tsome text\tother text\n0\tc\td\tx\ty\n")
    (tmp_path / AAN_FILES["test"]).write_text("".join(f"{row}\n" for row in test_rows))
    return str(tmp_path)


@pytest.mark.parametrize("row, problem", [
    ("2\ta\tb\tx\ty", "the label 2 is outside the classes 0..1"),
    ("0.5\ta\tb\tx\ty", "the label '0.5' is not an integer"),
    ("yes\ta\tb\tx\ty", "the label 'yes' is not a number"),
    ("1\ta\tb\tonly one text", "expected 5 tab-separated fields (label, id1, id2, text1, text2), got 4"),
])
def test_retrieval_bad_row_names_file_and_line(tmp_path, row, problem):
    folder = aan(tmp_path, ["1\ta\tb\tx\ty", row])
    with config_error("new_aan_pairs.test.tsv", "line 2", problem):
        LRARetrieval(data_dir=folder, max_length=8)


def test_retrieval_missing_and_empty_files(tmp_path):
    folder = aan(tmp_path, [])
    with config_error("new_aan_pairs.test.tsv", "holds no rows"):
        LRARetrieval(data_dir=folder, max_length=8)
    os.remove(tmp_path / AAN_FILES["eval"])
    with config_error("LRARetrieval.data_dir", "missing: new_aan_pairs.eval.tsv"):
        LRARetrieval(data_dir=folder, max_length=8)


# --- Image (CIFAR-10 batches) ---------------------------------------------------------------

def cifar(tmp_path, labels=(1, 2)) -> str:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir(exist_ok=True)
    for name in TRAIN_FILES + (TEST_FILE,):
        records = np.zeros((len(labels), 3073), dtype=np.uint8)
        records[:, 0] = labels
        records.tofile(folder / name)
    return str(tmp_path)


def test_cifar_batches_refuse_truncation_bad_labels_and_missing_files(tmp_path):
    folder = cifar(tmp_path)
    assert LRAImage(data_dir=folder).splits["test"]["label"].tolist() == [1, 2]
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])  # a copy cut short
    with config_error("data_batch_3.bin", "is not a CIFAR-10 binary batch",
                      "6,046 bytes are 1 records and 2,973 bytes over"):
        LRAImage(data_dir=folder)
    cifar(tmp_path, labels=(1, 2, 10))
    with config_error("data_batch_1.bin", "record 2", "the label 10 is outside 0..9"):
        LRAImage(data_dir=folder)
    cifar(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-bin" / TEST_FILE)
    with config_error("LRAImage.data_dir", f"missing: {os.path.join('cifar-10-batches-bin', TEST_FILE)}"):
        LRAImage(data_dir=folder)


# --- Pathfinder -----------------------------------------------------------------------------

def pathfinder(tmp_path, rows: list[str], sizes=(8, 8, 8)) -> str:
    from PIL import Image
    folder = tmp_path / "curv_contour_length_14"
    (folder / "imgs" / "0").mkdir(parents=True, exist_ok=True)
    (folder / "metadata").mkdir(exist_ok=True)
    for i, size in enumerate(sizes):
        Image.fromarray(np.full((size, size), 40 * i, dtype=np.uint8)).save(folder / "imgs" / "0" / f"sample_{i}.png")
    (folder / "metadata" / "0.npy").write_text("".join(f"{row}\n" for row in rows))
    return str(folder)


def test_pathfinder_metadata_rows_and_labels_name_file_and_line(tmp_path):
    folder = pathfinder(tmp_path, ["imgs/0 sample_0.png 0 1", "imgs/0 sample_1.png 1 0"])
    images, labels = read_release(folder)
    assert images.shape == (2, 8, 8) and labels.tolist() == [1, 0]
    meta = os.path.join(folder, "metadata", "0.npy")
    for row, problem in [("imgs/0 sample_1.png 1 2", "the label 2 is outside the classes 0..1"),
                         ("imgs/0 sample_1.png 1", "expected 'subfolder file index label ...', got 3 field(s)")]:
        pathfinder(tmp_path, ["imgs/0 sample_0.png 0 1", row])
        with config_error("0.npy", "line 2", problem):
            read_metadata(meta)
    np.save(meta, np.array([["imgs/0", "sample_0.png", "0", "1"], ["imgs/0", "sample_1.png", "1", "7"]]))
    with config_error("0.npy", "record 1", "the label 7 is outside"):
        read_metadata(meta)


def test_pathfinder_skips_unreadable_images_with_a_count_and_refuses_a_wrong_size(tmp_path, caplog):
    folder = pathfinder(tmp_path, ["imgs/0 sample_0.png 0 1", "imgs/0 sample_1.png 1 0", "imgs/0 gone.png 2 1"])
    with open(os.path.join(folder, "imgs", "0", "sample_1.png"), "r+b") as handle:
        handle.truncate(30)  # a truncated PNG
    with caplog.at_level(logging.WARNING, logger="tasks.lra"):
        images, labels = read_release(folder)
    assert labels.tolist() == [1] and "skipped 2 missing or unreadable image(s)" in caplog.text
    folder = pathfinder(tmp_path, ["imgs/0 sample_0.png 0 1", "imgs/0 sample_2.png 2 0"], sizes=(8, 8, 6))
    with config_error("sample_2.png", "is 6x6 pixels but", "sample_0.png is 8x8"):
        read_release(folder)


# --- through the CLI ------------------------------------------------------------------------

def test_cli_reports_a_bad_label_in_one_line_with_exit_code_2(tmp_path):
    (tmp_path / "train.tsv").write_text("0\tgood\n1\tbad\n")
    (tmp_path / "test.tsv").write_text("0\tmeh\n1\tfine\n3\tthree\n")
    result = run_cli(["--gin", "gin/lra/text_small.gin", "--workdir", str(tmp_path / "run"),
                      "--bind", f"LRAText.data_dir = '{tmp_path}'"])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert f"{tmp_path / 'test.tsv'}, line 3: the label 3 is outside the classes 0..1" in lines[0]
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")  # nothing trained

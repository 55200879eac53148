import csv
import json
from pathlib import Path

import pytest

from video.annotations import (
    MissingVideosError,
    VideoFinder,
    load_split,
    msrvtt_val_ids,
    read_msrvtt_csv,
    read_msrvtt_json,
)
from video.files import VIDEO_EXTENSIONS


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def msrvtt(tmp_path):
    root = tmp_path / "msrvtt"
    root.mkdir()
    ids = [f"video{i}" for i in range(40)]
    sentences = [{"caption": f"caption {j} of {v}", "video_id": v} for v in ids for j in range(3)]
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": [{"video_id": v} for v in ids],
                                                       "sentences": sentences}))
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in ids[:30]])
    write_csv(root / "MSRVTT_train.7k.csv", ["video_id"], [[v] for v in ids[:20]])
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{k}", f"msr{30 + k}", v, f"the test sentence for {v}"] for k, v in enumerate(ids[30:])])
    for v in ids[:35]:
        touch(root / "videos" / f"{v}.mp4")
    for v in ids[35:]:
        touch(root / f"{v}.mp4")  # videos straight under root are found too
    return root


def test_msrvtt_train_and_test(msrvtt):
    train = load_split("msrvtt", msrvtt, "train")
    assert [it.video_id for it in train.items] == [f"video{i}" for i in range(30)]
    assert train.items[0].captions == [f"caption {j} of video0" for j in range(3)]
    assert train.items[0].path == msrvtt / "videos" / "video0.mp4" and not train.missing
    assert load_split("msrvtt", msrvtt, "train9k").items == train.items
    assert len(load_split("msrvtt", msrvtt, "train7k").items) == 20
    test = load_split("msrvtt", msrvtt, "test")
    assert [it.video_id for it in test.items] == [f"video{i}" for i in range(30, 40)]
    assert test.items[0].captions == ["the test sentence for video30"]
    assert test.items[-1].path == msrvtt / "video39.mp4"


def test_msrvtt_val_is_deterministic_heldout(msrvtt):
    val = {it.video_id for it in load_split("msrvtt", msrvtt, "val").items}
    rest = {it.video_id for it in load_split("msrvtt", msrvtt, "train-minus-val").items}
    assert len(val) == 2  # 5% of 30, rounded
    assert not val & rest and val | rest == {f"video{i}" for i in range(30)}
    assert val == msrvtt_val_ids([f"video{i}" for i in reversed(range(30))])  # order-independent


def test_video_dir_override_and_missing(msrvtt, tmp_path):
    other = tmp_path / "elsewhere"
    for i in range(30, 40):
        touch(other / f"video{i}.mp4")
    split = load_split("msrvtt", msrvtt, "test", video_dir=other)
    assert all(it.path.parent == other for it in split.items)
    (other / "video33.mp4").unlink()
    with pytest.raises(MissingVideosError, match="1 of 10") as e:
        load_split("msrvtt", msrvtt, "test", video_dir=other)
    assert "video33" in str(e.value) and str(other) in str(e.value)
    split = load_split("msrvtt", msrvtt, "test", video_dir=other, max_missing_fraction=0.2)
    assert split.missing == ["video33"] and len(split.items) == 9


def test_few_missing_are_skipped_and_listed(msrvtt):
    for i in range(31):
        touch(msrvtt / "videos" / f"video{100 + i}.mp4")  # irrelevant files are ignored
    (msrvtt / "videos" / "video5.mp4").unlink()
    split = load_split("msrvtt", msrvtt, "train", max_missing_fraction=0.05)
    assert split.missing == ["video5"] and len(split.items) == 29


def test_missing_annotation_file_names_file_and_layout(msrvtt, tmp_path):
    (msrvtt / "MSRVTT_JSFUSION_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="MSRVTT_JSFUSION_test.csv") as e:
        load_split("msrvtt", msrvtt, "test")
    assert "expected layout" in str(e.value)
    with pytest.raises(FileNotFoundError, match="captions_msvd.json"):
        load_split("msvd", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="LSMDC16_annos_training.csv"):
        load_split("lsmdc", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_split("msrvtt", tmp_path / "nope", "train")


def test_unknown_dataset_or_split(msrvtt):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split("kinetics", msrvtt, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_split("msvd", msrvtt, "train9k")


def test_msvd(tmp_path):
    root = tmp_path / "msvd"
    root.mkdir()
    caps = {f"vid{i}_0_10": [f"a man does thing {i}", f"someone does {i}"] for i in range(6)}
    (root / "captions_msvd.json").write_text(json.dumps(caps))
    (root / "train_list.txt").write_text("vid0_0_10\nvid1_0_10\nvid2_0_10\n")
    (root / "val_list.txt").write_text("vid3_0_10\n")
    (root / "test_list.txt").write_text("vid4_0_10\nvid5_0_10\n\n")
    touch(root / "YouTubeClips" / "vid0_0_10.avi")
    touch(root / "videos" / "vid1_0_10.avi")
    touch(root / "vid2_0_10.avi")
    touch(root / "vid3_0_10.avi")
    touch(root / "YouTubeClips" / "vid4_0_10.avi")
    touch(root / "YouTubeClips" / "vid5_0_10.avi")
    train = load_split("msvd", root, "train")
    assert [it.path.relative_to(root).as_posix() for it in train.items] == [
        "YouTubeClips/vid0_0_10.avi", "videos/vid1_0_10.avi", "vid2_0_10.avi"]
    test = load_split("msvd", root, "test")
    assert [it.video_id for it in test.items] == ["vid4_0_10", "vid5_0_10"]
    assert sum(len(it.captions) for it in test.items) == 4  # every caption is a query
    assert len(load_split("msvd", root, "val").items) == 1


LSMDC_ROWS = [
    ("0001_American_Beauty_00.00.51.926-00.00.54.129", "Someone opens the door."),
    ("0001_American_Beauty_00.00.51.926-00.00.54.129", "She walks in."),
    ("0001_American_Beauty_00.01.02.000-00.01.05.500", "He looks up."),
    ("1004_Juno_00.10.00.000-00.10.02.000", "Juno sits\ton a chair."),  # a tab inside the caption
]


def test_lsmdc(tmp_path):
    root = tmp_path / "lsmdc"
    root.mkdir()
    lines = [f"{cid}\t00.00.51.926\t00.00.54.129\t00.00.51.926\t00.00.54.129\t{cap}" for cid, cap in LSMDC_ROWS]
    (root / "LSMDC16_annos_training.csv").write_text("\n".join(lines) + "\n")
    (root / "LSMDC16_challenge_1000_publictect.csv").write_text(lines[3] + "\n")
    touch(root / "0001_American_Beauty" / f"{LSMDC_ROWS[0][0]}.avi")  # movie folder
    touch(root / "videos" / f"{LSMDC_ROWS[2][0]}.avi")
    touch(root / f"{LSMDC_ROWS[3][0]}.avi")
    train = load_split("lsmdc", root, "train")
    assert [it.video_id for it in train.items] == [LSMDC_ROWS[0][0], LSMDC_ROWS[2][0], LSMDC_ROWS[3][0]]
    assert train.items[0].captions == ["Someone opens the door.", "She walks in."]  # merged
    assert train.items[0].path == root / "0001_American_Beauty" / f"{LSMDC_ROWS[0][0]}.avi"
    assert train.items[2].captions == ["Juno sits\ton a chair."]
    test = load_split("lsmdc", root, "test")
    assert len(test.items) == 1 and not test.missing
    with pytest.raises(FileNotFoundError, match="LSMDC16_annos_val.csv"):
        load_split("lsmdc", root, "val")


def test_lsmdc_bad_line(tmp_path):
    (tmp_path / "LSMDC16_annos_training.csv").write_text("clip_only\tcaption\n")
    with pytest.raises(ValueError, match="6 tab-separated fields"):
        load_split("lsmdc", tmp_path, "train")


def test_moving_shapes_reads_generated_dataset(tmp_path):
    from training.shapes import write_dataset

    root = write_dataset(tmp_path / "shapes", num_train=3, num_test=2, size=32, seconds=0.5, fps=4)
    train = load_split("moving-shapes", root, "train")
    test = load_split("moving-shapes", root, "test")
    assert [it.video_id for it in train.items] == ["shapes0000", "shapes0001", "shapes0002"]
    assert all(it.path.is_file() and len(it.captions) >= 3 for it in train.items)
    assert [len(it.captions) for it in test.items] == [1, 1]
    from training.shapes import parse_caption

    assert all(None not in parse_caption(it.captions[0]) for it in test.items)


def test_msrvtt_readers_are_the_ones_precompute_uses(tmp_path):
    """One MSR-VTT parser: training's loader and precompute's annotation source read the same files alike."""
    data = {"videos": [{"video_id": "video1"}, {"video_id": "video0"}],
            "sentences": [{"video_id": "video0", "caption": " a cat "}, {"video_id": "video1", "caption": "a dog"},
                          {"video_id": "video0", "caption": "a pet"}]}
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    ids, caps = read_msrvtt_json(tmp_path / "MSRVTT_data.json")
    assert ids == ["video1", "video0"] and caps["video0"] == [" a cat ", "a pet"]
    write_csv(tmp_path / "split.csv", ["key", "video_id", "sentence"],
              [["k1", "video3", "one"], ["k2", "video3", "two"], ["k3", "video2", ""]])
    ids, caps = read_msrvtt_csv(tmp_path / "split.csv")
    assert ids == ["video3", "video2"] and caps == {"video3": ["one", "two"]}
    write_csv(tmp_path / "bad.csv", ["id"], [["x"]])
    with pytest.raises(ValueError, match="video_id"):
        read_msrvtt_csv(tmp_path / "bad.csv")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not an MSR-VTT"):
        read_msrvtt_json(tmp_path / "other.json")

    import precompute.sources as sources

    assert sources.read_msrvtt_json is read_msrvtt_json and sources.read_msrvtt_csv is read_msrvtt_csv


def test_video_finder_prefers_extension_order_and_ignores_hidden(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for p in (a / "v1.avi", a / "v1.MP4", a / ".v2.mp4", b / "v2.mkv", b / "v3.txt"):
        touch(p)
    finder = VideoFinder(VIDEO_EXTENSIONS)
    assert finder.find("v1", [a, b]) == a / "v1.MP4"  # .mp4 before .avi, any case
    assert finder.find("v2", [a, b]) == b / "v2.mkv"  # the hidden .v2.mp4 is never a match
    assert finder.find("v3", [a, b]) is None
    assert finder.first_folder_with(["v2", "v9"], [tmp_path / "missing", a, b]) == (b, {"v2": b / "v2.mkv"})

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from yt8m import predictions
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.fileio import output_lock
from yt8m.metrics import Evaluator, evaluate
from yt8m.submissions import kaggle, segments
from yt8m.submissions import video_level as video
from yt8m.submissions.writer import sha256, write_submission

IDS = ["aaaa", "bbbb", "cccc"]


def logits_for(num_videos=3, num_classes=50, seed=0):
    return np.random.default_rng(seed).normal(size=(num_videos, num_classes)).astype(np.float32)


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "good.csv"
    video.write(path, IDS, logits_for())
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip_writer_validator_reader(tmp_path, gz):
    logits = logits_for()
    path = tmp_path / ("sub.csv.gz" if gz else "sub.csv")
    assert video.write(path, IDS, logits) == 3
    if gz:
        assert gzip.decompress(path.read_bytes()).startswith(b"VideoId,LabelConfidencePairs\n")
    report = video.check(path, test_ids=IDS, classes=range(50))
    assert report.ok, report.format()
    ids, labels, scores = video.read(path)
    assert ids == IDS
    expected = np.argsort(-logits, axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(labels, expected)
    sigmoid = 1 / (1 + np.exp(-np.take_along_axis(logits, expected, 1).astype(np.float64)))
    np.testing.assert_allclose(scores, sigmoid, rtol=1e-5)
    line = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert b"  " not in line and b"\r" not in line


def test_confidences_are_printed_compactly(tmp_path):
    logits = np.full((1, 25), -30.0, np.float32)
    logits[0, 3] = 40.0
    path = tmp_path / "s.csv"
    video.write(path, ["x"], logits)
    row = path.read_text().splitlines()[1]
    assert row.startswith("x,3 1 0 9.35762e-14 1 9.35762e-14 ")


def mutate(path, line_number, new_line):
    lines = path.read_text().splitlines()
    if new_line is None:
        del lines[line_number - 1]
    else:
        lines[line_number - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def second_row_with(path, transform):
    row = path.read_text().splitlines()[2]
    video_id, pairs = row.split(",")
    tokens = pairs.split(" ")
    return f"{video_id},{transform(tokens)}"


REJECTIONS = {
    "header": (1, lambda p: "VideoId,Labels", "header is 'VideoId,Labels'"),
    "unknown id": (3, lambda p: second_row_with(p, " ".join).replace("bbbb", "zzzz"),
                   "zzzz is not a test video"),
    "missing id": (4, lambda p: None, "1 test videos have no row, e.g. cccc"),
    "duplicate id": (4, lambda p: p.read_text().splitlines()[1], "already appears on line 2"),
    "19 pairs": (3, lambda p: second_row_with(p, lambda t: " ".join(t[:-2])),
                 "19 label-confidence pairs, expected 20"),
    "odd fields": (3, lambda p: second_row_with(p, lambda t: " ".join(t[:-1])),
                   "39 fields"),
    "label outside vocabulary": (3, lambda p: second_row_with(
        p, lambda t: " ".join(["99"] + t[1:])), "label 99 is not in the vocabulary"),
    "duplicate label": (3, lambda p: second_row_with(
        p, lambda t: " ".join(t[:2] + [t[0]] + t[3:])), "is listed twice"),
    "non-numeric confidence": (3, lambda p: second_row_with(
        p, lambda t: " ".join(t[:1] + ["high"] + t[2:])), "'high' of label"),
    "confidence above 1": (3, lambda p: second_row_with(
        p, lambda t: " ".join(t[:1] + ["1.5"] + t[2:])), "outside [0, 1]"),
    "negative confidence": (3, lambda p: second_row_with(
        p, lambda t: " ".join(t[:-1] + ["-0.1"])), "outside [0, 1]"),
    "unsorted": (3, lambda p: second_row_with(
        p, lambda t: " ".join(t[:-1] + ["0.999999"])), "not sorted highest first"),
    "double space": (3, lambda p: second_row_with(p, "  ".join), "single spaces"),
    "no comma": (3, lambda p: "bbbb", "no comma"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_each_rejection_names_its_line(good_csv, case):
    line, new_line, message = REJECTIONS[case]
    mutate(good_csv, line, new_line(good_csv))
    report = video.check(good_csv, test_ids=IDS, classes=range(50))
    assert not report.ok
    assert any(message in text for _, text in report.problems), report.format()
    lines = [number for number, text in report.problems if message in text]
    if case != "missing id":
        assert lines[0] == line
    assert f"{good_csv}:" in report.format()


def test_unreadable_and_empty_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in video.check(empty).problems[0][1]
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert "UTF-8" in video.check(binary).problems[0][1]
    assert "no such file" in video.check(tmp_path / "none.csv").problems[0][1]


def test_segment_submission_round_trip_and_rejections(tmp_path):
    seg_ids = segments.segment_ids_of(["v1", "v2"], [12, 7])
    assert seg_ids == ["v1:0", "v1:5", "v1:10", "v2:0", "v2:5"]
    scores = np.random.default_rng(0).random((5, 10)).astype(np.float32)
    path = tmp_path / "seg.csv"
    assert segments.write(path, seg_ids, scores, classes=[2, 7]) == 2
    report = segments.check(path, classes=[2, 7], segment_ids=seg_ids)
    assert report.ok, report.format()
    rows = dict(line.split(",") for line in path.read_text().splitlines()[1:])
    assert rows["2"].split() == [seg_ids[i] for i in np.argsort(-scores[:, 2])]
    capped = tmp_path / "capped.csv"
    segments.write(capped, seg_ids, scores, classes=[2, 7], max_segments=2)
    assert all(len(r.split(",")[1].split()) == 2 for r in capped.read_text().splitlines()[1:])

    bad = tmp_path / "bad.csv"
    bad.write_text("Class,Segments\n2,v1:0 v1:0 v1:3 nonsense\n3,v9:0\n2,v1:5\n")
    problems = "\n".join(text for _, text in
                         segments.check(bad, classes=[2, 7], segment_ids=seg_ids).problems)
    for expected in ("v1:0 is listed twice", "v1:3 does not start on the 5-second grid",
                     "'nonsense' is not", "class 3 is not a scored class",
                     "v9:0 is not a test segment", "class 2 already appears on line 2"):
        assert expected in problems
    assert "more than" not in problems
    assert not segments.check(capped, max_segments=1).ok


def test_credentials_are_found_where_the_kaggle_cli_looks(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert kaggle.credential_source({}, home) is None
    assert "KAGGLE_API_TOKEN" in kaggle.credential_source({"KAGGLE_API_TOKEN": "t"}, home)
    assert "KAGGLE_KEY" in kaggle.credential_source(
        {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, home)
    assert kaggle.credential_source({"KAGGLE_USERNAME": "u"}, home) is None
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "kaggle.json").write_text("{}")
    assert kaggle.credential_source({"KAGGLE_CONFIG_DIR": str(tmp_path / "conf")}, home) == str(
        tmp_path / "conf" / "kaggle.json")
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "access_token").write_text("secret")
    assert kaggle.credential_source({}, home) == "~/.kaggle/access_token"


def test_submit_without_credentials_explains_and_never_runs(tmp_path):
    ran = []
    with pytest.raises(Yt8mError, match="no Kaggle credentials found") as info:
        kaggle.submit(tmp_path / "s.csv", "youtube8m-2018", "m", env={}, home=tmp_path,
                      run=lambda *a, **k: ran.append(a))
    assert "KAGGLE_API_TOKEN" in str(info.value) and "youtube8m-2018/rules" in str(info.value)
    assert not ran


def test_submit_runs_the_kaggle_cli_without_printing_the_secret(tmp_path, capsys):
    calls = []

    class Done:
        returncode = 0

    env = {"KAGGLE_USERNAME": "me", "KAGGLE_KEY": "s3cr3t-key"}
    status = kaggle.submit(tmp_path / "s.csv", "youtube8m", "first try", env=env, home=tmp_path,
                           run=lambda cmd, check: calls.append(cmd) or Done())
    assert status == 0
    assert calls[0][1:] == ["competitions", "submit", "-c", "youtube8m", "-f",
                            str(tmp_path / "s.csv"), "-m", "first try"]
    assert "s3cr3t" not in capsys.readouterr().out
    assert kaggle.submit(tmp_path / "s.csv", "youtube8m", "m", dry_run=True, env=env) == 0
    out = capsys.readouterr().out
    assert "would run: " in out and "competitions submit -c youtube8m" in out
    assert "s3cr3t" not in out
    assert kaggle.competition_slug("2017") == "youtube8m"
    with pytest.raises(Yt8mError, match="supported: youtube8m"):
        kaggle.competition_slug("youtube8m-2016")


@pytest.fixture
def competition(tiny_input, tiny_features, tmp_path, monkeypatch):
    """A workspace folder holding the tiny competition and a source with good test logits."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input").symlink_to(tiny_input)
    (tmp_path / "features").symlink_to(tiny_features)
    cache = FeatureCache("features")
    rows = cache.rows("test")
    solution = video.read_solution("input/solution.csv")
    truth = [solution[v] for v in cache.ids[rows]]
    logits = np.random.default_rng(0).normal(size=(len(rows), cache.num_classes)) - 3
    for i, labels in enumerate(truth):
        logits[i, labels] += np.random.default_rng(i).normal(5.0, 1.0, len(labels))
    order = np.random.default_rng(1).permutation(len(rows))  # stored order need not be the cache's
    predictions.save("models/good", "test", cache.ids[rows][order], logits[order])
    (tmp_path / "models/good/metrics.json").write_text(json.dumps(
        {"oof": {"gap": 0.61}, "config_hash": "f00d"}))
    predictions.save("models/worse", "test", cache.ids[rows], logits * 0)
    (tmp_path / "models/worse/metrics.json").write_text(json.dumps({"oof": {"gap": 0.2}}))
    return cache, logits.astype(np.float32), truth


def test_a_distilled_student_is_chosen_only_when_nothing_else_is_there(competition):
    from yt8m.submissions.writer import choose_source

    cache, logits, _ = competition
    predictions.save("models/student", "test", cache.ids[cache.rows("test")], logits)
    Path("models/student/metrics.json").write_text(json.dumps(
        {"oof": {"gap": 0.9}, "teacher": {"source": "ensembles/stack"}}))  # flattered
    assert choose_source() == Path("models/good")
    shutil.rmtree("models/good"), shutil.rmtree("models/worse")
    assert choose_source() == Path("models/student")


def test_write_submission_end_to_end(competition, capsys):
    cache, logits, truth = competition
    assert main(["submission", "write"]) == 0  # picks the best source by OOF GAP
    out = capsys.readouterr().out
    assert "wrote submissions/good.csv (30 videos, from models/good; OOF GAP@20 0.61000)" in out
    score_line = next(line for line in out.splitlines() if line.startswith("scored against"))
    gap = float(score_line.split("GAP@20 ")[1].split(",")[0])
    expected = evaluate(logits.astype(np.float16), truth, from_logits=True)["gap"]
    assert gap == pytest.approx(expected, abs=2e-3) and gap > 0.5
    info = json.loads(Path("submissions/good.json").read_text())
    assert info["rows"] == 30 and info["config_hash"] == "f00d" and info["oof"]["gap"] == 0.61
    assert main(["submission", "check", "submissions/good.csv"]) == 0
    assert "valid video-level submission, 30 rows" in capsys.readouterr().out

    assert main(["submission", "write"]) == 0  # same predictions: nothing to do
    assert "up to date: submissions/good.csv" in capsys.readouterr().out
    before = Path("submissions/good.csv").read_text()
    assert main(["submission", "write", "--source", "models/worse", "--id", "good"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert Path("submissions/good.csv").read_text() == before
    assert main(["submission", "write", "--source", "models/worse", "--id", "good",
                 "--force"]) == 0
    assert Path("submissions/good.csv").read_text() != before
    # the source rebuilt (new test predictions): its own submission is replaced
    worse = Path("submissions/good.csv").read_text()
    predictions.save("models/worse", "test", cache.ids[cache.rows("test")], logits)
    assert main(["submission", "write", "--source", "models/worse", "--id", "good"]) == 0
    assert Path("submissions/good.csv").read_text() != worse

    assert main(["submission", "submit", "good", "--dry-run"]) == 0
    assert "would run: " in capsys.readouterr().out
    assert main(["submission", "submit", "good", "--competition", "2019", "--dry-run"]) == 2
    assert "takes segments-level files" in capsys.readouterr().err


def test_check_reports_every_problem_and_fails(competition, capsys):
    write_submission("models/good", "submissions")
    lines = Path("submissions/good.csv").read_text().splitlines()
    lines[3] = lines[3].replace(" ", "  ", 1)
    del lines[5]
    Path("submissions/bad.csv").write_text("\n".join(lines) + "\n")
    assert main(["submission", "check", "submissions/bad.csv"]) == 2
    err = capsys.readouterr().err
    assert "submissions/bad.csv:4: pairs must be separated by single spaces" in err
    assert "1 test videos have no row" in err
    assert "yt8m submission check: error: submissions/bad.csv: 2 problems in 29 rows" in err
    assert main(["submission", "submit", "submissions/bad.csv", "--dry-run"]) == 2
    assert "nothing was submitted" in capsys.readouterr().err


def test_predictions_that_miss_test_videos_are_refused(competition):
    cache = competition[0]
    rows = cache.rows("test")[:-1]
    predictions.save("models/short", "test", cache.ids[rows], np.zeros((len(rows), 3862)))
    with pytest.raises(Yt8mError, match="1 missing"):
        write_submission("models/short", "submissions")
    with pytest.raises(Yt8mError, match="no test predictions"):
        write_submission("models/none", "submissions")


def _stop_between(monkeypatch, *names):
    """Make the next write of the files `names` stop after the first of them is renamed into
    place, as a killed process would (whichever the writer renames first)."""
    real, done = os.replace, []

    def replace(src, dst):
        name = Path(dst).name
        if name in names:
            if done and name not in done:
                raise RuntimeError("killed between the two renames")
            done.append(name)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_write_stopped_between_the_csv_and_its_json_is_refused_then_rebuilt(competition,
                                                                              monkeypatch,
                                                                              capsys):
    cache, logits, _ = competition
    csv, meta = Path("submissions/good.csv"), Path("submissions/good.json")
    write_submission("models/good", "submissions")
    first = csv.read_bytes()
    ids = cache.ids[cache.rows("test")]
    rebuilt = logits[:, ::-1].copy()  # the source is retrained: other test predictions
    predictions.save("models/good", "test", ids, rebuilt)
    with monkeypatch.context() as m:
        _stop_between(m, csv.name, meta.name)
        with pytest.raises(RuntimeError, match="killed"):
            write_submission("models/good", "submissions")
    assert json.loads(meta.read_text())["sha256"] != sha256(csv)  # the pair disagrees

    for command in (["submission", "submit", "good", "--dry-run"],
                    ["submission", "check", "submissions/good.csv"]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert "would run" not in out
        assert err.count("\n") == 1, err
        assert "submissions/good.json does not describe submissions/good.csv" in err, err
        assert "yt8m submission write --source models/good --id good" in err, err

    assert main(["submission", "write", "--source", "models/good"]) == 0  # no --force needed
    assert "wrote submissions/good.csv" in capsys.readouterr().out
    video.write("expected.csv", ids, rebuilt.astype(np.float16))
    assert csv.read_bytes() == Path("expected.csv").read_bytes() != first
    info = json.loads(meta.read_text())
    assert info["sha256"] == sha256(csv) and info["bytes"] == csv.stat().st_size
    assert main(["submission", "submit", "good", "--dry-run"]) == 0
    assert "would run: " in capsys.readouterr().out

    csv.write_text(csv.read_text().replace(" ", "  ", 1))  # a hand edit
    edited = csv.read_bytes()
    assert main(["submission", "write", "--source", "models/good"]) == 2
    assert "already exists" in capsys.readouterr().err and csv.read_bytes() == edited
    assert main(["submission", "submit", "good", "--dry-run"]) == 2
    assert "does not describe submissions/good.csv" in capsys.readouterr().err


def test_a_second_writer_of_the_submissions_folder_is_refused_naming_the_first(competition,
                                                                               capsys):
    with output_lock(Path("submissions"), "a test holding it"):
        assert main(["submission", "write"]) == 2
        err = capsys.readouterr().err
        assert f"submissions/ is being written by process {os.getpid()} (a test holding it" in err
        assert not Path("submissions/good.csv").exists()
    assert main(["submission", "write"]) == 0


def test_a_kinetics_results_write_stopped_between_its_two_files_is_rebuilt(tmp_path,
                                                                          monkeypatch):
    from yt8m.submissions import kinetics

    source = tmp_path / "models" / "st"
    source.mkdir(parents=True)

    def scores(seed):
        np.savez(source / "test_scores.npz", video_ids=np.array(["v1", "v2"]),
                 classes=np.array(["a", "b", "c"]),
                 scores=np.random.default_rng(seed).random((2, 2, 3)))

    out = tmp_path / "submissions"
    path, meta = out / "st.results.json", out / "st.json"
    scores(0)
    kinetics.write_results(source, out)
    scores(1)  # retrained
    with monkeypatch.context() as m:
        _stop_between(m, path.name, meta.name)
        with pytest.raises(RuntimeError, match="killed"):
            kinetics.write_results(source, out)
    assert json.loads(meta.read_text())["sha256"] != sha256(path)
    _, info, written = kinetics.write_results(source, out)  # rebuilt without --force
    assert written and info["sha256"] == sha256(path) == json.loads(meta.read_text())["sha256"]
    with np.load(source / "test_scores.npz") as saved:
        expected = saved["scores"].mean(axis=1).argmax(axis=1)
    assert [kinetics.read_results(path)["results"][v][0]["label"] for v in ("v1", "v2")] == \
        [["a", "b", "c"][i] for i in expected]
    with output_lock(out, "a test holding it"), \
            pytest.raises(Yt8mError, match=f"being written by process {os.getpid()}"):
        kinetics.write_results(source, out, force=True)


def test_chunked_write_and_score_equal_one_chunk(tmp_path, monkeypatch):
    ids = [f"v{i}" for i in range(11)]
    logits = logits_for(11, 50, seed=4)
    truth = [[int(np.argmax(row))] if i % 3 else [7, 8] for i, row in enumerate(logits)]
    key = tmp_path / "solution.csv"
    key.write_text("VideoId,Labels\n" + "".join(
        f"{v},{' '.join(map(str, t))}\n" for v, t in zip(ids, truth, strict=True)))
    whole = tmp_path / "whole.csv"
    video.write(whole, ids[:9], logits[:9])  # v9 and v10 have no row: their labels are missed
    monkeypatch.setattr(video, "_ROWS_PER_CHUNK", 2)
    chunked = tmp_path / "chunked.csv"
    video.write(chunked, ids[:9], logits[:9])
    assert chunked.read_bytes() == whole.read_bytes()
    result = video.score(chunked, key, 50)
    _, labels, scores = video.read(chunked)  # all rows at once, the rowless videos padded
    at_once = Evaluator(50)
    at_once.update_top_k(np.vstack([labels, np.full((2, 20), -1)]),
                         np.vstack([scores, np.zeros((2, 20))]), truth)
    assert result == pytest.approx(at_once.result(), abs=1e-12) and result["videos"] == 11
    assert 0.2 < result["gap"] < 1
    key.write_text("VideoId,Labels\n" + "".join(f"{v},1\n" for v in ids[2:]))
    with pytest.raises(Yt8mError, match="2 videos are not in .*e.g. v0, v1"):
        video.score(chunked, key, 50)


def test_rows_are_read_in_the_expected_order_without_a_dense_copy(tmp_path):
    from yt8m.submissions.writer import RowView, aligned_rows

    logits = logits_for(6, 50, seed=2)
    predictions.save(tmp_path, "test", ["f", "e", "d", "c", "b", "a"], logits)
    preds = predictions.load(tmp_path, "test")
    view = aligned_rows(preds, np.array(["a", "c", "b", "d", "e", "f"]))
    assert isinstance(view, RowView) and view.shape == (6, 50) and len(view) == 6
    np.testing.assert_array_equal(view[1:3], preds.logits[[3, 4]])
    with pytest.raises(Yt8mError, match="1 missing .*zz.*1 unexpected"):
        aligned_rows(preds, np.array(["a", "b", "c", "d", "e", "zz"]))


def test_check_reads_line_by_line_and_reports_bad_bytes_after_good_rows(tmp_path):
    ids = [f"v{i:04d}" for i in range(400)]
    path = tmp_path / "s.csv"
    video.write(path, ids, logits_for(400, 50))
    path.write_bytes(path.read_bytes() + b"zzzz,\xff\n")
    report = video.check(path, test_ids=ids)
    assert report.rows > 300  # the rows before the bad bytes' block were read and checked
    assert any("cannot be read as UTF-8" in text for _, text in report.problems)
    assert all("UTF-8" in text or "have no row" in text for _, text in report.problems)

import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import REAL_SHARD
from yt8m.cli import main
from yt8m.errors import Yt8mError
from yt8m.input.download import download

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("sample", "features", "info", "inspect", "download", "bench"):
        assert command in out


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(["features", "--input", str(tmp_path / "nothing"), "--features",
                 str(tmp_path / "f"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("yt8m features: error: no .tfrecord shards under")
    assert "Traceback" not in err


def test_inspect_the_real_shard(capsys):
    assert main(["inspect", str(REAL_SHARD), "--records", "1"]) == 0
    out = capsys.readouterr().out
    assert "record 0: video-level 2018 id=" in out and "243 records, 0 skipped" in out


def test_sample_features_info_from_the_command_line(tmp_path, capsys):
    args = ["--train-shards", "2", "--validate-shards", "0", "--test-shards", "1",
            "--videos-per-shard", "3", "--max-frames", "61", "--num-classes", "40", "--quiet"]
    assert main(["sample", "--output", str(tmp_path / "in"), *args]) == 0
    assert main(["sample", "--output", str(tmp_path / "in"), *args]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["features", "--input", str(tmp_path / "in"), "--features", str(tmp_path / "f"),
                 "--folds", "2", "--quiet"]) == 0
    assert main(["info", "--features", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "9 videos in 3 shards" in out and "folds: 2 (videos per fold: 3, 3)" in out


def test_progress_bars_are_drawn_on_a_terminal_only(tmp_path):
    """Into a pipe (a log file, CI), a stage prints its result lines and no bar redraws."""
    sample = [str(ROOT / ".venv" / "bin" / "yt8m"), "sample", "--train-shards", "2",
              "--validate-shards", "0", "--test-shards", "0", "--videos-per-shard", "2",
              "--max-frames", "60", "--num-classes", "30", "--output"]
    run = subprocess.run([*sample, str(tmp_path / "in")], capture_output=True, text=True)
    assert run.returncode == 0 and "wrote the sample competition" in run.stdout
    assert "shard/s" not in run.stderr and "\r" not in run.stderr, run.stderr


def test_make_help_documents_the_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for target in ("all", "setup", "sample", "features", "test", "lint", "bench", "download"):
        assert f" {target} " in out


def test_download_runs_the_official_script_in_the_level_folder(tmp_path):
    script = (b"import os\n"
              b"open('ran.txt', 'w').write(' '.join(os.environ[k] for k in "
              b"('partition', 'shard', 'mirror')))\n")
    served = {"/download.py": script, "/vocabulary.csv": b"Index,Name\n0,a\n"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = served.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        target = download("2/frame/validate", "3,50", "eu", tmp_path / "input",
                          script_url=f"{base}/download.py", vocabulary_url=f"{base}/vocabulary.csv")
        assert target == tmp_path / "input" / "frame"
        assert (target / "ran.txt").read_text() == "2/frame/validate 3,50 eu"
        assert (tmp_path / "input" / "vocabulary.csv").read_text().startswith("Index")
        with pytest.raises(Yt8mError, match="could not fetch the official download script"):
            download("2/video/test", "1,1", "us", tmp_path / "input",
                     script_url=f"{base}/missing.py")
    finally:
        server.shutdown()
    with pytest.raises(Yt8mError, match="bad partition '2/frames/train'"):
        download("2/frames/train", input_dir=tmp_path)
    with pytest.raises(Yt8mError, match="bad shard '0,10'"):
        download("2/frame/train", "0,10", input_dir=tmp_path)

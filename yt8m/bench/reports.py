"""The bench reports: each measurement's Markdown file, under notebooks/ with the workspace's
analysis unless told otherwise, written and returned for printing."""

from yt8m.fileio import write_text

REPORTS = {
    "bench": "notebooks/bench.md",  # `make bench` (`run_benchmarks`) and model throughput
    "scale": "notebooks/scale.md",  # `make bench-scale`
    "topk": "notebooks/topk.md",  # `yt8m bench --top-k`
    "train": "notebooks/train.md",  # `yt8m bench --train-path`
}


def _write(kind, text, output=None):
    write_text(output or REPORTS[kind], text)
    return text


def write_scale_report(sizes=(10_000, 40_000), output=None):
    """Every stage's time and peak memory at `sizes` labeled videos (`yt8m.bench.scale`), with
    the machine and the method, into `output` (default: `REPORTS["scale"]`); returns the text."""
    from yt8m.bench import _machine
    from yt8m.bench.scale import scale_table

    table, _ = scale_table(tuple(sizes))
    text = (f"Machine: {_machine()}\n\nMethod: `yt8m.bench.scale` (each stage alone in a "
            f"fresh process; peak anonymous memory over the process's start).\n\n{table}\n")
    return _write("scale", text, output)


def write_topk_report(ks, chosen=None, output=None):
    """Every ensemble spec built from dense and from top-K copies of its members
    (`yt8m.bench.topk.topk_report`) into `output` (default: `REPORTS["topk"]`); returns the
    text."""
    from yt8m.bench.topk import topk_report

    return _write("topk", "\n".join(topk_report(ks=tuple(ks), chosen=chosen)), output)


def write_train_path_report(names, preset="demo", steps=8, backends=("tensorflow", "jax"),
                            output=None):
    """Examples/s of the real training path per model, backend and feed
    (`yt8m.bench.train.train_path_report`) into `output` (default: `REPORTS["train"]`); returns
    the text."""
    from yt8m.bench.train import train_path_report

    text = "\n".join(train_path_report(list(names), preset, steps, tuple(backends)))
    return _write("train", text, output)


def write_throughput_report(names=None, preset="demo", steps=10, mixed_precision=None,
                            output=None):
    """Train and inference examples/s of zoo models (`yt8m.bench.model_throughput`; `names`
    None: every model of the zoo) into `output` (default: `REPORTS["bench"]`); returns the
    text."""
    from yt8m.bench import model_throughput
    from yt8m.models.registry import models

    names = list(models()) if names is None else list(names)
    text = "\n".join(model_throughput(names, preset, steps, mixed_precision=mixed_precision))
    return _write("bench", text, output)

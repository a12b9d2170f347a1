import re

import pytest

from yt8m.bench import run_benchmarks


@pytest.mark.slow
def test_bench_writes_a_table_with_machine_method_and_figures(tmp_path):
    out = tmp_path / "bench.md"
    rows = run_benchmarks(out, quick=True, progress=False)
    text = out.read_text()
    assert text.startswith("# Feature cache benchmark") and "Machine: " in text
    assert "Median of 1 run(s)" in text
    assert len(rows) == 8
    for row in rows:
        rate = float(re.match(r"([\d,.]+) ", row[3]).group(1).replace(",", ""))
        assert rate > 0
    assert rows[0][4] == "1.00x"
    training = text.split("# Training")[1].split("# Scoring benchmark")[0]
    fit = re.findall(r"\| ([\d.]+) \| ([\d.]+)x \|", training)
    # a fold's fit does the plain fit's work and more (epoch-end evaluation and checkpoints)
    assert len(fit) == 2 and float(fit[0][1]) == 1.0 and float(fit[1][1]) > 1.0
    assert float(fit[1][0]) > float(fit[0][0]) > 0
    scoring, video = text.split("# Scoring benchmark")[1].split("# StNet clip decoding")
    speedups = [float(x) for x in re.findall(r"\| ([\d.]+)x \|", video.split("# Model")[0])]
    assert len(speedups) == 2 and speedups[0] == 1.0 and speedups[1] > 0
    ratios = [float(x) for x in re.findall(r"\| ([\d.]+)x \|", scoring)]
    # the heap implementation against Evaluator (3 rows), then Evaluator against one NumPy pass
    # over the same scores (uniform scores, then logits; its default threads, then one)
    assert len(ratios) == 7 and ratios[0] == 1.0 and ratios[1] > 1.0
    threads = [int(t) for t in re.findall(r"\| \d[\d,]* x 3862 \| (\d+) \|", scoring)]
    assert len(threads) == 4 and threads[1] == threads[3] == 1 and threads[0] >= 1
    assert all(ratio > 0 for ratio in ratios[3:])
    assert ratios[4] > 1.0 and ratios[6] > 1.0  # one thread cannot beat reading the scores once
    difference = float(re.search(r"same videos: ([\de.+-]+)\.", scoring).group(1))
    assert difference < 1e-12
    models = text.split("# Model throughput")[1]
    rates = re.findall(r"\| `(\w+)` \| [\d,]+ \| \d+ x \d+ \| \w+ \| ([\d,]+) \| ([\d,]+) \|",
                       models)
    assert [r[0] for r in rates] == ["frame_logistic", "nextvlad"]
    assert all(float(r[1].replace(",", "")) > 0 and float(r[2].replace(",", "")) > 0
               for r in rates)

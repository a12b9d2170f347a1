"""`yt8m bench --top-k`: what keeping each video's top K logits costs the ensembles, and saves.

Method: on a trained workspace (`make all`: `models/<id>/` with out-of-fold and test
predictions, `ensembles/*.yaml`), the prediction files and `metrics.json` of every member of the
chosen ensemble specs are copied to a temporary models folder, once as they are (dense float16)
and once per K, compacted with `predictions.compact`. Each spec is then built against each copy
with `yt8m.ensembles.build` (into a temporary folder; the workspace's `ensembles/<id>/` are not
touched). Reported: each member's OOF GAP@20 as the ensemble build scores it from the copy
(compaction keeps a video's top 20, so it must not change at all), each ensemble's OOF GAP@20
from the dense members and from the top-k ones, and the disk of one member's predictions.
"""

import shutil
import tempfile
import time
from pathlib import Path

from .. import predictions
from ..errors import Yt8mError

KS = (20, 50, 100, 200)


def _specs(ensembles_dir, chosen):
    """[(spec path, checked spec)] of the specs whose id or combiner is in `chosen` (all: None)."""
    from ..ensembles import load_spec

    specs = [(path, load_spec(path)) for path in sorted(Path(ensembles_dir).glob("*.yaml"))]
    if chosen:
        specs = [(p, s) for p, s in specs if p.stem in chosen or s["combiner"] in chosen]
    if not specs:
        among = f" of {', '.join(chosen)}" if chosen else ""
        raise Yt8mError(f"{ensembles_dir}/: no ensemble spec{among}; run it in a workspace where "
                        f"`make all` has trained the sample")
    return specs


def _copy(members, models_dir, target):
    for name in members:
        source, folder = Path(models_dir) / name, Path(target) / name
        if not all(predictions.exists(source, part) for part in ("oof", "test")):
            raise Yt8mError(f"{source}: no out-of-fold and test predictions; train it first "
                            f"(make train-all)")
        folder.mkdir(parents=True)
        found = [p for part in ("oof", "test") for p in predictions.files(source, part)]
        for path in [*found, source / "metrics.json"]:
            if path.is_file():
                shutil.copy2(path, folder / path.name)


def _bytes(folder):
    return sum(p.stat().st_size for part in ("oof", "test")
               for p in predictions.files(folder, part))


def topk_report(features="features", models_dir="models", ensembles_dir="ensembles", ks=KS,
                chosen=None, say=print):
    """Markdown lines: the members' and the ensembles' OOF GAP@20 from dense and from top-K
    members for each K in `ks`, and one member's disk; `chosen`: ensemble ids or combiners
    (e.g. ("mean", "weighted") to leave the stacker out)."""
    from ..ensembles import build
    from . import _machine

    specs = _specs(ensembles_dir, chosen)
    members = list(dict.fromkeys(m for _, spec in specs for m in spec["members"]))
    forms = (None, *ks)  # None: dense
    built, disk = {}, {}
    with tempfile.TemporaryDirectory(prefix="yt8m-bench-topk-") as tmp:
        for k in forms:
            name = f"top{k}" if k else "dense"
            models, out = Path(tmp) / name / "models", Path(tmp) / name / "ensembles"
            _copy(members, models_dir, models)
            for member in members if k else ():
                predictions.compact(models / member, k)
            disk[k] = _bytes(models / members[0])
            for path, _ in specs:
                start = time.perf_counter()
                built[k, path.stem] = build(path, features, models, out_dir=out)
                seconds = time.perf_counter() - start
                built[k, path.stem]["bench_seconds"] = seconds
                say(f"{path.stem} from {name} members: OOF GAP@20 "
                    f"{built[k, path.stem]['oof']['gap']:.5f} ({seconds:.1f} s)")
            shutil.rmtree(Path(tmp) / name)
    sample = predictions.load(Path(models_dir) / members[0], "oof")
    test = predictions.load(Path(models_dir) / members[0], "test")
    lines = [
        "# Top-k predictions: what the ensembles lose, what the disk saves",
        "",
        f"Machine: {_machine()}.",
        f"Date: {time.strftime('%Y-%m-%d')}.",
        f"Method: `yt8m.bench.topk` (`yt8m bench --top-k`): the {len(members)} members' "
        f"predictions ({len(sample)} OOF and {len(test)} test videos, {sample.logits.shape[1]} "
        f"classes) copied dense and compacted to each K with `yt8m compact`; every ensemble "
        f"spec ({', '.join(f'`{p.stem}`' for p, _ in specs)}) built against each copy.",
        "",
        "## Members: OOF GAP@20 (must not change: compaction keeps each video's top 20)",
        "",
        "| member | dense | " + " | ".join(f"K={k}" for k in ks) + " | largest change |",
        "|---|---:|" + "---:|" * len(ks) + "---:|",
    ]
    for member in members:
        spec_id = next(p.stem for p, s in specs if member in s["members"])
        gaps = [built[k, spec_id]["member_oof"][member]["gap"] for k in forms]
        change = max(abs(g - gaps[0]) for g in gaps)
        cells = " | ".join(f"{g:.6f}" for g in gaps)
        lines.append(f"| `{member}` | {cells} | {f'{change:.1e}' if change else '0'} |")
    lines += ["", "## Ensembles: OOF GAP@20 from dense and from top-k members", "",
              "| ensemble | combiner | K | dense | top-k | difference | seconds (top-k build) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for path, spec in specs:
        dense = built[None, path.stem]["oof"]["gap"]
        for k in ks:
            got = built[k, path.stem]
            lines.append(f"| `{path.stem}` | {spec['combiner']} | {k} | {dense:.5f} | "
                         f"{got['oof']['gap']:.5f} | {got['oof']['gap'] - dense:+.5f} | "
                         f"{got['bench_seconds']:.1f} |")
    lines += ["", f"## Disk: `{members[0]}`'s predictions (oof + test, ids included)", "",
              "| form | bytes | vs dense float16 |", "|---|---:|---:|",
              f"| dense float16 | {disk[None]:,} | 1.0x |",
              *(f"| top {k} | {disk[k]:,} | {disk[None] / disk[k]:.1f}x smaller |" for k in ks),
              ""]
    return lines

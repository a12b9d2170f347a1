"""What an ensemble build tells: `report.md` (markdown) and the one line `yt8m ensemble` prints.

Both read only the ensemble's metrics dict (its `metrics.json`), video-level or segment.
"""

import json


def report(metrics):
    """The markdown report of one video-level ensemble."""
    lines = [f"# Ensemble `{metrics['id']}` ({metrics['combiner']})", "",
             *_scores_table(metrics), "",
             f"Best single model: `{metrics['best_member']}`; the blend's OOF GAP@20 gain over "
             f"it: {metrics['gain_over_best_member']:+.4f}.", ""]
    if metrics["fold_weights"]:
        lines += ["Weights fitted without each fold (the OOF rows of fold k use its weights):",
                  "", *(f"- fold {k}: {w}" for k, w in metrics["fold_weights"].items()), ""]
    search = metrics.get("weight_search")
    if search:
        lines += [f"Weight search: on each video's {search['candidates']} best classes of every "
                  f"member (the blend's top 20 provably among them, else the video blended "
                  f"densely: {search['dense_fallback']:.2%} of the trials' rows), "
                  f"{search['seconds']} s.", ""]
    if metrics.get("stacker_folds"):
        lines += [f"Stacker settings: {json.dumps(metrics['stacker'])}", "",
                  "Each fold's stacker, trained on the other folds' OOF rows:", "",
                  *(f"- fold {r['fold']}: OOF GAP@20 {r['oof']['gap']:.4f} on its "
                    f"{r['oof']['videos']} videos ({r['train_videos']} training videos, "
                    f"{r['seconds']} s)" for r in metrics["stacker_folds"]), ""]
    lines += ["Pairwise correlation of the members' OOF logits:", "", *_correlation_table(metrics)]
    return "\n".join(lines) + "\n"


def summary_line(metrics):
    """One line on an ensemble: its OOF score, its gain over its best member, its weights."""
    score = (f"segment MAP@{metrics['top_k']} {metrics['oof']['map']:.4f}" if "top_k" in metrics
             else f"GAP@20 {metrics['oof']['gap']:.4f}")
    line = (f"{metrics['id']}: {metrics['combiner']} of {len(metrics['members'])} models, OOF "
            f"{score} ({metrics['gain_over_best_member']:+.4f} over {metrics['best_member']})")
    if metrics["weights"]:
        line += "; weights " + json.dumps(metrics["weights"])
    return line


def _scores_table(metrics):
    """Each member's OOF scores and weight, then the blend's (its GAP@20 in bold)."""
    rows = []
    for m in metrics["members"]:
        weight = f"{metrics['weights'][m]:.3f}" if metrics["weights"] else "-"
        rows.append([f"`{m}`", weight, *_scores(metrics["member_oof"][m])])
    gap, *others = _scores(metrics["oof"])
    rows.append([f"**{metrics['combiner']}**", "", f"**{gap}**", *others])
    return markdown_table(["source", "weight", "OOF GAP@20", "Hit@1", "PERR", "mAP"], rows)


def _scores(scores):
    return [f"{scores[key]:.4f}" for key in ("gap", "hit_at_one", "perr", "map")]


def _correlation_table(metrics):
    members = metrics["members"]
    return markdown_table(["", *(f"`{m}`" for m in members)],
                          [[f"`{m}`", *(f"{c:.3f}" for c in row)]
                           for m, row in zip(members, metrics["correlation"], strict=True)])


def markdown_table(header, rows):
    """The lines of a markdown table: `header` and `rows` are lists of cell texts, the first
    column left-aligned, the others right-aligned (numbers)."""
    return [_row(header), "|---|" + "---:|" * (len(header) - 1), *map(_row, rows)]


def _row(cells):
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"

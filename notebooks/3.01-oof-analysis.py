# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Out-of-fold analysis
#
# Reads what `make train-all` and `make ensemble` wrote: every model's and ensemble's OOF
# scores, per-class AP against class frequency for the best source, how correlated the models'
# OOF logits are, the ensembles' weights, and the classes the best source gets most wrong. Paths
# come from `yt8m.paths` (the workspace above this folder, or `$YT8M_WORKSPACE`).

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yt8m import predictions
from yt8m.features.cache import FeatureCache
from yt8m.metrics import Evaluator
from yt8m.paths import workspace

ws = workspace()
cache = FeatureCache(ws.features, "frame")
names = pd.read_csv(ws.input / "vocabulary.csv").set_index("Index")["Name"]
sources = [(folder, info) for folder, info in predictions.find_sources((ws.ensembles, ws.models))
           if info.get("oof")]
print(f"{len(sources)} scored sources under {ws.root}")

# %% [markdown]
# ## OOF scores of every model and ensemble

# %%
table = pd.DataFrame([
    {"source": f"{folder.parent.name}/{folder.name}", "model": info.get("model", "-"),
     **{key: info["oof"][key] for key in ("gap", "hit_at_one", "perr", "map")},
     "videos": info["oof"]["videos"]}
    for folder, info in sources]).set_index("source")
ax = table["gap"].sort_values().plot.barh(figsize=(7, 0.35 * len(table) + 1))
ax.set(xlabel="OOF GAP@20", title="out-of-fold GAP@20")
plt.show()
table.round(4)


# %% [markdown]
# ## Per-class AP against class frequency (best source)
#
# AP per class over the top-20 triplets, as the competition's mAP computes it. Rare classes
# are where the long tail costs GAP.

# %%
def oof_of(folder):
    """A source's OOF logits (float32) with the feature-cache rows of its videos."""
    oof = predictions.load(folder, "oof")
    position = {video: row for row, video in enumerate(cache.ids.tolist())}
    return np.asarray(oof.logits, np.float32), np.array([position[v] for v in oof.ids.tolist()])


best_folder, best_info = sources[0]
logits, rows = oof_of(best_folder)
evaluator = Evaluator(cache.num_classes, from_logits=True)
evaluator.update(logits, cache.label_lists(rows))
per_class = pd.DataFrame({"ap": evaluator.average_precisions(),
                          "videos": np.bincount(np.concatenate(cache.label_lists(rows)),
                                                minlength=cache.num_classes)})
per_class = per_class[per_class["videos"] > 0]
per_class["name"] = per_class.index.map(names)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.scatter(per_class["videos"], per_class["ap"], s=6, alpha=0.5)
ax.set(xscale="log", xlabel="labeled OOF videos of the class", ylabel="AP",
       title=f"per-class AP of {best_folder.name}")
plt.show()
per_class.groupby(pd.cut(per_class["videos"], [0, 2, 5, 10, 50, 10**9]), observed=True)[
    "ap"].agg(["count", "mean"])

# %% [markdown]
# ## Worst classes of the best source
#
# Among the classes with enough OOF videos for their AP to mean something (at least 10, or
# the most frequent tenth of the classes when that asks for more).

# %%
min_videos = max(10, int(per_class["videos"].quantile(0.9)))
enough = per_class[per_class["videos"] >= min_videos]
print(f"{len(enough)} classes with at least {min_videos} OOF videos")
enough.sort_values(["ap", "videos"], ascending=[True, False]).head(15)[["name", "videos", "ap"]]

# %% [markdown]
# ## Correlation of the models' OOF logits
#
# Members that disagree more are worth more to a blend. Computed on a sample of the logits.

# %%
model_sources = [(folder, info) for folder, info in sources if folder.parent == ws.models]
assert len(model_sources) >= 2, "train at least two models to compare them"
sample = np.random.default_rng(0).choice(len(rows) * cache.num_classes,
                                         min(200_000, len(rows) * cache.num_classes),
                                         replace=False)
reference_ids = predictions.load(best_folder, "oof").ids
flat = np.stack([np.asarray(predictions.load(folder, "oof").aligned_to(reference_ids),
                            np.float32).ravel()[sample] for folder, _ in model_sources])
correlation = pd.DataFrame(np.corrcoef(flat), index=[f.name for f, _ in model_sources],
                           columns=[f.name for f, _ in model_sources])
fig, ax = plt.subplots(figsize=(6, 5))
image = ax.imshow(correlation, vmin=min(0.5, correlation.min().min()), vmax=1, cmap="magma")
ax.set_xticks(range(len(correlation)), correlation.columns, rotation=90)
ax.set_yticks(range(len(correlation)), correlation.index)
fig.colorbar(image, label="Pearson correlation")
plt.show()

# %% [markdown]
# ## Ensemble weights
#
# The `weighted` combiner's non-negative weights (fitted on every OOF row) and each ensemble's
# gain over its best member.

# %%
ensembles = [json.loads((folder / "metrics.json").read_text())
             for folder, _ in sources if folder.parent == ws.ensembles]
weights = pd.DataFrame({e["id"]: e["weights"] for e in ensembles if e.get("weights")})
if len(weights):
    weights.plot.bar(figsize=(7, 3), title="ensemble weights")
    plt.show()
pd.DataFrame([{"ensemble": e["id"], "combiner": e["combiner"], "OOF GAP": e["oof"]["gap"],
               "best member": e["best_member"], "gain": e["gain_over_best_member"]}
              for e in ensembles]).round(4)

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
# # Explore the competition data
#
# What the feature cache (`make features`) holds: shards and videos per split, frames per video,
# how often each class occurs (log-log), which verticals co-occur, and the distribution of the
# dequantized rgb and audio features. Paths come from `yt8m.paths`: the workspace above this
# folder, or `$YT8M_WORKSPACE`.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yt8m.features.cache import FeatureCache
from yt8m.paths import workspace

ws = workspace()
cache = FeatureCache(ws.features, "frame")
vocabulary = pd.read_csv(ws.input / "vocabulary.csv")
print(f"workspace {ws.root}: {len(cache):,} videos, {cache.num_classes:,} classes, "
      f"{cache.num_folds} folds")

# %% [markdown]
# ## Shards and videos per split

# %%
shards = pd.DataFrame({"shard": cache.shard_names,
                       "split": [s["split"] for s in cache.manifest["shards"]]})
videos = pd.Series(cache.split).value_counts().rename("videos")
labels_per_video = np.diff(cache.label_offsets)
per_split = shards.groupby("split").size().rename("shards").to_frame().join(videos)
per_split["labeled"] = pd.Series(labels_per_video > 0).groupby(cache.split).sum()
labels_per_split = pd.Series(labels_per_video).groupby(cache.split).sum()
per_split["labels per labeled video"] = labels_per_split / per_split["labeled"].replace(0, np.nan)
per_split

# %% [markdown]
# ## Frames per video

# %%
fig, ax = plt.subplots(figsize=(7, 3))
for split in np.unique(cache.split):
    ax.hist(cache.num_frames[cache.split == split], bins=40, alpha=0.6, label=split)
ax.set(xlabel="frames kept per video (1 per second)", ylabel="videos")
ax.legend()
plt.show()
pd.Series(cache.num_frames).describe()

# %% [markdown]
# ## Label frequency
#
# YouTube-8M's classes follow a long tail: a log-log plot of the count against the rank is close
# to a straight line.

# %%
counts = np.bincount(cache.labels_flat, minlength=cache.num_classes)
ranked = np.sort(counts)[::-1]
fig, ax = plt.subplots(figsize=(7, 3))
ax.loglog(np.arange(1, (ranked > 0).sum() + 1), ranked[ranked > 0])
ax.set(xlabel="class rank", ylabel="labeled videos", title="label frequency")
plt.show()
names = vocabulary.set_index("Index")["Name"]
top = pd.DataFrame({"class": np.argsort(counts)[::-1][:10]})
top["name"] = top["class"].map(names)
top["videos"] = counts[top["class"]]
print(f"{(counts == 0).sum():,} of {cache.num_classes:,} classes never occur")
top

# %% [markdown]
# ## Co-occurrence of verticals
#
# Each class belongs to a vertical (`Vertical1` in `vocabulary.csv`). The matrix counts the
# videos labeled with a class of both verticals; the diagonal counts videos with a class of the
# vertical.

# %%
vertical = vocabulary.set_index("Index")["Vertical1"].fillna("(none)")
class_vertical = vertical.reindex(np.arange(cache.num_classes)).fillna("(none)").to_numpy()
verticals = np.unique(class_vertical)
column = {v: i for i, v in enumerate(verticals)}
video_rows = np.repeat(np.arange(len(cache)), labels_per_video)
onehot = np.zeros((len(cache), len(verticals)), np.int64)
onehot[video_rows, [column[v] for v in class_vertical[cache.labels_flat]]] = 1
co = onehot.T @ onehot
fig, ax = plt.subplots(figsize=(7, 6))
image = ax.imshow(np.log1p(co), cmap="viridis")
ax.set_xticks(range(len(verticals)), verticals, rotation=90, fontsize=7)
ax.set_yticks(range(len(verticals)), verticals, fontsize=7)
fig.colorbar(image, label="log(1 + videos)")
ax.set_title("videos labeled with both verticals")
plt.show()

# %% [markdown]
# ## Feature distributions
#
# The video-level means of the dequantized frame features (rgb: 1024 PCA-whitened Inception
# dimensions, audio: 128). Whitening makes the dimensions similar in scale: a dimension far off
# the others in the right-hand plot points at a decoding or dequantization problem.

# %%
sample_rows = np.random.default_rng(0).choice(len(cache), min(len(cache), 2000), replace=False)
means = cache.means(np.sort(sample_rows))
width = cache.feature_sizes["rgb"]
rgb, audio = means[:, :width], means[:, width:]
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
axes[0].hist(rgb[:, :4], bins=40, label=[f"rgb {i}" for i in range(4)], histtype="step")
axes[0].legend(fontsize=7)
axes[0].set_title("first rgb dimensions")
axes[1].hist(audio[:, :4], bins=40, label=[f"audio {i}" for i in range(4)], histtype="step")
axes[1].legend(fontsize=7)
axes[1].set_title("first audio dimensions")
axes[2].plot(rgb.std(axis=0), label="rgb")
axes[2].plot(audio.std(axis=0), label="audio")
axes[2].set(title="standard deviation per dimension", xlabel="dimension")
axes[2].legend()
plt.show()

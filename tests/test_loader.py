import numpy as np
import pytest

from yt8m.errors import Yt8mError
from yt8m.features.cache import FeatureCache
from yt8m.features.loader import BatchLoader, frame_positions


def test_head_sampling_pads_short_videos_and_truncates_long_ones():
    pos, mask = frame_positions([3, 10, 0], 5, "head")
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5, [0] * 5]
    assert pos[1].tolist() == [0, 1, 2, 3, 4] and pos[0][:3].tolist() == [0, 1, 2]


def test_segment_sampling_covers_the_video_in_order():
    pos, mask = frame_positions([100], 10, "segments")
    assert pos[0].tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95] and mask.all()
    rng = np.random.default_rng(0)
    pos, _ = frame_positions([100] * 50, 10, "segments", rng)
    assert ((pos // 10) == np.arange(10)).all()  # one frame from each tenth
    assert len(np.unique(pos[:, 0])) > 5  # and a random one inside it
    pos, mask = frame_positions([4], 10, "segments")
    assert mask.all() and set(pos[0].tolist()) == {0, 1, 2, 3}  # short videos repeat frames


def test_random_sampling_is_sorted_within_the_video():
    rng = np.random.default_rng(1)
    pos, mask = frame_positions([50, 7], 20, "random", rng)
    assert (np.diff(pos, axis=1) >= 0).all() and pos[0].max() < 50 and pos[1].max() < 7
    assert mask.all()
    with pytest.raises(Yt8mError, match="unknown frame sampling 'middle'"):
        frame_positions([5], 2, "middle")


def test_batches_hold_the_right_frames_labels_and_rows(tiny_features):
    cache = FeatureCache(tiny_features)
    rows = cache.rows("train", exclude_folds=0)
    loader = BatchLoader(cache, rows, batch_size=16, num_frames=120, sampling="head")
    seen = []
    for batch in loader:
        assert batch["frames"].dtype == np.uint8 and batch["frames"].shape[1:] == (120, 1152)
        for i, row in enumerate(batch["rows"]):
            n = min(cache.num_frames[row], 120)
            np.testing.assert_array_equal(batch["frames"][i, :n], cache.frames(row)[:n])
            assert not batch["frames"][i, n:].any() and batch["mask"][i].sum() == n
            assert batch["num_frames"][i] == n
            assert set(np.flatnonzero(batch["labels"][i])) == set(cache.label_lists([row])[0])
        seen.extend(batch["rows"])
    assert seen == list(rows) and len(loader) == -(-len(rows) // 16)


def test_shuffled_epochs_cover_every_row_once_and_are_reproducible(tiny_features):
    cache = FeatureCache(tiny_features)
    rows = cache.rows(["train", "validate"])

    def run(**kw):
        loader = BatchLoader(cache, rows, batch_size=8, num_frames=30, sampling="random",
                             shuffle=True, seed=7, **kw)
        return [[b for b in loader] for _ in range(2)]

    threaded, inline = run(prefetch=3, workers=2), run(prefetch=0)
    for epoch in range(2):
        order = np.concatenate([b["rows"] for b in threaded[epoch]])
        assert sorted(order) == sorted(rows)
        for a, b in zip(threaded[epoch], inline[epoch]):
            np.testing.assert_array_equal(a["frames"], b["frames"])
    first, second = (np.concatenate([b["rows"] for b in e]) for e in threaded)
    assert not np.array_equal(first, second)  # a new order each epoch
    assert not np.array_equal(first, rows)  # rows from all shards are mixed


def test_means_and_drop_remainder(tiny_features):
    cache = FeatureCache(tiny_features)
    rows = cache.rows("validate")
    loader = BatchLoader(cache, rows, batch_size=7, features="means", drop_remainder=True)
    batches = list(loader)
    assert len(batches) == len(rows) // 7
    np.testing.assert_array_equal(batches[0]["means"], cache.means(rows[:7]))
    with pytest.raises(Yt8mError, match="selection is empty"):
        BatchLoader(cache, cache.rows("test", folds=0))


def test_training_feed_assembles_batches_ahead_and_serves_what_it_serves_without(tiny_features):
    import threading

    from yt8m.models.training import CacheBatches

    cache = FeatureCache(tiny_features)
    rows = cache.rows(["train", "validate"])
    training = {"batch_size": 4, "num_frames": 10, "sampling": "random"}
    made_in = []

    def run(look_ahead):
        feed = CacheBatches(cache, rows, "frame", training, shuffle=True, seed=3,
                            look_ahead=look_ahead)
        make = feed._make

        def recorded(*args):
            made_in.append(threading.current_thread().name)
            return make(*args)

        feed._make = recorded
        epochs = []
        for _ in range(2):
            epochs.append([feed[i] for i in range(len(feed))])
            feed.on_epoch_end()
        feed[0]  # epoch 2 begun (batches 1 and 2 made ahead), then abandoned
        feed.start_at(5)  # a resumed run: epoch 5's batches, not leftovers of epoch 2
        epochs.append([feed[i] for i in range(len(feed))])
        return epochs

    ahead = run(look_ahead=2)
    assert made_in and all(name.startswith("yt8m-feed") for name in made_in)
    made_in.clear()
    inline = run(look_ahead=0)
    assert set(made_in) == {threading.current_thread().name}
    for got, want in zip(ahead, inline, strict=True):
        assert len(got) == len(want) == len(rows) // 4
        for (x, y), (x0, y0) in zip(got, want, strict=True):
            np.testing.assert_array_equal(x["frames"], x0["frames"])
            np.testing.assert_array_equal(y, y0)
    assert not np.array_equal(ahead[0][0][1], ahead[2][0][1])  # a new order in epoch 5

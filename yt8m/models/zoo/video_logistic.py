"""The starter code's video-level logistic baseline (`LogisticModel`)."""

import keras

from .common import VIDEO_DEMO_TRAINING, VIDEO_TRAINING, classifier, video_inputs


def build_video_logistic(num_classes=3862, l2=1e-8):
    """Logistic regression on the video-level mean rgb + audio (`LogisticModel`)."""
    inputs, x = video_inputs()
    return keras.Model(inputs, classifier(x, num_classes, l2), name="video_logistic")


MODELS = {
    "video_logistic": dict(builder=build_video_logistic, presets={"paper": {}, "demo": {}},
                           training={"paper": VIDEO_TRAINING, "demo": VIDEO_DEMO_TRAINING},
                           level="video", reference="starter code LogisticModel"),
}

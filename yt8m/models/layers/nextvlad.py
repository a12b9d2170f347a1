"""NeXtVLAD: NetVLAD over grouped, expanded frame features with sigmoid group attention."""

import keras
from keras import ops

from .masking import frame_mask
from .netvlad import l2_normalize


@keras.saving.register_keras_serializable(package="yt8m")
class NeXtVLAD(keras.layers.Layer):
    """NeXtVLAD aggregation (Lin et al. 2018), as in PaddleVideo's implementation:

    1. expand each frame `x` (N) to `x' = x W_e + b_e` (lambda N) and split it into G groups of
       `D = lambda N / G`;
    2. group attention `alpha_g = sigmoid(x' w_g + b_g)`;
    3. per group, soft-assign to K clusters: `softmax_k(BN(x' W_c))` (no bias; BatchNorm over the
       real frames of the batch), weighted by `alpha_g` and the frame mask;
    4. `v_kd = sum_{t,g} a_tgk (x~_tgd - c_kd)`, intra-normalised per cluster, flattened.

    Output: (batch, K * D), cluster-major. (The references flatten dimension-major; that order
    matters only when converting their checkpoints.)

    Args:
        clusters: K.
        groups: G.
        expansion: lambda.
        momentum, epsilon: BatchNorm settings (Paddle: 0.9 / 1e-5).

    Call arguments:
        inputs: (batch, frames, N).
        mask: (batch, frames) bool, True for real frames.
        training: BatchNorm mode.

    Example:
        >>> NeXtVLAD(clusters=16, groups=4)(np.ones((2, 5, 32), "float32")).shape  # (2, 256)
    """

    def __init__(self, clusters=128, groups=8, expansion=2, momentum=0.99, epsilon=1e-3,
                 **kwargs):
        super().__init__(**kwargs)
        self.clusters = clusters
        self.groups = groups
        self.expansion = expansion
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        width = self.expansion * input_shape[-1]
        if width % self.groups:
            raise ValueError(f"expansion x features ({width}) must split into {self.groups} groups")
        self.group_size = width // self.groups
        frames = (*input_shape[:-1], width)
        he = keras.initializers.HeNormal()
        self.expand = keras.layers.Dense(width, kernel_initializer=he, name="expand",
                                         dtype=self.dtype_policy)
        self.expand.build(input_shape)
        self.attention = keras.layers.Dense(self.groups, kernel_initializer=he, name="attention",
                                            dtype=self.dtype_policy)
        self.attention.build(frames)
        self.assign = keras.layers.Dense(self.groups * self.clusters, use_bias=False,
                                         kernel_initializer=he, name="assign",
                                         dtype=self.dtype_policy)
        self.assign.build(frames)
        self.norm = keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon,
                                                    name="norm", dtype=self.dtype_policy)
        self.norm.build((*input_shape[:-1], self.groups * self.clusters))
        self.centres = self.add_weight(shape=(self.clusters, self.group_size), initializer=he,
                                       name="centres")

    def call(self, inputs, mask=None, training=None):
        weights = frame_mask(mask, inputs)  # (B, T, 1)
        expanded = self.expand(inputs)  # (B, T, lambda N)
        attention = ops.sigmoid(self.attention(expanded)) * weights  # (B, T, G)
        logits = self.norm(self.assign(expanded), training=training, mask=mask)
        logits = ops.reshape(logits, (-1, ops.shape(inputs)[1], self.groups, self.clusters))
        assignment = ops.softmax(logits, axis=-1) * ops.expand_dims(attention, -1)  # (B,T,G,K)
        grouped = ops.reshape(expanded, (-1, ops.shape(inputs)[1], self.groups, self.group_size))
        vlad = ops.einsum("btgk,btgd->bkd", assignment, grouped)  # (B, K, D)
        mass = ops.sum(assignment, axis=(1, 2))  # (B, K)
        vlad = vlad - ops.expand_dims(mass, -1) * ops.cast(self.centres, vlad.dtype)
        vlad = l2_normalize(vlad, axis=-1)
        return ops.reshape(vlad, (-1, self.clusters * self.group_size))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        width = self.expansion * input_shape[-1] // self.groups
        return (input_shape[0], self.clusters * width)

    def get_config(self):
        return super().get_config() | {
            "clusters": self.clusters, "groups": self.groups, "expansion": self.expansion,
            "momentum": self.momentum, "epsilon": self.epsilon}

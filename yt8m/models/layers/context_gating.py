"""ContextGating: re-weight features by sigmoid gates computed from themselves."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="yt8m")
class ContextGating(keras.layers.Layer):
    """`y = x * sigmoid(BN(x W))` (WILLOW's context gating), or its squeeze-and-excitation form
    `y = x * sigmoid(relu(BN(x W1)) W2)` with a bottleneck of `units / reduction` (NeXtVLAD).

    Args:
        reduction: None for the full n x n gate; an integer r for the SE form (n/r bottleneck).
        batch_norm: normalise the gate's pre-activation (True in both references; without it the
            full form has a bias instead).
        momentum, epsilon: BatchNorm settings (the references' TF-slim: 0.999 / 1e-3; Paddle:
            0.9 / 1e-5).
        kernel_regularizer: for the gate kernels.

    Call arguments:
        inputs: (batch, units).
        training: BatchNorm mode.

    Example:
        >>> ContextGating(reduction=8)(np.ones((2, 64), "float32")).shape  # (2, 64)
    """

    def __init__(self, reduction=None, batch_norm=True, momentum=0.99, epsilon=1e-3,
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.batch_norm = batch_norm
        self.momentum = momentum
        self.epsilon = epsilon
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        units = input_shape[-1]
        width = units if self.reduction is None else max(1, units // self.reduction)
        dense = dict(kernel_regularizer=self.kernel_regularizer,
                     kernel_initializer=keras.initializers.RandomNormal(stddev=units ** -0.5))
        self.squeeze = keras.layers.Dense(width, use_bias=not self.batch_norm, name="squeeze",
                                          dtype=self.dtype_policy, **dense)
        self.squeeze.build(input_shape)
        self.norm = None
        if self.batch_norm:
            self.norm = keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, name="norm",
                dtype=self.dtype_policy)
            self.norm.build((*input_shape[:-1], width))
        self.excite = None
        if self.reduction is not None:
            self.excite = keras.layers.Dense(units, use_bias=False, name="excite",
                                             dtype=self.dtype_policy, **dense)
            self.excite.build((*input_shape[:-1], width))

    def call(self, inputs, training=None):
        gates = self.squeeze(inputs)
        if self.norm is not None:
            gates = self.norm(gates, training=training)
        if self.excite is not None:
            gates = self.excite(ops.relu(gates))
        return inputs * ops.sigmoid(gates)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {
            "reduction": self.reduction, "batch_norm": self.batch_norm,
            "momentum": self.momentum, "epsilon": self.epsilon,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}

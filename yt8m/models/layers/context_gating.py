"""ContextGating: re-weight features by sigmoid gates computed from themselves."""

import keras
import numpy as np
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
        initial_gate: None, or a value in (0, 1) at which every gate starts whatever the input:
            the last gate kernel starts at zero and gets a bias of `logit(initial_gate)`. A
            value near 1 makes the layer start as (almost) the identity, for gating the output of
            something that already predicts well (the stacker). Needs `batch_norm=False` in the
            full form, where BatchNorm would follow the bias.
        log_space: the inputs are log-probabilities `log p`; the gates are computed from `p`
            and the output is `log(p * gate)` (tiny probabilities keep their order).

    Call arguments:
        inputs: (batch, units).
        training: BatchNorm mode.

    Example:
        >>> ContextGating(reduction=8)(np.ones((2, 64), "float32")).shape  # (2, 64)
    """

    def __init__(self, reduction=None, batch_norm=True, momentum=0.99, epsilon=1e-3,
                 kernel_regularizer=None, initial_gate=None, log_space=False, **kwargs):
        super().__init__(**kwargs)
        self.log_space = log_space
        if initial_gate is not None and not 0 < initial_gate < 1:
            raise ValueError(f"initial_gate must lie in (0, 1), not {initial_gate}")
        if initial_gate is not None and reduction is None and batch_norm:
            raise ValueError("initial_gate needs batch_norm=False in the full form")
        self.initial_gate = initial_gate
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
        last = dict(dense)  # the kernel that yields the gates' pre-activation
        if self.initial_gate is not None:
            logit = float(np.log(self.initial_gate / (1 - self.initial_gate)))
            last.update(kernel_initializer="zeros", use_bias=True,
                        bias_initializer=keras.initializers.Constant(logit))
        squeeze = last if self.reduction is None else dense
        self.squeeze = keras.layers.Dense(
            width, name="squeeze", dtype=self.dtype_policy,
            **{"use_bias": not self.batch_norm, **squeeze})
        self.squeeze.build(input_shape)
        self.norm = None
        if self.batch_norm:
            self.norm = keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, name="norm",
                dtype=self.dtype_policy)
            self.norm.build((*input_shape[:-1], width))
        self.excite = None
        if self.reduction is not None:
            self.excite = keras.layers.Dense(units, name="excite", dtype=self.dtype_policy,
                                             **{"use_bias": False, **last})
            self.excite.build((*input_shape[:-1], width))

    def call(self, inputs, training=None):
        if self.log_space:  # inputs are log p: gates from p, output log(p * sigmoid(gates))
            return inputs + ops.log_sigmoid(self._gates(ops.exp(inputs), training))
        return inputs * ops.sigmoid(self._gates(inputs, training))

    def _gates(self, inputs, training):
        gates = self.squeeze(inputs)
        if self.norm is not None:
            gates = self.norm(gates, training=training)
        if self.excite is not None:
            gates = self.excite(ops.relu(gates))
        return gates

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {
            "reduction": self.reduction, "batch_norm": self.batch_norm,
            "initial_gate": self.initial_gate, "log_space": self.log_space,
            "momentum": self.momentum, "epsilon": self.epsilon,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}

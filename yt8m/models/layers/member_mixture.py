"""MemberMixture: a class-wise mixture of experts over the logits of several models (stacking)."""

import keras
from keras import ops

# Added to the dummy expert's gate logit: the mixture starts close to the mean of the members
# (with one expert, the dummy takes exp(-4) / (1 + exp(-4)) = 1.8% of the probability).
DUMMY_GATE_OFFSET = -4.0


@keras.saving.register_keras_serializable(package="yt8m")
class MemberMixture(keras.layers.Layer):
    """The level-2 stacker's core. For every class c of every video, the M members' logits
    `z_c` (and an optional video context vector `v`) pass through:

    - context gating on the input: `z'_c = z_c * 2 sigmoid(z_c A + v B + a)`, one gate per
      member (the factor 2 makes the zero-initialised gates pass the logits through unchanged);
    - a mixture of E logistic experts and one dummy expert that always says 0:
      `p_c = sum_j softmax(z'_c G + v H + g_c)_j * sigmoid(z'_c W_j + v U_j + w_cj)`.

    The kernels (A, B, G, H, W, U) are shared by all classes, so a class with few positive
    videos still gets a well-fitted blend; only the biases `g_c`, `w_c` are per class. The experts
    start as the plain mean of the members' logits and the dummy expert's gate starts low.
    Returns probabilities (batch, C), or their logs (`log_output`): a stacker trained on
    thousands of rare classes drives most probabilities far below float32's resolution near 0,
    where `log p - log(1 - p)` from clipped probabilities would tie them; their logs keep the
    order.

    Args:
        num_mixtures: experts E per class.
        l2: L2 on the kernels and the per-class biases.
        input_gating: apply the input context gating.
        log_output: return log-probabilities.

    Call arguments:
        logits: (batch, members, classes) the members' logits.
        context: optional (batch, D) video-level features.

    Example:
        >>> MemberMixture(2)(np.zeros((4, 3, 10), "float32")).shape  # (4, 10)
    """

    def __init__(self, num_mixtures=2, l2=1e-5, input_gating=True, log_output=False, **kwargs):
        super().__init__(**kwargs)
        self.log_output = log_output
        self.num_mixtures = num_mixtures
        self.l2 = l2
        self.input_gating = input_gating

    def build(self, logits_shape, context_shape=None):
        _, m, c = logits_shape
        e = self.num_mixtures
        reg = keras.regularizers.L2(self.l2) if self.l2 else None

        def weight(name, shape, init="zeros"):
            return self.add_weight(shape=shape, initializer=init, regularizer=reg, name=name)

        if self.input_gating:
            self.input_gate_kernel = weight("input_gate_kernel", (m, m))
            self.input_gate_bias = weight("input_gate_bias", (m,))
        self.expert_kernel = weight("expert_kernel", (m, e), keras.initializers.Constant(1 / m))
        self.expert_bias = weight("expert_bias", (c, e))
        self.gate_kernel = weight("gate_kernel", (m, e + 1))
        self.gate_bias = weight("gate_bias", (c, e + 1))
        self.has_context = context_shape is not None
        if self.has_context:
            d = context_shape[-1]
            if self.input_gating:
                self.input_gate_context = weight("input_gate_context", (d, m))
            self.expert_context = weight("expert_context", (d, e))
            self.gate_context = weight("gate_context", (d, e + 1))

    def call(self, logits, context=None):
        if (context is not None) != self.has_context:
            raise ValueError("MemberMixture was built with" + ("" if self.has_context else "out")
                             + " a context; call it the same way")
        z = ops.transpose(ops.cast(logits, "float32"), (0, 2, 1))  # (batch, classes, members)

        def linear(name, bias):  # z K + v K_context + bias, (batch, classes, outputs)
            out = ops.matmul(z, getattr(self, f"{name}_kernel")) + bias
            if context is not None:
                context_kernel = getattr(self, f"{name}_context")
                out = out + ops.expand_dims(ops.matmul(context, context_kernel), 1)
            return out

        if self.input_gating:
            z = z * 2.0 * ops.sigmoid(linear("input_gate", self.input_gate_bias))
        experts = linear("expert", self.expert_bias)
        dummy_low = ops.convert_to_tensor([0.0] * self.num_mixtures + [DUMMY_GATE_OFFSET])
        gates = linear("gate", self.gate_bias) + dummy_low
        if not self.log_output:
            experts = ops.sigmoid(experts)
            return ops.sum(ops.softmax(gates)[..., : self.num_mixtures] * experts, axis=-1)
        # log p = logsumexp_j(log softmax(g)_j + log sigmoid(e_j)): exact for any tiny p
        terms = ops.log_softmax(gates)[..., : self.num_mixtures] + ops.log_sigmoid(experts)
        return ops.logsumexp(terms, axis=-1)

    def compute_output_shape(self, logits_shape, context_shape=None):
        return (logits_shape[0], logits_shape[2])

    def get_config(self):
        return super().get_config() | {"num_mixtures": self.num_mixtures, "l2": self.l2,
                                       "input_gating": self.input_gating,
                                       "log_output": self.log_output}

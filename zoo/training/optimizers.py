"""`keras.optimizers.AdamW` and `SGD` with their TensorFlow update fused into one kernel per
variable.

Keras's AdamW updates each variable with about a dozen element-wise ops (the decay, the two
moment updates, the step), SGD with momentum with five, each a full pass over the variable,
its gradient or its slots, most of them writing a temporary as large as the variable. For
DeepFace's 103M parameters that memory traffic is a fifth of a CPU training step
(`bench/optimizer.py`). On the TensorFlow backend these subclasses run the same arithmetic in
TensorFlow's fused training kernels, each one multithreaded pass:

- the decoupled weight decay, `variable *= 1 - learning_rate * weight_decay`, as one multiply
  whose result the variable adopts (`AssignVariableOp` takes the buffer, no copy): one read
  and one write of the variable (AdamW; a gradient-descent step with the variable as its own
  delta read it three times and wrote it twice: DeepFace's update 120 -> 92 ms on Zen 4);
- Adam's moments and step as `ResourceApplyAdam`, whose formula is Keras's own
  (`alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`, epsilon added after the square root);
- SGD's momentum and step as `ResourceApplyKerasMomentum` (`m = momentum * m - lr * g`, then
  `variable += m`, or `momentum * m - lr * g` with Nesterov: Keras's formula), and plain SGD
  as `ResourceApplyGradientDescent`.

Everything else (schedules, clipping, `exclude_from_weight_decay`, EMA, saving) is Keras's.
Other backends, `amsgrad`, sparse gradients and `tf.distribute` strategies take Keras's own
update unchanged.
"""

from __future__ import annotations

import keras

__all__ = ["SGD", "AdamW"]


def _tensorflow():
    """TensorFlow, when Keras runs on it and no `tf.distribute` strategy is active."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return None if tf.distribute.has_strategy() else tf


def _fused(gradient, variable):
    """TensorFlow, where a fused kernel can update `variable` with this dense gradient."""
    tf = _tensorflow()
    if tf is None or isinstance(gradient, tf.IndexedSlices) or not hasattr(variable, "handle"):
        return None
    return tf


@keras.saving.register_keras_serializable(package="zoo")
class SGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (same arguments, same results to float rounding), fused on
    TensorFlow.

    Example:
        >>> import keras
        >>> from zoo.training.optimizers import SGD
        >>> variable = keras.Variable([1.0, -2.0])
        >>> optimizer = SGD(learning_rate=0.1, momentum=0.9)
        >>> for _ in range(2):
        ...     _ = optimizer.apply_gradients([(keras.ops.ones(2), variable)])
        >>> [round(float(v), 4) for v in variable.numpy()]
        [0.71, -2.29]
    """

    def update_step(self, gradient, variable, learning_rate):
        tf = _fused(gradient, variable)
        if tf is None:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        learning_rate, gradient = tf.cast(learning_rate, dtype), tf.cast(gradient, dtype)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(
                var=variable.handle, alpha=learning_rate, delta=gradient
            )
            return
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=self.momentums[self._get_variable_index(variable)].value.handle,
            lr=learning_rate,
            grad=gradient,
            momentum=tf.cast(self.momentum, dtype),
            use_nesterov=self.nesterov,
        )


@keras.saving.register_keras_serializable(package="zoo")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` (same arguments, same results to float rounding), fused on
    TensorFlow.

    Example:
        >>> import keras
        >>> from zoo.training.optimizers import AdamW
        >>> variable = keras.Variable([1.0, -2.0])
        >>> optimizer = AdamW(learning_rate=0.1, weight_decay=0.5)
        >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.5, 0.5]), variable)])
        >>> [round(float(v), 4) for v in variable.numpy()]
        [0.85, -2.0]
    """

    def update_step(self, gradient, variable, learning_rate):
        tf = None if self.amsgrad else _fused(gradient, variable)
        if tf is None:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype),
        )

    def _apply_weight_decay(self, variables):
        tf = _tensorflow()
        if tf is None or self.weight_decay is None:
            return super()._apply_weight_decay(variables)
        for variable in variables:
            if not self._use_weight_decay(variable):
                continue
            tensor = variable.value if isinstance(variable, keras.Variable) else variable
            rate = tf.cast(self.learning_rate, tensor.dtype) * tf.cast(
                self.weight_decay, tensor.dtype
            )
            tf.raw_ops.AssignVariableOp(resource=tensor.handle, value=tensor * (1 - rate))

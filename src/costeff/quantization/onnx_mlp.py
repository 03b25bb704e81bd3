"""Read an MLP-shaped ONNX policy into weight matrices, run it in numpy, write a reshaped one back.

The shape accepted: input-side nodes that only reshape or normalise (Flatten,
Reshape, elementwise with constants), then dense layers (Gemm, or MatMul plus a
bias Add) each followed by one elementwise activation, then one or more dense
heads (policy logits, value) reading the last hidden layer and written to the
graph's outputs. Anything else (a convolution, a recurrent cell, a weight two
layers share, a branch inside the trunk) is :class:`NotEligible`, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PREFIX_OPS = {"Flatten", "Reshape", "Sub", "Div", "Mul", "Add", "Cast", "Identity"}
DENSE_OPS = {"Gemm", "MatMul"}
ACTIVATIONS = {"Relu", "Tanh", "Sigmoid", "LeakyRelu", "Elu", "Gelu", "Softplus"}
POSTFIX_OPS = {"Mul", "Add", "Sub", "Div", "Identity", "Softmax", "LogSoftmax", "Tanh", "Sigmoid"}
ALLOWED = PREFIX_OPS | DENSE_OPS | ACTIVATIONS | POSTFIX_OPS | {"Constant"}


class NotEligible(Exception):
    """The graph is not an MLP this module can reshape; the message says why."""


@dataclass
class Dense:
    """``x @ weight + bias``; with ``factors`` (a, b), ``x @ a @ b + bias`` (weight kept as the product)."""

    weight: np.ndarray  # [in, out]
    bias: np.ndarray  # [out]
    factors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def params(self) -> int:
        if self.factors is not None:
            return int(self.factors[0].size + self.factors[1].size + self.bias.size)
        return int(self.weight.size + self.bias.size)


@dataclass
class Mlp:
    model: Any  # the ModelProto it was read from
    prefix: list[Any]  # nodes from the graph input to the first dense layer's input
    trunk_input: str
    hidden: list[Dense]
    activations: list[Any]  # one activation node per hidden layer
    heads: list[Dense]
    head_outputs: list[str]  # tensors the heads write: graph outputs, or the inputs of ``postfix``
    postfix: list[Any] = field(default_factory=list)  # per-head output-side nodes (a scale, a softmax)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        return [d.bias.size for d in self.hidden]

    @property
    def params(self) -> int:
        return sum(d.params for d in self.hidden + self.heads)


def read(path: Path | str) -> Mlp:
    """The MLP in ``path``; NotEligible with the reason when the graph is not one."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # Constant nodes are initializers by another name
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            inits[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    _check_ops(g)
    _check_shared(g, inits)
    if len(g.input) - sum(i.name in inits for i in g.input) != 1:
        raise NotEligible("the graph has more than one input")
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    prefix, t = _prefix(g.input[0].name, consumers)
    mlp = Mlp(model, prefix, t, [], [], [], [], initializers=inits)
    _walk(mlp, t, consumers, {o.name for o in g.output})
    if not mlp.hidden:
        raise NotEligible("no hidden layer between the input and the heads")
    return mlp


def _check_ops(g: Any) -> None:
    other = sorted({n.op_type for n in g.node} - ALLOWED)
    if other:
        kinds = {"Conv": "a convolution", "LSTM": "a recurrent cell", "GRU": "a recurrent cell",
                 "RNN": "a recurrent cell"}
        why = "; ".join(f"{op} ({kinds.get(op, 'not a dense layer or elementwise activation')})" for op in other)
        raise NotEligible(f"not an MLP: {why}")


def _check_shared(g: Any, inits: dict[str, np.ndarray]) -> None:
    seen: dict[str, str] = {}
    for n in g.node:
        if n.op_type in DENSE_OPS and len(n.input) > 1 and n.input[1] in inits:
            if n.input[1] in seen:
                raise NotEligible(f"weight {n.input[1]} is shared by {seen[n.input[1]]} and {n.name or n.op_type}")
            seen[n.input[1]] = n.name or n.op_type


def _prefix(t: str, consumers: dict[str, list[Any]]) -> tuple[list[Any], str]:
    nodes = []
    while len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in PREFIX_OPS:
        nodes.append(consumers[t][0])
        t = consumers[t][0].output[0]
    return nodes, t


def _walk(mlp: Mlp, t: str, consumers: dict[str, list[Any]], outputs: set[str]) -> None:
    while True:
        cons = consumers.get(t, [])
        if not cons or any(n.op_type not in DENSE_OPS for n in cons):
            raise NotEligible(f"tensor {t} feeds {[n.op_type for n in cons] or 'nothing'}; expected dense layers")
        layers = [_dense(n, mlp.initializers, consumers) for n in cons]
        tails = [_postfix(out, consumers, outputs, mlp.initializers) for _, out in layers]
        if all(t is not None for t in tails):
            mlp.heads, mlp.head_outputs = [d for d, _ in layers], [out for _, out in layers]
            mlp.postfix = [n for t in tails if t is not None for n in t]
            return
        if len(layers) != 1:
            raise NotEligible(f"tensor {t} branches into {len(layers)} dense layers that are not all output heads")
        dense, out = layers[0]
        act = consumers.get(out, [])
        if len(act) != 1 or act[0].op_type not in ACTIVATIONS:
            raise NotEligible(f"dense output {out} is followed by {[n.op_type for n in act]}; expected one activation")
        mlp.hidden.append(dense)
        mlp.activations.append(act[0])
        t = act[0].output[0]


def _postfix(t: str, consumers: dict[str, list[Any]], outputs: set[str], inits: dict[str, Any]) -> list[Any] | None:
    """The elementwise nodes (with constant operands) from ``t`` to a graph output, or None if none reach one."""
    nodes: list[Any] = []
    while t not in outputs:
        cons = consumers.get(t, [])
        if (len(cons) != 1 or cons[0].op_type not in POSTFIX_OPS
                or any(i != t and i not in inits for i in cons[0].input)):
            return None
        nodes.append(cons[0])
        t = cons[0].output[0]
    return nodes


def _dense(node: Any, inits: dict[str, np.ndarray], consumers: dict[str, list[Any]]) -> tuple[Dense, str]:
    """The layer as (Dense, its output tensor), the bias Add after a MatMul included."""
    if node.input[1] not in inits:
        raise NotEligible(f"{node.op_type} {node.name}: its weight is not a constant")
    w = inits[node.input[1]].astype(np.float64)
    if node.op_type == "Gemm":
        attrs = {a.name: a for a in node.attribute}
        if attrs.get("transA") and attrs["transA"].i:
            raise NotEligible(f"Gemm {node.name}: transA is set")
        w = (w.T if attrs.get("transB") and attrs["transB"].i else w) * (attrs["alpha"].f if "alpha" in attrs else 1.0)
        beta = attrs["beta"].f if "beta" in attrs else 1.0
        bias = inits[node.input[2]] * beta if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[1])
        return Dense(w, np.broadcast_to(bias, (w.shape[1],)).astype(np.float64)), node.output[0]
    if w.ndim != 2:
        raise NotEligible(f"MatMul {node.name}: weight of rank {w.ndim}; expected a matrix")
    after = consumers.get(node.output[0], [])
    if len(after) == 1 and after[0].op_type == "Add":
        other = [i for i in after[0].input if i != node.output[0]]
        if other and other[0] in inits and inits[other[0]].size == w.shape[1]:
            return Dense(w, inits[other[0]].reshape(-1).astype(np.float64)), after[0].output[0]
    return Dense(w, np.zeros(w.shape[1])), node.output[0]


def activate(node: Any, z: np.ndarray) -> np.ndarray:
    """The activation ``node`` computes, in numpy."""
    attrs = {a.name: a for a in node.attribute}
    op = node.op_type
    if op == "Relu":
        return np.maximum(z, 0.0)
    if op == "Tanh":
        return np.tanh(z)
    if op == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if op == "LeakyRelu":
        alpha = attrs["alpha"].f if "alpha" in attrs else 0.01
        return np.where(z >= 0, z, alpha * z)
    if op == "Elu":
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        return np.where(z >= 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if op == "Softplus":
        return np.logaddexp(0.0, z)
    from scipy.special import erf  # Gelu

    if "approximate" in attrs and attrs["approximate"].s == b"tanh":
        return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    return 0.5 * z * (1 + erf(z / np.sqrt(2)))


def trunk_input(mlp: Mlp, path: Path | str, obs: np.ndarray) -> np.ndarray:
    """What the first dense layer sees, [rows, features] in float64, computed by onnxruntime."""
    if not mlp.prefix:
        return obs.reshape(-1, obs.shape[-1]).astype(np.float64)
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    model.graph.output.append(onnx.helper.make_tensor_value_info(mlp.trunk_input, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = sess.run([mlp.trunk_input], {model.graph.input[0].name: obs})[0]
    return x.reshape(-1, x.shape[-1]).astype(np.float64)


def dense(d: Dense, x: np.ndarray) -> np.ndarray:
    if d.factors is not None:
        return (x @ d.factors[0]) @ d.factors[1] + d.bias
    return x @ d.weight + d.bias


def heads_out(heads: list[Dense], h: np.ndarray) -> np.ndarray:
    """Every head's output side by side, [rows, sum of head widths]."""
    return np.concatenate([dense(d, h) for d in heads], axis=1)


def forward(mlp: Mlp, x: np.ndarray, hidden: list[Dense] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(pre-activations, activations) of each hidden layer on trunk inputs ``x``."""
    pre, post = [], []
    for d, act in zip(hidden or mlp.hidden, mlp.activations, strict=True):
        z = dense(d, x)
        x = activate(act, z)
        pre.append(z)
        post.append(x)
    return pre, post


def write(mlp: Mlp, hidden: list[Dense], heads: list[Dense], path: Path | str) -> None:
    """A model with the same input, outputs and input-side nodes and these dense layers, checked."""
    import onnx
    from onnx import helper, numpy_helper

    g = mlp.model.graph
    nodes = [onnx.NodeProto.FromString(n.SerializeToString()) for n in mlp.prefix]
    inits: list[onnx.TensorProto] = []
    used = {i for n in mlp.prefix for i in n.input}
    t = mlp.trunk_input
    for i, (d, act) in enumerate(zip(hidden, mlp.activations, strict=True)):
        z = _emit(d, t, f"hidden{i}", f"hidden{i}_z", nodes, inits)
        nodes.append(helper.make_node(act.op_type, [z], [f"hidden{i}_h"], name=f"hidden{i}_act"))
        nodes[-1].attribute.extend(act.attribute)
        t = f"hidden{i}_h"
    for i, (d, out) in enumerate(zip(heads, mlp.head_outputs, strict=True)):
        _emit(d, t, f"head{i}", out, nodes, inits)
    nodes += [onnx.NodeProto.FromString(n.SerializeToString()) for n in mlp.postfix]
    used |= {i for n in mlp.postfix for i in n.input}
    inits += [numpy_helper.from_array(v, k) for k, v in mlp.initializers.items()
              if k in used and k not in {i.name for i in inits}]
    graph = helper.make_graph(nodes, g.name or "policy", list(g.input), list(g.output), inits)
    model = helper.make_model(graph, opset_imports=list(mlp.model.opset_import))
    model.ir_version = mlp.model.ir_version
    onnx.checker.check_model(model)
    tmp = Path(str(path) + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def _emit(d: Dense, x: str, name: str, out: str, nodes: list[Any], inits: list[Any]) -> str:
    from onnx import helper, numpy_helper

    mats = list(d.factors) if d.factors is not None else [d.weight]
    for j, m in enumerate(mats):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(m, dtype=np.float32), f"{name}_w{j}"))
        nodes.append(helper.make_node("MatMul", [x, f"{name}_w{j}"], [f"{name}_mm{j}"], name=f"{name}_matmul{j}"))
        x = f"{name}_mm{j}"
    inits.append(numpy_helper.from_array(np.asarray(d.bias, dtype=np.float32), f"{name}_b"))
    nodes.append(helper.make_node("Add", [x, f"{name}_b"], [out], name=f"{name}_add"))
    return out

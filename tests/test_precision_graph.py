"""A model's precision is read from its graph: op types and the element types of its weights.

Small models are built here: an ONNX MLP, its OpenVINO IR in f32 and with f16 weights, NNCF weight
compression (u8 Constants + Convert/Subtract/Multiply, no FakeQuantize) and NNCF int8 (FakeQuantize),
and ONNX graphs with QDQ, integer ops and fp16 weights.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from costeff.serving.precision import model_precision

DIMS = (16, 32, 4)


def _mlp(path, dtype=np.float32, elem=TensorProto.FLOAT, constant_node=False):
    """x -> MatMul(w0) -> Relu -> MatMul(w1); with ``constant_node`` w1 is a Constant node, not an initializer."""
    rng = np.random.default_rng(0)
    w0, w1 = (rng.standard_normal(s).astype(dtype) for s in ((DIMS[0], DIMS[1]), (DIMS[1], DIMS[2])))
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w1"], ["y"])]
    inits = [numpy_helper.from_array(w0, "w0")]
    if constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1, "w1")))
    else:
        inits.append(numpy_helper.from_array(w1, "w1"))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", elem, ["n", DIMS[0]])],
                              [helper.make_tensor_value_info("y", elem, ["n", DIMS[2]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _ops_model(path, ops):
    """A graph made of ``ops`` (op type, inputs, outputs); only its op types matter to the reader."""
    nodes = [helper.make_node(op, ins, outs) for op, ins, outs in ops]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(ops[-1][2][0], TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# -- ONNX ----------------------------------------------------------------------------------------

def test_onnx_float_weights(tmp_path):
    assert model_precision(_mlp(tmp_path / "f32.onnx")) == "fp32"
    assert model_precision(_mlp(tmp_path / "f16.onnx", np.float16, TensorProto.FLOAT16)) == "fp16"


def test_onnx_fp16_weights_in_a_constant_node_count(tmp_path):
    path = _mlp(tmp_path / "c.onnx", np.float16, TensorProto.FLOAT16, constant_node=True)
    assert model_precision(path) == "fp16"


def test_onnx_mixed_fp16_and_fp32_weights(tmp_path):
    """One layer's weights kept in fp32, the other's stored in fp16 and cast up: mixed."""
    model = onnx.load(str(_mlp(tmp_path / "f32.onnx")))
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    half = numpy_helper.from_array(numpy_helper.to_array(w1).astype(np.float16), "w1_half")
    model.graph.initializer.remove(w1)
    model.graph.initializer.append(half)
    model.graph.node.insert(0, helper.make_node("Cast", ["w1_half"], ["w1"], to=TensorProto.FLOAT))
    onnx.save(model, str(tmp_path / "mixed.onnx"))
    assert model_precision(tmp_path / "mixed.onnx") == "mixed"


@pytest.mark.parametrize("ops, expected", [
    ([("QuantizeLinear", ["x", "s", "z"], ["q"]), ("DequantizeLinear", ["q", "s", "z"], ["y"])], "int8-static"),
    ([("QLinearMatMul", ["x", "s", "z", "w", "ws", "wz", "ys", "yz"], ["y"])], "int8-static"),
    ([("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]), ("MatMulInteger", ["q", "w", "z", "wz"], ["y"])],
     "int8-dynamic"),
    ([("MatMulInteger", ["x", "w"], ["y"])], "int8-dynamic"),
])
def test_onnx_integer_graphs_are_int8(tmp_path, ops, expected):
    assert model_precision(_ops_model(tmp_path / "q.onnx", ops)) == expected


def test_onnx_quantized_by_onnxruntime_is_int8(tmp_path):
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _mlp(tmp_path / "f32.onnx")
    quantize_dynamic(str(src), str(tmp_path / "dyn.onnx"), weight_type=QuantType.QInt8)
    assert model_precision(tmp_path / "dyn.onnx") == "int8-dynamic"


# -- OpenVINO IR ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def irs(tmp_path_factory):
    ov = pytest.importorskip("openvino")
    nncf = pytest.importorskip("nncf")
    root = tmp_path_factory.mktemp("ir")
    onnx_path = _mlp(root / "mlp.onnx")
    ov.save_model(ov.convert_model(str(onnx_path)), str(root / "f32.xml"), compress_to_fp16=False)
    ov.save_model(ov.convert_model(str(onnx_path)), str(root / "f16w.xml"), compress_to_fp16=True)
    ov.save_model(nncf.compress_weights(ov.convert_model(str(onnx_path))), str(root / "w8.xml"),
                  compress_to_fp16=False)
    rows = np.random.default_rng(1).standard_normal((32, 1, DIMS[0])).astype(np.float32)
    quantized = nncf.quantize(ov.convert_model(str(onnx_path)), nncf.Dataset(list(rows)), subset_size=32)
    ov.save_model(quantized, str(root / "int8.xml"), compress_to_fp16=False)
    return root


@pytest.mark.parametrize("name, expected", [
    ("f32", "fp32"), ("f16w", "fp16 weights"), ("w8", "int8 weights"), ("int8", "int8")])
def test_ir_precision_from_the_graph(irs, name, expected):
    assert model_precision(irs / f"{name}.xml") == expected


def test_weight_compressed_ir_has_no_fake_quantize_yet_is_int8(irs):
    """The case a text search got wrong: u8 weights, no FakeQuantize anywhere in the XML."""
    text = (irs / "w8.xml").read_text()
    assert "FakeQuantize" not in text and 'element_type="u8"' in text
    assert model_precision(irs / "w8.xml") == "int8 weights"


def test_ir_computing_in_half_is_fp16(irs, tmp_path):
    import openvino as ov

    onnx_path = _mlp(tmp_path / "h.onnx", np.float16, TensorProto.FLOAT16)
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "h.xml"), compress_to_fp16=False)
    assert model_precision(tmp_path / "h.xml") == "fp16"


def test_unreadable_ir_is_an_input_error(tmp_path):
    pytest.importorskip("openvino")
    from costeff.errors import InputError

    bad = tmp_path / "bad.xml"
    bad.write_text("<net>not an IR")
    with pytest.raises(InputError, match="bad.xml: not a readable OpenVINO IR"):
        model_precision(bad)

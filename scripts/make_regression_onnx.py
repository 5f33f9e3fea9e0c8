"""Builds the tiny hand-made ONNX files of the regression tests in assets/onnx/regressions/.

Needs: pip install onnx numpy (rerun: python3 scripts/make_regression_onnx.py). Each model is a
few nodes written with onnx.helper to reach one path of the loader; the tests state the expected
behaviour (a forward pass computed by hand, or a named error), so no outputs are stored here.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "onnx", "regressions")


def save(name, nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, name + ".onnx"))


def main():
    os.makedirs(OUT, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])

    # y = x * (3.0 / 2.0): a float division of constants must give 1.5, not 1.
    save(
        "div_float",
        [
            helper.make_node("Constant", [], ["three"], value=helper.make_tensor("t", TensorProto.FLOAT, [], [3.0])),
            helper.make_node("Constant", [], ["two"], value=helper.make_tensor("w", TensorProto.FLOAT, [], [2.0])),
            helper.make_node("Div", ["three", "two"], ["scale"]),
            helper.make_node("Mul", ["x", "scale"], ["y"]),
        ],
        [x],
        [y],
    )

    # y = x * (7 / 2) with int64 constants cast to float: integer division gives 3.
    save(
        "div_int",
        [
            helper.make_node("Constant", [], ["seven"], value=helper.make_tensor("t", TensorProto.INT64, [], [7])),
            helper.make_node("Constant", [], ["two"], value=helper.make_tensor("w", TensorProto.INT64, [], [2])),
            helper.make_node("Div", ["seven", "two"], ["q"]),
            helper.make_node("Cast", ["q"], ["scale"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["x", "scale"], ["y"]),
        ],
        [x],
        [y],
    )

    # A Gemm whose bias C has 2 values for 3 outputs: invalid ONNX, must be refused.
    b = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "B")
    c = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "C")
    y3 = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "B", "C"], ["y"], transB=1, name="bad_gemm")],
                              "gemm_bias", [x], [y3], initializer=[b, c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, os.path.join(OUT, "gemm_bias_length.onnx"))  # the checker would refuse it too

    # Flatten written as Reshape(x, Concat(Shape(x, end=1), [-1])): Shape's end must be honoured.
    x4 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])
    y8 = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    w = numpy_helper.from_array((np.arange(24, dtype=np.float32).reshape(3, 8) - 12) / 10, "W")
    save(
        "shape_end",
        [
            helper.make_node("Shape", ["x"], ["s"], end=1),
            helper.make_node("Constant", [], ["m1"], value=helper.make_tensor("m", TensorProto.INT64, [1], [-1])),
            helper.make_node("Concat", ["s", "m1"], ["shape"], axis=0),
            helper.make_node("Reshape", ["x", "shape"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W"], ["y"], transB=1),
        ],
        [x4],
        [y8],
        [w],
        opset=17,
    )

    # Found by review of the loader (each must be refused with an error, not a panic):
    def raw(name, nodes, inputs, outputs, inits=()):
        graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        onnx.save(model, os.path.join(OUT, name + ".onnx"))  # invalid on purpose: no checker

    # Add of an empty constant and a scalar: the broadcast indexed the empty operand.
    raw(
        "fold_empty_operand",
        [
            helper.make_node("Constant", [], ["e"], value=helper.make_tensor("e", TensorProto.INT64, [0], [])),
            helper.make_node("Constant", [], ["one"], value_int=1),
            helper.make_node("Add", ["e", "one"], ["s"]),
            helper.make_node("Reshape", ["x", "s"], ["y"]),
        ],
        [x],
        [y],
    )
    # A 6-value weight reshaped to 3x3 by a constant Reshape: the Gemm read past its values.
    w6 = numpy_helper.from_array(np.arange(6, dtype=np.float32), "W6")
    shp = numpy_helper.from_array(np.array([3, 3], dtype=np.int64), "S")
    raw(
        "reshape_weight_mismatch",
        [helper.make_node("Reshape", ["W6", "S"], ["W"]), helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [w6, shp],
    )
    # A weight with no values and dimensions [2^62, 0]: the Gemm sized its output by 2^62.
    empty = helper.make_tensor("E", TensorProto.FLOAT, [1 << 62, 0], [])
    raw(
        "empty_weight_huge_dims",
        [helper.make_node("Gemm", ["x", "E"], ["y"], transB=1)],
        [x],
        [y],
        [empty],
    )
    # An input of 2^22 x 2^22 x 2^22 values.
    raw(
        "huge_input",
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1 << 22, 1 << 22, 1 << 22])],
        [y],
    )
    # Forty constant Concats, each of the previous one twice: 2^40 values.
    nodes = [helper.make_node("Constant", [], ["c0"], value_floats=[1.0])]
    for k in range(40):
        nodes.append(helper.make_node("Concat", [f"c{k}", f"c{k}"], [f"c{k + 1}"], axis=0))
    nodes.append(helper.make_node("Mul", ["x", "c40"], ["y"]))
    raw("concat_doubling", nodes, [x], [y])


if __name__ == "__main__":
    main()

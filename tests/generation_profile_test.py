"""Where a served generator's time goes (workflows/generation_profile.py and
tools/profile_generation.py): ops are put into the generator's parts by
their names, the sums are per call, and a real trace of a tiny export gives
every part its ops. Timings are not asserted (the machine is shared)."""

import os

import pytest

from ppcd_tf.workflows import generation_profile as profile
from tests import helpers

_G = "StatefulPartitionedCall/generator_ema_1"


@pytest.mark.parametrize("op_type, name, part", [
    ("_MklNativeFusedConv2D", f"{_G}/block2_1/conv_sc_1/BiasAdd",
     "block convs"),
    ("_MklNativeFusedConv2D", f"{_G}/block3_1/conv1_1/BiasAdd",
     "block convs"),
    ("_MklSoftmax", f"{_G}/attention2_1/Softmax", "attention"),
    ("_MklNativeConv2D", f"{_G}/attention2_1/g_1/Conv2D", "attention"),
    ("Mul", f"{_G}/block3_1/bn1_1/bn_1/batchnorm/mul",
     "conditional BN + ReLU"),
    ("_MklMatMul", f"{_G}/block1_1/bn2_1/gain_1/MatMul",
     "conditional BN + ReLU"),
    ("Relu", f"{_G}/block2_1/Relu_1", "conditional BN + ReLU"),
    ("Tile", f"{_G}/block2_1/Repeat_2/Tile", "upsampling"),
    ("BroadcastTo", f"{_G}/block1_1/BroadcastTo", "upsampling"),
    ("Reshape", f"{_G}/block1_1/Reshape_1", "upsampling"),
    ("_MklNativeFusedConv2D", f"{_G}/output_conv_1/BiasAdd", "output"),
    ("Tanh", f"{_G}/Tanh", "output"),
    ("Relu", f"{_G}/Relu", "output"),
    ("_MklNativeFusedMatMul", f"{_G}/linear_1/add", "linear, embedding"),
    ("SelectV2", f"{_G}/shared_1/SelectV2", "linear, embedding"),
    ("Less", "StatefulPartitionedCall/assert_less/Less", "input checks"),
    ("CheckNumerics", "StatefulPartitionedCall/VerifyFinite/CheckNumerics",
     "input checks"),
    ("StridedSlice", "StatefulPartitionedCall/strided_slice_1", "other"),
])
def test_ops_go_to_the_generator_part_their_name_says(op_type, name, part):
    assert profile.part_of(op_type, name) == part


def test_summary_is_per_call_and_leaves_idle_out():
    stats = [
        {"type": "IDLE", "name": "IDLE", "occurrences": 0,
         "self_us": 9e6},
        {"type": "Conv2D", "name": f"{_G}/block1_1/conv1_1/Conv2D",
         "occurrences": 10, "self_us": 10_000.0},
        {"type": "Softmax", "name": f"{_G}/attention2_1/Softmax",
         "occurrences": 10, "self_us": 5_000.0}]
    parts = profile.summarize(stats, calls=10, wall_seconds=0.002)
    assert parts["block convs"] == pytest.approx(1.0)   # ms per call
    assert parts["attention"] == pytest.approx(0.5)
    assert parts[profile.OUTSIDE] == pytest.approx(0.5)  # 2 ms - 1.5 ms
    assert sum(v for k, v in parts.items() if k != profile.OUTSIDE) == \
        pytest.approx(1.5)
    # Ops in parallel may exceed the wall time: nothing outside them.
    assert profile.summarize(stats, 10, 0.001)[profile.OUTSIDE] == 0.0


@pytest.mark.slow
def test_a_real_trace_of_a_tiny_export(tmp_path):
    export = helpers.linked(helpers.tiny_teacher_export(), str(tmp_path),
                            "export")
    result = profile.profile_export(export, batch_size=2, calls=3, warmup=1)
    parts = result["parts"]
    assert result["wall_ms"] > 0.0
    for part in ("block convs", "conditional BN + ReLU", "upsampling",
                 "output", "linear, embedding"):
        assert parts[part] > 0.0, (part, result["ops"])
    assert parts[profile.OTHER] < sum(parts.values()) / 2, result["ops"]
    assert 0 < len(result["ops"]) <= 15
    table = profile.markdown([result])
    assert "| block convs |" in table
    assert "export, batch 2" in table
    assert os.path.basename(export) == "export"

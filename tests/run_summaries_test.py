"""What a run writes for TensorBoard beyond its curves: the HParams settings,
the texts, the pruning layout and the profile window."""

import pytest

from ppcd_tf import errors
from ppcd_tf.training import profiling
from ppcd_tf.training import run_summaries

OPERATIVE = """\
# Parameters for discriminator/Adam:
# ==============================================================================
discriminator/Adam.amsgrad = False
discriminator/Adam.learning_rate = 0.0004

# Macros:
# ==============================================================================
NUM_STEPS = 1800
TARGET_PARAM_RATIO = 0.125
TEACHER_DIR = '/runs/teacher'

# Parameters for PruningBudget:
PruningBudget.cost_exponent = 0.0
PruningBudget.targets = {'params': @TARGET_PARAM_RATIO}
PruningPhase.mask_function = 'smooth_step'
PruningPhase.use_masks = True
TrainLoop.num_steps = %NUM_STEPS
Trainer.seed = 2
ImageDataset.shape = (32,
    32)
build_discriminator.ch = 16
"""


def test_settings_are_the_run_configurables_scalars_and_the_macros():
    settings = run_summaries.hyperparameters(OPERATIVE)
    assert settings == {
        "discriminator/Adam.learning_rate": 0.0004,
        "NUM_STEPS": 1800, "TARGET_PARAM_RATIO": 0.125,
        "TEACHER_DIR": "/runs/teacher",
        "PruningBudget.cost_exponent": 0.0,
        "PruningPhase.mask_function": "smooth_step",
        "PruningPhase.use_masks": True, "Trainer.seed": 2,
        "TrainLoop.num_steps": 1800}


def test_operative_settings_keep_one_line_scalars_only():
    settings = run_summaries.operative_settings(OPERATIVE)
    # Dicts and multi-line values are left out; a scalar macro's use takes
    # its value; scalars of any configurable stay.
    assert "PruningBudget.targets" not in settings
    assert settings["TrainLoop.num_steps"] == 1800
    assert "ImageDataset.shape" not in settings
    assert settings["build_discriminator.ch"] == 16
    assert settings["discriminator/Adam.amsgrad"] is False


def test_cut_table():
    table = run_summaries.cut_table(
        [("stream0", 8, 64), ("attention2_qk", 8, 8)], params=100,
        teacher_params=1200, macs=1000, teacher_macs=38000)
    lines = table.splitlines()
    assert lines[2] == "| stream0 | 8 | 64 | 0.12 |"
    assert lines[3] == "| attention2_qk | 8 | 8 | 1.00 |"
    assert lines[-1] == ("G parameters: 100 of 1,200 (12.00x fewer); MACs "
                         "per image: 1,000 of 38,000 (38.00x fewer).")


@pytest.mark.parametrize("name, wanted", [
    ("generator/Adam.beta_1", True), ("generator/Adam.epsilon", False),
    ("CompactPhase.carry_optimizer_state", True),
    ("validation/QuickValidator.num_samples", False), ("EMA_DECAY", True),
    ("lower_case_macro", False)])
def test_which_bindings_are_run_settings(name, wanted):
    assert run_summaries._is_run_setting(name) is wanted  # pylint: disable=protected-access


def test_pruning_layout_charts_every_layer_and_the_ratios():
    layout = run_summaries.pruning_layout()
    (category,) = layout.category
    assert category.title == "pruning"
    tags = {chart.title: list(chart.multiline.tag)
            for chart in category.chart}
    assert tags["kept channels, every layer"] == [r"kept_channels/.*"]
    assert r"pruning/param_ratio" in tags[
        "live parameter ratio, bound and desired ratio"]


@pytest.mark.parametrize("value", [(5,), (3, 3), (-1, 2), "soon"])
def test_profile_steps_must_be_a_window(value):
    with pytest.raises(errors.BadInputError, match="profile_steps"):
        profiling.StepProfiler(value)


def test_profile_window_is_a_loop_boundary():
    assert profiling.StepProfiler((4, 9)).boundaries() == (4, 9)
    assert profiling.StepProfiler(None).boundaries() == ()

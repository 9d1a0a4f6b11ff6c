"""The JAX reference of RTC's guided inference: its weights and mask are the paper's."""

import numpy as np

from rtchunk_train.rtc import guidance_weight, soft_mask


def test_guidance_weights_for_five_steps_and_beta_five():
    weights = [guidance_weight(k / 5, 5.0) for k in range(5)]
    np.testing.assert_allclose(weights, [5.0, 4.25, 2.1666667, 2.1666667, 4.25], atol=1e-6)


def test_soft_mask_matches_the_papers_figure_3_example():
    expected = [1, 1, 1, 1, 0.712, 0.488, 0.316, 0.189, 0.099, 0.041, 0.010, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(soft_mask(4, 5, 16), expected, atol=1e-3)

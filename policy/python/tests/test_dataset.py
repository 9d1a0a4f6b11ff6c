"""Demonstration files with a camera: the images load with their rows, and a malformed camera array is refused
with the file and the array named."""

import numpy as np
import pytest

from rtchunk_train import dataset


def write(path, camera):
    np.savez(path, observation=np.zeros((4, 3), np.float32), action=np.zeros((4, 2), np.float32),
             episode_index=np.array([0, 0, 1, 1]), camera0=camera)


def test_camera_images_load_with_their_rows(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 5, 7, 3), dtype=np.uint8)
    write(tmp_path / "d.npz", images)
    loaded = dataset.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(loaded.camera, images)


def test_a_dataset_without_a_camera_has_none(tmp_path):
    np.savez(tmp_path / "d.npz", observation=np.zeros((2, 3), np.float32), action=np.zeros((2, 2), np.float32),
             episode_index=np.array([0, 0]))
    assert dataset.load(tmp_path / "d.npz").camera is None


@pytest.mark.parametrize("camera", [np.zeros((4, 5, 7, 3), np.float32), np.zeros((3, 5, 7, 3), np.uint8),
                                    np.zeros((4, 5, 7), np.uint8)])
def test_a_malformed_camera_is_refused_naming_the_file_and_the_array(tmp_path, camera):
    write(tmp_path / "d.npz", camera)
    with pytest.raises(ValueError, match=r"d\.npz: camera0 must be uint8 \[4, height, width, 3\]"):
        dataset.load(tmp_path / "d.npz")

"""The scene interface: every registered scene declares every member of `datagen.scenes.Scene`."""

import pytest

from datagen.scenes import SCENES, Scene, get_scene

OPTIONAL = ("validate", "count", "feasible", "world", "render")


@pytest.mark.parametrize("name", sorted(SCENES))
def test_every_scene_declares_the_whole_scene_protocol(name: str) -> None:
    scene = get_scene(name)
    missing = [
        m for m in (*Scene.__annotations__, "sample_params", "simulate") if not hasattr(scene, m)
    ]
    assert not missing, f"scene {name} ({SCENES[name]}) lacks {missing}"
    assert callable(scene.sample_params) and callable(scene.simulate)
    assert isinstance(scene.RANGES, tuple) and isinstance(scene.CONDITION_FRAMES, int)
    for member in OPTIONAL:
        assert getattr(scene, member) is None or callable(getattr(scene, member)), member
    # A scene simulates one by one through a pymunk world or draws itself, never neither path
    # half-declared: the world-less scene (phyre) is the one with its own renderer.
    assert (scene.world is None) == (scene.render is not None)

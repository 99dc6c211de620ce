from __future__ import annotations

import pytest

from tests.admin.world import World, build_world


@pytest.fixture
def world(app) -> World:  # type: ignore[no-untyped-def]
    return build_world()

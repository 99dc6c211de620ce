"""The demo: the whole product on embedded defaults, its world of simulators, and its control page."""

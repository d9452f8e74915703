from tests.tools.conftest import peer

__all__ = ["peer"]

"""autoui: a multimodal GUI agent that only looks at screens.

The small public API lives here; everything else is reachable through its submodule.
"""
from autoui.actions import Action, ActionParseError, ActionType, parse_action

__all__ = ["Action", "ActionParseError", "ActionType", "parse_action", "__version__"]
__version__ = "0.1.0"

"""The pluggy markers, kept apart so hookspec modules can import them without cycles."""

import pluggy

PROJECT = "pilothouse"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

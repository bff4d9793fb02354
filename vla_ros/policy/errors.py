"""The policy's load error, importable without torch (the remote backend loads no model)."""


class PolicyLoadError(ValueError):
    """A policy directory that cannot be used; the message is one sentence naming the input."""

"""The one exception a bad bag, topic or option raises: its message is the sentence the user sees."""


class BagError(ValueError):
    """A bag, topic or option the bag tools cannot work with; str() names the input and what is accepted."""

"""The small objects saved by their config (initializers, regularizers): rebuilt from it,
equal when it is equal, and shown by it, as Keras's."""


class ConfigObject:
    """Mixin: ``from_config(config) == cls(**config)``, equality and repr by ``get_config()``."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self):
        return hash(type(self).__name__)

    def __repr__(self):
        config = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({config})"

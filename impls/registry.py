"""Where backends are found: scanlab's own, then installed plugins' and modules loaded by name.

The arrows run one way: the registry reads plugins.py (discovery), which builds backend.py's
classes; backend.py knows neither.
"""
from . import plugins


class Registry:
    """Backends of one kind, probed once: `available()` hides the ones that cannot run here. After
    scanlab's own come those of installed plugins and of modules loaded by name (impls/plugins.py)."""

    def __init__(self, kind, loaders):
        self.kind = kind
        self._loaders = loaders
        self._backends = None
        self._plugins = (None, {})  # (the plugin modules they were found with, name -> backend)

    def all(self):
        if self._backends is None:
            self._backends = {name: load() for name, load in self._loaders.items()}
        if self._plugins[0] != plugins.loaded_modules():
            self._plugins = (plugins.loaded_modules(), plugins.plugin_backends(self.kind, taken=self._backends))
        return {**self._backends, **self._plugins[1]}

    def available(self):
        return {name: b for name, b in self.all().items() if b.available}

    def get(self, name):
        backends = self.all()
        if name not in backends:
            raise ValueError(f"unknown {self.kind} backend {name!r}; available: {', '.join(self.available())}")
        backend = backends[name]
        backend._require_available()
        return backend

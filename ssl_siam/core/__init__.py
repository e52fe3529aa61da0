"""Config machinery (typed schemas from YAML + dotted overrides, recipes by name), registries and user errors."""

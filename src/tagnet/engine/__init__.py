"""The Lightning adapter: nothing outside this package imports Lightning."""

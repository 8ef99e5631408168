"""urst: ultra-resolution neural style transfer for images of any size, streamed through pyvips."""

__version__ = "0.1.0"

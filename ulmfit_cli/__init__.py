"""ulmfit-cli: ULMFiT-style transfer learning for text classification, from the shell."""

__version__ = "0.1.0"

"""maniple: run one network's inference on devices that differ in speed, faster than any alone."""

__version__ = "0.1.0"

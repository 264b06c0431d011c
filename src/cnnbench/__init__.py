"""cnnbench: which CNN should I ship, and what does it cost in accuracy, latency and memory?"""

__version__ = "0.1.0"

"""Shared helpers for the interop scripts (run by crates/weir/tests/interop.rs)."""
import argparse
import sys


def args(*extra):
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    for name, kw in extra:
        p.add_argument(name, **kw)
    return p.parse_args()


def check(cond, message):
    if not cond:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def payload(topic, i, size=100):
    """Deterministic message i of a topic: key and value."""
    key = f"{topic}-k{i}".encode()
    body = f"{topic}:{i}:".encode()
    value = (body * (size // len(body) + 1))[:size]
    return key, value

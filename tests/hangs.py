"""A script that hangs before its first training step, for tests/test_harness.py: it says so, then sleeps."""
import sys
import time


def main():
    print("about to hang", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()

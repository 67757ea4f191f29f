"""`python -m training CONFIG.yaml [key=value ...]`: see training/train.py."""

import sys

from training.train import main

if __name__ == "__main__":
    main(sys.argv[1:])

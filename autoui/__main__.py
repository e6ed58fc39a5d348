"""`python -m autoui` is the same as the `autoui` command."""
import sys

from autoui.cli import main

sys.exit(main())

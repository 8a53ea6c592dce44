"""`python -m shoal.lab` is the `shoal-lab` command."""
from shoal.lab import main

main()

"""`python -m bertkit …` (what `accelerate launch -m bertkit` runs)."""

from bertkit.cli import main

main()

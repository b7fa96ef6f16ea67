"""Where and how a network runs: device, precision and backend choice, learned rates, re-checks, compiled graphs."""

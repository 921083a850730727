"""street2shop."""
